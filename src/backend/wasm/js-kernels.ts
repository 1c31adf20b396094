/**
 * LRN, LRNGrad and MaxPoolGrad for the wasm backend, written in plain JS over the wasm heap.
 *
 * Why: wasm's own versions are scalar C++ loops that call pow() per window element, and took a
 * large share of a small-preset training step (docs/measurements.md, "Wasm LRN and MaxPoolGrad
 * kernels"). These do the same arithmetic in one pass per pixel, with x^-0.75 as
 * 1/(sqrt(x)*sqrt(sqrt(x))) for the paper's beta (exact up to rounding).
 *
 * Heap views are taken only after every output is allocated: an allocation can grow the wasm
 * memory and detach earlier views.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelFunc, LRNAttrs, MaxPoolGradAttrs, TensorInfo } from '@tensorflow/tfjs';

/** The parts of the wasm backend these kernels use. */
interface WasmHeapBackend {
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array;
}

/**
 * For one pixel's channels: norm[c] = bias + alpha * sum_{|j-c|<=r} x[base+j]^2 and
 * scale[c] = norm[c]^-beta, with a sliding window over the squares in float64 (O(channels);
 * no drift worth a float32 ulp at C <= 384). The paper's beta = 0.75 is computed on square
 * roots, inline: Math.pow (or a closure around it) costs 2-3x the whole kernel.
 */
function pixelNorms(
  x: Float32Array,
  base: number,
  channels: number,
  r: number,
  bias: number,
  alpha: number,
  beta: number,
  sq: Float64Array,
  norm: Float64Array,
  scale: Float64Array,
): void {
  for (let c = 0; c < channels; c++) {
    const v = x[base + c];
    sq[c] = v * v;
  }
  let s = 0;
  for (let j = 0; j < Math.min(r, channels); j++) s += sq[j];
  for (let c = 0; c < channels; c++) {
    if (c + r < channels) s += sq[c + r];
    if (c > r) s -= sq[c - r - 1];
    const n = bias + alpha * s;
    norm[c] = n;
    if (beta === 0.75) {
      const root = Math.sqrt(n);
      scale[c] = 1 / (root * Math.sqrt(root));
    } else {
      scale[c] = Math.pow(n, -beta);
    }
  }
}

export const lrnKernel: KernelFunc = ({ inputs, backend, attrs }) => {
  const { x } = inputs as { x: TensorInfo };
  const { depthRadius: r, bias, alpha, beta } = attrs as unknown as LRNAttrs;
  const b = backend as unknown as WasmHeapBackend;
  const out = b.makeOutput(x.shape, 'float32');
  const xs = b.typedArrayFromHeap(x);
  const ys = b.typedArrayFromHeap(out);
  const channels = x.shape[x.shape.length - 1];
  const sq = new Float64Array(channels);
  const first = Math.min(r, channels);
  // One fused pass per pixel: faster than going through pixelNorms' arrays
  // (docs/measurements.md, "Wasm LRN and MaxPoolGrad kernels").
  for (let base = 0; base < xs.length; base += channels) {
    for (let c = 0; c < channels; c++) {
      const v = xs[base + c];
      sq[c] = v * v;
    }
    let s = 0;
    for (let j = 0; j < first; j++) s += sq[j];
    for (let c = 0; c < channels; c++) {
      if (c + r < channels) s += sq[c + r];
      if (c > r) s -= sq[c - r - 1];
      const n = bias + alpha * s;
      let scale: number;
      if (beta === 0.75) {
        const root = Math.sqrt(n);
        scale = 1 / (root * Math.sqrt(root));
      } else {
        scale = Math.pow(n, -beta);
      }
      ys[base + c] = xs[base + c] * scale;
    }
  }
  return out;
};

/** dx_k = dy_k norm_k^-beta - 2 alpha beta x_k sum_{|d-k|<=r} dy_d y_d / norm_d. */
export const lrnGradKernel: KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, y, dy } = inputs as { x: TensorInfo; y: TensorInfo; dy: TensorInfo };
  const { depthRadius: r, bias, alpha, beta } = attrs as unknown as LRNAttrs;
  const b = backend as unknown as WasmHeapBackend;
  const out = b.makeOutput(x.shape, 'float32');
  const xs = b.typedArrayFromHeap(x);
  const ys = b.typedArrayFromHeap(y);
  const dys = b.typedArrayFromHeap(dy);
  const dxs = b.typedArrayFromHeap(out);
  const channels = x.shape[x.shape.length - 1];
  const sq = new Float64Array(channels);
  const norm = new Float64Array(channels);
  const scale = new Float64Array(channels);
  const q = new Float64Array(channels);
  const k2ab = -2 * alpha * beta;
  for (let base = 0; base < xs.length; base += channels) {
    pixelNorms(xs, base, channels, r, bias, alpha, beta, sq, norm, scale);
    for (let d = 0; d < channels; d++) q[d] = (dys[base + d] * ys[base + d]) / norm[d];
    let s = 0;
    for (let j = 0; j < Math.min(r, channels); j++) s += q[j];
    for (let k = 0; k < channels; k++) {
      if (k + r < channels) s += q[k + r];
      if (k > r) s -= q[k - r - 1];
      dxs[base + k] = dys[base + k] * scale[k] + k2ab * xs[base + k] * s;
    }
  }
  return out;
};

/** Routes each output gradient to the first maximum of its window (as tfjs' cpu backend). */
export const maxPoolGradKernel: KernelFunc = ({ inputs, backend, attrs }) => {
  const { dy, input } = inputs as { dy: TensorInfo; input: TensorInfo };
  const { filterSize, strides, pad, dimRoundingMode } = attrs as unknown as MaxPoolGradAttrs;
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    filterSize,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const b = backend as unknown as WasmHeapBackend;
  const out = b.makeOutput(input.shape, 'float32');
  const xs = b.typedArrayFromHeap(input);
  const dys = b.typedArrayFromHeap(dy);
  const dxs = b.typedArrayFromHeap(out);
  dxs.fill(0);
  const {
    batchSize,
    inHeight,
    inWidth,
    inChannels: C,
    outHeight,
    outWidth,
    strideHeight,
    strideWidth,
    filterHeight,
    filterWidth,
  } = info;
  const { top, left } = info.padInfo;
  const best = new Float32Array(C);
  const bestAt = new Int32Array(C);
  for (let n = 0; n < batchSize; n++) {
    for (let oy = 0; oy < outHeight; oy++) {
      for (let ox = 0; ox < outWidth; ox++) {
        best.fill(-Infinity);
        bestAt.fill(-1);
        for (let wy = 0; wy < filterHeight; wy++) {
          const iy = oy * strideHeight - top + wy;
          if (iy < 0 || iy >= inHeight) continue;
          for (let wx = 0; wx < filterWidth; wx++) {
            const ix = ox * strideWidth - left + wx;
            if (ix < 0 || ix >= inWidth) continue;
            const base = ((n * inHeight + iy) * inWidth + ix) * C;
            for (let c = 0; c < C; c++) {
              if (xs[base + c] > best[c]) {
                best[c] = xs[base + c];
                bestAt[c] = base + c;
              }
            }
          }
        }
        const dyBase = ((n * outHeight + oy) * outWidth + ox) * C;
        for (let c = 0; c < C; c++) if (bestAt[c] >= 0) dxs[bestAt[c]] += dys[dyBase + c];
      }
    }
  }
  return out;
};
