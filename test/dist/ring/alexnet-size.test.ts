/**
 * The real gradient size, 61,100,840 floats (244 MB), all-reduced between 2 node processes over
 * ipc://: every rank checks a sample of ~1M elements against the exact ring-order result, and
 * the checksums of the whole buffers must be equal (bit-identical replicas).
 */
import t from 'tap';
import { problems, runRing } from '../fixtures/processes';

t.setTimeout(120_000); // two processes each generate, reduce and check 244 MB on 2 cores

t.test('61,100,840 floats (AlexNet) between 2 processes over ipc', async (t) => {
  const results = await runRing(2, 'ipc', { length: 61_100_840, chunkBytes: 1 << 20, timeoutMs: 60_000 });
  t.same(problems(results, 2), [], 'exact samples, bit-identical checksums on both ranks');
  const ms = Math.max(...results.map((r) => (r.kind === 'result' ? r.ms : 0)));
  t.comment(`all-reduce of 244 MB between 2 processes: ${ms.toFixed(0)} ms`);
});
