/**
 * Exports a trained AlexNet in the standard TensorFlow.js *graph model* format
 * (model.json + a weights .bin), so `tf.loadGraphModel` in plain tfjs (browser, Node, any
 * backend) runs it with no code from this project. A graph model rather than a layers model,
 * because tf.layers has neither LRN nor grouped convolution; as a GraphDef they are the
 * standard TensorFlow ops LRN, Split, Conv2D and ConcatV2.
 *
 * Outputs: `logits` and `probabilities` (softmax). The preprocessing a caller must apply
 * (resize, crop, mean/std) travels in `userDefinedMetadata`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { AlexNet } from './alexnet';
import type { ConvPad } from './presets';
import { writeAtomic } from '../core/atomic-write';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';

/** What a caller needs to feed the exported model (mirrors the training pipeline). */
export interface ExportMetadata {
  classes: string[];
  inputSize: number;
  resizeSize: number;
  meanRgb: [number, number, number];
  stdRgb: [number, number, number];
  preset: string;
}

type AttrValue =
  | { i: string }
  | { f: number }
  | { s: string }
  | { type: 'DT_FLOAT' | 'DT_INT32' }
  | { list: { i: string[] } }
  | { shape: { dim: { size: string }[] } }
  | { tensor: { dtype: string; tensorShape: { dim: { size: string }[] } } };

interface NodeDef {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, AttrValue>;
}

const b64 = (text: string) => Buffer.from(text).toString('base64');
const ints = (xs: number[]) => ({ list: { i: xs.map(String) } });
const dims = (shape: number[]) => ({ dim: shape.map((d) => ({ size: String(d) })) });
const FLOAT = { type: 'DT_FLOAT' } as const;

/** Builds the GraphDef node list and the constant tensors it refers to, by node name. */
class GraphBuilder {
  readonly nodes: NodeDef[] = [];
  readonly consts: { name: string; tensor: tf.Tensor }[] = [];

  add(name: string, op: string, input: string[], attr: Record<string, AttrValue> = {}): string {
    this.nodes.push({ name, op, input, attr });
    return name;
  }

  constant(name: string, tensor: tf.Tensor): string {
    const dtype = tensor.dtype === 'int32' ? 'DT_INT32' : 'DT_FLOAT';
    this.nodes.push({
      name,
      op: 'Const',
      attr: { value: { tensor: { dtype, tensorShape: dims(tensor.shape) } }, dtype: { type: dtype } },
    });
    this.consts.push({ name, tensor });
    return name;
  }
}

function padAttrs(pad: ConvPad): Record<string, AttrValue> {
  if (pad === 'same' || pad === 'valid') return { padding: { s: b64(pad.toUpperCase()) } };
  return { padding: { s: b64('EXPLICIT') }, explicit_paddings: ints([0, 0, pad, pad, pad, pad, 0, 0]) };
}

