/**
 * What the kernel tests share (native/kernels.test.ts, webgpu/kernels.ts): seeded random inputs,
 * the relative error they are held to, and every conv, pool, LRN and FC shape of a preset, read
 * from the model's own layer table.
 */
import * as tf from '@tensorflow/tfjs';
import { layerShapes } from '../../src/model/alexnet';
import type { ModelSpec } from '../../src/model/presets';

export function randomArray(shape: number[], seed: number, scale = 1): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * scale;
  }
  return out;
}

export function rand(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.tensor(randomArray(shape, seed, scale), shape);
}

/** Each output's data and shape, as read back from one backend. */
export interface Outputs {
  data: Float32Array[];
  shapes: string[];
}

/**
 * `fn`'s outputs on a backend, read with the async data() (webgpu has no dataSync in Node), after
 * tidy: tidy walks its result, element by element for a typed array.
 */
export async function outputsOn(backend: string, fn: () => tf.Tensor[]): Promise<Outputs> {
  await tf.setBackend(backend);
  const outputs = tf.tidy(fn);
  const data = await Promise.all(outputs.map(async (x) => (await x.data()) as Float32Array));
  const shapes = outputs.map((x) => x.shape.join('x'));
  tf.dispose(outputs);
  return { data, shapes };
}

/** max |got - want| / max |want|: the kernel tests' measure. */
export function maxRelativeError(got: Float32Array, want: Float32Array): number {
  if (got.length !== want.length) return Infinity;
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < want.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
    maxRef = Math.max(maxRef, Math.abs(want[i]));
  }
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

export interface ConvCase {
  name: string;
  x: number[];
  filter: number[];
  stride: number;
  pad: 'same' | 'valid' | number;
}

export interface PoolCase {
  name: string;
  x: number[];
  window: number;
  stride: number;
  pad: 'same' | 'valid';
}

/** A whole layer as the model runs it: the filter is [k, k, in / groups, out]. */
export interface LayerCase extends ConvCase {
  groups: number;
}

export interface PresetShapes {
  convs: ConvCase[];
  layers: LayerCase[];
  pools: PoolCase[];
  lrns: { name: string; x: number[] }[];
  fcs: { name: string; a: number[]; b: number[] }[];
}

/** Every kernel shape of a preset at batch `batch`, read from the model's own layer table. */
export function presetShapes(spec: ModelSpec, classes: number, batch: number): PresetShapes {
  const rows = layerShapes(spec, classes);
  const out: PresetShapes = { convs: [], layers: [], pools: [], lrns: [], fcs: [] };
  let prev = [spec.inputSize, spec.inputSize, 3];
  let conv = 0;
  for (const row of rows) {
    const label = `${spec.preset} ${row.layer}`;
    if (row.outputShape.length === 1) {
      const units = prev.reduce((a, b) => a * b, 1);
      out.fcs.push({ name: label, a: [batch, units], b: [units, row.outputShape[0]] });
    } else if (row.layer.endsWith('/pool')) {
      out.pools.push({
        name: label,
        x: [batch, ...prev],
        window: spec.pool.window,
        stride: spec.pool.stride,
        pad: 'valid',
      });
    } else if (row.layer.endsWith('/lrn')) {
      out.lrns.push({ name: label, x: [batch, ...prev] });
    } else {
      const c = spec.convs[conv++];
      // A grouped conv runs as one conv per group (src/model/alexnet.ts): that is the kernel's shape.
      const [h, w, cin] = prev;
      out.convs.push({
        name: label,
        x: [batch, h, w, cin / c.groups],
        filter: [c.kernel, c.kernel, cin / c.groups, c.filters / c.groups],
        stride: c.stride,
        pad: c.pad,
      });
      out.layers.push({
        name: label,
        x: [batch, h, w, cin],
        filter: [c.kernel, c.kernel, cin / c.groups, c.filters],
        stride: c.stride,
        pad: c.pad,
        groups: c.groups,
      });
    }
    prev = row.outputShape;
  }
  return out;
}

export function dedupe<T extends { name: string }>(cases: T[]): T[] {
  const seen = new Set<string>();
  return cases.filter((c) => {
    const key = JSON.stringify({ ...c, name: '' });
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export function tfPad(
  pad: ConvCase['pad'],
): 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]] {
  return typeof pad === 'number'
    ? [
        [0, 0],
        [pad, pad],
        [pad, pad],
        [0, 0],
      ]
    : pad;
}

/** The position of the largest value in each window of a 'valid' max pool over NHWC `x` (first on ties). */
function poolArgmax(x: Float32Array, shape: readonly number[], window: number, stride: number): Int32Array {
  const [n, h, w, c] = shape;
  const oh = Math.floor((h - window) / stride) + 1;
  const ow = Math.floor((w - window) / stride) + 1;
  const out = new Int32Array(n * oh * ow * c);
  let o = 0;
  for (let b = 0; b < n; b++)
    for (let oy = 0; oy < oh; oy++)
      for (let ox = 0; ox < ow; ox++)
        for (let ch = 0; ch < c; ch++) {
          let best = -1;
          for (let ky = 0; ky < window; ky++)
            for (let kx = 0; kx < window; kx++) {
              const i = ((b * h + oy * stride + ky) * w + ox * stride + kx) * c + ch;
              if (best < 0 || x[i] > x[best]) best = i;
            }
          // A window of zeros (after relu) routes its gradient to a zero, which relu's mask drops on every backend.
          out[o++] = x[best] > 0 ? best : -1;
        }
  return out;
}

/**
 * How many windows of a 'valid' max pool pick a different maximum in `a` than in `b` (the same
 * layer's input on two backends). Where a window's two largest values are closer than the
 * backends' rounding, each may pick another, and MaxPoolGrad routes that window's gradient to
 * another pixel: a whole-network comparison then measures that jump, not the kernels.
 */
export function poolArgmaxFlips(
  a: Float32Array,
  b: Float32Array,
  shape: readonly number[],
  window: number,
  stride: number,
): number {
  const [pa, pb] = [poolArgmax(a, shape, window, stride), poolArgmax(b, shape, window, stride)];
  let flips = 0;
  for (let i = 0; i < pa.length; i++) if (pa[i] !== pb[i]) flips++;
  return flips;
}
