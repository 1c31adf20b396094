// The wasm kernel patches against the pure-JS cpu backend, on random inputs.
import t from 'tap';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { patchWasmKernels } from '../../../src/backend/wasm/patches';

interface ConvCase {
  name: string;
  x: [number, number, number, number];
  filter: [number, number, number, number];
  stride: number;
  pad: 'same' | 'valid';
}

const cases: ConvCase[] = [];
for (const stride of [1, 2, 4]) {
  for (const pad of ['same', 'valid'] as const) {
    cases.push({ name: `3x3 s${stride} ${pad}`, x: [2, 13, 11, 5], filter: [3, 3, 5, 7], stride, pad });
    cases.push({ name: `5x5 s${stride} ${pad}`, x: [3, 17, 17, 4], filter: [5, 5, 4, 6], stride, pad });
  }
}
cases.push({ name: 'conv1-like 11x11 s4 valid', x: [2, 51, 51, 3], filter: [11, 11, 3, 8], stride: 4, pad: 'valid' });

function randomArray(shape: number[], seed: number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

/** Gradients of sum(conv2d(x, w) * g) w.r.t. x and w, on the current backend. */
function convGrads(c: ConvCase): { dx: Float32Array; dw: Float32Array } {
  return tf.tidy(() => {
    const x = tf.tensor4d(randomArray(c.x, 1), c.x);
    const w = tf.tensor4d(randomArray(c.filter, 2), c.filter);
    const yShape = tf.conv2d(x, w, c.stride, c.pad).shape;
    const g = tf.tensor(randomArray(yShape, 3), yShape);
    const f = (a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.stride, c.pad), g));
    const [dx, dw] = tf.grads(f)([x, w]);
    return { dx: dx.dataSync() as Float32Array, dw: dw.dataSync() as Float32Array };
  });
}

function maxRelativeError(got: Float32Array, want: Float32Array): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < want.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
    maxRef = Math.max(maxRef, Math.abs(want[i]));
  }
  return maxDiff / maxRef;
}

t.before(async () => {
  patchWasmKernels();
  await tf.setBackend('cpu');
});

for (const c of cases) {
  t.test(c.name, async (t) => {
    await tf.setBackend('cpu');
    const want = convGrads(c);
    await tf.setBackend('wasm');
    const before = tf.memory().numTensors;
    const got = convGrads(c);
    t.equal(tf.memory().numTensors, before, 'no tensors leaked');
    t.equal(got.dw.length, want.dw.length);
    t.ok(maxRelativeError(got.dw, want.dw) < 1e-5, `dW relative error ${maxRelativeError(got.dw, want.dw)}`);
    t.ok(maxRelativeError(got.dx, want.dx) < 1e-5, `dx relative error ${maxRelativeError(got.dx, want.dx)}`);
  });
}

t.test('patching is idempotent and the stock kernel still serves stride 2', async (t) => {
  patchWasmKernels();
  await tf.setBackend('wasm');
  t.ok(tf.getKernel('Conv2DBackpropFilter', 'wasm'), 'dW kernel registered');
  const before = (tf.engine().backend as unknown as { dataIdMap: { numDataIds(): number } }).dataIdMap.numDataIds();
  convGrads(cases[2]);
  const after = (tf.engine().backend as unknown as { dataIdMap: { numDataIds(): number } }).dataIdMap.numDataIds();
  t.equal(after, before, 'no backend buffers leaked by the kernels');
});

interface PoolCase {
  name: string;
  x: [number, number, number, number];
  window: number;
  stride: number;
  pad: 'same' | 'valid';
}

const lrnShapes: [number, number, number, number][] = [
  [2, 5, 5, 12],
  [1, 3, 4, 96],
  [3, 2, 2, 3],
];

function lrnGrads(shape: [number, number, number, number], beta: number): { y: Float32Array; dx: Float32Array } {
  return tf.tidy(() => {
    const x = tf.tensor4d(
      randomArray(shape, 4).map((v) => v * 40),
      shape,
    );
    const g = tf.tensor4d(randomArray(shape, 5), shape);
    const f = (a: tf.Tensor) => tf.localResponseNormalization(a as tf.Tensor4D, 2, 2, 1e-4 * 50, beta);
    const y = f(x).dataSync() as Float32Array;
    const [dx] = tf.grads((a: tf.Tensor) => tf.sum(tf.mul(f(a), g)))([x]);
    return { y, dx: dx.dataSync() as Float32Array };
  });
}

for (const shape of lrnShapes) {
  for (const beta of [0.75, 0.6]) {
    t.test(`LRN and LRNGrad ${shape.join('x')} beta ${beta}`, async (t) => {
      await tf.setBackend('cpu');
      const want = lrnGrads(shape, beta);
      await tf.setBackend('wasm');
      const before = tf.memory().numTensors;
      const got = lrnGrads(shape, beta);
      t.equal(tf.memory().numTensors, before, 'no tensors leaked');
      t.ok(maxRelativeError(got.y, want.y) < 1e-5, `y relative error ${maxRelativeError(got.y, want.y)}`);
      t.ok(maxRelativeError(got.dx, want.dx) < 1e-5, `dx relative error ${maxRelativeError(got.dx, want.dx)}`);
    });
  }
}

const poolCases: PoolCase[] = [
  { name: '3/2 valid (AlexNet)', x: [2, 13, 13, 8], window: 3, stride: 2, pad: 'valid' },
  { name: '3/2 same', x: [2, 10, 9, 5], window: 3, stride: 2, pad: 'same' },
  { name: '2/2 valid', x: [1, 8, 8, 4], window: 2, stride: 2, pad: 'valid' },
];

for (const c of poolCases) {
  t.test(`MaxPoolGrad ${c.name}`, async (t) => {
    const run = () =>
      tf.tidy(() => {
        const x = tf.tensor4d(randomArray(c.x, 6), c.x);
        const yShape = tf.maxPool(x, c.window, c.stride, c.pad).shape;
        const g = tf.tensor(randomArray(yShape, 7), yShape);
        const [dx] = tf.grads((a: tf.Tensor) =>
          tf.sum(tf.mul(tf.maxPool(a as tf.Tensor4D, c.window, c.stride, c.pad), g)),
        )([x]);
        return dx.dataSync() as Float32Array;
      });
    await tf.setBackend('cpu');
    const want = run();
    await tf.setBackend('wasm');
    const got = run();
    t.ok(maxRelativeError(got, want) < 1e-6, `dx relative error ${maxRelativeError(got, want)}`);
  });
}
