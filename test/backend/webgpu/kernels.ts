// The webgpu backend (Dawn over Vulkan; in CI Mesa's software device, lavapipe) against a
// reference backend (native where built, else tfjs's pure-JS cpu backend: see `references`):
// every kernel the three presets train with, at their real shapes and
// small batches (2 for small, 1 for paper and torchvision: lavapipe is slow), forward and
// gradients, relative error <= 1e-4. Grouped conv layers run as the model composes them on
// every backend but native (split, one conv per group, concat), and the ops the wasm patches
// replace (LRN, LRNGrad, MaxPoolGrad, the conv backprops) are all here; LRN on a patch of the
// image at its real channel count (see LRN_PATCH).
//
// Run by webgpu.test.ts. Skips with one loud line where no adapter exists; fails instead in CI
// (test/helpers/webgpu.ts).
import type { Test } from 'tap';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { loadWebgpu, oversizeTensors, webgpuAdapter } from '../../../src/backend/webgpu/backend';
import { NATIVE_BACKEND_NAME, registerNativeBackend } from '../../../src/backend/native/backend';
import { patchWasmKernels } from '../../../src/backend/wasm/patches';
import { PRESETS } from '../../../src/model/presets';
import {
  dedupe,
  maxRelativeError,
  outputsOn,
  presetShapes,
  rand,
  tfPad,
  type ConvCase,
  type LayerCase,
  type PresetShapes,
} from '../../helpers/kernel-cases';
import { ensureNativeAddon } from '../../helpers/native-addon';
import { adapterLine, requireWebgpu } from '../../helpers/webgpu';

const TOLERANCE = 1e-4;
/** The LRN cases' height and width (not square: a swapped row and column would show). */
const LRN_PATCH = [7, 5];

/**
 * The reference backends. Native (oneDNN) where its addon is built: test/backend/native/kernels
 * holds it to tfjs's pure-JS cpu backend within the same 1e-4 on every layer shape of the
 * presets, at a fraction of the cpu backend's time here (docs/measurements.md, "Under 8
 * minutes"). Without it: the cpu backend, and for the big presets' conv gradients (where its
 * backprop kernels take tens of seconds a layer) the patched wasm backend, held to the cpu
 * backend by the wasm patches' tests. Set by webgpuKernelTests.
 */
const references = { layers: 'cpu', bigConvGradients: 'wasm' };

async function compare(
  t: Test,
  name: string,
  labels: string[],
  fn: () => tf.Tensor[],
  reference = references.layers,
): Promise<void> {
  const ref = await outputsOn(reference, fn);
  const gpu = await outputsOn('webgpu', fn);
  labels.forEach((label, i) => {
    const err = gpu.shapes[i] === ref.shapes[i] ? maxRelativeError(gpu.data[i], ref.data[i]) : Infinity;
    t.ok(
      err <= TOLERANCE,
      `${name} ${label} [${ref.shapes[i]}] (vs ${reference}): relative error ${err.toExponential(2)}`,
    );
  });
}

/** The gradients of sum(f(inputs) * g), with g random: every output element weighs in. */
function withGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], seed: number): tf.Tensor[] {
  const y = f(...inputs);
  const g = rand(y.shape, seed);
  return [y, ...tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), g)))(inputs)];
}

/** One conv per group (the model's composition off native): y, dx, dw, db. */
function convLayer(c: LayerCase, activation: 'relu' | 'linear') {
  return (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor): tf.Tensor => {
    // A split into one part has no gradient in tfjs: groups 1 goes without, as in the model.
    const parts = (v: tf.Tensor, axis: number) => (c.groups === 1 ? [v] : tf.split(v, c.groups, axis));
    const [xs, ws, bs] = [parts(xx, 3), parts(ww, 3), parts(bb, 0)];
    const ys = xs.map((xg, g) =>
      tf.add(tf.conv2d(xg as tf.Tensor4D, ws[g] as tf.Tensor4D, c.stride, tfPad(c.pad)), bs[g]),
    );
    const y = c.groups === 1 ? ys[0] : tf.concat(ys, 3);
    return activation === 'relu' ? tf.relu(y) : y;
  };
}

