/**
 * AlexNet as plain tfjs variables and a forward function (nanoGPT style): no tf.layers, since
 * tf.layers has neither LRN nor grouped convolution. The network's output is logits; the
 * softmax lives in the loss (the seed notebook's softmax-inside-the-model bug).
 */
import * as tf from '@tensorflow/tfjs';
import { convLayer, lrnMaxPool } from '../backend/ops';
import type { ConvPad, ConvSpec, ModelSpec } from './presets';
import { normalArray } from './normal-init';
import { uniformInto } from './alea';

/** One trainable tensor, in a fixed order shared by every rank and every checkpoint. */
export interface Param {
  name: string;
  shape: number[];
  /** Weights get weight decay; biases do not (as in cuda-convnet's config). */
  kind: 'weight' | 'bias';
  variable: tf.Variable;
}

export interface LayerShape {
  layer: string;
  outputShape: number[];
  params: number;
}

export interface AlexNet {
  spec: ModelSpec;
  numClasses: number;
  params: Param[];
}

function convOutSize(size: number, kernel: number, stride: number, pad: ConvPad): number {
  if (pad === 'same') return Math.ceil(size / stride);
  const padTotal = pad === 'valid' ? 0 : 2 * pad;
  return Math.floor((size + padTotal - kernel) / stride) + 1;
}

function poolOutSize(size: number, window: number, stride: number): number {
  return Math.floor((size - window) / stride) + 1;
}

/** Layer-by-layer output shapes and parameter counts (pure: the model summary and the tests). */
export function layerShapes(spec: ModelSpec, numClasses: number): LayerShape[] {
  const rows: LayerShape[] = [];
  let size = spec.inputSize;
  let channels = 3;
  for (const c of spec.convs) {
    if (channels % c.groups !== 0 || c.filters % c.groups !== 0) {
      throw new Error(
        `${c.name}: ${channels} input / ${c.filters} output channels do not split into ${c.groups} groups`,
      );
    }
    size = convOutSize(size, c.kernel, c.stride, c.pad);
    const params = c.kernel * c.kernel * (channels / c.groups) * c.filters + c.filters;
    channels = c.filters;
    rows.push({
      layer: `${c.name}${c.groups > 1 ? ` (${c.groups} groups)` : ''}`,
      outputShape: [size, size, channels],
      params,
    });
    if (c.lrn && spec.lrn) rows.push({ layer: `${c.name}/lrn`, outputShape: [size, size, channels], params: 0 });
    if (c.pool) {
      size = poolOutSize(size, spec.pool.window, spec.pool.stride);
      if (size < 1) throw new Error(`${c.name}/pool: input ${spec.inputSize} px is too small for this network`);
      rows.push({ layer: `${c.name}/pool`, outputShape: [size, size, channels], params: 0 });
    }
  }
  let units = size * size * channels;
  for (const h of [...spec.hidden, { name: 'fc8', units: numClasses }]) {
    rows.push({ layer: h.name, outputShape: [h.units], params: units * h.units + h.units });
    units = h.units;
  }
  return rows;
}

export function countParams(spec: ModelSpec, numClasses: number): number {
  return layerShapes(spec, numClasses).reduce((sum, r) => sum + r.params, 0);
}

/**
 * FLOPs (2 per multiply-add) of one image's forward pass through the conv and FC layers. Each
 * output position of a layer is a dot product with every weight of its output channel: for a
 * row with C output channels, (weights / C) per output element, weights = params - C biases.
 * Training costs about three times this (the backward pass computes two products per weight).
 */
export function forwardFlopsPerImage(spec: ModelSpec, numClasses: number): number {
  return layerForwardFlops(spec, numClasses).reduce((sum, layer) => sum + layer.flops, 0);
}

/** The same count per layer with parameters (conv1..conv5, then the FC layers, in order). */
export function layerForwardFlops(spec: ModelSpec, numClasses: number): { layer: string; flops: number }[] {
  return layerShapes(spec, numClasses)
    .filter((row) => row.params > 0)
    .map((row) => {
      const channels = row.outputShape[row.outputShape.length - 1];
      const positions = row.outputShape.reduce((a, b) => a * b, 1) / channels;
      return { layer: row.layer, flops: 2 * positions * (row.params - channels) };
    });
}

