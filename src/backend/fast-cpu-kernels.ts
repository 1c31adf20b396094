/**
 * Fast paths for the tfjs-backend-cpu kernels that the 'native' backend keeps in JS, for the
 * shapes training gives them; any other call goes to the stock cpu kernel, so the semantics
 * are tfjs's own.
 *
 * Why: with the convolutions, products, pooling and LRN on oneDNN, a small-preset step
 * (batch 32) spent 620 ms in the stock kernels and 40 ms in oneDNN. The stock SplitV/Concat
 * (the grouped convolutions' channel split) copy element by element through index arithmetic
 * (420 ms), Sum (the bias gradients) transposes first (77 ms), and a broadcast Add (the bias)
 * allocates index arrays per element. These are plain loops and chunk copies instead.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';

/** The part of tfjs-backend-cpu's MathBackendCPU these kernels use. */
interface CpuStorageBackend {
  readSync(dataId: object): unknown;
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): TensorInfo;
}

type FastPath = (inputs: TensorInfo[], attrs: NamedAttrMap, backend: CpuStorageBackend) => TensorInfo | TensorInfo[] | null;

function floats(t: TensorInfo, backend: CpuStorageBackend): Float32Array | null {
  if (t.dtype !== 'float32') return null;
  const v = backend.readSync(t.dataId);
  return v instanceof Float32Array ? v : null;
}

