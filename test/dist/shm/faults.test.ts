/**
 * Faults and security of the shared-memory group, with real processes and segments: a rank
 * SIGKILLed inside a collective, every rank SIGKILLed, segment mode and another uid, and
 * mismatched headers (world size, length, version).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import t from 'tap';
import { shmUnavailableReason } from '../../../src/dist/shm/addon';
import { newShmPrefix, segmentName, sweepSegments } from '../../../src/dist/shm/shm-group';
import type { Plan, Report } from './fixtures/rank';
import { RANK_SCRIPT, runRanks, startRanks } from './fixtures/processes';

const unavailable =
  shmUnavailableReason() ?? (fs.existsSync(RANK_SCRIPT) ? null : `${RANK_SCRIPT} not built (npx tsc -p tsconfig.json)`);
const ours = (prefix: string): string[] => fs.readdirSync('/dev/shm').filter((f) => f.startsWith(prefix));
const plans = (n: number, prefix: string, extra: Partial<Plan> = {}): Plan[] =>
  Array.from({ length: n }, (_, rank) => ({ rank, worldSize: n, prefix, timeoutMs: 1500, ...extra }));
const errorOf = (rs: Report[]): Extract<Report, { kind: 'error' }> | undefined =>
  rs.find((r): r is Extract<Report, { kind: 'error' }> => r.kind === 'error');

t.test(
  'a rank killed inside a collective: the others throw CommTimeoutError naming it, in time',
  { skip: unavailable ?? false },
  async (t) => {
    const prefix = newShmPrefix();
    const timeoutMs = 1500;
    // Rank 2 allocates, then is killed before it joins the all-reduce that ranks 0 and 1 are in
    // (it holds there: a kill that came after it joined would let the all-reduce finish).
    const ranks = startRanks(
      plans(3, prefix, { timeoutMs, allocate: 1 << 20, finalAllReduce: true, retryAfterError: true }).map((p) =>
        p.rank === 2 ? { ...p, holdBeforeFinal: true } : p,
      ),
    );
    await Promise.all([0, 1, 2].map((r) => ranks.next(r, 'allocated')));
    ranks.children[2].kill('SIGKILL');
    const killedAt = Date.now();
    const errors = await Promise.all([0, 1].map((r) => ranks.next(r, 'error')));
    const waitedMs = Date.now() - killedAt;
    await ranks.exited;
    for (const e of errors) {
      t.equal(e.kind === 'error' && e.name, 'CommTimeoutError', `rank ${e.rank}: CommTimeoutError`);
      t.match(e.kind === 'error' ? e.message : '', /rank 2/, `rank ${e.rank}: names rank 2`);
    }
    t.ok(waitedMs < timeoutMs + 3000, `both gave up within the timeout + 3 s (${waitedMs} ms)`);
    // The group is broken on every rank now: a later collective fails at once, not after a timeout.
    for (const rank of [0, 1]) {
      const retry = ranks.reports[rank].filter((r) => r.kind === 'error')[1];
      t.equal(retry?.kind === 'error' && retry.name, 'CommTimeoutError', `rank ${rank}: a later barrier fails too`);
      t.ok(
        retry?.kind === 'error' && retry.ms < 500 && /rank 2/.test(retry.message),
        `rank ${rank}: at once, naming rank 2 (${retry?.kind === 'error' ? `${retry.ms} ms: ${retry.message}` : 'none'})`,
      );
    }
    t.same(ours(prefix), [], 'no segment left');
  },
);

t.test(
  'every rank SIGKILLed after attaching: /dev/shm holds nothing of ours',
  { skip: unavailable ?? false },
  async (t) => {
    const prefix = newShmPrefix();
    const ranks = startRanks(
      plans(2, prefix, { timeoutMs: 60_000, allocate: 1 << 18, finalAllReduce: false, cases: [] }).map((p, r) =>
        r === 1 ? { ...p, allocate: undefined } : p,
      ),
    );
    // Rank 1 never allocates: rank 0 sits in allocate() with the allocation's segment created but not yet attached by rank 1.
    await Promise.all([0, 1].map((r) => ranks.next(r, 'joined')));
    for (let i = 0; i < 200 && ours(prefix).length === 0; i++) await new Promise((r) => setTimeout(r, 25));
    t.same(
      ours(prefix).length,
      1,
      'only the half-made allocation exists (control segment unlinked once both attached)',
    );
    ranks.children.forEach((c) => c.kill('SIGKILL'));
    await ranks.exited;
    t.same(ours(prefix).length, 1, 'a rank killed before its peers attached leaves that segment...');
    t.same(sweepSegments(prefix).length, 1, '...which sweepSegments (the coordinator, at the end of the run) removes');
    t.same(ours(prefix), []);

    const again = newShmPrefix();
    const all = startRanks(plans(3, again, { timeoutMs: 60_000, allocate: 1 << 18 }));
    await Promise.all([0, 1, 2].map((r) => all.next(r, 'allocated')));
    all.children.forEach((c) => c.kill('SIGKILL'));
    await all.exited;
    t.same(ours(again), [], 'killed after attaching: nothing left');
  },
);

t.test('segments are 0600, and a process of another uid cannot attach', { skip: unavailable ?? false }, async (t) => {
  const nobody =
    spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'true']).status === 0 ||
    process.getuid?.() === 0;
  const prefix = newShmPrefix();
  // Rank 0 of 2 creates the control segment and waits for rank 1.
  const ranks = startRanks([plans(2, prefix, { timeoutMs: 20_000 })[0]]);
  const name = segmentName(prefix, 'control').slice(1);
  for (let i = 0; i < 200 && !ours(prefix).includes(name); i++) await new Promise((r) => setTimeout(r, 25));
  const st = fs.statSync(`/dev/shm/${name}`);
  t.equal(st.mode & 0o777, 0o600, 'mode 0600');
  t.equal(st.uid, process.getuid?.(), 'owned by us');
  t.match(name, /^alexnet-[0-9a-f]{32}-c$/, '128 random bits in the name');
  if (process.getuid?.() === 0 && nobody) {
    const [stranger] = await runRanks([{ ...plans(2, prefix, { timeoutMs: 3000 })[1], asNobody: true }]);
    const e = errorOf(stranger);
    t.equal(e?.name, 'ConfigError', 'uid 65534: refused');
    t.match(e?.message ?? '', /Permission denied|belongs to uid/);
  } else {
    t.comment('not root: cannot become another uid to try the attach');
  }
  const [rank1] = await runRanks([plans(2, prefix, { timeoutMs: 20_000 })[1]]);
  await ranks.exited;
  t.same(
    rank1.filter((r) => r.kind === 'error'),
    [],
    'the real rank 1 still attaches',
  );
  t.same(ours(prefix), [], 'unlinked once both attached');
});

t.test('header mismatches are clear errors before the first step', { skip: unavailable ?? false }, async (t) => {
  const check = async (what: string, second: Partial<Plan>, pattern: RegExp): Promise<void> => {
    const prefix = newShmPrefix();
    const [p0, p1] = plans(2, prefix, { timeoutMs: 5000 });
    const [r0, r1] = await runRanks([p0, { ...p1, ...second }]);
    t.equal(errorOf(r1)?.name, 'ProtocolError', `${what}: the attaching rank`);
    t.match(errorOf(r1)?.message ?? '', pattern, `${what}: says what differs`);
    t.equal(errorOf(r0)?.name, 'ProtocolError', `${what}: rank 0 hears of it`);
    t.same(ours(prefix), [], `${what}: nothing left`);
  };
  await check('version', { protocolVersion: 99 }, /made for version 1.*expects version 99/);
  await check('world size', { worldSize: 3 }, /made for version 1, 2 ranks.*expects version 1, 3 ranks/);
  const prefix = newShmPrefix();
  const [p0, p1] = plans(2, prefix, { timeoutMs: 5000, allocate: 100 });
  const [r0, r1] = await runRanks([p0, { ...p1, allocate: 120 }]);
  t.match(
    errorOf(r1)?.message ?? '',
    /buffer of 400 bytes per rank, this rank expects .*buffer of 480 bytes/,
    'length: says what differs',
  );
  t.equal(errorOf(r0)?.name, 'ProtocolError', 'length: rank 0 hears of it');
  t.same(ours(prefix), []);
});
