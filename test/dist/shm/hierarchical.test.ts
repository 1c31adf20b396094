/**
 * The hierarchical all-reduce (src/dist/shm/hierarchical.ts): 2 "hosts" x 2 ranks as real
 * processes on this machine (two shared-memory groups, two cross rings over ipc), in fp16 on the
 * wire and as an exact fp32 request. Every rank gets the same bits, equal to the documented
 * order computed here with the reference ring (host ring order, then the cross ring's); the
 * cross rings carry 2(H-1)/H of each rank's 1/L share. A rank that dies is named by global rank.
 */
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { CommTimeoutError } from '../../../src/core/errors';
import { projectRoot } from '../../../src/core/project-root';
import { ringAllGather, ringAllReduce, ringReduceScatter } from '../../../src/dist/ring/allreduce';
import { createInMemoryRing } from '../../../src/dist/ring/transport';
import { WireCodecTransport, type WireDtype } from '../../../src/dist/ring/wire-codec';
import { shmUnavailableReason } from '../../../src/dist/shm/addon';
import {
  crossRingRanks,
  hostRanks,
  hostSegmentSizes,
  inGlobalRanks,
  layoutOf,
} from '../../../src/dist/shm/hierarchical';
import { newShmPrefix, sweepSegments } from '../../../src/dist/shm/shm-group';
import { tempDir } from '../../data/fixtures/images';
import { hierInput, type HierPlan, type HierReport } from './fixtures/hier-rank';
import { PLAIN_NODE } from './fixtures/processes';

const SCRIPT = path.join(projectRoot(__dirname), 'dist/test/dist/shm/fixtures/hier-rank.js');
const unavailable =
  shmUnavailableReason() ?? (fs.existsSync(SCRIPT) ? null : `${SCRIPT} not built (npx tsc -p tsconfig.json)`);
const L = 2;
const H = 2;

/**
 * Runs one process per rank; each rank's reports (but 'ready') once all have exited (killed after
 * `limitMs`). A plan's dieBeforeReduce acts once every rank is ready.
 */
