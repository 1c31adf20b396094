/**
 * Reads an AlexNet-shaped ONNX graph (ours, or torchvision's from torch.onnx.export) into its
 * layers in order, then fits them to a preset: each layer's weight shape, stride, padding,
 * groups, LRN and pooling are checked, and the weights converted to our (tfjs) layouts.
 *
 * What torch 1.13 emits for torchvision.models.alexnet: Conv/Relu/MaxPool x5, AveragePool with
 * a 1x1 kernel and stride (AdaptiveAvgPool2d((6, 6)) on 6x6 maps: the identity), Flatten, and
 * Gemm (transB=1) with Relu. Other exporters write Linear as MatMul + Add, weights as Constant
 * nodes, or float_data instead of raw_data: all read here. Anything else is named in a
 * ModelFileError.
 */
import { ModelFileError } from '../../core/errors';
import type { ModelSpec } from '../presets';
import { attribute, decodeModel, type OnnxNode, type OnnxTensor } from './onnx-proto';
import { convFromOnnx, denseFromOnnx, transpose2d } from './layouts';
import { convGeometry, flattenedMaps, type NamedWeights } from './export-onnx';

export interface OnnxConv {
  node: string;
  /** ONNX layout [out, in/groups, kh, kw]. */
  weight: OnnxTensor;
  bias: Float32Array;
  groups: number;
  strides: number[];
  /** [top, left, bottom, right]. */
  pads: number[];
  lrn: { size: number; alpha: number; beta: number; bias: number } | null;
  pool: { kernel: number[]; strides: number[] } | null;
}

export interface OnnxDense {
  node: string;
  /** [out, in], as Gemm with transB=1 (a MatMul's [in, out] is transposed on reading). */
  weight: Float32Array;
  inUnits: number;
  outUnits: number;
  bias: Float32Array;
}

/** The layers of an AlexNet-shaped graph, in order. */
export interface OnnxNetwork {
  convs: OnnxConv[];
  denses: OnnxDense[];
  activation: 'relu' | 'tanh' | null;
}

const SUPPORTED =
  'Conv, Relu, LRN, MaxPool, AveragePool (1x1, the identity), Flatten, Reshape, Gemm, MatMul + Add, Dropout, Identity, Constant, Softmax';

const ints = (node: OnnxNode, name: string, fallback: number[]): number[] => {
  const a = attribute(node, name);
  return a?.type === 7 ? a.ints : fallback;
};
const int = (node: OnnxNode, name: string, fallback: number): number => {
  const a = attribute(node, name);
  return a?.type === 2 ? a.i : fallback;
};
const float = (node: OnnxNode, name: string, fallback: number): number => {
  const a = attribute(node, name);
  return a?.type === 1 ? a.f : fallback;
};

function unsupported(node: OnnxNode, why: string): ModelFileError {
  return new ModelFileError(`ONNX node '${node.name}' (${node.opType}): ${why}`);
}

/** Walks the graph as one path of layers from the input, collecting each layer's weights and options. */
class GraphWalk {
  readonly consts = new Map<string, OnnxTensor>();
  readonly net: OnnxNetwork = { convs: [], denses: [], activation: null };
  /** The tensor the next layer must read: AlexNet is one path, no branches. */
  current: string;
  /** A MatMul waiting for its Add (the bias). */
  private pendingMatMul = false;

  constructor(initializers: OnnxTensor[], input: string) {
    for (const t of initializers) this.consts.set(t.name, t);
    this.current = input;
  }

  constant(node: OnnxNode, name: string | undefined, what: string): OnnxTensor {
    const t = name === undefined ? undefined : this.consts.get(name);
    if (t === undefined)
      throw unsupported(node, `its ${what} '${name ?? ''}' is not a constant (initializer or Constant node)`);
    return t;
  }

  /** The node's data input must be the path's current tensor; its output becomes the current one. */
  follow(node: OnnxNode, dataInput: string): void {
    if (dataInput !== this.current)
      throw unsupported(
        node,
        `it reads '${dataInput}', not the previous layer's output '${this.current}': the importer reads a single chain of layers`,
      );
    this.current = node.outputs[0];
  }