function fusedConv(c: ConvCase) {
  return (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
    tf.fused.conv2d({
      x: xx as tf.Tensor4D,
      filter: ww as tf.Tensor4D,
      bias: bb,
      strides: c.stride,
      pad: tfPad(c.pad),
    });
}

/** The FC cases already checked, by shape, across the presets (the key as dedupe's). */
const fcsChecked = new Map<string, string>();

async function presetKernels(t: Test, s: PresetShapes, small: boolean): Promise<void> {
  // Gradients are taken without relu (as native.test.ts explains): pre-activations within
  // rounding of 0 flip the mask between any two backends; relu's gradient has its own case.
  const ref = small ? references.layers : references.bigConvGradients;
  // Each conv layer once: an ungrouped one as a fused conv (bias in the kernel), a grouped one
  // as the model composes it (its per-group convs, split and concat all under the gradient).
  const seen = new Set<string>();
  for (const [i, c] of s.layers.entries()) {
    const key = JSON.stringify({ ...c, name: '' });
    if (seen.has(key)) continue;
    seen.add(key);
    const inputs = () => [rand(c.x, 5), rand(c.filter, 6), rand([c.filter[3]], 7)];
    await compare(t, `${c.name} layer (groups ${c.groups}, relu)`, ['y'], () => [
      convLayer(c, 'relu')(...(inputs() as [tf.Tensor, tf.Tensor, tf.Tensor])),
    ]);
    const f = c.groups === 1 ? fusedConv(s.convs[i]) : convLayer(c, 'linear');
    await compare(
      t,
      `${c.name} layer (groups ${c.groups})`,
      ['y', 'dx', 'dw', 'db'],
      () => withGrads(f, inputs(), 8),
      ref,
    );
  }
  for (const c of dedupe(s.pools)) {
    await compare(t, `${c.name} MaxPool`, ['y', 'dx'], () =>
      withGrads((x) => tf.maxPool(x as tf.Tensor4D, c.window, c.stride, c.pad), [rand(c.x, 14)], 15),
    );
  }
  for (const c of dedupe(s.lrns)) {
    // The real channel count on an LRN_PATCH of pixels: LRN and its gradient work per pixel, and
    // tfjs-backend-webgpu picks its kernels (LRNSharedProgram for a radius <= 16, the one
    // LRNGradProgram) by radius alone, so a smaller image runs the same shaders, 2-3% of the work.
    // LRNGradProgram costs O(channels^2) a value: the paper's conv2/lrn took 14 s of CPU on lavapipe.
    const x = [c.x[0], ...LRN_PATCH.map((p, i) => Math.min(p, c.x[i + 1])), c.x[3]];
    // Scaled so that alpha * sum(x^2) is not negligible next to the bias.
    await compare(t, `${c.name} LRN (a patch of ${c.x.slice(1).join('x')})`, ['y', 'dx'], () =>
      withGrads((v) => tf.localResponseNormalization(v as tf.Tensor4D, 2, 2, 1e-4, 0.75), [rand(x, 16, 40)], 17),
    );
  }
  for (const c of dedupe(s.fcs)) {
    // torchvision's fc7 and fc8 are paper's, at the same batch: the same shaders on the same shapes.
    const key = JSON.stringify({ ...c, name: '' });
    if (fcsChecked.has(key)) {
      t.comment(`${c.name}: the same shapes as ${fcsChecked.get(key)}, checked there`);
      continue;
    }
    fcsChecked.set(key, c.name);
    // A weight over the adapter's binding limit (lavapipe: 128 MiB; the big presets' fc6 is
    // 144 MiB) computes zeros in tfjs: training refuses such a model (oversizeTensors), checked here.
    const adapter = webgpuAdapter();
    const refusal = adapter === null ? null : oversizeTensors(adapter, [{ name: c.name, shape: c.b }]);
    if (refusal !== null) {
      t.match(
        refusal,
        new RegExp(`binds at most \\d+ MiB per tensor, and ${c.name}`),
        `${c.name}: over this adapter's binding limit, refused before training (${refusal})`,
      );
      continue;
    }
    const fc = (activation: 'relu' | 'linear') => (a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor) =>
      tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias, activation });
    const inputs = () => [rand(c.a, 8), rand(c.b, 9, 0.05), rand([c.b[1]], 10)];
    await compare(t, `${c.name} FC relu`, ['y'], () => [
      fc('relu')(...(inputs() as [tf.Tensor, tf.Tensor, tf.Tensor])),
    ]);
    await compare(t, `${c.name} FC`, ['y', 'da', 'db', 'dbias'], () => withGrads(fc('linear'), inputs(), 11));
  }
}

/** Every kernel of the three presets on webgpu against the reference backends (the file's header). */
export async function webgpuKernelTests(t: Test): Promise<void> {
  if (!(await requireWebgpu(t, 'webgpu kernel tests'))) return;
  patchWasmKernels();
  const { addon } = ensureNativeAddon();
  if (addon != null) {
    registerNativeBackend(addon);
    references.layers = references.bigConvGradients = NATIVE_BACKEND_NAME;
  }
  await loadWebgpu(true);
  t.pass(`adapter: ${await adapterLine()}; reference backends: ${references.layers}, ${references.bigConvGradients}`);

  t.test('small preset (batch 2)', async (t) => presetKernels(t, presetShapes(PRESETS.small, 10, 2), true));
  t.test('paper preset (batch 1)', async (t) => presetKernels(t, presetShapes(PRESETS.paper, 1000, 1), false));
  t.test('torchvision preset (batch 1)', async (t) =>
    presetKernels(t, presetShapes(PRESETS.torchvision, 1000, 1), false),
  );

  t.test('relu and its gradient, dropout mask ops, softmax cross-entropy and its gradient', async (t) => {
    const x = [2, 5, 4, 6];
    await compare(t, 'relu', ['y', 'dx'], () => withGrads((v) => tf.relu(v), [rand(x, 40)], 41));
    await compare(t, 'mul, step, sub, div, sqrt, square', ['mul', 'step', 'sub', 'div', 'sqrt', 'square'], () => {
      const v = rand(x, 45);
      return [
        tf.mul(v, rand(x, 46)),
        tf.step(v, 0.25),
        tf.sub(v, rand([6], 47)),
        tf.div(v, tf.add(rand(x, 49), 2)),
        tf.sqrt(tf.abs(v)),
        tf.square(v),
      ];
    });
    await compare(t, 'softmax cross-entropy (sum)', ['loss', 'dlogits'], () => {
      const labels = tf.oneHot(tf.tensor1d([3, 0, 9, 5], 'int32'), 10);
      return withGrads(
        (logits) => tf.losses.softmaxCrossEntropy(labels, logits, undefined, undefined, tf.Reduction.SUM),
        [rand([4, 10], 50, 4)],
        51,
      );
    });
  });
}
