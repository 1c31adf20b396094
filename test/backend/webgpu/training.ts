// Training on the webgpu backend (in CI: Mesa's software Vulkan device, lavapipe): one full
// step of each preset against the wasm backend, the fused gradient readback, and tf.memory()
// flat over MEMORY_STEPS steps. Run by webgpu.test.ts, after the kernel checks (their shaders are
// compiled by then). Skips with one loud line where no adapter exists; fails instead in CI.
import type { Test } from 'tap';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { assertFitsBackend, initBackend } from '../../../src/backend/select';
import { readConcatenated, readsSync } from '../../../src/backend/readback';
import { patchWasmKernels } from '../../../src/backend/wasm/patches';
import { webgpuAdapter } from '../../../src/backend/webgpu/backend';
import { TRAIN_DEFAULTS } from '../../../src/core/config';
import { createAlexNet, disposeModel, paramShapes, type AlexNet } from '../../../src/model/alexnet';
import { buildSpec, type ModelSpec } from '../../../src/model/presets';
import type { PresetName } from '../../../src/core/config';
import type { Collective } from '../../../src/dist/collective';
import { DataParallelSync } from '../../../src/train/sync/data-parallel-sync';
import { FusionBuffer } from '../../../src/train/sync/fusion-buffer';
import { Optimizer } from '../../../src/train/optimizer';
import { trainStep } from '../../../src/train/step';
import { maxRelativeError, randomArray } from '../../helpers/kernel-cases';
import { randomBatch, TINY_SPEC } from '../../helpers/micro-batch';
import { adapterLine, requireWebgpu } from '../../helpers/webgpu';

/**
 * The memory check: tf.memory() after WARM_STEPS (the optimizer's slots appear on the first) and
 * after MEMORY_STEPS. Every step runs the same ops (nothing in trainStep or DataParallelSync
 * depends on the step number), so a tensor or byte leaked per step shows as a difference of
 * MEMORY_STEPS - WARM_STEPS however many steps run; 20 make it plain.
 */
const WARM_STEPS = 5;
const MEMORY_STEPS = 25;
/** Input size of the big presets' one-step test (stepSpec). */
const STEP_INPUT_PX = 99;
const CLASSES = 10;

/**
 * Each parameter's change over one SGD step and the step's loss sum, from `start`'s weights or,
 * when null, from createAlexNet's (returned as `start`: the second backend starts there rather
 * than drawing the big presets' 22M weights again).
 */