/**
 * The seed to give tf.randomNormal for our seed `n` (any whole number >= 0). Its generator takes
 * a seed of 0 as no seed at all and draws from Math.random(): with the default --seed 0, conv1's
 * initial weights differed on every run. Shifted by one. (tf.dropout reads 0 as a seed.)
 */
export function tfSeed(n: number): number {
  return n + 1;
}

/**
 * Deterministic normal initialiser: every rank that uses the same seed builds the same model.
 * The values are tf.randomNormal's for tfSeed(seed), drawn faster (normal-init.ts).
 */
function initWeight(shape: number[], std: number | 'he', fanIn: number, seed: number): tf.Tensor {
  const s = std === 'he' ? Math.sqrt(2 / fanIn) : std;
  const count = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(normalArray(count, 0, s, tfSeed(seed)), shape, 'float32');
}

/** A parameter before it exists: its name, shape, kind and (biases) initial value. */
export interface ParamShape {
  name: string;
  shape: number[];
  kind: Param['kind'];
  biasInit: number;
}

/**
 * Every parameter's shape, in the model's order (pure: a run checks that they fit the backend
 * before it allocates them).
 */
export function paramShapes(spec: ModelSpec, numClasses: number): ParamShape[] {
  const out: ParamShape[] = [];
  let channels = 3;
  for (const c of spec.convs) {
    out.push({
      name: `${c.name}/kernel`,
      shape: [c.kernel, c.kernel, channels / c.groups, c.filters],
      kind: 'weight',
      biasInit: 0,
    });
    out.push({ name: `${c.name}/bias`, shape: [c.filters], kind: 'bias', biasInit: c.biasInit });
    channels = c.filters;
  }
  const shapes = layerShapes(spec, numClasses);
  // The first fully connected layer sees the flattened output of the last conv-stage row.
  const firstDense = shapes.findIndex((r) => r.outputShape.length === 1);
  let units = shapes[firstDense - 1].outputShape.reduce((a, b) => a * b, 1);
  for (const h of [...spec.hidden, { name: 'fc8', units: numClasses, biasInit: 0 }]) {
    out.push({ name: `${h.name}/kernel`, shape: [units, h.units], kind: 'weight', biasInit: 0 });
    out.push({ name: `${h.name}/bias`, shape: [h.units], kind: 'bias', biasInit: h.biasInit });
    units = h.units;
  }
  return out;
}

/** Creates the variables with the paper's initialisation (or He's, when the spec says so). */
export function createAlexNet(spec: ModelSpec, numClasses: number, seed: number): AlexNet {
  const params: Param[] = [];
  let weightIndex = 0;
  tf.tidy(() => {
    for (const { name, shape, kind, biasInit } of paramShapes(spec, numClasses)) {
      // A weight's fan-in is every dimension but its last (the output channels or units).
      const fanIn = shape.slice(0, -1).reduce((a, b) => a * b, 1);
      const value =
        kind === 'weight'
          ? initWeight(shape, spec.weightInitStd, fanIn, seed + weightIndex++)
          : tf.fill(shape, biasInit);
      // tfjs variable names are global to the process: leave them unique (auto), keep ours in `name`.
      params.push({ name, shape: value.shape, kind, variable: tf.variable(value, true) });
    }
  });
  return { spec, numClasses, params };
}

/** A preset's padding as tfjs's conv2d takes it (a number is that many pixels on each side). */
export function tfPad(
  pad: ConvPad,
): 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]] {
  if (typeof pad !== 'number') return pad;
  return [
    [0, 0],
    [pad, pad],
    [pad, pad],
    [0, 0],
  ];
}

function activate(x: tf.Tensor, activation: ModelSpec['activation']): tf.Tensor {
  return activation === 'relu' ? tf.relu(x) : tf.tanh(x);
}

/**
 * One (possibly grouped) convolution with bias and activation. tfjs conv2d has no `groups`, so
 * a grouped conv is split -> one conv2d per group -> concat, with the kernel split on its
 * output axis: one [k, k, in/groups, out] kernel, as in Caffe.
 */
