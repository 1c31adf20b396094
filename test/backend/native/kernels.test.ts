// The 'native' backend's oneDNN kernels against tfjs's pure-JS cpu backend, on random inputs
// covering every conv, pool, LRN and FC shape of the three presets (batch 2), plus strides
// 1/2/4 with same/valid/explicit padding and every transposition of the matrix products;
// forward and gradients, relative error <= 1e-4. Then one training step of each preset (the big
// ones at 99 px), native against wasm, bad inputs, and leaks.
//
// Skipped (with the build script's reason) only when the addon cannot be built here.
import os from 'node:os';
import t, { type Test } from 'tap';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { NativeBackendError } from '../../../src/core/errors';
import { convLayer, lrnMaxPool, sgdMomentumStep } from '../../../src/backend/ops';
import {
  describeLoadFailure,
  NATIVE_BACKEND_NAME,
  registerNativeBackend,
  versionMismatch,
} from '../../../src/backend/native/backend';
import {
  endPadding,
  LRN_MAX_POOL_GRAD_KERNEL,
  LRN_MAX_POOL_KERNEL,
  missingAddonFunctions,
  type DnnlAddon,
} from '../../../src/backend/native/kernels';
import { poolOf } from '../../../src/backend/native/storage-pool';
import { patchWasmKernels } from '../../../src/backend/wasm/patches';
import { createAlexNet, disposeModel, type Param } from '../../../src/model/alexnet';
import { PRESETS, type ModelSpec } from '../../../src/model/presets';
import { Optimizer } from '../../../src/train/optimizer';
import { trainStep } from '../../../src/train/step';
import type { Batch } from '../../../src/data/loader';
import { ensureNativeAddon } from '../../helpers/native-addon';
import { broadcastOf } from '../../../src/backend/native/fast-cpu-kernels';
import {
  dedupe,
  maxRelativeError,
  outputsOn,
  poolArgmaxFlips,
  presetShapes,
  rand,
  randomArray,
  tfPad,
  type ConvCase,
  type LayerCase,
  type Outputs,
  type PoolCase,
} from '../../helpers/kernel-cases';

const TOLERANCE = 1e-4;
const BATCH = 2;

/**
 * The reference backend: tfjs's pure-JS cpu backend, except for the gradients of the big preset
 * convolutions, where its backprop kernels take ~40 s per layer. There the reference is the
 * wasm backend with our patches (what trains today), itself held to the cpu backend on smaller
 * shapes by wasm-patches.test.ts.
 */
type Reference = 'cpu' | 'wasm';

/** One assertion per output: the native backend's against the reference's. */
function check(t: Test, name: string, labels: string[], ref: Outputs, native: Outputs, reference: Reference): void {
  labels.forEach((label, i) => {
    const err = native.shapes[i] === ref.shapes[i] ? maxRelativeError(native.data[i], ref.data[i]) : Infinity;
    t.ok(
      err <= TOLERANCE,
      `${name} ${label} [${ref.shapes[i]}] (vs ${reference}): relative error ${err.toExponential(2)}`,
    );
  });
}

/** Runs `fn` on the reference backend, then on the native one, and checks each output. */
async function compare(
  t: Test,
  name: string,
  outputs: string[],
  fn: () => tf.Tensor[],
  reference: Reference = 'cpu',
): Promise<void> {
  const ref = await outputsOn(reference, fn);
  check(t, name, outputs, ref, await outputsOn(NATIVE_BACKEND_NAME, fn), reference);
}

// ------------------------------------------------------------------------------------------
// Shapes of the presets, read from the model's own layer table.

const shapes = [
  presetShapes(PRESETS.small, 10, BATCH),
  presetShapes(PRESETS.paper, 1000, BATCH),
  presetShapes(PRESETS.torchvision, 1000, BATCH),
];

const genericConvCases: ConvCase[] = [];
for (const stride of [1, 2, 4]) {
  for (const pad of ['same', 'valid', 1] as const) {
    genericConvCases.push({
      name: `3x3 s${stride} pad ${pad}`,
      x: [BATCH, 13, 11, 5],
      filter: [3, 3, 5, 7],
      stride,
      pad,
    });
    genericConvCases.push({
      name: `5x5 s${stride} pad ${pad}`,
      x: [BATCH, 17, 17, 4],
      filter: [5, 5, 4, 6],
      stride,
      pad,
    });
  }
}

// ------------------------------------------------------------------------------------------

interface MaxPoolInput {
  x: Float32Array;
  shape: number[];
  window: number;
  stride: number;
}

/**
 * Runs `fn` with a copy of the input of every max pool `backend` runs, in order (square windows
 * and strides, as the model's): MaxPool's x, or, inside the native LRN + max pool op, the LRN's
 * output, computed again by the backend's own LRN kernel for the record. Reads the cpu-style
 * storage of the native and wasm backends.
 */
async function recordingMaxPoolInputs<T>(
  backend: string,
  fn: () => Promise<T>,
): Promise<{ result: T; inputs: MaxPoolInput[] }> {
  const originals = [tf.MaxPool, LRN_MAX_POOL_KERNEL].flatMap((name) => tf.getKernel(name, backend) ?? []);
  if (!originals.some((k) => k.kernelName === tf.MaxPool))
    throw new Error(`the ${backend} backend has no MaxPool kernel`);
  const inputs: MaxPoolInput[] = [];
  for (const original of originals) {
    tf.unregisterKernel(original.kernelName, backend);
    tf.registerKernel({
      ...original,
      kernelFunc: (args) => {
        const b = args.backend as tf.KernelBackend;
        const x = args.inputs['x'] as tf.TensorInfo;
        const lrn = original.kernelName === LRN_MAX_POOL_KERNEL ? tf.getKernel(tf.LRN, backend) : undefined;
        const pooled = lrn ? (lrn.kernelFunc({ inputs: { x }, backend: b, attrs: args.attrs }) as tf.TensorInfo) : x;
        const attrs = args.attrs as unknown as { filterSize: number | number[]; strides: number | number[] };
        const first = (v: number | number[]) => (Array.isArray(v) ? v[0] : v);
        inputs.push({
          x: (b.readSync(pooled.dataId) as Float32Array).slice(),
          shape: x.shape,
          window: first(attrs.filterSize),
          stride: first(attrs.strides),
        });
        if (pooled !== x) b.disposeData(pooled.dataId);
        return original.kernelFunc(args);
      },
    });
  }
  try {
    return { result: await fn(), inputs };
  } finally {
    for (const original of originals) {
      tf.unregisterKernel(original.kernelName, backend);
      tf.registerKernel(original);
    }
  }
}