async function oneStep(
  backend: string,
  spec: ModelSpec,
  images: number,
  start: Float32Array[] | null,
): Promise<{ start: Float32Array[]; deltas: Float32Array[]; loss: number }> {
  await tf.setBackend(backend);
  const model: AlexNet =
    start === null
      ? createAlexNet(spec, CLASSES, 7)
      : {
          spec,
          numClasses: CLASSES,
          params: tf.tidy(() =>
            paramShapes(spec, CLASSES).map(({ name, shape, kind }, i) => ({
              name,
              shape,
              kind,
              variable: tf.variable(tf.tensor(start[i], shape), true),
            })),
          ),
        };
  const before = start ?? (await Promise.all(model.params.map(async (p) => (await p.variable.data()) as Float32Array)));
  const optimizer = new Optimizer(
    { name: 'sgd', momentum: 0.9, weightDecay: 0.0005, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
    model.params,
  );
  const result = await trainStep(model, optimizer, randomBatch(model, images, 3), {
    lr: 0.01,
    dropoutSeed: 5,
    stopVote: false,
  });
  const after = await Promise.all(model.params.map(async (p) => (await p.variable.data()) as Float32Array));
  optimizer.dispose();
  disposeModel(model);
  const deltas = after.map((a, i) => {
    const d = new Float32Array(a.length);
    for (let k = 0; k < a.length; k++) d[k] = a[k] - before[i][k];
    return d;
  });
  return { start: before, deltas, loss: result.sums.lossSum };
}

/**
 * The paper and torchvision presets' fc6 weight (144 MiB) is over lavapipe's binding limit
 * (128 MiB): there the step runs at a smaller input (163 px: fc6 4096x4096, every other layer
 * as the preset has it) and the real size is checked to be refused. A GPU with a larger limit
 * runs the real size.
 */
/**
 * The preset's spec for the one-step test. The big presets run at 99 px: every layer kind and
 * group split is there (the last pool still 2x2), at a seventh of 227 px's conv work on lavapipe;
 * the kernel test holds every kernel at the presets' real shapes.
 */
function stepSpec(preset: PresetName): { spec: ModelSpec; note: string } {
  const spec = buildSpec(preset, { ...TRAIN_DEFAULTS.model, init: 'he' });
  if (preset === 'small') return { spec, note: `${spec.inputSize} px` };
  return { spec: { ...spec, inputSize: STEP_INPUT_PX }, note: `${STEP_INPUT_PX} px` };
}

/** One step of each preset on webgpu against wasm, the fused readback and flat memory (the file's header). */
export async function webgpuTrainingTests(t: Test): Promise<void> {
  if (!(await requireWebgpu(t, 'webgpu training tests'))) return;
  patchWasmKernels();
  const info = await initBackend('webgpu', true, { allowSoftwareGpu: true });
  t.equal(info.active, 'webgpu');
  t.pass(`adapter: ${await adapterLine()}`);
  t.notOk(readsSync(), 'webgpu reads asynchronously');

  t.test('the big presets at their real size are refused where fc6 does not fit a binding', async (t) => {
    const adapter = webgpuAdapter();
    if (adapter == null) throw new Error('no adapter after initBackend');
    // The shapes createAlexNet allocates, and what a run checks before allocating them.
    const shapes = paramShapes(buildSpec('paper'), 1000);
    if (adapter.maxBindingBytes < 4 * 9216 * 4096)
      t.throws(() => assertFitsBackend(shapes), { name: 'ConfigError', message: /fc6/ });
    else t.doesNotThrow(() => assertFitsBackend(shapes));
  });

  for (const preset of ['small', 'paper', 'torchvision'] as const) {
    t.test(`one step of ${preset}: webgpu = wasm`, async (t) => {
      await tf.setBackend('webgpu');
      const { spec, note } = stepSpec(preset);
      const images = preset === 'small' ? 4 : 1;
      const ref = await oneStep('wasm', spec, images, null);
      const gpu = await oneStep('webgpu', spec, images, ref.start);
      const worst = Math.max(...ref.deltas.map((d, i) => maxRelativeError(gpu.deltas[i], d)));
      t.ok(
        worst <= 1e-4,
        `${preset} (${note}, ${images} images): largest relative difference of an update ${worst.toExponential(2)} <= 1e-4`,
      );
      t.ok(Math.abs(gpu.loss - ref.loss) <= 1e-4 * Math.abs(ref.loss), `loss sum ${gpu.loss} vs ${ref.loss}`);
    });
  }

  t.test('the fused readback: in binding-sized groups, the values of every tensor in order', async (t) => {
    await tf.setBackend('webgpu');
    const adapter = webgpuAdapter();
    if (adapter == null) throw new Error('no adapter');
    const shapes = [[3, 4], [7], [2, 2, 5], [1]];
    const tensors = shapes.map((s, i) => tf.tensor(randomArray(s, 20 + i), s));
    const want = Float32Array.from(shapes.flatMap((s, i) => Array.from(randomArray(s, 20 + i))));
    const limit = adapter.maxBindingBytes;
    try {
      t.same(Array.from(await readConcatenated(tensors)), Array.from(want), 'one read');
      adapter.maxBindingBytes = 4 * 12; // groups [3x4], [7], [2x2x5], [1]: each alone or as one
      t.same(Array.from(await readConcatenated(tensors)), Array.from(want), 'in groups');
      const fusion = new FusionBuffer(shapes);
      await fusion.packAsync(tensors);
      t.same(Array.from(fusion.params), Array.from(want), 'FusionBuffer.packAsync');
    } finally {
      adapter.maxBindingBytes = limit;
      tf.dispose(tensors);
    }
  });

  t.test(`no GPU memory growth over ${MEMORY_STEPS} steps (a tiny model)`, async (t) => {
    await tf.setBackend('webgpu');
    const model: AlexNet = createAlexNet(TINY_SPEC, 4, 3);
    const optimizer = new Optimizer(
      { name: 'sgd', momentum: 0.9, weightDecay: 0.0005, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
      model.params,
    );
    const fusion = new FusionBuffer(model.params.map((p) => p.shape));
    const collective: Collective = {
      worldSize: 1,
      rank: 0,
      wireDtype: 'fp32',
      allReduce: async () => {},
      broadcast: async () => {},
      bytesSent: () => 0,
    };
    const sync = new DataParallelSync(collective, optimizer, fusion);
    const batch = randomBatch(model, 2, 9);
    const memory: { numTensors: number; numBytes: number }[] = [];
    const started = performance.now();
    for (let step = 0; step < MEMORY_STEPS; step++) {
      // The data-parallel path: loss and logits read back, gradients packed for the all-reduce.
      await trainStep(model, optimizer, batch, { lr: 0.01, dropoutSeed: step, sync, stopVote: false });
      if (step === WARM_STEPS - 1 || step === MEMORY_STEPS - 1) memory.push(tf.memory());
    }
    const seconds = (performance.now() - started) / 1000;
    t.equal(
      memory[1].numTensors,
      memory[0].numTensors,
      `tensors after step ${WARM_STEPS} and ${MEMORY_STEPS}: ${memory[0].numTensors}, ${memory[1].numTensors} (${seconds.toFixed(0)} s)`,
    );
    t.equal(
      memory[1].numBytes,
      memory[0].numBytes,
      `bytes after step ${WARM_STEPS} and ${MEMORY_STEPS}: ${memory[0].numBytes}, ${memory[1].numBytes}`,
    );
    optimizer.dispose();
    disposeModel(model);
  });
}
