// The webgpu backend's tests, in one process: kernels.ts (every kernel against a reference backend),
// then training.ts (whole steps against wasm). lavapipe compiles each shader with LLVM once per
// process, and the training steps reuse most of the kernel checks' pipelines (docs/measurements.md,
// "Under 8 minutes"). Last, that Dawn's waits went through the polite polling wrapper (polling.ts).
import t from 'tap';
import * as tf from '@tensorflow/tfjs';
import { pollStats } from '../../../src/backend/webgpu/polling';
import { requireWebgpu } from '../../helpers/webgpu';
import { webgpuKernelTests } from './kernels';
import { webgpuTrainingTests } from './training';

t.test('webgpu kernels vs a reference backend (native where built, else cpu)', webgpuKernelTests);
t.test('webgpu training', webgpuTrainingTests);
t.test("Dawn's polls went through the polite polling wrapper", async (t) => {
  if (!(await requireWebgpu(t, 'the polling check'))) return;
  // One readback long enough to outlast the spin budget on any adapter (a second or so of
  // lavapipe's time; milliseconds on a GPU).
  await tf.setBackend('webgpu');
  const product = tf.tidy(() => tf.sum(tf.matMul(tf.ones([24, 512, 512]), tf.ones([24, 512, 512]))));
  await product.data();
  product.dispose();
  const { polls, sleeps } = pollStats();
  // A dawn.node that polled some other way would leave both at 0 and spin a core again.
  t.ok(polls > 0, `${polls} of Dawn's polls were recognised`);
  t.ok(sleeps > 0, `${sleeps} of them slept a timer first: the waits longer than the spin budget`);
});
