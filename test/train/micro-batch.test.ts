// Micro-batches on wasm (what CI runs): a worker's share cut into micro-batches gives the
// update of the whole share, dropout off and on (masks are keyed per image), and the run says
// which micro-batch it chose. The native twin is test/backend/native/micro-batch.test.ts.
import t from 'tap';
import { initBackend } from '../../src/backend/select';
import { maxRelativeDifference } from '../helpers/weights';
import { stepWithMicroBatch } from '../helpers/micro-batch';

t.before(async () => {
  await initBackend('wasm', false);
});

for (const dropout of [0, 0.5]) {
  t.test(`micro-batches of 2 and of 4 (4 + 2) equal the whole batch of 6, dropout ${dropout}`, async (t) => {
    const whole = await stepWithMicroBatch(0, dropout);
    for (const micro of [2, 4]) {
      const cut = await stepWithMicroBatch(micro, dropout);
      const rel = maxRelativeDifference(whole.weights, cut.weights);
      t.ok(rel <= 1e-4, `--micro-batch ${micro}: max relative weight difference ${rel.toExponential(2)}`);
      t.equal(cut.sums.count, 6, 'the metric sums count every image');
      t.ok(
        Math.abs(cut.sums.lossSum - whole.sums.lossSum) <= 1e-4 * Math.abs(whole.sums.lossSum),
        `loss sum ${cut.sums.lossSum} vs ${whole.sums.lossSum}`,
      );
      t.equal(cut.sums.top1Correct, whole.sums.top1Correct);
    }
  });
}

t.test('the comparison can fail: dropout on and off give different weights', async (t) => {
  const a = await stepWithMicroBatch(0, 0.5);
  const b = await stepWithMicroBatch(2, 0);
  t.ok(maxRelativeDifference(a.weights, b.weights) > 1e-3, 'dropout on vs off differ');
});

t.test('micro-batching leaks no tensors', async (t) => {
  const { tensorsAfterStep } = await stepWithMicroBatch(4, 0.5);
  t.ok(
    tensorsAfterStep.every((n) => n === tensorsAfterStep[0]),
    `live tensors after each step: ${tensorsAfterStep.join(', ')}`,
  );
});