  lastConv(node: OnnxNode): OnnxConv {
    const c = this.net.convs.at(-1);
    if (c === undefined || this.net.denses.length > 0) throw unsupported(node, 'it is not after a convolution');
    return c;
  }

  visit(node: OnnxNode): void {
    if (node.domain !== '' && node.domain !== 'ai.onnx')
      throw unsupported(node, `operator domain '${node.domain}' is not standard ONNX`);
    const input = node.inputs[0];
    switch (node.opType) {
      case 'Constant': {
        const value = attribute(node, 'value');
        if (value?.type !== 4) throw unsupported(node, 'only a tensor-valued Constant is supported');
        this.consts.set(node.outputs[0], { ...value.t, name: node.outputs[0] });
        return;
      }
      case 'Identity':
        if (this.consts.has(input)) this.consts.set(node.outputs[0], this.constant(node, input, 'input'));
        else this.follow(node, input);
        return;
      case 'Conv':
        return this.conv(node);
      case 'Relu':
      case 'Tanh':
        this.follow(node, input);
        this.net.activation = node.opType === 'Relu' ? 'relu' : 'tanh';
        return;
      case 'LRN':
        this.follow(node, input);
        this.lastConv(node).lrn = {
          size: int(node, 'size', 0),
          alpha: float(node, 'alpha', 1e-4),
          beta: float(node, 'beta', 0.75),
          bias: float(node, 'bias', 1),
        };
        return;
      case 'MaxPool':
        return this.maxPool(node);
      case 'AveragePool': {
        const identity =
          ints(node, 'kernel_shape', []).every((k) => k === 1) &&
          ints(node, 'strides', [1, 1]).every((s) => s === 1) &&
          ints(node, 'pads', [0, 0, 0, 0]).every((p) => p === 0);
        if (!identity)
          throw unsupported(
            node,
            'only a 1x1 average pool (the identity) is supported: export at the input size whose last maps are already the pooled size (224 px for torchvision)',
          );
        return this.follow(node, input);
      }
      case 'Flatten':
        if (int(node, 'axis', 1) !== 1) throw unsupported(node, 'only axis 1 is supported');
        return this.follow(node, input);
      case 'Reshape':
      case 'Dropout':
      case 'Softmax':
        return this.follow(node, input);
      case 'Gemm':
        return this.gemm(node);
      case 'MatMul':
        return this.matMul(node);
      case 'Add':
        return this.addBias(node);
      default:
        throw unsupported(node, `operator not supported; an AlexNet graph may use ${SUPPORTED}`);
    }
  }

  private conv(node: OnnxNode): void {
    this.follow(node, node.inputs[0]);
    if (ints(node, 'dilations', [1, 1]).some((d) => d !== 1))
      throw unsupported(node, 'dilated convolution is not supported');
    const autoPad = attribute(node, 'auto_pad');
    if (autoPad?.type === 3 && autoPad.s !== 'NOTSET')
      throw unsupported(node, `auto_pad ${autoPad.s} is not supported: export with explicit pads`);
    const weight = this.constant(node, node.inputs[1], 'weight');
    const out = weight.dims[0];
    this.net.convs.push({
      node: node.name,
      weight,
      bias: node.inputs[2] ? floats(this.constant(node, node.inputs[2], 'bias')) : new Float32Array(out),
      groups: int(node, 'group', 1),
      strides: ints(node, 'strides', [1, 1]),
      pads: ints(node, 'pads', [0, 0, 0, 0]),
      lrn: null,
      pool: null,
    });
  }

  private maxPool(node: OnnxNode): void {
    this.follow(node, node.inputs[0]);
    if (ints(node, 'pads', [0, 0, 0, 0]).some((p) => p !== 0) || int(node, 'ceil_mode', 0) !== 0)
      throw unsupported(node, 'only unpadded max-pooling with ceil_mode 0 is supported');
    this.lastConv(node).pool = { kernel: ints(node, 'kernel_shape', []), strides: ints(node, 'strides', [1, 1]) };
  }

