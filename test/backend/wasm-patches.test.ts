// The wasm kernel patches against the pure-JS cpu backend, on random inputs.
import t from 'tap';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { patchWasmKernels } from '../../src/backend/wasm-patches';

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
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.stride, c.pad), g));
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
