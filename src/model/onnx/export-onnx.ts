/**
 * Writes a trained AlexNet as an ONNX file (opset 13, standard ops only), so onnxruntime,
 * PyTorch and other ONNX tools run it with no code from this project:
 *   Conv (with `group` for the paper's two-GPU split) -> Relu -> LRN -> MaxPool, x5
 *   Flatten -> Gemm (transB=1, as torch's Linear) -> Relu, x2 -> Gemm `logits` -> Softmax `probabilities`
 * Dropout is left out: an inference graph has none. Input `input` is NCHW float32, [batch, 3, s, s].
 * The preprocessing a caller must apply travels in metadata_props.
 */
import type { ModelSpec } from '../presets';
import type { ExportMetadata } from '../export';
import { attr, DataType, encodeModel, type OnnxModel, type OnnxNode, type OnnxTensor } from './onnx-proto';
import { convToOnnx, denseToOnnx, samePads, type FlattenedMaps } from './layouts';

export const ONNX_OPSET = 13;
/** IR version 7 is the one that goes with opset 13 (onnx 1.8). */
export const ONNX_IR_VERSION = 7;
export const INPUT_NAME = 'input';
export const LOGITS = 'logits';
export const PROBABILITIES = 'probabilities';

/** One of our parameters by its name (`conv1/kernel`), in our (tfjs) layout. */
export type NamedWeights = ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>;

/** Per-conv geometry at the preset's input size: explicit [begin, end] pads and the map sizes. */
export interface ConvGeometry {
  name: string;
  inSize: number;
  pads: [number, number];
  outSize: number;
  /** After the max-pool, if the layer has one. */
  afterPoolSize: number;
}

function padsOf(
  pad: ModelSpec['convs'][number]['pad'],
  size: number,
  kernel: number,
  stride: number,
): [number, number] {
  if (pad === 'same') return samePads(size, kernel, stride);
  if (pad === 'valid') return [0, 0];
  return [pad, pad];
}

/** Every conv layer's explicit padding and sizes, at the spec's input size (tfjs 'same' made explicit). */
export function convGeometry(spec: ModelSpec): ConvGeometry[] {
  let size = spec.inputSize;
  return spec.convs.map((c) => {
    const pads = padsOf(c.pad, size, c.kernel, c.stride);
    const outSize = Math.floor((size + pads[0] + pads[1] - c.kernel) / c.stride) + 1;
    const afterPoolSize = c.pool ? Math.floor((outSize - spec.pool.window) / spec.pool.stride) + 1 : outSize;
    const g = { name: c.name, inSize: size, pads, outSize, afterPoolSize };
    size = afterPoolSize;
    return g;
  });
}

/** The maps fc6 reads: the last conv stage's output. */
export function flattenedMaps(spec: ModelSpec): FlattenedMaps {
  const last = convGeometry(spec).at(-1);
  const lastConv = spec.convs.at(-1);
  if (last === undefined || lastConv === undefined) throw new RangeError('a spec without conv layers');
  return { height: last.afterPoolSize, width: last.afterPoolSize, channels: lastConv.filters };
}

function weightOf(weights: NamedWeights, name: string): { shape: readonly number[]; data: Float32Array } {
  const w = weights.get(name);
  if (w === undefined) throw new RangeError(`no weight ${name}`);
  return w;
}

const floatTensor = (name: string, dims: number[], floats: Float32Array): OnnxTensor => ({
  name,
  dims,
  dataType: DataType.Float,
  floats,
});

