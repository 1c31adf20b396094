/**
 * The ONNX messages this project writes and reads (onnx/onnx.proto3, IR version 7+), as typed
 * objects with an encoder and a decoder each. Only the fields a float32 inference graph needs;
 * a decoder skips the others (training info, functions, sparse initializers), and the importer
 * names what it cannot use.
 */
import { ModelFileError } from '../../core/errors';
import {
  bytesOf,
  floatOf,
  floatsOf,
  intOf,
  ProtoWriter,
  readFields,
  repeatedFloats,
  repeatedInts,
  stringOf,
  floatBytes,
  type ProtoField,
} from './protobuf';

/** TensorProto.DataType values this project meets. */
export enum DataType {
  Float = 1,
  Int32 = 6,
  Int64 = 7,
}

/** AttributeProto.AttributeType. */
export enum AttributeType {
  Float = 1,
  Int = 2,
  String = 3,
  Tensor = 4,
  Floats = 6,
  Ints = 7,
}

/** A constant tensor: float32 values, or int64/int32 values (shapes, axes), row-major. */
export interface OnnxTensor {
  name: string;
  dims: number[];
  dataType: DataType;
  /** Float tensors. */
  floats?: Float32Array;
  /** Integer tensors (int64/int32). */
  ints?: number[];
}

export type OnnxAttribute =
  | { name: string; type: AttributeType.Float; f: number }
  | { name: string; type: AttributeType.Int; i: number }
  | { name: string; type: AttributeType.String; s: string }
  | { name: string; type: AttributeType.Tensor; t: OnnxTensor }
  | { name: string; type: AttributeType.Floats; floats: number[] }
  | { name: string; type: AttributeType.Ints; ints: number[] };

export interface OnnxNode {
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attributes: OnnxAttribute[];
}

/** A graph input or output: float32 of this shape; a string dimension is symbolic (the batch). */
export interface OnnxValueInfo {
  name: string;
  elemType: DataType;
  shape: (number | string)[];
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

export interface OnnxModel {
  irVersion: number;
  opsetImports: { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
  docString: string;
  graph: OnnxGraph;
  metadata: Record<string, string>;
}

// Field numbers of onnx.proto3.
const MODEL = { irVersion: 1, producerName: 2, producerVersion: 3, docString: 6, graph: 7, opset: 8, metadata: 14 };
const GRAPH = { node: 1, name: 2, initializer: 5, input: 11, output: 12 };
const NODE = { input: 1, output: 2, name: 3, opType: 4, attribute: 5, domain: 7 };
const ATTR = { name: 1, f: 2, i: 3, s: 4, t: 5, floats: 7, ints: 8, type: 20 };
const TENSOR = {
  dims: 1,
  dataType: 2,
  floatData: 4,
  int32Data: 5,
  int64Data: 7,
  name: 8,
  rawData: 9,
  dataLocation: 14,
};
const VALUE_INFO = { name: 1, type: 2 };
const TYPE = { tensorType: 1 };
const TENSOR_TYPE = { elemType: 1, shape: 2 };
const SHAPE = { dim: 1 };
const DIM = { value: 1, param: 2 };

// ---- encoding ----

export function encodeTensor(t: OnnxTensor): ProtoWriter {
  const w = new ProtoWriter()
    .packedInts(TENSOR.dims, t.dims)
    .int(TENSOR.dataType, t.dataType)
    .string(TENSOR.name, t.name);
  if (t.floats) w.bytes(TENSOR.rawData, floatBytes(t.floats));
  if (t.ints) w.packedInts(TENSOR.int64Data, t.ints);
  return w;
}

function encodeAttribute(a: OnnxAttribute): ProtoWriter {
  const w = new ProtoWriter().string(ATTR.name, a.name).int(ATTR.type, a.type);
  switch (a.type) {
    case AttributeType.Float:
      return w.float(ATTR.f, a.f);
    case AttributeType.Int:
      return w.int(ATTR.i, a.i);
    case AttributeType.String:
      return w.string(ATTR.s, a.s);
    case AttributeType.Tensor:
      return w.message(ATTR.t, encodeTensor(a.t));
    case AttributeType.Floats:
      return w.packedFloats(ATTR.floats, a.floats);
    case AttributeType.Ints:
      return w.packedInts(ATTR.ints, a.ints);
  }
}

function encodeNode(n: OnnxNode): ProtoWriter {
  const w = new ProtoWriter();
  for (const i of n.inputs) w.string(NODE.input, i);
  for (const o of n.outputs) w.string(NODE.output, o);
  w.string(NODE.name, n.name).string(NODE.opType, n.opType);
  if (n.domain !== '') w.string(NODE.domain, n.domain);
  for (const a of n.attributes) w.message(NODE.attribute, encodeAttribute(a));
  return w;
}

function encodeValueInfo(v: OnnxValueInfo): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of v.shape)
    shape.message(
      SHAPE.dim,
      typeof d === 'number' ? new ProtoWriter().int(DIM.value, d) : new ProtoWriter().string(DIM.param, d),
    );
  const tensorType = new ProtoWriter().int(TENSOR_TYPE.elemType, v.elemType).message(TENSOR_TYPE.shape, shape);
  return new ProtoWriter()
    .string(VALUE_INFO.name, v.name)
    .message(VALUE_INFO.type, new ProtoWriter().message(TYPE.tensorType, tensorType));
}

