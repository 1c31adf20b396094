// The webgpu backend's tests, in one process: kernels.ts (every kernel against the cpu backend),
// then training.ts (whole steps against wasm). lavapipe compiles each shader with LLVM once per
// process, and the training steps reuse most of the kernel checks' pipelines: together they take
// ~146 CPU s with Mesa's shader cache empty, as two files ~190 (docs/measurements.md, "Under 8
// minutes").
import t from 'tap';
import { webgpuKernelTests } from './kernels';
import { webgpuTrainingTests } from './training';

t.test('webgpu kernels vs the cpu backend', webgpuKernelTests);
t.test('webgpu training', webgpuTrainingTests);
