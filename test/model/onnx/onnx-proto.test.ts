// ONNX messages: a tensor's data as float_data or int64_data (not only raw_data) decodes, and a
// model round-trips through encodeModel/decodeModel.
import t from 'tap';
import { ProtoWriter } from '../../../src/model/onnx/protobuf';
import { DataType, decodeModel, decodeTensor, encodeModel } from '../../../src/model/onnx/onnx-proto';
import { ModelFileError } from '../../../src/core/errors';

t.test('float_data and int64_data tensors decode as raw_data ones do', async (t) => {
  const floats = new ProtoWriter()
    .packedInts(1, [2, 2])
    .int(2, DataType.Float)
    .packedFloats(4, [1, -2, 0.5, 3])
    .string(8, 'w');
  t.same(Array.from(decodeTensor(floats.finish()).floats ?? []), [1, -2, 0.5, 3]);
  const ints = new ProtoWriter().packedInts(1, [2]).int(2, DataType.Int64).packedInts(7, [-1, 9216]).string(8, 'shape');
  t.same(decodeTensor(ints.finish()).ints, [-1, 9216]);
  const short = new ProtoWriter().packedInts(1, [3]).int(2, DataType.Float).packedFloats(4, [1]).string(8, 'w');
  t.throws(() => decodeTensor(short.finish()), ModelFileError, 'a value count that is not the shape');
  const double = new ProtoWriter().packedInts(1, [1]).int(2, 11).string(8, 'd');
  t.throws(() => decodeTensor(double.finish()), { message: /data type 11.*export the model in float32/ });
});

t.test('a model round-trips', async (t) => {
  const model = {
    irVersion: 7,
    opsetImports: [{ domain: '', version: 13 }],
    producerName: 'p',
    producerVersion: '1',
    docString: 'd',
    graph: {
      name: 'g',
      nodes: [{ name: 'r', opType: 'Relu', domain: '', inputs: ['x'], outputs: ['y'], attributes: [] }],
      initializers: [{ name: 'c', dims: [1], dataType: DataType.Float, floats: Float32Array.of(2) }],
      inputs: [{ name: 'x', elemType: DataType.Float, shape: ['batch', 3] }],
      outputs: [{ name: 'y', elemType: DataType.Float, shape: ['batch', 3] }],
    },
    metadata: { key: 'value' },
  };
  t.same(decodeModel(encodeModel(model)), model);
});
