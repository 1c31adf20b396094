/**
 * Fast paths for the tfjs-backend-cpu kernels that the 'native' backend keeps in JS, for the
 * shapes training gives them; any other call goes to the stock cpu kernel, so the semantics
 * are tfjs's own.
 *
 * Why: with the heavy kernels on oneDNN, the stock JS kernels left took most of a step
 * (docs/measurements.md, "Native backend's JS kernels"): SplitV/Concat (the grouped
 * convolutions' channel split; since the native conv layer op groups natively, only the
 * composed tanh path splits) copy element by element through index arithmetic, Sum (the bias
 * gradients) transposes first, and a broadcast binary op (the bias add, the optimizer's scalar
 * products) allocates index arrays per element. Split, concat and sum are chunk copies and plain
 * loops here; the element-wise ops run in the addon's loops (vectorised C++, one pass each).
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { outputArray, storageOf, type CpuStorageBackend } from './storage-pool';

type FastPath = (
  inputs: TensorInfo[],
  attrs: NamedAttrMap,
  backend: CpuStorageBackend,
) => TensorInfo | TensorInfo[] | null;

const size = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);
const sameShape = (a: number[], b: number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

function output(backend: CpuStorageBackend, shape: number[], data: Float32Array): TensorInfo {
  return backend.makeTensorInfo(shape, 'float32', data);
}

/** b broadcasts over a along its last axis only: [C], [1, C], [1, 1, 1, C] against [..., C]. */
function isLastAxisVector(a: number[], b: number[]): boolean {
  const c = b[b.length - 1];
  return b.length >= 1 && b.length <= a.length && a[a.length - 1] === c && size(b) === c;
}

/**
 * b holds one value per row of a's last axis: [..., 1] against [..., C], the leading dims equal
 * (a softmax's max or sum against its logits, the loss gradient's per-example scale). Rows of
 * no elements are left to the stock kernel.
 */
function isRowScalar(a: number[], b: number[]): boolean {
  return (
    a.length >= 2 &&
    a[a.length - 1] > 0 &&
    b.length === a.length &&
    b[b.length - 1] === 1 &&
    b.slice(0, -1).every((d, i) => d === a[i])
  );
}

/** How the addon's binary loop pairs a and b (see addon/dnnl_addon.cc), or null for the stock kernel. */
export interface Broadcast {
  mode: 0 | 1 | 2 | 3 | 4 | 5 | 6;
  /** Elements of the output, and of a row: the repeated vector (modes 3, 4), the span of one value (5, 6). */
  n: number;
  c: number;
  shape: number[];
}

export function broadcastOf(a: number[], b: number[]): Broadcast | null {
  if (sameShape(a, b)) return { mode: 0, n: size(a), c: 1, shape: a };
  if (size(b) === 1 && b.length <= a.length) return { mode: 1, n: size(a), c: 1, shape: a };
  if (size(a) === 1 && a.length <= b.length) return { mode: 2, n: size(b), c: 1, shape: b };
  if (isLastAxisVector(a, b)) return { mode: 3, n: size(a), c: b[b.length - 1], shape: a };
  if (isLastAxisVector(b, a)) return { mode: 4, n: size(b), c: a[a.length - 1], shape: b };
  if (isRowScalar(a, b)) return { mode: 5, n: size(a), c: a[a.length - 1], shape: a };
  if (isRowScalar(b, a)) return { mode: 6, n: size(b), c: b[b.length - 1], shape: b };
  return null;
}

const BINARY_OPS = { [tf.Add]: 0, [tf.Sub]: 1, [tf.Multiply]: 2, [tf.RealDiv]: 3 } as const;
const UNARY_OPS = { [tf.Relu]: 0, [tf.Step]: 1, [tf.Sqrt]: 2, [tf.Square]: 3 } as const;

/** The addon's element-wise loops (addon/dnnl_addon.cc). */
export interface ElementwiseAddon {
  binary(params: Int32Array, a: Float32Array, b: Float32Array, out: Float32Array): void;
  unary(params: Int32Array, alpha: Float32Array, x: Float32Array, out: Float32Array): void;
}

function binaryPath(addon: ElementwiseAddon, op: number): FastPath {
  return ([a, b], _attrs, backend) => {
    const av = storageOf(a, backend);
    const bv = storageOf(b, backend);
    const bc = broadcastOf(a.shape, b.shape);
    if (av == null || bv == null || bc == null) return null;
    const out = outputArray(backend, bc.n);
    addon.binary(Int32Array.from([op, bc.mode, bc.n, bc.c]), av, bv, out);
    return output(backend, bc.shape, out);
  };
}

function unaryPath(addon: ElementwiseAddon, op: number): FastPath {
  return ([x], attrs, backend) => {
    const xv = storageOf(x, backend);
    if (xv == null) return null;
    const out = outputArray(backend, xv.length);
    addon.unary(Int32Array.from([op, xv.length]), Float32Array.of(Number(attrs['alpha'] ?? 0)), xv, out);
    return output(backend, x.shape, out);
  };
}

/** Sum over leading axes (a bias gradient: [N, H, W, C] -> [C]) or trailing ones, in float64. */
const sum: FastPath = ([x], attrs, backend) => {
  const xv = storageOf(x, backend);
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
  const xv = storageOf(x, backend);
  if (xv == null) return null;
  const axis = tf.util.parseAxisParam(attrs['axis'] as number, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, attrs['numOrSizeSplits'] as number | number[], axis);
  const { outer, inner } = around(x.shape, axis);
  const rowIn = x.shape[axis] * inner;
  let offset = 0;
  return sizes.map((s) => {
    const run = s * inner;
    const out = outputArray(backend, outer * run);
    for (let o = 0; o < outer; o++) out.set(xv.subarray(o * rowIn + offset, o * rowIn + offset + run), o * run);
    offset += run;
    const shape = [...x.shape];
    shape[axis] = s;
    return output(backend, shape, out);
  });
};

const concat: FastPath = (inputs, attrs, backend) => {
  const values = inputs.map((t) => storageOf(t, backend));
  if (inputs.length === 0 || values.some((v) => v == null)) return null;
  const first = inputs[0].shape;
  const axis = tf.util.parseAxisParam(attrs['axis'] as number, first)[0];
  const fits = inputs.every(
    (t) => t.shape.length === first.length && t.shape.every((d, i) => i === axis || d === first[i]),
  );
  if (!fits) return null;
  const { outer, inner } = around(first, axis);
  const total = inputs.reduce((s, t) => s + t.shape[axis], 0);
  const rowOut = total * inner;
  const out = outputArray(backend, outer * rowOut);
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
export function fastCpuKernelConfigs(addon: ElementwiseAddon, backendName: string): KernelConfig[] {
  const paths: [string, string[] | 'all', FastPath][] = [
    ...Object.entries(BINARY_OPS).map(([name, op]): [string, string[], FastPath] => [
      name,
      ['a', 'b'],
      binaryPath(addon, op),
    ]),
    ...Object.entries(UNARY_OPS).map(([name, op]): [string, string[], FastPath] => [name, ['x'], unaryPath(addon, op)]),
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
