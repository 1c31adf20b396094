/**
 * tfjs kernels that run on the oneDNN addon (src/backend/native/addon/dnnl_addon.cc), for the
 * 'native' backend: a tfjs-backend-cpu instance whose hot kernels are replaced by these.
 *
 * Each kernel reads its inputs' Float32Arrays from the cpu backend's storage, takes the output
 * Float32Array from the backend's pool (storage-pool.ts), and lets the addon fill it in place
 * (no copies). Everything the
 * addon is given is validated here first: dtype float32, rank, layout (NHWC), options oneDNN is
 * not asked to do (dilations, activations other than relu). A failed check is a
 * NativeBackendError naming the kernel, never a call into C++ with a bad buffer (the addon
 * checks sizes again, as a second line).
 */
import * as tf from '@tensorflow/tfjs';
import type {
  BatchMatMulAttrs,
  Conv2DAttrs,
  Conv2DBackpropFilterAttrs,
  Conv2DBackpropInputAttrs,
  KernelConfig,
  KernelFunc,
  LRNAttrs,
  MaxPoolAttrs,
  TensorInfo,
} from '@tensorflow/tfjs';
import { NativeBackendError } from '../../core/errors';
import type { ElementwiseAddon } from './fast-cpu-kernels';
import { outputArray, poolOf, storageOf, type CpuStorageBackend } from './storage-pool';

/** The addon's exports (see addon/dnnl_addon.cc for the parameter layouts). */
export interface DnnlAddon extends ElementwiseAddon {
  conv2dForward(
    params: Int32Array,
    x: Float32Array,
    filter: Float32Array,
    bias: Float32Array | null,
    y: Float32Array,
  ): void;
  conv2dBackwardData(params: Int32Array, dy: Float32Array, filter: Float32Array, dx: Float32Array): void;
  conv2dBackwardFilter(params: Int32Array, x: Float32Array, dy: Float32Array, dw: Float32Array): void;
  convLayerBackward(
    params: Int32Array,
    x: Float32Array,
    w: Float32Array,
    y: Float32Array,
    dy: Float32Array,
    dx: Float32Array | null,
    dw: Float32Array,
    db: Float32Array,
  ): void;
  matMul(params: Int32Array, a: Float32Array, b: Float32Array, bias: Float32Array | null, c: Float32Array): void;
  /** Writes the argmax workspace into `workspace` (maxPoolWorkspaceBytes long) when one is passed. */
  maxPool(params: Int32Array, x: Float32Array, y: Float32Array, workspace: Uint8Array | null): void;
  /** With maxPool's workspace for this x, the backward alone; with null, the forward again first. */
  maxPoolGrad(
    params: Int32Array,
    x: Float32Array,
    dy: Float32Array,
    dx: Float32Array,
    workspace: Uint8Array | null,
  ): void;
  maxPoolWorkspaceBytes(params: Int32Array): number;
  lrn(params: Int32Array, constants: Float32Array, x: Float32Array, y: Float32Array): void;
  lrnGrad(params: Int32Array, constants: Float32Array, x: Float32Array, dy: Float32Array, dx: Float32Array): void;
  /** y = maxPool(lrn(x)); writes the pool's argmax workspace (maxPoolWorkspaceBytes long) when one is passed. */
  lrnMaxPool(
    lrnParams: Int32Array,
    lrnConstants: Float32Array,
    poolParams: Int32Array,
    x: Float32Array,
    y: Float32Array,
    workspace: Uint8Array | null,
  ): void;
  /** With lrnMaxPool's workspace for this x, the backward alone; with null, the forward again first. */
  lrnMaxPoolGrad(
    lrnParams: Int32Array,
    lrnConstants: Float32Array,
    poolParams: Int32Array,
    x: Float32Array,
    dy: Float32Array,
    dx: Float32Array,
    workspace: Uint8Array | null,
  ): void;
  sgdMomentum(
    params: Int32Array,
    constants: Float32Array,
    w: Float32Array,
    v: Float32Array,
    g: Float32Array,
    wOut: Float32Array,
    vOut: Float32Array,
  ): void;
  adam(
    params: Int32Array,
    constants: Float32Array,
    w: Float32Array,
    m: Float32Array,
    v: Float32Array,
    g: Float32Array,
    wOut: Float32Array,
    mOut: Float32Array,
    vOut: Float32Array,
  ): void;
  setThreads(threads: number): void;
  version(): { compiled: string; runtime: string };
  cacheSize(): number;
}

type Activation = 'linear' | 'relu';

function fail(kernel: string, what: string): never {
  throw new NativeBackendError(`native ${kernel}: ${what}`);
}