const size = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);
const sameShape = (a: number[], b: number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

function output(backend: CpuStorageBackend, shape: number[], data: Float32Array): TensorInfo {
  return backend.makeTensorInfo(shape, 'float32', data);
}

/** b broadcasts over a along its last axis only: [C], [1, C], [1, 1, 1, C] against [..., C]. */
function isLastAxisVector(a: number[], b: number[]): boolean {
  const c = b[b.length - 1];
  return b.length >= 1 && b.length <= a.length && a[a.length - 1] === c && size(b) === c && a.length >= 1;
}

const add: FastPath = ([a, b], _attrs, backend) => {
  const av = floats(a, backend);
  const bv = floats(b, backend);
  if (av == null || bv == null) return null;
  if (sameShape(a.shape, b.shape)) {
    const out = new Float32Array(av.length);
    for (let i = 0; i < av.length; i++) out[i] = av[i] + bv[i];
    return output(backend, a.shape, out);
  }
  // The bias of a conv or dense layer: one value per channel, repeated over every pixel.
  const [big, bigV, vecV] = isLastAxisVector(a.shape, b.shape) ? [a, av, bv] : isLastAxisVector(b.shape, a.shape) ? [b, bv, av] : [null, null, null];
  if (big == null || bigV == null || vecV == null) return null;
  const c = vecV.length;
  const out = new Float32Array(bigV.length);
  for (let base = 0; base < bigV.length; base += c) {
    for (let j = 0; j < c; j++) out[base + j] = bigV[base + j] + vecV[j];
  }
  return output(backend, big.shape, out);
};

const multiply: FastPath = ([a, b], _attrs, backend) => {
  const av = floats(a, backend);
  const bv = floats(b, backend);
  if (av == null || bv == null || !sameShape(a.shape, b.shape)) return null;
  const out = new Float32Array(av.length);
  for (let i = 0; i < av.length; i++) out[i] = av[i] * bv[i];
  return output(backend, a.shape, out);
};

/** tfjs's Step: 1 where x > 0, alpha elsewhere, NaN kept (the relu's gradient mask). */
const step: FastPath = ([x], attrs, backend) => {
  const xv = floats(x, backend);
  if (xv == null) return null;
  const alpha = Number(attrs['alpha'] ?? 0);
  const out = new Float32Array(xv.length);
  for (let i = 0; i < xv.length; i++) {
    const v = xv[i];
    out[i] = v > 0 ? 1 : v !== v ? NaN : alpha;
  }
  return output(backend, x.shape, out);
};

const relu: FastPath = ([x], _attrs, backend) => {
  const xv = floats(x, backend);
  if (xv == null) return null;
  const out = new Float32Array(xv.length);
  for (let i = 0; i < xv.length; i++) out[i] = Math.max(0, xv[i]);
  return output(backend, x.shape, out);
};

/** Sum over leading axes (a bias gradient: [N, H, W, C] -> [C]) or trailing ones, in float64. */
const sum: FastPath = ([x], attrs, backend) => {
  const xv = floats(x, backend);
  if (xv == null || x.shape.length === 0) return null;
  const axes = [...tf.util.parseAxisParam(attrs['axis'] as number | number[], x.shape)].sort((p, q) => p - q);
  const k = axes.length;
  const rank = x.shape.length;
  const leading = axes.every((ax, i) => ax === i);
  const trailing = axes.every((ax, i) => ax === rank - k + i);
  if (!leading && !trailing) return null;
  const keptShape = x.shape.filter((_, i) => !axes.includes(i));
  const outShape = attrs['keepDims'] === true ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : keptShape;
  const kept = size(keptShape);
  const reduced = size(x.shape) / Math.max(kept, 1);
  const acc = new Float64Array(kept);
  if (leading) {
    for (let r = 0; r < reduced; r++) {
      const base = r * kept;
      for (let j = 0; j < kept; j++) acc[j] += xv[base + j];
    }
  } else {
    for (let j = 0; j < kept; j++) {
      let s = 0;
      const base = j * reduced;
      for (let r = 0; r < reduced; r++) s += xv[base + r];
      acc[j] = s;
    }
  }
  return output(backend, outShape, Float32Array.from(acc));
};

/** [outer, axis, inner] around `axis`: a split or concat there is a copy of axis*inner runs. */
function around(shape: number[], axis: number): { outer: number; inner: number } {
  return { outer: size(shape.slice(0, axis)), inner: size(shape.slice(axis + 1)) };
}

const splitV: FastPath = ([x], attrs, backend) => {
  const xv = floats(x, backend);
  if (xv == null) return null;
  const axis = tf.util.parseAxisParam(attrs['axis'] as number, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, attrs['numOrSizeSplits'] as number | number[], axis);
  const { outer, inner } = around(x.shape, axis);
  const rowIn = x.shape[axis] * inner;
  let offset = 0;
  return sizes.map((s) => {
    const run = s * inner;
    const out = new Float32Array(outer * run);
    for (let o = 0; o < outer; o++) out.set(xv.subarray(o * rowIn + offset, o * rowIn + offset + run), o * run);
    offset += run;
    const shape = [...x.shape];
    shape[axis] = s;
    return output(backend, shape, out);
  });
};

const concat: FastPath = (inputs, attrs, backend) => {
  const values = inputs.map((t) => floats(t, backend));
  if (inputs.length === 0 || values.some((v) => v == null)) return null;
  const first = inputs[0].shape;
  const axis = tf.util.parseAxisParam(attrs['axis'] as number, first)[0];
  const fits = inputs.every((t) => t.shape.length === first.length && t.shape.every((d, i) => i === axis || d === first[i]));
  if (!fits) return null;
  const { outer, inner } = around(first, axis);
  const total = inputs.reduce((s, t) => s + t.shape[axis], 0);
  const rowOut = total * inner;
  const out = new Float32Array(outer * rowOut);
  let offset = 0;
  inputs.forEach((t, k) => {
    const v = values[k] as Float32Array;
    const run = t.shape[axis] * inner;
    for (let o = 0; o < outer; o++) out.set(v.subarray(o * run, (o + 1) * run), o * rowOut + offset);
    offset += run;
  });
  const shape = [...first];
  shape[axis] = total;
  return output(backend, shape, out);
};

/** A kernel that tries its fast path and otherwise runs the stock cpu kernel. */
function withFallback(inputNames: string[] | 'all', fast: FastPath, stock: KernelFunc): KernelFunc {
  return (args) => {
    // Concat's inputs are an array; the others are named.
    const named = args.inputs as Record<string, TensorInfo>;
    const inputs = inputNames === 'all' ? Object.values(named) : inputNames.map((n) => named[n]);
    return fast(inputs, args.attrs ?? {}, args.backend as unknown as CpuStorageBackend) ?? stock(args);
  };
}

/** The fast kernels for `backendName`, each falling back on the cpu backend's own. */
export function fastCpuKernelConfigs(backendName: string): KernelConfig[] {
  const paths: [string, string[] | 'all', FastPath][] = [
    [tf.Add, ['a', 'b'], add],
    [tf.Multiply, ['a', 'b'], multiply],
    [tf.Step, ['x'], step],
    [tf.Relu, ['x'], relu],
    [tf.Sum, ['x'], sum],
    [tf.SplitV, ['x'], splitV],
    [tf.Concat, 'all', concat],
  ];
  return paths.map(([kernelName, inputNames, fast]) => {
    const stock = tf.getKernel(kernelName, 'cpu');
    if (stock == null) throw new Error(`tfjs-backend-cpu has no ${kernelName} kernel`);
    return { kernelName, backendName, kernelFunc: withFallback(inputNames, fast, stock.kernelFunc) };
  });
}