const { addon, skipReason } = ensureNativeAddon();

/**
 * What the native backend's kernels call: the addon's functions on a plain object, so that a test
 * can watch one (the addon's own exports are read-only).
 */
const kernelAddon: DnnlAddon | null = addon && { ...addon };

t.before(async () => {
  patchWasmKernels();
  if (kernelAddon == null) return;
  registerNativeBackend(kernelAddon);
  // Reused buffers come filled with NaN: a kernel that leaves part of its output unwritten fails.
  const pool = poolOf(tf.findBackend(NATIVE_BACKEND_NAME) as object);
  if (pool == null) throw new Error('the native backend has no buffer pool');
  pool.poison = true;
});

t.test('load failures and version checks are one clear line', async (t) => {
  t.equal(
    describeLoadFailure(new Error('libdnnl.so.2: cannot open shared object file: No such file or directory\nmore')),
    'libdnnl.so.2 not found (apt-get install libdnnl-dev)',
  );
  t.match(describeLoadFailure(new Error('undefined symbol: foo')), /^addon failed to load: undefined symbol: foo$/);
  t.equal(versionMismatch({ compiled: '2.6.3', runtime: '2.6.1' }), null);
  t.match(
    versionMismatch({ compiled: '2.6.3', runtime: '3.1.0' }),
    /built against oneDNN 2\.6\.3 but 3\.1\.0 is installed/,
  );
  // An addon built before a function was added (dist/ not rebuilt): named, not "not a function" mid-step.
  const stale = { version: () => ({ compiled: '2.6.3', runtime: '2.6.3' }), lrn: () => undefined, lrnMaxPool: 1 };
  const missing = missingAddonFunctions(stale);
  t.ok(missing.includes('lrnMaxPool') && missing.includes('conv2dForward'), `a stale addon lacks ${missing.length}`);
  t.notOk(missing.includes('lrn') || missing.includes('version'), 'and has what it exports');
  t.equal(endPadding(227, 55, 11, 4, 0, 0), 0, "tfjs's own padding when it fits");
  t.equal(endPadding(8, 3, 3, 3, 0, 0), 1, 'ceil rounding: the pixels the last window needs');
});