/** A clear error (never a C++ read past the end) when `t` does not have the shape a kernel computed. */
function expectShape(kernel: string, name: string, t: TensorInfo, shape: number[]): void {
  if (!tf.util.arraysEqual(t.shape, shape))
    fail(kernel, `${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
}

function values(kernel: string, name: string, t: TensorInfo, backend: CpuStorageBackend, rank?: number): Float32Array {
  if (t.dtype !== 'float32') fail(kernel, `${name} is ${t.dtype}, only float32 is supported`);
  if (rank != null && t.shape.length !== rank) fail(kernel, `${name} has rank ${t.shape.length}, expected ${rank}`);
  return storageOf(t, backend) ?? fail(kernel, `${name} is not stored as a Float32Array`);
}

function outputOf(backend: CpuStorageBackend, shape: number[]): { info: TensorInfo; data: Float32Array } {
  const data = outputArray(
    backend,
    shape.reduce((a, b) => a * b, 1),
  );
  return { info: backend.makeTensorInfo(shape, 'float32', data), data };
}

function isOne(v: number | [number, number] | undefined): boolean {
  return v == null || (typeof v === 'number' ? v === 1 : v[0] === 1 && v[1] === 1);
}

function activationOf(kernel: string, activation: string | undefined): Activation {
  if (activation == null || activation === 'linear') return 'linear';
  if (activation === 'relu') return 'relu';
  return fail(kernel, `activation '${activation}' is not supported (linear, relu)`);
}

/**
 * The right/bottom padding that makes oneDNN's output size formula floor((in + padL + padR - k)
 * / s) + 1 give tfjs's output size: tfjs's own when it does, else the exact one (tfjs's 'ceil'
 * rounding, or a 'valid' window that leaves input rows unused).
 */
export function endPadding(
  inSize: number,
  outSize: number,
  kernel: number,
  stride: number,
  padStart: number,
  padEnd: number,
): number {
  const fits = (p: number) => Math.floor((inSize + padStart + p - kernel) / stride) + 1 === outSize;
  if (padEnd >= 0 && fits(padEnd)) return padEnd;
  const exact = (outSize - 1) * stride + kernel - inSize - padStart;
  return Math.max(exact, 0);
}

type Conv2DInfo = tf.backend_util.Conv2DInfo;

/** [N, IH, IW, IC, OH, OW, OC, KH, KW, SH, SW, PT, PL, PB, PR, G, RELU], as the addon reads it. */
export function convParams(info: Conv2DInfo, groups: number, activation: Activation): Int32Array {
  const { top, left, bottom, right } = info.padInfo;
  const pb = endPadding(info.inHeight, info.outHeight, info.filterHeight, info.strideHeight, top, bottom);
  const pr = endPadding(info.inWidth, info.outWidth, info.filterWidth, info.strideWidth, left, right);
  return Int32Array.from([
    info.batchSize,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.outHeight,
    info.outWidth,
    info.outChannels,
    info.filterHeight,
    info.filterWidth,
    info.strideHeight,
    info.strideWidth,
    top,
    left,
    pb,
    pr,
    groups,
    activation === 'relu' ? 1 : 0,
  ]);
}

export interface ConvOptions {
  strides: Conv2DAttrs['strides'];
  pad: Conv2DAttrs['pad'];
  dataFormat: Conv2DAttrs['dataFormat'];
  dilations?: Conv2DAttrs['dilations'];
  dimRoundingMode?: Conv2DAttrs['dimRoundingMode'];
}

/** tfjs's geometry of a convolution; with groups, the filter is [KH, KW, IC / G, OC]. */
export function convInfo(
  kernel: string,
  xShape: number[],
  filterShape: number[],
  o: ConvOptions,
  groups = 1,
): Conv2DInfo {
  if (o.dataFormat === 'NCHW') fail(kernel, 'NCHW is not supported (NHWC only)');
  if (!isOne(o.dilations)) fail(kernel, 'dilations other than 1 are not supported');
  if (xShape.length !== 4 || filterShape.length !== 4) fail(kernel, 'input and filter must be rank 4');
  if (!Number.isInteger(groups) || groups < 1 || filterShape[3] % groups !== 0)
    fail(kernel, `${filterShape[3]} filters do not split into ${groups} groups`);
  if (xShape[3] !== filterShape[2] * groups)
    fail(kernel, `input has ${xShape[3]} channels, the filter expects ${filterShape[2] * groups}`);
  const info = tf.backend_util.computeConv2DInfo(
    [xShape[0], xShape[1], xShape[2], filterShape[2]],
    filterShape as [number, number, number, number],
    o.strides,
    1,
    o.pad,
    o.dimRoundingMode,
    false,
    'channelsLast',
  );
  return { ...info, inChannels: xShape[3], inShape: [xShape[0], xShape[1], xShape[2], xShape[3]] };
}

function biasValues(
  kernel: string,
  bias: TensorInfo | undefined,
  channels: number,
  backend: CpuStorageBackend,
): Float32Array | null {
  if (bias == null) return null;
  if (bias.shape.reduce((a, b) => a * b, 1) !== channels || bias.shape[bias.shape.length - 1] !== channels) {
    fail(kernel, `bias of shape [${bias.shape.join(', ')}] is not supported, expected [${channels}]`);
  }
  return values(kernel, 'bias', bias, backend);
}

interface FusedInputs {
  x: TensorInfo;
  filter: TensorInfo;
  bias?: TensorInfo;
  preluActivationWeights?: TensorInfo;
}

/** Conv2D and FusedConv2D (bias + relu done by oneDNN in the same pass). */
function makeConv2D(kernel: string, addon: DnnlAddon): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { x, filter, bias, preluActivationWeights } = inputs as unknown as FusedInputs;
    const a = attrs as unknown as ConvOptions & { activation?: string };
    if (preluActivationWeights != null) fail(kernel, 'prelu is not supported');
    const activation = activationOf(kernel, a.activation);
    const b = backend as unknown as CpuStorageBackend;
    const info = convInfo(kernel, x.shape, filter.shape, a);
    const xs = values(kernel, 'x', x, b);
    const ws = values(kernel, 'filter', filter, b);
    const bs = biasValues(kernel, bias, info.outChannels, b);
    const out = outputOf(b, info.outShape);
    addon.conv2dForward(convParams(info, 1, activation), xs, ws, bs, out.data);
    return out.info;
  };
}

function makeConv2DBackpropInput(addon: DnnlAddon): KernelFunc {
  const kernel = tf.Conv2DBackpropInput;
  return ({ inputs, backend, attrs }) => {
    const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
    const a = attrs as unknown as Conv2DBackpropInputAttrs;
    const b = backend as unknown as CpuStorageBackend;
    const info = convInfo(kernel, a.inputShape, filter.shape, a);
    expectShape(kernel, 'dy', dy, info.outShape);
    const dys = values(kernel, 'dy', dy, b);
    const ws = values(kernel, 'filter', filter, b);
    const out = outputOf(b, a.inputShape);
    addon.conv2dBackwardData(convParams(info, 1, 'linear'), dys, ws, out.data);
    return out.info;
  };
}

function makeConv2DBackpropFilter(addon: DnnlAddon): KernelFunc {
  const kernel = tf.Conv2DBackpropFilter;
  return ({ inputs, backend, attrs }) => {
    const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
    const a = attrs as unknown as Conv2DBackpropFilterAttrs;
    const b = backend as unknown as CpuStorageBackend;
    const info = convInfo(kernel, x.shape, a.filterShape, a);
    expectShape(kernel, 'dy', dy, info.outShape);
    const xs = values(kernel, 'x', x, b);
    const dys = values(kernel, 'dy', dy, b);
    const out = outputOf(b, a.filterShape);
    addon.conv2dBackwardFilter(convParams(info, 1, 'linear'), xs, dys, out.data);
    return out.info;
  };
}

/**
 * Our own kernels (no tfjs op has them): a whole conv layer, y = act(conv(x, w; groups) + b),
 * and its gradients [dx, dw, db] from x, w, y, dy; see convLayer in backend/ops.ts.
 */
export const CONV_LAYER_KERNEL = 'AlexnetConvLayer';
export const CONV_LAYER_GRAD_KERNEL = 'AlexnetConvLayerGrad';

export interface ConvLayerAttrs {
  strides: number;
  pad: Conv2DAttrs['pad'];
  groups: number;
  activation: Activation;
  /**
   * false for a layer whose input is data (the first layer's images): its gradient is returned
   * as zeros and its pass skipped (for the paper's 11x11/4 conv1 over 3 channels, oneDNN's
   * slowest backward pass of the net).
   */
  inputGradient: boolean;
}

function layerArgs(
  kernel: string,
  x: TensorInfo,
  w: TensorInfo,
  a: ConvLayerAttrs,
): { info: Conv2DInfo; params: Int32Array } {
  const info = convInfo(kernel, x.shape, w.shape, { strides: a.strides, pad: a.pad, dataFormat: 'NHWC' }, a.groups);
  return { info, params: convParams(info, a.groups, activationOf(kernel, a.activation)) };
}

function makeConvLayer(addon: DnnlAddon): KernelFunc {
  const kernel = CONV_LAYER_KERNEL;
  return ({ inputs, backend, attrs }) => {
    const { x, w, b } = inputs as { x: TensorInfo; w: TensorInfo; b: TensorInfo };
    const a = attrs as unknown as ConvLayerAttrs;
    const be = backend as unknown as CpuStorageBackend;
    const { info, params } = layerArgs(kernel, x, w, a);
    const xs = values(kernel, 'x', x, be);
    const ws = values(kernel, 'filter', w, be);
    const bs = biasValues(kernel, b, info.outChannels, be);
    const out = outputOf(be, info.outShape);
    addon.conv2dForward(params, xs, ws, bs, out.data);
    return out.info;
  };
}

function makeConvLayerGrad(addon: DnnlAddon): KernelFunc {
  const kernel = CONV_LAYER_GRAD_KERNEL;
  return ({ inputs, backend, attrs }) => {
    const { x, w, y, dy } = inputs as { x: TensorInfo; w: TensorInfo; y: TensorInfo; dy: TensorInfo };
    const a = attrs as unknown as ConvLayerAttrs;
    const be = backend as unknown as CpuStorageBackend;
    const { info, params } = layerArgs(kernel, x, w, a);
    const outShape = info.outShape.join();
    if (y.shape.join() !== outShape || dy.shape.join() !== outShape)
      fail(kernel, `y and dy must have shape [${info.outShape.join(', ')}]`);
    const dx = outputOf(be, x.shape);
    const dw = outputOf(be, w.shape);
    const db = outputOf(be, [info.outChannels]);
    const dxData = a.inputGradient ? dx.data : null;
    addon.convLayerBackward(
      params,
      values(kernel, 'x', x, be),
      values(kernel, 'filter', w, be),
      values(kernel, 'y', y, be),
      values(kernel, 'dy', dy, be),
      dxData,
      dw.data,
      db.data,
    );
    return [dx.info, dw.info, db.info];
  };
}

/**
 * Every function DnnlAddon declares, for checking a loaded addon: the type makes the list
 * complete (a function added to the interface and not here does not compile).
 */
const ADDON_FUNCTIONS: Readonly<Record<keyof DnnlAddon, true>> = {
  conv2dForward: true,
  conv2dBackwardData: true,
  conv2dBackwardFilter: true,
  convLayerBackward: true,
  matMul: true,
  maxPool: true,
  maxPoolGrad: true,
  maxPoolWorkspaceBytes: true,
  lrn: true,
  lrnGrad: true,
  lrnMaxPool: true,
  lrnMaxPoolGrad: true,
  sgdMomentum: true,
  adam: true,
  setThreads: true,
  version: true,
  cacheSize: true,
  binary: true,
  unary: true,
};

/** The functions this checkout calls that `addon` lacks: a build from older sources. */
export function missingAddonFunctions(addon: object): string[] {
  const exported = addon as Record<string, unknown>;
  return Object.keys(ADDON_FUNCTIONS).filter((name) => typeof exported[name] !== 'function');
}

/** Shapes of a (batched) product: outer dims flattened; a batch of 1 broadcasts. */
export interface MatMulGeometry {
  params: Int32Array;
  outShape: number[];
}

export function matMulGeometry(
  kernel: string,
  aShape: number[],
  bShape: number[],
  transposeA: boolean,
  transposeB: boolean,
  activation: Activation,
): MatMulGeometry {
  if (aShape.length < 2 || bShape.length < 2) fail(kernel, 'operands must be at least rank 2');
  const outerA = aShape.slice(0, -2);
  const outerB = bShape.slice(0, -2);
  const batchA = outerA.reduce((x, y) => x * y, 1);
  const batchB = outerB.reduce((x, y) => x * y, 1);
  const [ra, ca] = aShape.slice(-2);
  const [rb, cb] = bShape.slice(-2);
  const m = transposeA ? ca : ra;
  const k = transposeA ? ra : ca;
  const kb = transposeB ? cb : rb;
  const n = transposeB ? rb : cb;
  if (k !== kb) fail(kernel, `inner dimensions differ: ${k} and ${kb}`);
  let outer: number[];
  if (outerA.join() === outerB.join()) outer = outerA;
  else if (batchB === 1 && outerB.length <= outerA.length) outer = outerA;
  else if (batchA === 1 && outerA.length <= outerB.length) outer = outerB;
  else
    return fail(
      kernel,
      `batch shapes [${outerA.join(', ')}] and [${outerB.join(', ')}] do not broadcast (equal or 1 only)`,
    );
  return {
    params: Int32Array.from([
      batchA,
      batchB,
      m,
      k,
      n,
      transposeA ? 1 : 0,
      transposeB ? 1 : 0,
      activation === 'relu' ? 1 : 0,
    ]),
    outShape: [...outer, m, n],
  };
}

/** BatchMatMul and _FusedMatMul (bias + relu fused). */
function makeMatMul(kernel: string, addon: DnnlAddon): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { a, b, bias, preluActivationWeights } = inputs as {
      a: TensorInfo;
      b: TensorInfo;
      bias?: TensorInfo;
      preluActivationWeights?: TensorInfo;
    };
    const at = attrs as unknown as BatchMatMulAttrs & { activation?: string };
    if (preluActivationWeights != null) fail(kernel, 'prelu is not supported');
    const g = matMulGeometry(
      kernel,
      a.shape,
      b.shape,
      at.transposeA,
      at.transposeB,
      activationOf(kernel, at.activation),
    );
    const be = backend as unknown as CpuStorageBackend;
    const as = values(kernel, 'a', a, be);
    const bs = values(kernel, 'b', b, be);
    const biasValuesOrNull = biasValues(kernel, bias, g.outShape[g.outShape.length - 1], be);
    const out = outputOf(be, g.outShape);
    addon.matMul(g.params, as, bs, biasValuesOrNull, out.data);
    return out.info;
  };
}

/** [N, IH, IW, C, OH, OW, KH, KW, SH, SW, PT, PL, PB, PR] for the addon's pooling. */
export function poolParams(
  kernel: string,
  xShape: number[],
  a: MaxPoolAttrs,
): { params: Int32Array; outShape: number[] } {
  if (xShape.length !== 4) fail(kernel, 'input must be rank 4 (NHWC)');
  const info = tf.backend_util.computePool2DInfo(
    xShape as [number, number, number, number],
    a.filterSize,
    a.strides,
    1,
    a.pad,
    a.dimRoundingMode,
  );
  const { top, left, bottom, right } = info.padInfo;
  const pb = endPadding(info.inHeight, info.outHeight, info.filterHeight, info.strideHeight, top, bottom);
  const pr = endPadding(info.inWidth, info.outWidth, info.filterWidth, info.strideWidth, left, right);
  return {
    params: Int32Array.from([
      info.batchSize,
      info.inHeight,
      info.inWidth,
      info.inChannels,
      info.outHeight,
      info.outWidth,
      info.filterHeight,
      info.filterWidth,
      info.strideHeight,
      info.strideWidth,
      top,
      left,
      pb,
      pr,
    ]),
    outShape: info.outShape,
  };
}

/** A max pool's argmax workspace (MaxPool's or the LRN + max pool op's), its input and parameters. */
interface PoolWorkspace {
  input: TensorInfo['dataId'];
  /** What the argmax was taken over: the pool's parameters, and the LRN's before it if fused. */
  params: string;
  bytes: Uint8Array;
}

/**
 * The max pools' workspaces for their gradients, keyed by the forward's output, which tfjs hands
 * back to the gradient (MaxPoolGrad's `output`, the LRN + max pool gradient's `y`): the backward
 * then skips re-running the forward. Safe because a tensor's data does not change while its dataId
 * lives (no kernel writes an activation in place), and a gradient whose input or parameters
 * differ from the forward's recomputes. A WeakMap, so a workspace goes with its output tensor.
 */
type PoolWorkspaces = WeakMap<TensorInfo['dataId'], PoolWorkspace>;

/** A new argmax workspace for the pool output `output` computed from `input`, kept for its gradient. */
function newWorkspace(
  addon: DnnlAddon,
  workspaces: PoolWorkspaces,
  backend: object,
  output: TensorInfo,
  input: TensorInfo,
  pool: Int32Array,
  params: string,
): Uint8Array {
  const byteLength = addon.maxPoolWorkspaceBytes(pool);
  const bytes = poolOf(backend)?.scratchFor(output.dataId, byteLength) ?? new Uint8Array(byteLength);
  workspaces.set(output.dataId, { input: input.dataId, params, bytes });
  return bytes;
}

/** The workspace kept for `output` if it was computed from this input with these parameters, else null. */
function savedWorkspace(
  workspaces: PoolWorkspaces,
  output: TensorInfo | undefined,
  input: TensorInfo,
  params: string,
): Uint8Array | null {
  const saved = output != null ? workspaces.get(output.dataId) : undefined;
  return saved !== undefined && saved.input === input.dataId && saved.params === params ? saved.bytes : null;
}

function makeMaxPool(addon: DnnlAddon, workspaces: PoolWorkspaces): KernelFunc {
  const kernel = tf.MaxPool;
  return ({ inputs, backend, attrs }) => {
    const { x } = inputs as { x: TensorInfo };
    const b = backend as unknown as CpuStorageBackend;
    const p = poolParams(kernel, x.shape, attrs as unknown as MaxPoolAttrs);
    const xs = values(kernel, 'x', x, b);
    const out = outputOf(b, p.outShape);
    const bytes = newWorkspace(addon, workspaces, backend, out.info, x, p.params, p.params.join());
    addon.maxPool(p.params, xs, out.data, bytes);
    return out.info;
  };
}

function makeMaxPoolGrad(addon: DnnlAddon, workspaces: PoolWorkspaces): KernelFunc {
  const kernel = tf.MaxPoolGrad;
  return ({ inputs, backend, attrs }) => {
    const { dy, input, output } = inputs as { dy: TensorInfo; input: TensorInfo; output?: TensorInfo };
    const b = backend as unknown as CpuStorageBackend;
    const p = poolParams(kernel, input.shape, attrs as unknown as MaxPoolAttrs);
    expectShape(kernel, 'dy', dy, p.outShape);
    const xs = values(kernel, 'input', input, b);
    const dys = values(kernel, 'dy', dy, b);
    const out = outputOf(b, input.shape);
    addon.maxPoolGrad(p.params, xs, dys, out.data, savedWorkspace(workspaces, output, input, p.params.join()));
    return out.info;
  };
}

function lrnArgs(kernel: string, shape: number[], a: LRNAttrs): { params: Int32Array; constants: Float32Array } {
  if (shape.length !== 4) fail(kernel, 'input must be rank 4 (NHWC)');
  if (!Number.isInteger(a.depthRadius) || a.depthRadius < 0)
    fail(kernel, `depthRadius ${a.depthRadius} must be a non-negative integer`);
  return {
    params: Int32Array.from([...shape, a.depthRadius]),
    constants: Float32Array.from([a.bias, a.alpha, a.beta]),
  };
}

function makeLrn(addon: DnnlAddon): KernelFunc {
  const kernel = tf.LRN;
  return ({ inputs, backend, attrs }) => {
    const { x } = inputs as { x: TensorInfo };
    const b = backend as unknown as CpuStorageBackend;
    const l = lrnArgs(kernel, x.shape, attrs as unknown as LRNAttrs);
    const xs = values(kernel, 'x', x, b);
    const out = outputOf(b, x.shape);
    addon.lrn(l.params, l.constants, xs, out.data);
    return out.info;
  };
}

function makeLrnGrad(addon: DnnlAddon): KernelFunc {
  const kernel = tf.LRNGrad;
  return ({ inputs, backend, attrs }) => {
    const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
    const b = backend as unknown as CpuStorageBackend;
    const l = lrnArgs(kernel, x.shape, attrs as unknown as LRNAttrs);
    if (dy.shape.join() !== x.shape.join()) fail(kernel, 'dy and x differ in shape');
    const xs = values(kernel, 'x', x, b);
    const dys = values(kernel, 'dy', dy, b);
    const out = outputOf(b, x.shape);
    addon.lrnGrad(l.params, l.constants, xs, dys, out.data);
    return out.info;
  };
}

/**
 * Our own kernels (no tfjs op has them): an LRN and the max pool after it, y = maxPool(lrn(x)),
 * and its gradient dx from x, y, dy; see lrnMaxPool in backend/ops.ts.
 */
export const LRN_MAX_POOL_KERNEL = 'AlexnetLrnMaxPool';
export const LRN_MAX_POOL_GRAD_KERNEL = 'AlexnetLrnMaxPoolGrad';

/** tfjs's LRN and MaxPool attributes together. */
export type LrnMaxPoolAttrs = LRNAttrs & MaxPoolAttrs;

interface LrnMaxPoolArgs {
  lrn: { params: Int32Array; constants: Float32Array };
  pool: { params: Int32Array; outShape: number[] };
  /** The workspace's key: an argmax over lrn(x), never taken for one over x. */
  key: string;
}

function lrnMaxPoolArgs(kernel: string, shape: number[], a: LrnMaxPoolAttrs): LrnMaxPoolArgs {
  const lrn = lrnArgs(kernel, shape, a);
  const pool = poolParams(kernel, shape, a);
  return { lrn, pool, key: `lrn ${lrn.params.join()} ${lrn.constants.join()}; pool ${pool.params.join()}` };
}

function makeLrnMaxPool(addon: DnnlAddon, workspaces: PoolWorkspaces): KernelFunc {
  const kernel = LRN_MAX_POOL_KERNEL;
  return ({ inputs, backend, attrs }) => {
    const { x } = inputs as { x: TensorInfo };
    const b = backend as unknown as CpuStorageBackend;
    const { lrn, pool, key } = lrnMaxPoolArgs(kernel, x.shape, attrs as unknown as LrnMaxPoolAttrs);
    const xs = values(kernel, 'x', x, b);
    const out = outputOf(b, pool.outShape);
    const bytes = newWorkspace(addon, workspaces, backend, out.info, x, pool.params, key);
    addon.lrnMaxPool(lrn.params, lrn.constants, pool.params, xs, out.data, bytes);
    return out.info;
  };
}

function makeLrnMaxPoolGrad(addon: DnnlAddon, workspaces: PoolWorkspaces): KernelFunc {
  const kernel = LRN_MAX_POOL_GRAD_KERNEL;
  return ({ inputs, backend, attrs }) => {
    const { x, y, dy } = inputs as { x: TensorInfo; y: TensorInfo; dy: TensorInfo };
    const b = backend as unknown as CpuStorageBackend;
    const { lrn, pool, key } = lrnMaxPoolArgs(kernel, x.shape, attrs as unknown as LrnMaxPoolAttrs);
    expectShape(kernel, 'y', y, pool.outShape);
    expectShape(kernel, 'dy', dy, pool.outShape);
    const xs = values(kernel, 'x', x, b);
    const dys = values(kernel, 'dy', dy, b);
    const out = outputOf(b, x.shape);
    const saved = savedWorkspace(workspaces, y, x, key);
    addon.lrnMaxPoolGrad(lrn.params, lrn.constants, pool.params, xs, dys, out.data, saved);
    return out.info;
  };
}

/** Our own kernel (no tfjs op has it): the paper's SGD step, see sgdMomentumStep in ../ops.ts. */
export const SGD_MOMENTUM_KERNEL = 'AlexnetSgdMomentum';

export interface SgdMomentumAttrs {
  momentum: number;
  /** lr x the gradient's scale (1 / global batch). */
  lrScaled: number;
  /** weight decay x lr (0 for biases). */
  decayLr: number;
}

function sgdShapes(kernel: string, w: TensorInfo, v: TensorInfo, g: TensorInfo): void {
  if (v.shape.join() !== w.shape.join() || g.shape.join() !== w.shape.join())
    fail(kernel, 'weights, velocity and gradient differ in shape');
}

const sgdConstants = (a: SgdMomentumAttrs): Float32Array => Float32Array.of(a.momentum, a.lrScaled, a.decayLr);

/** One pass over w, v, g: v' = momentum v - decayLr w - lrScaled g; w' = w + v'. Returns [w', v']. */
function makeSgdMomentum(addon: DnnlAddon): KernelFunc {
  const kernel = SGD_MOMENTUM_KERNEL;
  return ({ inputs, backend, attrs }) => {
    const { w, v, g } = inputs as { w: TensorInfo; v: TensorInfo; g: TensorInfo };
    const a = attrs as unknown as SgdMomentumAttrs;
    const b = backend as unknown as CpuStorageBackend;
    sgdShapes(kernel, w, v, g);
    const ws = values(kernel, 'w', w, b);
    const vs = values(kernel, 'v', v, b);
    const gs = values(kernel, 'g', g, b);
    const wOut = outputOf(b, w.shape);
    const vOut = outputOf(b, w.shape);
    addon.sgdMomentum(Int32Array.of(ws.length), sgdConstants(a), ws, vs, gs, wOut.data, vOut.data);
    return [wOut.info, vOut.info];
  };
}

/** Our own kernel: one Adam step, see adamStep in ../ops.ts. Returns [w', m', v']. */
export const ADAM_KERNEL = 'AlexnetAdam';

export interface AdamAttrs {
  beta1: number;
  beta2: number;
  epsilon: number;
  /** lr x the bias corrections. */
  stepSize: number;
  /** 1 / global batch. */
  gradScale: number;
  /** L2 weight decay added to the gradient (0 for biases). */
  decay: number;
}

function adamShapes(kernel: string, w: TensorInfo, m: TensorInfo, v: TensorInfo, g: TensorInfo): void {
  if ([m, v, g].some((t) => t.shape.join() !== w.shape.join()))
    fail(kernel, 'weights, moments and gradient differ in shape');
}

const adamConstants = (a: AdamAttrs): Float32Array =>
  Float32Array.of(a.beta1, 1 - a.beta1, a.beta2, 1 - a.beta2, a.epsilon, a.stepSize, a.gradScale, a.decay);

function makeAdam(addon: DnnlAddon): KernelFunc {
  const kernel = ADAM_KERNEL;
  return ({ inputs, backend, attrs }) => {
    const { w, m, v, g } = inputs as { w: TensorInfo; m: TensorInfo; v: TensorInfo; g: TensorInfo };
    const a = attrs as unknown as AdamAttrs;
    const b = backend as unknown as CpuStorageBackend;
    adamShapes(kernel, w, m, v, g);
    const [ws, ms, vs, gs] = [
      values(kernel, 'w', w, b),
      values(kernel, 'm', m, b),
      values(kernel, 'v', v, b),
      values(kernel, 'g', g, b),
    ];
    const [wOut, mOut, vOut] = [outputOf(b, w.shape), outputOf(b, w.shape), outputOf(b, w.shape)];
    addon.adam(Int32Array.of(ws.length), adamConstants(a), ws, ms, vs, gs, wOut.data, mOut.data, vOut.data);
    return [wOut.info, mOut.info, vOut.info];
  };
}

/**
 * The optimizer's state that an update may write in place: the parameter and its slots, each the
 * one holder of a pool buffer nobody outside the backend has seen (storage-pool.ts), and the
 * gradient, which is only read.
 */
function exclusiveStorage(backend: CpuStorageBackend, written: TensorInfo[]): Float32Array[] | null {
  const pool = poolOf(backend);
  if (pool == null) return null;
  const arrays: Float32Array[] = [];
  for (const t of written) {
    const entry = backend.data.get(t.dataId);
    if (entry == null || entry.refCount !== 1 || !pool.exclusive(entry.values)) return null;
    arrays.push(entry.values as Float32Array);
  }
  return arrays;
}

/**
 * The optimizer updates written into the parameters' and slots' own buffers, where they are
 * exclusive (else false, and the caller runs the out-of-place kernel once, whose outputs are
 * fresh pool buffers: the next step is in place again). Why: out of place, a paper step wrote
 * two new 244 MB buffers (weights, velocity) and page-faulted them in, 15% of the step.
 */
export interface InPlaceUpdates {
  sgdMomentum(backend: object, w: TensorInfo, v: TensorInfo, g: TensorInfo, attrs: SgdMomentumAttrs): boolean;
  adam(backend: object, w: TensorInfo, m: TensorInfo, v: TensorInfo, g: TensorInfo, attrs: AdamAttrs): boolean;
}

export function inPlaceUpdates(addon: DnnlAddon): InPlaceUpdates {
  return {
    sgdMomentum(backend, w, v, g, a) {
      const b = backend as CpuStorageBackend;
      sgdShapes(SGD_MOMENTUM_KERNEL, w, v, g);
      const state = exclusiveStorage(b, [w, v]);
      if (state == null) return false;
      const [ws, vs] = state;
      addon.sgdMomentum(
        Int32Array.of(ws.length),
        sgdConstants(a),
        ws,
        vs,
        values(SGD_MOMENTUM_KERNEL, 'g', g, b),
        ws,
        vs,
      );
      return true;
    },
    adam(backend, w, m, v, g, a) {
      const b = backend as CpuStorageBackend;
      adamShapes(ADAM_KERNEL, w, m, v, g);
      const state = exclusiveStorage(b, [w, m, v]);
      if (state == null) return false;
      const [ws, ms, vs] = state;
      addon.adam(Int32Array.of(ws.length), adamConstants(a), ws, ms, vs, values(ADAM_KERNEL, 'g', g, b), ws, ms, vs);
      return true;
    },
  };
}

/** The kernels the addon provides, for the given backend name. */
export function nativeKernelConfigs(addon: DnnlAddon, backendName: string): KernelConfig[] {
  const poolWorkspaces: PoolWorkspaces = new WeakMap();
  const kernels: [string, KernelFunc][] = [
    [tf.Conv2D, makeConv2D(tf.Conv2D, addon)],
    [tf.FusedConv2D, makeConv2D(tf.FusedConv2D, addon)],
    [tf.Conv2DBackpropInput, makeConv2DBackpropInput(addon)],
    [tf.Conv2DBackpropFilter, makeConv2DBackpropFilter(addon)],
    [tf.BatchMatMul, makeMatMul(tf.BatchMatMul, addon)],
    [tf._FusedMatMul, makeMatMul(tf._FusedMatMul, addon)],
    [tf.MaxPool, makeMaxPool(addon, poolWorkspaces)],
    [tf.MaxPoolGrad, makeMaxPoolGrad(addon, poolWorkspaces)],
    [tf.LRN, makeLrn(addon)],
    [tf.LRNGrad, makeLrnGrad(addon)],
    [LRN_MAX_POOL_KERNEL, makeLrnMaxPool(addon, poolWorkspaces)],
    [LRN_MAX_POOL_GRAD_KERNEL, makeLrnMaxPoolGrad(addon, poolWorkspaces)],
    [SGD_MOMENTUM_KERNEL, makeSgdMomentum(addon)],
    [ADAM_KERNEL, makeAdam(addon)],
    [CONV_LAYER_KERNEL, makeConvLayer(addon)],
    [CONV_LAYER_GRAD_KERNEL, makeConvLayerGrad(addon)],
  ];
  return kernels.map(([kernelName, kernelFunc]) => ({ kernelName, backendName, kernelFunc }));
}