function buildGraph(model: AlexNet): GraphBuilder {
  const { spec } = model;
  const g = new GraphBuilder();
  const params = new Map(model.params.map((p) => [p.name, p.variable]));
  const param = (name: string) => g.constant(name, params.get(name) as tf.Tensor);
  const act = spec.activation === 'relu' ? 'Relu' : 'Tanh';
  let x = g.add('input', 'Placeholder', [], {
    dtype: FLOAT,
    shape: { shape: dims([-1, spec.inputSize, spec.inputSize, 3]) },
  });
  const channelAxis = g.constant('channel_axis', tf.scalar(3, 'int32'));
  for (const c of spec.convs) {
    const kernel = param(`${c.name}/kernel`);
    const convAttrs = {
      T: FLOAT,
      strides: ints([1, c.stride, c.stride, 1]),
      data_format: { s: b64('NHWC') },
      dilations: ints([1, 1, 1, 1]),
      ...padAttrs(c.pad),
    };
    if (c.groups === 1) {
      x = g.add(`${c.name}/conv`, 'Conv2D', [x, kernel], convAttrs);
    } else {
      // Split both the input maps and the kernel's output axis, convolve pairwise, concat.
      const xs = g.add(`${c.name}/split_input`, 'Split', [channelAxis, x], {
        num_split: { i: String(c.groups) },
        T: FLOAT,
      });
      const ks = g.add(`${c.name}/split_kernel`, 'Split', [channelAxis, kernel], {
        num_split: { i: String(c.groups) },
        T: FLOAT,
      });
      const outs: string[] = [];
      for (let k = 0; k < c.groups; k++)
        outs.push(g.add(`${c.name}/conv_g${k}`, 'Conv2D', [`${xs}:${k}`, `${ks}:${k}`], convAttrs));
      x = g.add(`${c.name}/concat`, 'ConcatV2', [...outs, channelAxis], { N: { i: String(c.groups) }, T: FLOAT });
    }
    x = g.add(`${c.name}/bias_add`, 'BiasAdd', [x, param(`${c.name}/bias`)], {
      T: FLOAT,
      data_format: { s: b64('NHWC') },
    });
    x = g.add(`${c.name}/act`, act, [x], { T: FLOAT });
    if (c.lrn && spec.lrn) {
      const { depthRadius, bias, alpha, beta } = spec.lrn;
      x = g.add(`${c.name}/lrn`, 'LRN', [x], {
        depth_radius: { i: String(depthRadius) },
        bias: { f: bias },
        alpha: { f: alpha },
        beta: { f: beta },
        T: FLOAT,
      });
    }
    if (c.pool) {
      const { window, stride } = spec.pool;
      x = g.add(`${c.name}/pool`, 'MaxPool', [x], {
        T: FLOAT,
        ksize: ints([1, window, window, 1]),
        strides: ints([1, stride, stride, 1]),
        padding: { s: b64('VALID') },
        data_format: { s: b64('NHWC') },
      });
    }
  }
  const features = (params.get(`${spec.hidden[0]?.name ?? 'fc8'}/kernel`) as tf.Tensor).shape[0];
  x = g.add('flatten', 'Reshape', [x, g.constant('flatten/shape', tf.tensor1d([-1, features], 'int32'))], { T: FLOAT });
  const layers = [...spec.hidden.map((h) => h.name), 'fc8'];
  for (const name of layers) {
    x = g.add(`${name}/matmul`, 'MatMul', [x, param(`${name}/kernel`)], {
      T: FLOAT,
      transpose_a: { i: '0' },
      transpose_b: { i: '0' },
    });
    x = g.add(`${name}/bias_add`, 'BiasAdd', [x, param(`${name}/bias`)], { T: FLOAT, data_format: { s: b64('NHWC') } });
    if (name !== 'fc8') x = g.add(`${name}/act`, act, [x], { T: FLOAT });
  }
  g.add('logits', 'Identity', [x], { T: FLOAT });
  g.add('probabilities', 'Softmax', ['logits'], { T: FLOAT });
  return g;
}

/** Writes model.json + weights.bin into `dir` (created), each atomically. */
export async function exportGraphModel(model: AlexNet, meta: ExportMetadata, dir: string): Promise<void> {
  const g = buildGraph(model);
  const { data, specs } = await tf.io.encodeWeights(g.consts.map((c) => ({ name: c.name, tensor: c.tensor })));
  fs.mkdirSync(dir, { recursive: true });
  const modelJson = {
    format: 'graph-model',
    generatedBy: 'alexnet-dp',
    convertedBy: null,
    modelTopology: { node: g.nodes, library: {}, versions: { producer: 1 } },
    weightsManifest: [{ paths: [WEIGHTS_BIN], weights: specs }],
    userDefinedMetadata: { alexnet: meta },
  };
  writeAtomic(path.join(dir, WEIGHTS_BIN), Buffer.from(data as ArrayBuffer));
  writeAtomic(path.join(dir, MODEL_JSON), Buffer.from(JSON.stringify(modelJson)));
  for (const c of g.consts) if (c.tensor.dtype === 'int32') c.tensor.dispose();
}

/** A tfjs IOHandler reading model.json + weights from a folder, with any backend (no tfjs-node). */
export function folderIOHandler(dir: string): tf.io.IOHandler {
  return {
    load: async () => {
      const json = JSON.parse(fs.readFileSync(path.join(dir, MODEL_JSON), 'utf8')) as {
        modelTopology: object;
        weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
        format?: string;
        userDefinedMetadata?: { [key: string]: object };
      };
      const buffers = json.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(dir, p))));
      const weightData = Buffer.concat(buffers);
      return {
        modelTopology: json.modelTopology,
        format: json.format,
        weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
        weightData: weightData.buffer.slice(weightData.byteOffset, weightData.byteOffset + weightData.byteLength),
        userDefinedMetadata: json.userDefinedMetadata,
      };
    },
  };
}

export interface LoadedModel {
  model: tf.GraphModel;
  meta: ExportMetadata;
}

export async function loadExportedModel(dir: string): Promise<LoadedModel> {
  const model = await tf.loadGraphModel(folderIOHandler(dir));
  const meta = (model.metadata as { alexnet?: ExportMetadata } | undefined)?.alexnet;
  if (meta == null) throw new Error(`${dir}/${MODEL_JSON} has no alexnet metadata (classes, input size)`);
  return { model, meta };
}
