// Micro-batches on the native (oneDNN) backend: the same check as test/train/micro-batch.test.ts
// (the whole batch of 6 against micro-batches of 2 and of 4 + 2, dropout off and on, to 1e-4).
import t from 'tap';
import { initBackend } from '../../../src/backend/select';
import { ensureNativeAddon } from '../../helpers/native-addon';
import { stepWithMicroBatch } from '../../helpers/micro-batch';
import { maxRelativeDifference } from '../../helpers/weights';

const { addon, skipReason } = ensureNativeAddon();

for (const dropout of [0, 0.5]) {
  t.test(
    `native: micro-batches equal the whole batch of 6, dropout ${dropout}`,
    { skip: addon == null ? skipReason : false },
    async (t) => {
      await initBackend('native', false);
      const whole = await stepWithMicroBatch(0, dropout);
      for (const micro of [2, 4]) {
        const rel = maxRelativeDifference(whole.weights, (await stepWithMicroBatch(micro, dropout)).weights);
        t.ok(rel <= 1e-4, `--micro-batch ${micro}: max relative weight difference ${rel.toExponential(2)}`);
      }
    },
  );
}