/** The graph's nodes and initializers, layer by layer. */
function buildNodes(spec: ModelSpec, weights: NamedWeights): { nodes: OnnxNode[]; initializers: OnnxTensor[] } {
  const nodes: OnnxNode[] = [];
  const initializers: OnnxTensor[] = [];
  const node = (name: string, opType: string, inputs: string[], attributes: OnnxNode['attributes'] = []): string => {
    nodes.push({ name, opType, domain: '', inputs, outputs: [name], attributes });
    return name;
  };
  const act = spec.activation === 'relu' ? 'Relu' : 'Tanh';
  let x = INPUT_NAME;
  const geometry = convGeometry(spec);
  spec.convs.forEach((c, k) => {
    const kernel = weightOf(weights, `${c.name}/kernel`);
    const [kh, kw, cin, cout] = kernel.shape;
    initializers.push(floatTensor(`${c.name}.weight`, [cout, cin, kh, kw], convToOnnx(kernel.data, kernel.shape)));
    initializers.push(floatTensor(`${c.name}.bias`, [cout], weightOf(weights, `${c.name}/bias`).data));
    const [begin, end] = geometry[k].pads;
    x = node(
      c.name,
      'Conv',
      [x, `${c.name}.weight`, `${c.name}.bias`],
      [
        attr.ints('kernel_shape', [c.kernel, c.kernel]),
        attr.ints('strides', [c.stride, c.stride]),
        attr.ints('pads', [begin, begin, end, end]),
        attr.ints('dilations', [1, 1]),
        attr.int('group', c.groups),
      ],
    );
    x = node(`${c.name}/${act.toLowerCase()}`, act, [x]);
    if (c.lrn && spec.lrn) {
      // ONNX (like Caffe and PyTorch) divides alpha by the window size; the paper and tfjs do not.
      const size = 2 * spec.lrn.depthRadius + 1;
      x = node(
        `${c.name}/lrn`,
        'LRN',
        [x],
        [
          attr.int('size', size),
          attr.float('alpha', spec.lrn.alpha * size),
          attr.float('beta', spec.lrn.beta),
          attr.float('bias', spec.lrn.bias),
        ],
      );
    }
    if (c.pool) {
      const { window, stride } = spec.pool;
      x = node(
        `${c.name}/pool`,
        'MaxPool',
        [x],
        [
          attr.ints('kernel_shape', [window, window]),
          attr.ints('strides', [stride, stride]),
          attr.ints('pads', [0, 0, 0, 0]),
        ],
      );
    }
  });
  x = node('flatten', 'Flatten', [x], [attr.int('axis', 1)]);
  const names = [...spec.hidden.map((h) => h.name), 'fc8'];
  names.forEach((name, k) => {
    const kernel = weightOf(weights, `${name}/kernel`);
    const [inUnits, outUnits] = kernel.shape;
    const maps = k === 0 ? flattenedMaps(spec) : null;
    initializers.push(
      floatTensor(`${name}.weight`, [outUnits, inUnits], denseToOnnx(kernel.data, inUnits, outUnits, maps)),
    );
    initializers.push(floatTensor(`${name}.bias`, [outUnits], weightOf(weights, `${name}/bias`).data));
    const last = k === names.length - 1;
    x = node(
      last ? LOGITS : name,
      'Gemm',
      [x, `${name}.weight`, `${name}.bias`],
      [attr.float('alpha', 1), attr.float('beta', 1), attr.int('transB', 1)],
    );
    if (!last) x = node(`${name}/${act.toLowerCase()}`, act, [x]);
  });
  node(PROBABILITIES, 'Softmax', [LOGITS], [attr.int('axis', 1)]);
  return { nodes, initializers };
}

/** The preprocessing and class names, as ONNX metadata_props (strings; JSON where a value is a list). */
export function onnxMetadata(meta: ExportMetadata): Record<string, string> {
  return {
    preset: meta.preset,
    classes: JSON.stringify(meta.classes),
    input_layout: 'NCHW, RGB, float32',
    input_size: String(meta.inputSize),
    resize_size: String(meta.resizeSize),
    mean_rgb: JSON.stringify(meta.meanRgb),
    std_rgb: JSON.stringify(meta.stdRgb),
    preprocessing: `resize the shorter side to ${meta.resizeSize} px and keep the central square; crop the central ${meta.inputSize} px; scale pixels to [0, 1]; subtract mean_rgb and divide by std_rgb per channel`,
    // The same object as the tfjs export's userDefinedMetadata.alexnet, for readers of both.
    alexnet: JSON.stringify(meta),
  };
}

/** The whole model as an OnnxModel (pure: the tests inspect it before encoding). */
export function buildOnnxModel(spec: ModelSpec, weights: NamedWeights, meta: ExportMetadata): OnnxModel {
  const { nodes, initializers } = buildNodes(spec, weights);
  const classes = weightOf(weights, 'fc8/bias').shape[0];
  return {
    irVersion: ONNX_IR_VERSION,
    opsetImports: [{ domain: '', version: ONNX_OPSET }],
    producerName: 'alexnet-dp',
    producerVersion: '0.1.0',
    docString: `AlexNet, preset ${spec.preset}, ${classes} classes`,
    graph: {
      name: `alexnet_${spec.preset}`,
      nodes,
      initializers,
      inputs: [{ name: INPUT_NAME, elemType: DataType.Float, shape: ['batch', 3, spec.inputSize, spec.inputSize] }],
      outputs: [
        { name: LOGITS, elemType: DataType.Float, shape: ['batch', classes] },
        { name: PROBABILITIES, elemType: DataType.Float, shape: ['batch', classes] },
      ],
    },
    metadata: onnxMetadata(meta),
  };
}

/** The .onnx file's bytes. */
export function encodeOnnxModel(spec: ModelSpec, weights: NamedWeights, meta: ExportMetadata): Uint8Array {
  return encodeModel(buildOnnxModel(spec, weights, meta));
}
