/**
 * The shared-memory collectives give the ring's bits: N real processes (2, 3, 4) run every
 * collective in fp32, fp16 and bf16, in a segment and from plain arrays through small staging
 * areas (several chunks), on lengths that N does not divide and shorter than N; the reference
 * is src/dist/ring/allreduce.ts over the in-memory ring in this process.
 */
import * as fs from 'node:fs';
import t from 'tap';
import { shmUnavailableReason } from '../../../src/dist/shm/addon';
import { newShmPrefix } from '../../../src/dist/shm/shm-group';
import type { WireDtype } from '../../../src/dist/ring/wire-codec';
import { reference, type Case } from './fixtures/cases';
import { RANK_SCRIPT, runRanks } from './fixtures/processes';

const unavailable =
  shmUnavailableReason() ?? (fs.existsSync(RANK_SCRIPT) ? null : `${RANK_SCRIPT} not built (npx tsc -p tsconfig.json)`);

function casesFor(n: number): Case[] {
  const cases: Case[] = [];
  let seed = 100 * n;
  const sizes = [
    Array.from({ length: n }, (_, r) => 5 * r + 3),
    Array.from({ length: n }, (_, r) => (r === 1 ? 0 : 700 + r)),
  ];
  for (const dtype of ['fp32', 'fp16', 'bf16'] as WireDtype[]) {
    for (const length of [n - 1, 4099]) {
      for (const inSegment of [true, false]) cases.push({ op: 'allReduce', dtype, length, inSegment, seed: seed++ });
    }
    cases.push({ op: 'broadcast', dtype, length: 1003, root: n - 1, inSegment: true, seed: seed++ });
    cases.push({ op: 'broadcast', dtype, length: 1003, root: 0, inSegment: false, seed: seed++ });
    for (const s of sizes) {
      cases.push({ op: 'allGather', dtype, length: 0, sizes: s, inSegment: false, seed: seed++ });
      cases.push({ op: 'reduceScatter', dtype, length: 0, sizes: s, inSegment: false, seed: seed++ });
    }
  }
  return cases;
}

const label = (c: Case): string =>
  `${c.op} ${c.dtype} ${c.sizes ? `sizes ${c.sizes.join(',')}` : `${c.length} floats`}${c.inSegment ? ' in a segment' : ''}`;

for (const n of [2, 3, 4]) {
  t.test(`${n} ranks: bit-identical to the ring`, { skip: unavailable ?? false }, async (t) => {
    const cases = casesFor(n);
    const prefix = newShmPrefix();
    // 1 KiB staging: the 4099-float buffers move in several chunks.
    const plans = Array.from({ length: n }, (_, rank) => ({
      rank,
      worldSize: n,
      prefix,
      timeoutMs: 10_000,
      stagingBytes: 1024,
      allocate: 4099,
      cases,
    }));
    const reports = await runRanks(plans);
    for (const [rank, rs] of reports.entries()) {
      const errors = rs.filter((r) => r.kind === 'error');
      t.same(errors, [], `rank ${rank}: no error`);
    }
    for (const [index, c] of cases.entries()) {
      const want = await reference(c, n);
      const ok = want.every((w, rank) => {
        const got = reports[rank].find((r) => r.kind === 'result' && r.index === index);
        return (
          got !== undefined &&
          got.kind === 'result' &&
          got.bits.length === w.length &&
          got.bits.every((b, i) => b === new Uint32Array(w.buffer, w.byteOffset, w.length)[i])
        );
      });
      t.ok(ok, label(c));
    }
    t.same(
      fs.readdirSync('/dev/shm').filter((f) => f.startsWith(prefix)),
      [],
      'no segment left',
    );
  });
}