export function groupedConv(
  x: tf.Tensor4D,
  kernel: tf.Tensor4D,
  bias: tf.Tensor1D,
  c: Pick<ConvSpec, 'stride' | 'pad' | 'groups'>,
  activation: ModelSpec['activation'],
  inputGradient = true,
): tf.Tensor4D {
  const fused = activation === 'relu';
  if (fused) {
    // The native backend's one-op layer (grouped natively, its own gradient); null elsewhere.
    const layer = convLayer(x, kernel, bias, {
      strides: c.stride,
      pad: tfPad(c.pad),
      groups: c.groups,
      activation,
      inputGradient,
    });
    if (layer != null) return layer;
  }
  const convOne = (xg: tf.Tensor4D, kg: tf.Tensor4D, bg: tf.Tensor1D): tf.Tensor4D => {
    if (fused)
      return tf.fused.conv2d({ x: xg, filter: kg, bias: bg, strides: c.stride, pad: tfPad(c.pad), activation: 'relu' });
    return activate(tf.add(tf.conv2d(xg, kg, c.stride, tfPad(c.pad)), bg), activation) as tf.Tensor4D;
  };
  if (c.groups === 1) return convOne(x, kernel, bias);
  const xs = tf.split(x, c.groups, 3);
  const ks = tf.split(kernel, c.groups, 3);
  const bs = tf.split(bias, c.groups, 0);
  return tf.concat(
    xs.map((xg, g) => convOne(xg as tf.Tensor4D, ks[g] as tf.Tensor4D, bs[g] as tf.Tensor1D)),
    3,
  );
}

/** A fully connected layer: x [n, in] times kernel [in, units] plus bias, then the activation. */
export function dense(
  x: tf.Tensor2D,
  kernel: tf.Tensor2D,
  bias: tf.Tensor1D,
  activation: ModelSpec['activation'] | 'linear',
): tf.Tensor2D {
  if (activation === 'tanh') return tf.tanh(tf.add(tf.matMul(x, kernel), bias)) as tf.Tensor2D;
  return tf.fused.matMul({ a: x, b: kernel, bias, activation }) as tf.Tensor2D;
}

export interface ForwardOptions {
  /** Dropout on (training) or off (evaluation, or the "same answer at any worker count" tests). */
  training: boolean;
  /** Seed of this step's dropout masks: a function of (run seed, global step), for exact resume. */
  dropoutSeed?: number;
  /**
   * One key per image (its index in the training split): with the step's seed it picks the
   * image's masks. Default: 0, 1, 2, ... (the image's place in `images`).
   */
  dropoutKeys?: ArrayLike<number>;
  /**
   * Wraps each parameter where the pass uses it (index in model.params): the overlapped
   * all-reduce puts an identity there whose gradient hands the finished gradient over.
   */
  paramHook?: ParamHook;
}

export type ParamHook = (index: number, variable: tf.Variable) => tf.Tensor;

/** Seed of one image's mask in one dropout layer: a string (tfjs seeds alea with it), so no two collide. */
export function dropoutMaskSeed(stepSeed: number, layer: number, key: number): string {
  return `${stepSeed}/${layer}/${key}`;
}

/** Columns [start, start + width) of a layer of `of` units: the part of it one rank owns (hybrid mode). */
export interface ColumnSlice {
  start: number;
  of: number;
}

/**
 * Inverted dropout with one seeded mask row per image, keyed by the image, so its mask is the
 * same whether it runs in one batch, in micro-batches of any size, or on any rank (the result
 * depends on neither --micro-batch nor the worker count). Same keep rule as tf.dropout: keep
 * where u + (1 - rate) >= 1. With `columns`, `h` holds only those columns of the layer (a hybrid
 * rank's slice): the image's full mask row is drawn and cut, so the slice gets the same mask.
 */
export function dropoutPerImage(
  h: tf.Tensor2D,
  rate: number,
  stepSeed: number,
  layer: number,
  keys: ArrayLike<number> | undefined,
  columns?: ColumnSlice,
): tf.Tensor2D {
  const [n, width] = h.shape;
  const mask = dropoutMask(n, width, rate, (i) => dropoutMaskSeed(stepSeed, layer, keys?.[i] ?? i), columns);
  return tf.mul(h, tf.tensor2d(mask, [n, width]));
}