  private gemm(node: OnnxNode): void {
    this.follow(node, node.inputs[0]);
    if (int(node, 'transA', 0) !== 0 || float(node, 'alpha', 1) !== 1 || float(node, 'beta', 1) !== 1)
      throw unsupported(node, 'only Gemm with transA=0, alpha=1 and beta=1 is supported');
    const b = this.constant(node, node.inputs[1], 'weight');
    const [rows, cols] = b.dims;
    const transB = int(node, 'transB', 0) === 1;
    const [outUnits, inUnits] = transB ? [rows, cols] : [cols, rows];
    this.net.denses.push({
      node: node.name,
      weight: transB ? floats(b) : transpose2d(floats(b), rows, cols),
      inUnits,
      outUnits,
      bias: node.inputs[2] ? floats(this.constant(node, node.inputs[2], 'bias')) : new Float32Array(outUnits),
    });
  }

  private matMul(node: OnnxNode): void {
    this.follow(node, node.inputs[0]);
    const b = this.constant(node, node.inputs[1], 'weight');
    const [inUnits, outUnits] = b.dims;
    const weight = transpose2d(floats(b), inUnits, outUnits);
    this.net.denses.push({ node: node.name, weight, inUnits, outUnits, bias: new Float32Array(outUnits) });
    this.pendingMatMul = true;
  }

  /** The bias of a MatMul + Add pair. */
  private addBias(node: OnnxNode): void {
    const [a, b] = node.inputs;
    const dataInput = this.consts.has(a) ? b : a;
    const biasName = dataInput === a ? b : a;
    if (!this.pendingMatMul) throw unsupported(node, 'an Add is supported only as the bias after a MatMul');
    this.follow(node, dataInput);
    const dense = this.net.denses[this.net.denses.length - 1];
    const bias = floats(this.constant(node, biasName, 'bias'));
    if (bias.length !== dense.outUnits)
      throw unsupported(node, `its bias has ${bias.length} values, the MatMul ${dense.outUnits} outputs`);
    dense.bias = bias;
    this.pendingMatMul = false;
  }
}

function floats(t: OnnxTensor): Float32Array {
  if (t.floats === undefined) throw new ModelFileError(`tensor '${t.name}' is not float32`);
  return t.floats;
}

/** The layers of an ONNX file's graph, in order. */
export function readOnnxNetwork(bytes: Uint8Array): OnnxNetwork {
  const { graph } = decodeModel(bytes);
  const initializerNames = new Set(graph.initializers.map((t) => t.name));
  // Older exporters list the initializers among the inputs too: the image is the one that is not one.
  const input = graph.inputs.find((i) => !initializerNames.has(i.name));
  if (input === undefined) throw new ModelFileError('the ONNX graph has no image input');
  const walk = new GraphWalk(graph.initializers, input.name);
  for (const node of graph.nodes) walk.visit(node);
  if (walk.net.convs.length === 0 || walk.net.denses.length === 0)
    throw new ModelFileError(
      `the ONNX graph has ${walk.net.convs.length} Conv and ${walk.net.denses.length} Gemm/MatMul layers: not an AlexNet`,
    );
  return walk.net;
}

const shape = (dims: readonly number[]) => `[${dims.join(', ')}]`;
const close = (a: number, b: number) => Math.abs(a - b) <= 1e-6 * Math.max(Math.abs(a), Math.abs(b));