function encodeGraph(g: OnnxGraph): ProtoWriter {
  const w = new ProtoWriter();
  for (const n of g.nodes) w.message(GRAPH.node, encodeNode(n));
  w.string(GRAPH.name, g.name);
  for (const t of g.initializers) w.message(GRAPH.initializer, encodeTensor(t));
  for (const v of g.inputs) w.message(GRAPH.input, encodeValueInfo(v));
  for (const v of g.outputs) w.message(GRAPH.output, encodeValueInfo(v));
  return w;
}

/** A whole .onnx file. */
export function encodeModel(m: OnnxModel): Uint8Array {
  const w = new ProtoWriter()
    .int(MODEL.irVersion, m.irVersion)
    .string(MODEL.producerName, m.producerName)
    .string(MODEL.producerVersion, m.producerVersion)
    .string(MODEL.docString, m.docString)
    .message(MODEL.graph, encodeGraph(m.graph));
  for (const o of m.opsetImports) w.message(MODEL.opset, new ProtoWriter().string(1, o.domain).int(2, o.version));
  for (const [key, value] of Object.entries(m.metadata))
    w.message(MODEL.metadata, new ProtoWriter().string(1, key).string(2, value));
  return w.finish();
}

// ---- decoding ----

const all = (fields: readonly ProtoField[], n: number) => fields.filter((f) => f.field === n);
const first = (fields: readonly ProtoField[], n: number): ProtoField | undefined => fields.find((f) => f.field === n);
const str = (fields: readonly ProtoField[], n: number): string => {
  const f = first(fields, n);
  return f === undefined ? '' : stringOf(f);
};
const int = (fields: readonly ProtoField[], n: number, fallback = 0): number => {
  const f = first(fields, n);
  return f === undefined ? fallback : intOf(f);
};

/** The fields of a nested message; none when it is absent. */
const nested = (fields: readonly ProtoField[], n: number): ProtoField[] => {
  const f = first(fields, n);
  return f === undefined ? [] : readFields(bytesOf(f));
};

/** Float data may come as raw_data (torch's choice) or float_data; ints as int64_data, int32_data or raw_data. */
export function decodeTensor(bytes: Uint8Array): OnnxTensor {
  const f = readFields(bytes);
  const name = str(f, TENSOR.name);
  const dims = repeatedInts(f, TENSOR.dims);
  const dataType = int(f, TENSOR.dataType) as DataType;
  if (int(f, TENSOR.dataLocation) === 1)
    throw new ModelFileError(
      `tensor '${name}' keeps its data in an external file: re-export the model with its weights inside the .onnx file (torch.onnx.export does for models under 2 GB)`,
    );
  const raw = first(f, TENSOR.rawData);
  const count = dims.reduce((a, b) => a * b, 1);
  let tensor: OnnxTensor;
  if (dataType === DataType.Float) {
    tensor = { name, dims, dataType, floats: raw ? floatsOf(bytesOf(raw)) : repeatedFloats(f, TENSOR.floatData) };
  } else if (dataType === DataType.Int64 || dataType === DataType.Int32) {
    tensor = { name, dims, dataType, ints: raw ? rawInts(bytesOf(raw), dataType) : intData(f, dataType) };
  } else {
    throw new ModelFileError(
      `tensor '${name}' has ONNX data type ${dataType}; only float32 (1), int32 (6) and int64 (7) are supported: export the model in float32`,
    );
  }
  const got = tensor.floats?.length ?? tensor.ints?.length ?? 0;
  if (got !== count) throw new ModelFileError(`tensor '${name}' of shape [${dims}] holds ${got} values, not ${count}`);
  return tensor;
}

function intData(f: readonly ProtoField[], type: DataType): number[] {
  return repeatedInts(f, type === DataType.Int64 ? TENSOR.int64Data : TENSOR.int32Data);
}

