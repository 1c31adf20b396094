import t from 'tap';
import { ReplicaChecksums, hungWorker, newWorkerState } from '../../../src/dist/launch/worker-health';

t.test('a worker is hung when silent past the timeout or 3x its slowest step, once it has said hello', async (t) => {
  const a = { ...newWorkerState(0, null, null, 0), routingId: new Uint8Array([1]) };
  const b = { ...newWorkerState(1, null, null, 0), routingId: new Uint8Array([2]), longestStepMs: 50_000 };
  const starting = newWorkerState(2, null, null, 0);
  t.equal(hungWorker([a, b, starting], 10_000, 30_000), undefined, 'all within 30 s');
  t.equal(hungWorker([a, b, starting], 31_000, 30_000)?.rank, 0, 'rank 0 silent 31 s > 30 s');
  t.equal(hungWorker([b, starting], 149_000, 30_000), undefined, 'a 50 s step allows 150 s of silence');
  t.equal(hungWorker([b, starting], 151_000, 30_000)?.rank, 1);
  t.equal(
    hungWorker(
      [
        { ...a, done: true },
        { ...b, exited: true },
      ],
      1e9,
      1,
    ),
    undefined,
    'finished or exited workers are not hung',
  );
});

t.test('replica checksums are compared once every rank has reported that step', async (t) => {
  const sums = new ReplicaChecksums(3);
  t.same(sums.add(1, 10, 'x'), []);
  t.same(sums.add(0, 10, 'x'), [], 'still waiting for rank 2');
  t.same(sums.add(2, 10, 'x'), [], 'all equal');
  t.same(sums.add(0, 20, 'x'), []);
  t.same(sums.add(2, 20, 'y'), []);
  t.same(sums.add(1, 20, 'x'), [2], 'rank 2 differs from rank 0');
  t.same(sums.add(1, 30, 'q'), []);
  t.same(sums.add(2, 30, 'q'), []);
  t.same(sums.add(0, 30, 'p'), [1, 2], 'ranks are named against rank 0');
});