/** The first difference between one conv layer of the file and the preset's, or null. */
function convMismatch(c: OnnxConv, spec: ModelSpec, k: number, channelsIn: number): string | null {
  const s = spec.convs[k];
  const want = [s.filters, channelsIn / s.groups, s.kernel, s.kernel];
  const geometry = convGeometry(spec)[k];
  const [begin, end] = geometry.pads;
  if (shape(c.weight.dims) !== shape(want))
    return `${s.name}: the file's weight is ${shape(c.weight.dims)}, preset ${spec.preset}'s is ${shape(want)}`;
  if (c.groups !== s.groups) return `${s.name}: the file has ${c.groups} groups, preset ${spec.preset} ${s.groups}`;
  if (shape(c.strides) !== shape([s.stride, s.stride]))
    return `${s.name}: the file's strides are ${shape(c.strides)}, preset ${spec.preset}'s ${shape([s.stride, s.stride])}`;
  if (shape(c.pads) !== shape([begin, begin, end, end]))
    return `${s.name}: the file's pads are ${shape(c.pads)}, preset ${spec.preset}'s ${shape([begin, begin, end, end])} at ${geometry.inSize} px`;
  const lrn = s.lrn && spec.lrn;
  if ((c.lrn !== null) !== Boolean(lrn))
    return `${s.name}: the file ${c.lrn ? 'has' : 'has no'} LRN, preset ${spec.preset} ${lrn ? 'has' : 'has none'}`;
  if (c.lrn && spec.lrn) {
    const size = 2 * spec.lrn.depthRadius + 1;
    const ours = { size, alpha: spec.lrn.alpha * size, beta: spec.lrn.beta, bias: spec.lrn.bias };
    if (
      c.lrn.size !== size ||
      !close(c.lrn.alpha, ours.alpha) ||
      !close(c.lrn.beta, ours.beta) ||
      !close(c.lrn.bias, ours.bias)
    )
      return `${s.name}/lrn: the file's LRN is ${JSON.stringify(c.lrn)}, preset ${spec.preset}'s ${JSON.stringify(ours)} (ONNX alpha, divided by size when applied)`;
  }
  const pool = s.pool
    ? { kernel: [spec.pool.window, spec.pool.window], strides: [spec.pool.stride, spec.pool.stride] }
    : null;
  if (JSON.stringify(c.pool) !== JSON.stringify(pool))
    return `${s.name}/pool: the file's max-pool is ${JSON.stringify(c.pool)}, preset ${spec.preset}'s ${JSON.stringify(pool)}`;
  return null;
}

/**
 * The first layer where the file differs from the spec, named with both shapes; null when every
 * layer fits. fc8's class count is free (the head may be replaced).
 */
export function onnxMismatch(net: OnnxNetwork, spec: ModelSpec): string | null {
  if (net.convs.length !== spec.convs.length)
    return `the file has ${net.convs.length} conv layers, preset ${spec.preset} ${spec.convs.length}`;
  let channels = 3;
  for (let k = 0; k < spec.convs.length; k++) {
    const m = convMismatch(net.convs[k], spec, k, channels);
    if (m !== null) return m;
    channels = spec.convs[k].filters;
  }
  if (net.activation !== null && net.activation !== spec.activation)
    return `the file's activation is ${net.activation}, preset ${spec.preset}'s ${spec.activation}`;
  const names = [...spec.hidden.map((h) => h.name), 'fc8'];
  if (net.denses.length !== names.length)
    return `the file has ${net.denses.length} fully connected layers, preset ${spec.preset} ${names.length}`;
  const maps = flattenedMaps(spec);
  let units = maps.height * maps.width * maps.channels;
  for (let k = 0; k < names.length; k++) {
    const d = net.denses[k];
    const out = k < spec.hidden.length ? spec.hidden[k].units : d.outUnits;
    if (d.inUnits !== units || d.outUnits !== out)
      return `${names[k]}: the file's weight is ${shape([d.outUnits, d.inUnits])}, preset ${spec.preset}'s is ${shape([out, units])} ([out, in])`;
    units = out;
  }
  return null;
}

/** The file's weights by our parameter names in our layouts, for a spec it fits (onnxMismatch null). */
export function onnxWeights(net: OnnxNetwork, spec: ModelSpec): NamedWeights {
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  spec.convs.forEach((s, k) => {
    const c = net.convs[k];
    const [out, cin, kh, kw] = c.weight.dims;
    weights.set(`${s.name}/kernel`, { shape: [kh, kw, cin, out], data: convFromOnnx(floats(c.weight), c.weight.dims) });
    weights.set(`${s.name}/bias`, { shape: [out], data: c.bias });
  });
  const maps = flattenedMaps(spec);
  [...spec.hidden.map((h) => h.name), 'fc8'].forEach((name, k) => {
    const d = net.denses[k];
    const data = denseFromOnnx(d.weight, d.inUnits, d.outUnits, k === 0 ? maps : null);
    weights.set(`${name}/kernel`, { shape: [d.inUnits, d.outUnits], data });
    weights.set(`${name}/bias`, { shape: [d.outUnits], data: d.bias });
  });
  return weights;
}