/**
 * The dropout mask of dropoutPerImage, built in JS: the same floats as the tensor ops
 * floor(u + keep) / keep over one tf.randomUniform row per image (float32 throughout: u + keep is
 * below 2, so the floor is 1 exactly where the float sum reaches 1, and a kept unit gets the float
 * 1 / keep). One array instead of a tensor per image and four ops over them: the small preset's
 * 64 x 256 mask in ~0.43 ms instead of 0.8-1.3 (docs/measurements.md, "Dropout masks").
 */
export function dropoutMask(
  n: number,
  width: number,
  rate: number,
  seedOf: (row: number) => string,
  columns?: ColumnSlice,
): Float32Array {
  const units = columns?.of ?? width;
  const start = columns?.start ?? 0;
  const keep = Math.fround(1 - rate);
  const kept = Math.fround(1 / keep);
  const row = new Float32Array(units);
  const mask = new Float32Array(n * width);
  for (let i = 0; i < n; i++) {
    uniformInto(row, 0, units, seedOf(i));
    for (let j = 0; j < width; j++) mask[i * width + j] = Math.fround(row[start + j] + keep) >= 1 ? kept : 0;
  }
  return mask;
}

/** Index in model.params of the first fully connected layer's kernel (after every conv's kernel and bias). */
export function firstDenseParam(spec: ModelSpec): number {
  return 2 * spec.convs.length;
}

/** The conv stage: images NHWC [n, size, size, 3] -> flattened features [n, features]. */
export function convFeatures(model: AlexNet, images: tf.Tensor4D, hook?: ParamHook): tf.Tensor2D {
  const { spec } = model;
  const p = model.params;
  let i = 0;
  const next = (): tf.Tensor => (hook ? hook(i, p[i++].variable) : p[i++].variable);
  let x: tf.Tensor4D = images;
  for (const c of spec.convs) {
    // The images need no gradient: the native layer then skips that backward pass.
    x = groupedConv(x, next() as tf.Tensor4D, next() as tf.Tensor1D, c, spec.activation, x !== images);
    const lrn = c.lrn ? spec.lrn : null;
    const pool = c.pool ? { filterSize: spec.pool.window, strides: spec.pool.stride, pad: 'valid' as const } : null;
    const fused = lrn !== null && pool !== null ? lrnMaxPool(x, { ...lrn, ...pool }) : null;
    if (fused !== null) {
      x = fused;
      continue;
    }
    if (lrn !== null) {
      const { depthRadius, bias, alpha, beta } = lrn;
      x = tf.localResponseNormalization(x, depthRadius, bias, alpha, beta) as tf.Tensor4D;
    }
    if (pool !== null) x = tf.maxPool(x, pool.filterSize, pool.strides, pool.pad) as tf.Tensor4D;
  }
  return tf.reshape(x, [x.shape[0], -1]) as tf.Tensor2D;
}

/** images NHWC [n, size, size, 3] -> logits [n, classes]. */
export function forward(model: AlexNet, images: tf.Tensor4D, opts: ForwardOptions): tf.Tensor2D {
  const { spec } = model;
  const p = model.params;
  let i = firstDenseParam(spec);
  const hook = opts.paramHook;
  const next = (): tf.Tensor => (hook ? hook(i, p[i++].variable) : p[i++].variable);
  let h = convFeatures(model, images, hook);
  const rate = opts.training ? spec.dropoutRate : 0;
  let dropIndex = 0;
  const drop = (t: tf.Tensor2D) =>
    rate > 0 ? dropoutPerImage(t, rate, opts.dropoutSeed ?? 0, dropIndex++, opts.dropoutKeys) : t;
  for (let l = 0; l < spec.hidden.length; l++) {
    if (spec.dropoutPlacement === 'before') h = drop(h);
    h = dense(h, next() as tf.Tensor2D, next() as tf.Tensor1D, spec.activation);
    if (spec.dropoutPlacement === 'after') h = drop(h);
  }
  return dense(h, next() as tf.Tensor2D, next() as tf.Tensor1D, 'linear');
}

export function disposeModel(model: AlexNet): void {
  for (const p of model.params) p.variable.dispose();
}
