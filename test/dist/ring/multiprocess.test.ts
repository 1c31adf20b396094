/**
 * Ranks as real separate node processes over ZeroMQ (fixtures/ring-worker.ts): a 3-rank ring,
 * and a rank that dies after the handshake (the other gets CommTimeoutError, no hang).
 * The AlexNet-sized buffer between processes is in alexnet-size.test.ts.
 */
import t from 'tap';
import { problems, runRing } from '../fixtures/processes';

t.test('3 processes over ipc: exact, bit-identical on every rank', async (t) => {
  const results = await runRing(3, 'ipc', { length: 1_000_003, chunkBytes: 1 << 18, timeoutMs: 20_000 });
  t.same(problems(results, 3), [], 'exact samples, bit-identical checksums on all 3 ranks');
});

t.test('a rank that dies: the other gets CommTimeoutError, no hang', async (t) => {
  const started = Date.now();
  const results = await runRing(2, 'tcp', { length: 100_000, chunkBytes: 1 << 16, timeoutMs: 1_000 }, 1);
  t.equal(results.length, 1, 'the survivor answered');
  const [survivor] = results;
  t.equal(survivor?.kind, 'failed');
  if (survivor?.kind === 'failed') {
    t.equal(survivor.name, 'CommTimeoutError', `rank ${survivor.rank}: ${survivor.message}`);
    t.match(survivor.message, /rank 0: no data from rank 1 within 1000 ms/);
  }
  t.ok(Date.now() - started < 20_000, 'finished promptly');
});
