// The webgpu backend's tests, in one process: kernels.ts (every kernel against the cpu backend),
// then training.ts (whole steps against wasm). lavapipe compiles each shader with LLVM once per
// process, and the training steps reuse most of the kernel checks' pipelines: together they take
// ~146 CPU s with Mesa's shader cache empty, as two files ~190 (docs/measurements.md, "Under 8
// minutes"). Last, that Dawn's waits went through the polite polling wrapper (polling.ts).
import t from 'tap';
import { pollStats } from '../../../src/backend/webgpu/polling';
import { requireWebgpu } from '../../helpers/webgpu';
import { webgpuKernelTests } from './kernels';
import { webgpuTrainingTests } from './training';

t.test('webgpu kernels vs the cpu backend', webgpuKernelTests);
t.test('webgpu training', webgpuTrainingTests);
t.test("Dawn's polls went through the polite polling wrapper", async (t) => {
  if (!(await requireWebgpu(t, 'the polling check'))) return;
  const { polls, sleeps } = pollStats();
  // A dawn.node that polled some other way would leave both at 0 and spin a core again.
  t.ok(polls > 0, `${polls} of Dawn's polls were recognised`);
  t.ok(sleeps > 0, `${sleeps} of them slept a timer first: the waits longer than the spin budget`);
});