async function runHier(plans: HierPlan[], limitMs = 30_000): Promise<HierReport[][]> {
  const reports: HierReport[][] = plans.map(() => []);
  let ready = 0;
  const children = plans.map((plan, rank) => {
    const child = fork(SCRIPT, [JSON.stringify(plan)], {
      ...PLAIN_NODE,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.on('message', (m: HierReport) => {
      if (m.kind !== 'ready') reports[rank].push(m);
      else if (++ready === plans.length) children.forEach((c, r) => plans[r].dieBeforeReduce === true && c.send('die'));
    });
    return child;
  });
  const timer = setTimeout(() => children.forEach((c) => c.kill('SIGKILL')), limitMs);
  await Promise.all(children.map((c) => new Promise((resolve) => c.once('exit', resolve))));
  clearTimeout(timer);
  return reports;
}

/** The documented order, with the reference ring: each host's reduce-scatter, each cross ring, each host's all-gather. */
async function reference(length: number, dtype: WireDtype): Promise<Float32Array> {
  const sizes = hostSegmentSizes(length, L);
  const hostSums = await Promise.all(
    Array.from({ length: H }, (_, h) => {
      const ring = createInMemoryRing(L).map((x) => new WireCodecTransport(x, dtype));
      return Promise.all(ring.map((x, l) => ringReduceScatter(hierInput(h * L + l, length), sizes, x)));
    }),
  );
  for (let l = 0; l < L; l++) {
    const ring = createInMemoryRing(H).map((x) => new WireCodecTransport(x, dtype));
    await Promise.all(ring.map((x, h) => ringAllReduce(hostSums[h][l], x, h, H)));
  }
  const ring = createInMemoryRing(L).map((x) => new WireCodecTransport(x, dtype));
  const gathered = await Promise.all(ring.map((x, l) => ringAllGather(hostSums[0][l], sizes, x)));
  return gathered[0];
}

function plans(dir: string, extra: Partial<HierPlan>): HierPlan[] {
  const prefixes = Array.from({ length: H }, () => newShmPrefix());
  t.teardown(() => prefixes.forEach((p) => sweepSegments(p)));
  return Array.from({ length: L * H }, (_, rank) => ({
    rank,
    localSize: L,
    hosts: H,
    dir,
    prefixes,
    wireDtype: 'fp16',
    timeoutMs: 10_000,
    reduces: [],
    ...extra,
  }));
}

t.test('layout: rank r = h * L + l; the cross ring and host members by global rank', async (t) => {
  t.same(layoutOf(5, 2, 3), { localRank: 1, localSize: 2, hostIndex: 2, hosts: 3 });
  t.same(crossRingRanks(layoutOf(5, 2, 3)), [1, 3, 5]);
  t.same(hostRanks(layoutOf(5, 2, 3)), [4, 5]);
  t.same(hostSegmentSizes(1003, 2), [502, 501]);
  t.throws(() => layoutOf(6, 2, 3), /rank 6 is not in a run of 3 hosts x 2 ranks/);
  const e = inGlobalRanks(
    new CommTimeoutError('rank 2: no data from rank 1 within 5 ms. Rank 1 is dead'),
    [1, 3, 5],
    'cross ring 1',
  );
  t.type(e, CommTimeoutError);
  t.equal(e.message, 'cross ring 1 (ranks 1, 3, 5): rank 5: no data from rank 3 within 5 ms. Rank 3 is dead');
});

t.test(
  '2 hosts x 2 ranks: identical bits on every rank, the documented order, 2(H-1)/H of 1/L on the cross rings',
  { skip: unavailable ?? false },
  async (t) => {
    const dir = tempDir(t, 'alexnet-hier-');
    const reduces = [
      { length: 1003, exact: false },
      { length: 1000, exact: true },
    ];
    const reports = await runHier(plans(dir, { reduces }));
    const expected = [await reference(1003, 'fp16'), await reference(1000, 'fp32')];
    for (const [rank, rs] of reports.entries()) {
      t.same(
        rs.filter((r) => r.kind === 'error'),
        [],
        `rank ${rank}: no error`,
      );
      for (const [i, r] of rs.entries()) {
        if (r.kind !== 'reduced') continue;
        const want = Array.from(new Uint32Array(expected[i].buffer));
        t.ok(
          r.bits.length === want.length && r.bits.every((b, k) => b === want[k]),
          `rank ${rank}, ${reduces[i].exact ? 'exact fp32' : 'fp16'}: the reference bits`,
        );
      }
      t.equal(rs.length, 2, `rank ${rank}: both all-reduces`);
      // fp32: each rank's cross ring moves its 1000/L floats, 2(H-1)/H of them sent per rank.
      const exact = rs[1];
      if (exact?.kind === 'reduced')
        t.equal(exact.bytes, ((2 * (H - 1)) / H) * (1000 / L) * 4, `rank ${rank}: cross-ring bytes`);
    }
  },
);

t.test(
  'a rank that dies in the all-reduce is a CommTimeoutError naming it by global rank',
  { skip: unavailable ?? false },
  async (t) => {
    const dir = tempDir(t, 'alexnet-hier-dead-');
    const all = plans(dir, { timeoutMs: 2000, reduces: [{ length: 1000, exact: false }] });
    all[3].dieBeforeReduce = true;
    const reports = await runHier(all);
    for (const rank of [0, 1, 2]) {
      const error = reports[rank].find((r) => r.kind === 'error');
      t.equal(error?.kind === 'error' && error.name, 'CommTimeoutError', `rank ${rank}: CommTimeoutError`);
    }
    const message = (rank: number): string => {
      const e = reports[rank].find((r) => r.kind === 'error');
      return e?.kind === 'error' ? e.message : '';
    };
    // Rank 3's cross-ring neighbour and host neighbour name it; rank 0 names rank 2 (waiting on rank 3).
    t.match(message(1), /cross ring 1 \(ranks 1, 3\): .*rank 3/);
    t.match(message(2), /host 1's shared memory \(ranks 2, 3\): .*rank 3/);
  },
);