function rawInts(bytes: Uint8Array, type: DataType): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = type === DataType.Int64 ? 8 : 4;
  return Array.from({ length: bytes.length / size }, (_, i) =>
    size === 8 ? Number(view.getBigInt64(i * 8, true)) : view.getInt32(i * 4, true),
  );
}

function decodeAttribute(bytes: Uint8Array, node: string): OnnxAttribute {
  const f = readFields(bytes);
  const name = str(f, ATTR.name);
  const type = int(f, ATTR.type) as AttributeType;
  const need = (n: number): ProtoField => {
    const v = first(f, n);
    if (v === undefined) throw new ModelFileError(`node '${node}': attribute '${name}' has no value`);
    return v;
  };
  switch (type) {
    case AttributeType.Float:
      return { name, type, f: floatOf(need(ATTR.f)) };
    case AttributeType.Int:
      return { name, type, i: intOf(need(ATTR.i)) };
    case AttributeType.String:
      return { name, type, s: stringOf(need(ATTR.s)) };
    case AttributeType.Tensor:
      return { name, type, t: decodeTensor(bytesOf(need(ATTR.t))) };
    case AttributeType.Floats:
      return { name, type, floats: Array.from(repeatedFloats(f, ATTR.floats)) };
    case AttributeType.Ints:
      return { name, type, ints: repeatedInts(f, ATTR.ints) };
    default:
      throw new ModelFileError(
        `node '${node}': attribute '${name}' is of ONNX attribute type ${type}, which is not supported`,
      );
  }
}

function decodeNode(bytes: Uint8Array, index: number): OnnxNode {
  const f = readFields(bytes);
  const name = str(f, NODE.name) || `#${index}`;
  return {
    name,
    opType: str(f, NODE.opType),
    domain: str(f, NODE.domain),
    inputs: all(f, NODE.input).map(stringOf),
    outputs: all(f, NODE.output).map(stringOf),
    attributes: all(f, NODE.attribute).map((a) => decodeAttribute(bytesOf(a), name)),
  };
}

function decodeValueInfo(bytes: Uint8Array): OnnxValueInfo {
  const f = readFields(bytes);
  const tensorType = nested(nested(f, VALUE_INFO.type), TYPE.tensorType);
  const dims = all(nested(tensorType, TENSOR_TYPE.shape), SHAPE.dim);
  return {
    name: str(f, VALUE_INFO.name),
    elemType: int(tensorType, TENSOR_TYPE.elemType) as DataType,
    shape: dims.map((d) => {
      const df = readFields(bytesOf(d));
      const value = first(df, DIM.value);
      return value === undefined ? str(df, DIM.param) : intOf(value);
    }),
  };
}

function decodeGraph(bytes: Uint8Array): OnnxGraph {
  const f = readFields(bytes);
  return {
    name: str(f, GRAPH.name),
    nodes: all(f, GRAPH.node).map((n, i) => decodeNode(bytesOf(n), i)),
    initializers: all(f, GRAPH.initializer).map((t) => decodeTensor(bytesOf(t))),
    inputs: all(f, GRAPH.input).map((v) => decodeValueInfo(bytesOf(v))),
    outputs: all(f, GRAPH.output).map((v) => decodeValueInfo(bytesOf(v))),
  };
}

/** Parses a whole .onnx file. */
export function decodeModel(bytes: Uint8Array): OnnxModel {
  const f = readFields(bytes);
  const graph = first(f, MODEL.graph);
  if (graph === undefined) throw new ModelFileError('not an ONNX model: it has no graph');
  const pairs = all(f, MODEL.metadata).map((e) => readFields(bytesOf(e)));
  return {
    irVersion: int(f, MODEL.irVersion),
    opsetImports: all(f, MODEL.opset).map((o) => {
      const of = readFields(bytesOf(o));
      return { domain: str(of, 1), version: int(of, 2) };
    }),
    producerName: str(f, MODEL.producerName),
    producerVersion: str(f, MODEL.producerVersion),
    docString: str(f, MODEL.docString),
    graph: decodeGraph(bytesOf(graph)),
    metadata: Object.fromEntries(pairs.map((p) => [str(p, 1), str(p, 2)])),
  };
}

/** A node's attribute by name, or undefined. */
export function attribute(node: OnnxNode, name: string): OnnxAttribute | undefined {
  return node.attributes.find((a) => a.name === name);
}

/** Shorthands for building attributes. */
export const attr = {
  int: (name: string, i: number): OnnxAttribute => ({ name, type: AttributeType.Int, i }),
  ints: (name: string, ints: number[]): OnnxAttribute => ({ name, type: AttributeType.Ints, ints }),
  float: (name: string, f: number): OnnxAttribute => ({ name, type: AttributeType.Float, f }),
};