t.test('native kernels', { skip: addon == null ? skipReason : false }, async (t) => {
  if (addon == null) return;
  const a = addon;

  t.test('addon and installed oneDNN are the same version', async (t) => {
    const v = a.version();
    t.equal(v.compiled, v.runtime);
  });

  type ConvMode = 'plain' | 'fused-relu';

  /** y = conv(x, w) and, with `grads`, the gradients of sum(y * g). Fused: with a bias (and db). */
  const convOutputs = (c: ConvCase, mode: ConvMode, grads: boolean) => (): tf.Tensor[] => {
    const x = rand(c.x, 1);
    const w = rand(c.filter, 2);
    const b = rand([c.filter[3]], 3);
    const conv = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
      mode === 'plain'
        ? tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, c.stride, tfPad(c.pad))
        : tf.fused.conv2d({
            x: xx as tf.Tensor4D,
            filter: ww as tf.Tensor4D,
            bias: bb,
            strides: c.stride,
            pad: tfPad(c.pad),
            activation: 'relu',
          });
    const y = conv(x, w, b);
    if (!grads) return [y];
    const g = rand(y.shape, 4);
    if (mode === 'plain')
      return [y, ...tf.grads((xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.mul(conv(xx, ww, b), g)))([x, w])];
    return [
      y,
      ...tf.grads((xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(conv(xx, ww, bb), g)))([x, w, b]),
    ];
  };

  t.test('Conv2D, Conv2DBackpropInput, Conv2DBackpropFilter: strides 1/2/4, same/valid/explicit', async (t) => {
    for (const c of genericConvCases) await compare(t, c.name, ['y', 'dx', 'dw'], convOutputs(c, 'plain', true));
  });

  t.test('FusedConv2D with bias and relu, and its gradients', async (t) => {
    for (const c of genericConvCases.filter((_, i) => i % 3 === 0))
      await compare(t, c.name, ['y', 'dx', 'dw', 'db'], convOutputs(c, 'fused-relu', true));
  });

  /**
   * How a conv layer runs: 'one op' is convLayer (grouped natively, its own gradient; the
   * native backend's training path), 'per group' the split / FusedConv2D / concat the model
   * composes on the other backends (FusedConv2D at each group's shape).
   */
  type LayerPath = 'one op' | 'per group';

  /** A whole conv layer, y = act(conv(x, w; groups) + b), and with `grads` the gradients of sum(y * g). */
  const layerOutputs =
    (c: LayerCase, activation: 'relu' | 'linear', grads: boolean, path: LayerPath) => (): tf.Tensor[] => {
      const x = rand(c.x, 5) as tf.Tensor4D;
      const w = rand(c.filter, 6) as tf.Tensor4D;
      const b = rand([c.filter[3]], 7) as tf.Tensor1D;
      const layer = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor): tf.Tensor => {
        if (path === 'one op') {
          const y = convLayer(xx as tf.Tensor4D, ww as tf.Tensor4D, bb as tf.Tensor1D, {
            strides: c.stride,
            pad: tfPad(c.pad),
            groups: c.groups,
            activation,
            inputGradient: true,
          });
          if (y == null) throw new Error(`the ${tf.getBackend()} backend has no conv layer kernel`);
          return y;
        }
        // (A split into one part has no gradient in tfjs: groups 1 goes without, as in the model.)
        const parts = (v: tf.Tensor, axis: number) => (c.groups === 1 ? [v] : tf.split(v, c.groups, axis));
        const [xs, ws, bs] = [parts(xx, 3), parts(ww, 3), parts(bb, 0)];
        const ys = xs.map((xg, g) =>
          tf.fused.conv2d({
            x: xg as tf.Tensor4D,
            filter: ws[g] as tf.Tensor4D,
            bias: bs[g],
            strides: c.stride,
            pad: tfPad(c.pad),
            activation,
          }),
        );
        return c.groups === 1 ? ys[0] : tf.concat(ys, 3);
      };
      const y = layer(x, w, b);
      if (!grads) return [y];
      const g = rand(y.shape, 8);
      return [
        y,
        ...tf.grads((xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(layer(xx, ww, bb), g)))([x, w, b]),
      ];
    };

  /** Both native paths of a layer against one reference run: the reference's costs most, by far. */
  const compareLayer = async (
    t: Test,
    c: LayerCase,
    activation: 'relu' | 'linear',
    grads: boolean,
    reference: Reference,
  ): Promise<void> => {
    const labels = grads ? ['y', 'dx', 'dw', 'db'] : ['y'];
    const ref = await outputsOn(reference, layerOutputs(c, activation, grads, 'per group'));
    for (const path of ['one op', 'per group'] as const) {
      const native = await outputsOn(NATIVE_BACKEND_NAME, layerOutputs(c, activation, grads, path));
      check(t, `${c.name} ${activation}, ${path}`, labels, ref, native, reference);
    }
  };

  t.test('conv layers, one op and per group (grouped, bias, relu), and their gradients', async (t) => {
    const cases: LayerCase[] = [
      { name: 'groups 2, 3x3 s1 same', x: [BATCH, 9, 8, 6], filter: [3, 3, 3, 8], stride: 1, pad: 'same', groups: 2 },
      { name: 'groups 2, 5x5 s2 pad 2', x: [BATCH, 11, 11, 4], filter: [5, 5, 2, 6], stride: 2, pad: 2, groups: 2 },
      {
        name: 'groups 1, 11x11 s4 valid',
        x: [BATCH, 35, 35, 3],
        filter: [11, 11, 3, 4],
        stride: 4,
        pad: 'valid',
        groups: 1,
      },
    ];
    for (const c of cases) await compareLayer(t, c, 'relu', true, 'cpu');
  });

  t.test("the presets' conv layers, one op and per group, and their gradients", async (t) => {
    for (const c of dedupe(shapes.flatMap((s) => s.layers))) {
      if (c.name.startsWith('small')) {
        await compareLayer(t, c, 'relu', true, 'cpu');
        continue;
      }
      // The cpu backend's conv backprop takes ~40 s per layer here: the gradients are held to
      // wasm, and with no relu: over hundreds of terms, pre-activations within rounding of 0 flip
      // the relu mask between any two backends, a difference of the data, not of the kernels.
      // The relu forward against cpu on one image (its JS convolution costs 1-3 s an image at
      // these sizes): the forward over a batch of 2 is the gradient case's y.
      await compareLayer(t, { ...c, x: [1, ...c.x.slice(1)] }, 'relu', false, 'cpu');
      await compareLayer(t, c, 'linear', true, 'wasm');
    }
  });

  t.test("a conv layer's bias gradient over several pixel blocks: the same bits on 1 and 2 threads", async (t) => {
    // 2 x 40 x 40 = 3,200 output pixels: three blocks of 1,024 and a partial fourth, summed on
    // whichever thread; the blocks' sums are added in block order, so the thread count cannot
    // change a bit of db. (dw is oneDNN's, whose reduction order may follow the threads.) The
    // other conv tests hold db to the cpu backend on the same multi-block path.
    await tf.setBackend(NATIVE_BACKEND_NAME);
    const db = (threads: number): Float32Array => {
      a.setThreads(threads);
      return tf.tidy(() => {
        const x = rand([2, 40, 40, 8], 64) as tf.Tensor4D;
        const w = rand([3, 3, 8, 16], 65) as tf.Tensor4D;
        const bias = rand([16], 66) as tf.Tensor1D;
        const f = (bb: tf.Tensor) => {
          const attrs = {
            strides: 1,
            pad: 'same' as const,
            groups: 1,
            activation: 'relu' as const,
            inputGradient: false,
          };
          const y = convLayer(x, w, bb as tf.Tensor1D, attrs);
          if (y == null) throw new Error('the native backend has no conv layer kernel');
          return tf.sum(tf.mul(y, rand(y.shape, 67)));
        };
        return tf.grads(f)([bias])[0].dataSync() as Float32Array;
      });
    };
    try {
      const [one, two] = [db(1), db(2)];
      t.equal(
        one.findIndex((v, i) => !Object.is(v, two[i])),
        -1,
        `db: the same ${one.length} floats`,
      );
    } finally {
      a.setThreads(os.availableParallelism());
    }
  });

  t.test('a layer over data (inputGradient false) skips dx, with the same dw and db', async (t) => {
    await tf.setBackend(NATIVE_BACKEND_NAME);
    const grads = (inputGradient: boolean) =>
      tf.tidy(() => {
        const [x, w, b] = [
          rand([BATCH, 19, 19, 3], 60) as tf.Tensor4D,
          rand([5, 5, 3, 8], 61) as tf.Tensor4D,
          rand([8], 62) as tf.Tensor1D,
        ];
        const f = (ww: tf.Tensor, bb: tf.Tensor, xx: tf.Tensor) => {
          const y = convLayer(xx as tf.Tensor4D, ww as tf.Tensor4D, bb as tf.Tensor1D, {
            strides: 2,
            pad: 'valid',
            groups: 1,
            activation: 'relu',
            inputGradient,
          });
          if (y == null) throw new Error('the native backend has no conv layer kernel');
          return tf.sum(tf.mul(y, rand(y.shape, 63)));
        };
        return tf
          .grads(f)([w, b, x])
          .map((g) => g.dataSync() as Float32Array);
      });
    const [full, data] = [grads(true), grads(false)];
    t.same(data[0], full[0], 'dw');
    t.same(data[1], full[1], 'db');
    t.ok(full[2].some((v) => v !== 0) && data[2].every((v) => v === 0), 'dx: computed, then zeros');
  });

  t.test("MatMul: the presets' FC layers (fused bias + relu) and their gradients", async (t) => {
    for (const c of dedupe(shapes.flatMap((s) => s.fcs))) {
      // One run for both activations: the inputs (fc6's weights are 38M values) are made once per backend.
      // Gradients without relu for the same reason as the convolutions'.
      const labels = ['relu y', 'linear y', 'linear da', 'linear db', 'linear dbias'];
      await compare(t, c.name, labels, () => {
        const x = rand(c.a, 8);
        const w = rand(c.b, 9, 0.05);
        const bias = rand([c.b[1]], 10);
        const fc = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor, activation: 'relu' | 'linear') =>
          tf.fused.matMul({ a: xx as tf.Tensor2D, b: ww as tf.Tensor2D, bias: bb, activation });
        const y = fc(x, w, bias, 'linear');
        const g = rand(y.shape, 11);
        return [
          fc(x, w, bias, 'relu'),
          y,
          ...tf.grads((xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(fc(xx, ww, bb, 'linear'), g)))([
            x,
            w,
            bias,
          ]),
        ];
      });
    }
    await compare(t, 'small fc relu gradients', ['da', 'db'], () => {
      const x = rand([BATCH, 6], 21);
      const w = rand([6, 5], 22);
      return tf.grads((xx: tf.Tensor, ww: tf.Tensor) =>
        tf.sum(tf.fused.matMul({ a: xx as tf.Tensor2D, b: ww as tf.Tensor2D, activation: 'relu' })),
      )([x, w]);
    });
  });

  t.test('BatchMatMul: every transposition, batched and broadcast', async (t) => {
    for (const [aShape, bShape] of [
      [
        [7, 5],
        [5, 3],
      ],
      [
        [3, 7, 5],
        [3, 5, 4],
      ],
      [
        [3, 7, 5],
        [1, 5, 4],
      ],
      [
        [1, 7, 5],
        [2, 5, 4],
      ],
    ]) {
      for (const ta of [false, true]) {
        for (const tb of [false, true]) {
          const sa = ta ? [...aShape.slice(0, -2), aShape[aShape.length - 1], aShape[aShape.length - 2]] : aShape;
          const sb = tb ? [...bShape.slice(0, -2), bShape[bShape.length - 1], bShape[bShape.length - 2]] : bShape;
          await compare(t, `[${sa}]${ta ? 'ᵀ' : ''} x [${sb}]${tb ? 'ᵀ' : ''}`, ['y'], () => [
            tf.matMul(rand(sa, 12), rand(sb, 13), ta, tb),
          ]);
        }
      }
    }
  });

  t.test("MaxPool and MaxPoolGrad: the presets' overlapping 3/2, and same padding", async (t) => {
    const cases: PoolCase[] = [
      ...dedupe(shapes.flatMap((s) => s.pools)),
      { name: '3/2 same', x: [BATCH, 12, 9, 5], window: 3, stride: 2, pad: 'same' },
      { name: '2/2 valid', x: [BATCH, 9, 9, 4], window: 2, stride: 2, pad: 'valid' },
    ];
    for (const c of cases) {
      await compare(t, c.name, ['y', 'dx'], () => {
        const x = rand(c.x, 14);
        const pool = (xx: tf.Tensor) => tf.maxPool(xx as tf.Tensor4D, c.window, c.stride, c.pad);
        const y = pool(x);
        const g = rand(y.shape, 15);
        const [dx] = tf.grads((xx: tf.Tensor) => tf.sum(tf.mul(pool(xx), g)))([x]);
        return [y, dx];
      });
    }
    // Ties, as after a ReLU: the gradient goes to the window's first largest value (row-major), as
    // on the cpu backend. A window of -Infinity only has no maximum: y is -Infinity there and no
    // gradient flows (compared exactly, as -Infinity has no relative error).
    const tiesAndMinusInfinity = () => {
      const values = randomArray([BATCH, 9, 9, 8], 17).map((v) => Math.max(0, Math.round(v * 3)));
      values.fill(-Infinity, 0, 8 * 9 * 3);
      const x = tf.tensor(values, [BATCH, 9, 9, 8]);
      const pool = (xx: tf.Tensor) => tf.maxPool(xx as tf.Tensor4D, 3, 2, 'valid');
      const g = rand(pool(x).shape, 18);
      const [dx] = tf.grads((xx: tf.Tensor) => tf.sum(tf.mul(pool(xx), g)))([x]);
      return [pool(x), dx];
    };
    const cpu = await outputsOn('cpu', tiesAndMinusInfinity);
    const native = await outputsOn(NATIVE_BACKEND_NAME, tiesAndMinusInfinity);
    const minusInfinities = cpu.data[0].filter((v) => v === -Infinity).length;
    t.ok(minusInfinities > 0, `the ties case has ${minusInfinities} windows of -Infinity`);
    t.same([...native.data[0]], [...cpu.data[0]], "ties and -Infinity windows: y equals the cpu backend's");
    // dx within the usual bound, not bit for bit: a pixel that is the maximum of three or four
    // windows gets their sum in floats here, in doubles there. A gradient routed to another tie
    // would be off by a whole gradient.
    const dxError = maxRelativeError(native.data[1], cpu.data[1]);
    t.ok(
      dxError <= TOLERANCE,
      `ties and -Infinity windows: dx as on the cpu backend (relative error ${dxError.toExponential(2)})`,
    );
    // The native MaxPoolGrad reuses the forward's argmax only for the very output and input it
    // was computed from; any other pair recomputes it.
    await compare(t, 'MaxPoolGrad, not after its forward', ['dx (a copy of the output)', 'dx (another input)'], () => {
      const attrs = { filterSize: 3, strides: 2, pad: 'valid' };
      const x = rand([BATCH, 9, 9, 4], 14);
      const y = tf.maxPool(x as tf.Tensor4D, 3, 2, 'valid');
      const dy = rand(y.shape, 15);
      const grad = (input: tf.Tensor, output: tf.Tensor) =>
        tf.engine().runKernel(tf.MaxPoolGrad, { dy, input, output }, attrs) as tf.Tensor;
      return [grad(x, tf.tensor(y.dataSync(), y.shape)), grad(rand(x.shape, 16), y)];
    });
  });

  t.test("MaxPool's argmax workspace is reused once its output is disposed, and filled whole", async (t) => {
    const pool = poolOf(tf.findBackend(NATIVE_BACKEND_NAME) as object);
    if (pool == null) throw new Error('the native backend has no buffer pool');
    const released = pool.stats.scratchReleased;
    // The second round's MaxPools take the first round's workspaces, poisoned (all bits set: -1,
    // "no maximum"): an argmax the forward left unwritten would lose its gradient.
    for (const round of [1, 2])
      await compare(t, `3/2 valid, round ${round}`, ['y', 'dx'], () => {
        const x = rand([BATCH, 13, 13, 8], 30 + round);
        const maxPool = (xx: tf.Tensor) => tf.maxPool(xx as tf.Tensor4D, 3, 2, 'valid');
        const g = rand([BATCH, 6, 6, 8], 40 + round);
        const [dx] = tf.grads((xx: tf.Tensor) => tf.sum(tf.mul(maxPool(xx), g)))([x]);
        return [maxPool(x), dx];
      });
    t.ok(pool.stats.scratchReleased >= released + 2, 'both rounds gave their workspaces back');
  });

  t.test('denormals: flushed inside native kernels on every thread, kept in JavaScript', async (t) => {
    if (process.arch !== 'x64' && process.arch !== 'ia32') return void t.pass('x86 only');
    // A 1x1 convolution of subnormal floats (FLT_MIN is 1.18e-38) with weights of 1: the cpu
    // backend keeps the subnormal sums; oneDNN on two threads, flushing, gives zeros.
    const conv = () => [
      tf.conv2d(tf.fill([16, 16, 16, 8], 1e-39) as tf.Tensor4D, tf.ones([1, 1, 8, 8]) as tf.Tensor4D, 1, 'valid'),
    ];
    const cpu = await outputsOn('cpu', conv);
    t.ok(
      cpu.data[0].every((v) => v > 0 && v < 1.17e-38),
      'the cpu backend: subnormal outputs',
    );
    a.setThreads(2);
    try {
      const native = await outputsOn(NATIVE_BACKEND_NAME, conv);
      t.ok(
        native.data[0].every((v) => v === 0),
        'native: every output flushed to zero',
      );
    } finally {
      a.setThreads(os.availableParallelism());
    }
    // The caller's floating-point mode comes back: a subnormal double survives here.
    const tiny = Float64Array.of(2.5e-308)[0];
    t.ok(tiny / 2 > 0, 'JavaScript keeps subnormals after native calls');
  });

  t.test('LRN and LRNGrad: tfjs semantics (alpha not divided by n)', async (t) => {
    // Inputs scaled so that alpha * sum(x^2) is not negligible next to the bias: a factor of
    // n in alpha would be seen.
    const params = [
      { depthRadius: 2, bias: 2, alpha: 1e-4, beta: 0.75, scale: 40 },
      { depthRadius: 3, bias: 1, alpha: 0.05, beta: 0.5, scale: 2 },
      { depthRadius: 1, bias: 0.5, alpha: 1, beta: 1, scale: 1 },
      // No neighbours, and a window wider than the 9 channels.
      { depthRadius: 0, bias: 1, alpha: 0.5, beta: 0.6, scale: 1 },
      { depthRadius: 12, bias: 1, alpha: 0.1, beta: 0.75, scale: 1 },
    ];
    const cases = [
      ...dedupe(shapes.flatMap((s) => s.lrns)).map((c) => ({ ...c, p: params[0] })),
      ...params
        .slice(1)
        .map((p) => ({ name: `r${p.depthRadius} k${p.bias} a${p.alpha} b${p.beta}`, x: [BATCH, 5, 4, 9], p })),
    ];
    for (const c of cases) {
      const { depthRadius, bias, alpha, beta, scale } = c.p;
      await compare(t, c.name, ['y', 'dx'], () => {
        const x = rand(c.x, 16, scale) as tf.Tensor4D;
        const lrn = (xx: tf.Tensor) => tf.localResponseNormalization(xx as tf.Tensor4D, depthRadius, bias, alpha, beta);
        const g = rand(c.x, 17);
        const [dx] = tf.grads((xx: tf.Tensor) => tf.sum(tf.mul(lrn(xx), g)))([x]);
        return [lrn(x), dx];
      });
    }
  });

  t.test("LRN and max pool as one op: the two ops' bits on 1 and 2 threads, and their gradient", async (t) => {
    interface LrnPoolCase {
      name: string;
      x: number[];
      lrn: { depthRadius: number; bias: number; alpha: number; beta: number };
      window: number;
      stride: number;
      pad: 'valid' | 'same';
      scale: number;
    }
    const paper = { depthRadius: 2, bias: 2, alpha: 1e-4, beta: 0.75 };
    // Batches of 3 put a thread's first output row inside an image on 2 threads.
    const generic: LrnPoolCase[] = [
      {
        name: 'r3 b0.5, 3/2 same',
        x: [3, 12, 9, 11],
        lrn: { depthRadius: 3, bias: 1, alpha: 0.05, beta: 0.5 },
        window: 3,
        stride: 2,
        pad: 'same',
        scale: 2,
      },
      {
        name: 'r1 b1, 2/2 valid',
        x: [3, 9, 9, 5],
        lrn: { depthRadius: 1, bias: 0.5, alpha: 1, beta: 1 },
        window: 2,
        stride: 2,
        pad: 'valid',
        scale: 1,
      },
      { name: 'paper LRN, 3/2 valid', x: [3, 13, 13, 16], lrn: paper, window: 3, stride: 2, pad: 'valid', scale: 40 },
      // Padding above the first row (a window starting at row -1), a stride longer than the
      // window (rows no window reads), and a window taller than the image.
      { name: '3/2 same, padded above', x: [3, 11, 9, 7], lrn: paper, window: 3, stride: 2, pad: 'same', scale: 40 },
      { name: '2/3 valid', x: [3, 10, 10, 5], lrn: paper, window: 2, stride: 3, pad: 'valid', scale: 40 },
      { name: '3/1 same over 2 rows', x: [3, 2, 5, 6], lrn: paper, window: 3, stride: 1, pad: 'same', scale: 40 },
    ];
    // The presets' LRNs, each followed by its pool (the model's use).
    const presets: LrnPoolCase[] = dedupe(shapes.flatMap((s) => s.lrns)).map((c) => ({
      ...c,
      lrn: paper,
      window: 3,
      stride: 2,
      pad: 'valid',
      scale: 40,
    }));
    /** y and dx of sum(y * g): through lrnMaxPool ('one op', the model's path here) or tfjs's two ops. */
    const outputs = (c: LrnPoolCase, path: 'one op' | 'two ops') => (): tf.Tensor[] => {
      const { depthRadius, bias, alpha, beta } = c.lrn;
      const f = (v: tf.Tensor): tf.Tensor => {
        if (path === 'two ops')
          return tf.maxPool(
            tf.localResponseNormalization(v as tf.Tensor4D, depthRadius, bias, alpha, beta),
            c.window,
            c.stride,
            c.pad,
          );
        const y = lrnMaxPool(v as tf.Tensor4D, { ...c.lrn, filterSize: c.window, strides: c.stride, pad: c.pad });
        if (y == null) throw new Error(`the ${tf.getBackend()} backend has no LRN + max pool kernel`);
        return y;
      };
      const x = rand(c.x, 70, c.scale);
      const g = rand(f(x).shape, 71);
      const [dx] = tf.grads((v: tf.Tensor) => tf.sum(tf.mul(f(v), g)))([x]);
      return [f(x), dx];
    };
    try {
      for (const c of [...generic, ...presets]) {
        // The native two ops are held to the cpu backend by the LRN and MaxPool tests above; the
        // generic cases also hold the one op to it directly.
        const twoOps = await outputsOn(NATIVE_BACKEND_NAME, outputs(c, 'two ops'));
        if (generic.includes(c))
          check(
            t,
            `${c.name}, one op`,
            ['y', 'dx'],
            await outputsOn('cpu', outputs(c, 'two ops')),
            await outputsOn(NATIVE_BACKEND_NAME, outputs(c, 'one op')),
            'cpu',
          );
        for (const threads of [1, 2]) {
          a.setThreads(threads);
          const oneOp = await outputsOn(NATIVE_BACKEND_NAME, outputs(c, 'one op'));
          ['y', 'dx'].forEach((label, i) => {
            const differing = oneOp.data[i].findIndex((v, j) => !Object.is(v, twoOps.data[i][j]));
            t.equal(
              differing,
              -1,
              `${c.name} ${label}, ${threads} thread(s): the two ops' ${twoOps.data[i].length} floats`,
            );
          });
        }
      }
    } finally {
      a.setThreads(os.availableParallelism());
    }

    // The gradient reuses the forward's argmax only for the very output it was taken from (a
    // copy recomputes it), and MaxPoolGrad never takes it: it is over lrn(x), not x. An LRN far
    // from uniform (alpha 1) moves the maxima. Each call's workspace argument is watched.
    await tf.setBackend(NATIVE_BACKEND_NAME);
    const k = kernelAddon as DnnlAddon;
    const [lrnMaxPoolGrad, maxPoolGrad] = [k.lrnMaxPoolGrad, k.maxPoolGrad];
    const handed: string[] = [];
    k.lrnMaxPoolGrad = (...args: Parameters<DnnlAddon['lrnMaxPoolGrad']>) => {
      handed.push(`lrnMaxPoolGrad ${args[6] === null ? 'recomputes' : 'reuses'}`);
      lrnMaxPoolGrad(...args);
    };
    k.maxPoolGrad = (...args: Parameters<DnnlAddon['maxPoolGrad']>) => {
      handed.push(`maxPoolGrad ${args[4] === null ? 'recomputes' : 'reuses'}`);
      maxPoolGrad(...args);
    };
    t.teardown(() => {
      [k.lrnMaxPoolGrad, k.maxPoolGrad] = [lrnMaxPoolGrad, maxPoolGrad];
    });
    tf.tidy(() => {
      const attrs = { depthRadius: 1, bias: 1, alpha: 1, beta: 1, filterSize: 3, strides: 2, pad: 'valid' as const };
      const x = rand([3, 9, 9, 6], 72, 2);
      const y = tf.engine().runKernel(LRN_MAX_POOL_KERNEL, { x }, attrs) as tf.Tensor;
      const dy = rand(y.shape, 73);
      const grad = (output: tf.Tensor) =>
        (tf.engine().runKernel(LRN_MAX_POOL_GRAD_KERNEL, { x, y: output, dy }, attrs) as tf.Tensor).dataSync();
      t.same(grad(tf.tensor(y.dataSync(), y.shape)), grad(y), 'the gradient after a copy of y (recomputed argmax)');
      const poolAttrs = { filterSize: 3, strides: 2, pad: 'valid' };
      const poolGrad = (output: tf.Tensor) =>
        (tf.engine().runKernel(tf.MaxPoolGrad, { dy, input: x, output }, poolAttrs) as tf.Tensor).dataSync();
      const plain = poolGrad(tf.maxPool(x as tf.Tensor4D, 3, 2, 'valid'));
      t.same(poolGrad(y), plain, "MaxPoolGrad given this op's output: x's own argmax");
      t.notSame(grad(y), plain, "(the case tells them apart: this op's gradient differs from the pool's)");
    });
    t.same(
      handed,
      [
        'lrnMaxPoolGrad recomputes', // the copy
        'lrnMaxPoolGrad reuses', // y itself
        'maxPoolGrad reuses', // plain: tf.maxPool's own output
        'maxPoolGrad recomputes', // this op's output
        'lrnMaxPoolGrad reuses',
      ],
      "which calls were handed the forward's argmax",
    );
  });

  t.test('the fast paths: element-wise ops with broadcasts, bias-gradient sum, channel split/concat', async (t) => {
    const x = [BATCH, 5, 4, 6];
    await compare(t, 'add same shape', ['y'], () => [tf.add(rand(x, 30), rand(x, 31))]);
    await compare(t, 'add bias [C] and [1, C]', ['y', 'y'], () => [
      tf.add(rand(x, 32), rand([6], 33)),
      tf.add(rand([1, 6], 34), rand([3, 6], 35)),
    ]);
    await compare(t, 'add other broadcast (stock)', ['y'], () => [tf.add(rand(x, 36), rand([5, 1, 1], 37))]);
    await compare(t, 'multiply, relu, step', ['mul', 'relu', 'step'], () => [
      tf.mul(rand(x, 38), rand(x, 39)),
      tf.relu(rand(x, 40)),
      tf.step(rand(x, 41), 0.25),
    ]);
    await compare(
      t,
      'sub and div, every broadcast',
      ['same', 'scalar right', 'scalar left', 'vector right', 'vector left', 'div', 'row right', 'row left', 'row mul'],
      () => {
        const v = rand(x, 45);
        return [
          tf.sub(v, rand(x, 46)),
          tf.sub(v, 0.3),
          tf.sub(0.3, v),
          tf.sub(v, rand([6], 47)),
          tf.sub(rand([1, 6], 48), v),
          tf.div(v, tf.add(rand(x, 49), 2)),
          // One value per row, as a softmax's: [..., C] against [..., 1].
          tf.sub(v, rand([BATCH, 5, 4, 1], 52)),
          tf.sub(rand([BATCH, 5, 4, 1], 53), v),
          tf.mul(rand([7, 1], 54), rand([7, 1000], 55)),
        ];
      },
    );
    // Which loop each of those takes (null: the stock kernel).
    t.same(
      [
        [x, x],
        [x, [6]],
        [[1, 6], x],
        [x, [BATCH, 5, 4, 1]],
        [
          [7, 1],
          [7, 1000],
        ],
        [x, [5, 1, 1]],
        [x, [1, 5, 4, 1]],
        [
          [3, 0],
          [3, 1],
        ],
      ].map(([a, b]) => broadcastOf(a, b)?.mode ?? null),
      [0, 3, 4, 5, 6, null, null, null],
      'broadcast modes: same, vector, vector left, row, row left, and three the stock kernel takes',
    );
    await compare(t, 'sqrt and square', ['sqrt', 'square'], () => [
      tf.sqrt(tf.abs(rand(x, 50))),
      tf.square(rand(x, 51)),
    ]);
    await compare(t, 'sum', ['leading', 'trailing', 'keepDims', 'middle (stock)', 'all'], () => {
      const v = rand(x, 42);
      return [tf.sum(v, [0, 1, 2]), tf.sum(v, [2, 3]), tf.sum(v, [0, 1], true), tf.sum(v, [1, 3]), tf.sum(v)];
    });
    await compare(t, 'split and concat', ['split 0', 'split 1', 'uneven split', 'concat 3', 'concat 1'], () => {
      const v = rand(x, 43);
      const [p, q] = tf.split(v, 2, 3);
      const [, uneven] = tf.split(v, [1, 4], 1);
      return [p, q, uneven, tf.concat([q, p, q], 3), tf.concat([v, rand([BATCH, 2, 4, 6], 44)], 1)];
    });
  });

  t.test('the optimizer: fused SGD and Adam on native equal their tfjs ops on cpu', async (t) => {
    for (const name of ['sgd', 'adam'] as const) {
      await compare(t, name, ['weight', 'bias', 'slot 0 weight', 'slot 0 bias'], () => {
        // The weight is big enough for the buffer pool (4,096 elements and up), the bias is not.
        const W = [70, 65];
        const params: Param[] = [
          { name: 'w', kind: 'weight', shape: W, variable: tf.variable(rand(W, 55), true) },
          { name: 'b', kind: 'bias', shape: [5], variable: tf.variable(rand([5], 56), true) },
        ];
        const optimizer = new Optimizer(
          { name, momentum: 0.9, weightDecay: 0.0005, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
          params,
        );
        const storage: object[] = [];
        for (let s = 0; s < 4; s++) {
          optimizer.apply([rand(W, 57 + s), rand([5], 60 + s)], 0.01, 0.25);
          storage.push(params[0].variable.dataId);
        }
        // On native the first update writes fresh buffers (the initial weights came from outside the
        // pool), the later ones the same buffers in place; on cpu every update is a new tensor.
        const inPlace = storage[1] === storage[2] && storage[2] === storage[3];
        t.equal(
          inPlace,
          tf.getBackend() === NATIVE_BACKEND_NAME,
          `${name} updates in place on ${tf.getBackend()}: ${inPlace}`,
        );
        const [slots] = optimizer.slotVariables();
        const out = [...params.map((p) => p.variable.clone()), slots[0].clone(), slots[1].clone()];
        optimizer.dispose();
        params.forEach((p) => p.variable.dispose());
        return out;
      });
    }
  });

  t.test('the optimizer over several blocks on two threads: the cpu result, the same bits as one thread', async (t) => {
    // 300 x 700 = 210,000 elements: three blocks of 64 Ki and a partial fourth, spread over the
    // team. A block written twice, skipped or offset would miss the cpu backend's result; and as
    // each element's update reads only its own state, the split cannot change a bit.
    const W = [300, 700];
    const updates = (name: 'sgd' | 'adam') => (): tf.Tensor[] => {
      const params: Param[] = [{ name: 'w', kind: 'weight', shape: W, variable: tf.variable(rand(W, 70), true) }];
      const optimizer = new Optimizer(
        { name, momentum: 0.9, weightDecay: 0.0005, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
        params,
      );
      for (let s = 0; s < 3; s++) optimizer.apply([rand(W, 71 + s)], 0.01, 0.5);
      const out = [
        params[0].variable.clone(),
        ...optimizer.slotVariables().flatMap((vars) => vars.map((v) => v.clone())),
      ];
      optimizer.dispose();
      params[0].variable.dispose();
      return out;
    };
    try {
      for (const name of ['sgd', 'adam'] as const) {
        const labels = name === 'sgd' ? ['weight', 'momentum'] : ['weight', 'm', 'v'];
        a.setThreads(1);
        const one = await outputsOn(NATIVE_BACKEND_NAME, updates(name));
        a.setThreads(2);
        const two = await outputsOn(NATIVE_BACKEND_NAME, updates(name));
        check(t, `${name}, 2 threads`, labels, await outputsOn('cpu', updates(name)), two, 'cpu');
        labels.forEach((label, i) => {
          const differing = one.data[i].findIndex((v, j) => !Object.is(v, two.data[i][j]));
          t.equal(differing, -1, `${name} ${label}: 1 and 2 threads give the same ${one.data[i].length} floats`);
        });
      }
    } finally {
      a.setThreads(os.availableParallelism());
    }
  });

  t.test('unsupported inputs are NativeBackendErrors, bad buffers JS errors', async (t) => {
    await tf.setBackend(NATIVE_BACKEND_NAME);
    const x = tf.zeros([1, 5, 5, 2], 'int32') as tf.Tensor4D;
    const w = tf.zeros([3, 3, 2, 2], 'int32') as tf.Tensor4D;
    const fx = tf.zeros([1, 5, 5, 2]) as tf.Tensor4D;
    const fw = tf.zeros([3, 3, 2, 2]) as tf.Tensor4D;
    // tf.conv2d casts to float32 before the kernel: run the kernel itself with int32 tensors.
    t.throws(
      () =>
        tf
          .engine()
          .runKernel(tf.Conv2D, { x, filter: w }, { strides: 1, pad: 'same', dataFormat: 'NHWC', dilations: 1 }),
      NativeBackendError,
      'int32 conv',
    );
    t.throws(() => tf.conv2d(fx, fw, 1, 'same', 'NHWC', 2), /dilations other than 1 are not supported/);
    t.throws(
      () => tf.fused.conv2d({ x: fx, filter: fw, strides: 1, pad: 'same', activation: 'elu' }),
      /activation 'elu' is not supported/,
    );
    t.throws(
      () =>
        tf.fused.matMul({
          a: tf.zeros([2, 3]) as tf.Tensor2D,
          b: tf.zeros([3, 4]) as tf.Tensor2D,
          bias: tf.zeros([2, 4]),
        }),
      /bias of shape \[2, 4\] is not supported/,
    );
    t.throws(
      () =>
        a.maxPool(
          Int32Array.from([1, 4, 4, 1, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0]),
          new Float32Array(16),
          new Float32Array(3),
          null,
        ),
      /y has 3 elements, expected 4/,
    );
    t.throws(
      () =>
        a.maxPool(
          Int32Array.from([1, 4, 4, 1, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0]),
          new Float32Array(16),
          new Float32Array(4),
          new Uint8Array(1),
        ),
      /workspace has 1 elements, expected/,
    );
    t.throws(
      () =>
        a.matMul(
          Int32Array.from([1, 1, 2, 3, 4, 0, 0]),
          new Float32Array(6),
          new Float32Array(12),
          null,
          new Float32Array(8),
        ),
      /Int32Array of length 8/,
    );
    t.throws(
      () =>
        a.conv2dForward(
          Int32Array.from([1, 5, 5, 2, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 3, 0]),
          new Float32Array(50),
          new Float32Array(36),
          null,
          new Float32Array(50),
        ),
      /groups/,
    );
    tf.dispose([x, w, fx, fw]);
  });

  t.test('no leaks: tensors, cached primitives and RSS stay flat over 1,000 small steps', async (t) => {
    await tf.setBackend(NATIVE_BACKEND_NAME);
    const x = rand([2, 12, 12, 4], 18) as tf.Tensor4D;
    const w = rand([3, 3, 2, 6], 19) as tf.Tensor4D;
    const b = rand([6], 20) as tf.Tensor1D;
    const w2 = rand([3, 3, 6, 4], 21) as tf.Tensor4D;
    const w3 = rand([100, 5], 22) as tf.Tensor2D;
    const wv = tf.variable(w.clone());
    const v = tf.variable(tf.zerosLike(w));
    // Every kind of native kernel once: conv layer, conv, pool, LRN, product, their gradients, SGD.
    const step = () =>
      tf.tidy(() => {
        const f = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor, ww2: tf.Tensor, ww3: tf.Tensor) => {
          const y = convLayer(xx as tf.Tensor4D, ww as tf.Tensor4D, bb as tf.Tensor1D, {
            strides: 1,
            pad: 'same',
            groups: 2,
            activation: 'relu',
            inputGradient: true,
          });
          if (y == null) throw new Error('the native backend has no conv layer kernel');
          const z = tf.localResponseNormalization(
            tf.maxPool(tf.conv2d(y, ww2 as tf.Tensor4D, 1, 'same'), 3, 2, 'valid'),
            2,
            2,
            1e-4,
            0.75,
          );
          return tf.sum(tf.matMul(tf.reshape(z, [2, 100]), ww3 as tf.Tensor2D));
        };
        const grads = tf.grads(f)([x, w, b, w2, w3]);
        grads.forEach((g) => g.dataSync());
        if (!sgdMomentumStep(wv, v, grads[1], { momentum: 0.9, lrScaled: 0.01, decayLr: 0 }))
          throw new Error('the native backend has no SGD kernel');
      });
    for (let i = 0; i < 100; i++) step();
    const tensors = tf.memory().numTensors;
    const primitives = a.cacheSize();
    // Else the kernel comparisons could be the copied cpu kernels against the cpu backend.
    t.ok(
      primitives > 0,
      `the step ran oneDNN primitives (${primitives} cached): the native kernels replaced the cpu ones`,
    );
    const rss = process.memoryUsage().rss;
    for (let i = 0; i < 1000; i++) step();
    const grownMb = (process.memoryUsage().rss - rss) / 2 ** 20;
    t.equal(tf.memory().numTensors, tensors, 'tensor count');
    t.equal(a.cacheSize(), primitives, 'primitive cache');
    // A coarse bound: the garbage collector moves RSS by ~10 MB here either way.
    t.ok(grownMb < 30, `RSS grew ${grownMb.toFixed(1)} MB over 1,000 steps`);
    tf.dispose([x, w, b, w2, w3, wv, v]);
  });

  // The big presets at 99 px, the smallest input whose last maps are still 2x2: the kernels at
  // the real sizes are checked one by one above; this checks the composition, at a fifth of the cost.
  for (const [preset, count, inputSize] of [
    ['small', 4, PRESETS.small.inputSize],
    ['paper', 2, 99],
    ['torchvision', 2, 99],
  ] as const) {
    t.test(`one training step of the ${preset} preset: native equals wasm`, async (t) => {
      // He initialisation (as the default run): with the paper's N(0, 0.01) the deep activations
      // are so small that every backend's update is the weight decay alone.
      const spec: ModelSpec = { ...PRESETS[preset], inputSize, weightInitStd: 'he' };
      const classes = 10;
      const batchOf = (seed: number): Batch => ({
        images: randomArray([count, spec.inputSize, spec.inputSize, 3], seed, 2),
        labels: Int32Array.from({ length: count }, (_, i) => i % classes),
        count,
        skipped: 0,
        index: 0,
        globalPlanned: count,
        cropsPerImage: 1,
        sampleIndices: Int32Array.from({ length: count }, (_, i) => i),
      });
      const stepOn = async (backend: string, batch: Batch) => {
        await tf.setBackend(backend);
        const model = createAlexNet(spec, classes, 7);
        const optimizer = new Optimizer(
          { name: 'sgd', momentum: 0.9, weightDecay: 0.0005, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
          model.params,
        );
        const result = await trainStep(model, optimizer, batch, { lr: 0.01, dropoutSeed: 5, stopVote: false });
        // The velocity is the update itself, in float32 and not rounded to the weights' ulps.
        const deltas = (await optimizer.getState()).slots['velocity'];
        disposeModel(model);
        optimizer.dispose();
        return { deltas, loss: result.sums.lossSum, names: model.params.map((p) => p.name) };
      };
      // Max pooling's gradient jumps where a window's two largest values swap places. Where the
      // backends' rounding swaps them, the comparison would measure that jump, not the kernels:
      // such images are passed over for the next seed (rare at these sizes; seen on an AVX2 host).
      const tries = [];
      for (let seed = 20; seed < 25; seed++) {
        const native = await recordingMaxPoolInputs(NATIVE_BACKEND_NAME, () =>
          stepOn(NATIVE_BACKEND_NAME, batchOf(seed)),
        );
        const wasm = await recordingMaxPoolInputs('wasm', () => stepOn('wasm', batchOf(seed)));
        const flips = native.inputs.reduce(
          (n, p, i) => n + poolArgmaxFlips(p.x, wasm.inputs[i].x, p.shape, p.window, p.stride),
          0,
        );
        tries.push({ native: native.result, wasm: wasm.result, flips, seed });
        if (flips === 0) break;
        t.comment(`image seed ${seed}: ${flips} pool window(s) pick another maximum on the two backends; next seed`);
      }
      const { native, wasm, flips, seed } = tries[tries.length - 1];
      t.equal(flips, 0, `a seed whose pools pick the same maxima on both backends (${tries.length} tried)`);
      t.ok(Math.abs(native.loss - wasm.loss) <= TOLERANCE * Math.abs(wasm.loss), `loss ${native.loss} vs ${wasm.loss}`);
      wasm.deltas.forEach((d, i) => {
        const err = maxRelativeError(native.deltas[i], d);
        t.ok(err <= TOLERANCE, `${wasm.names[i]} update: relative error ${err.toExponential(2)} (image seed ${seed})`);
      });
    });
  }
});
