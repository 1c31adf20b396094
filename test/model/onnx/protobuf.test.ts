// The protobuf wire format against the examples of its specification, and writer -> reader round trips.
import t from 'tap';
import {
  floatOf,
  intOf,
  ProtoWriter,
  readFields,
  readVarint,
  repeatedFloats,
  repeatedInts,
  stringOf,
  bytesOf,
  varintBytes,
} from '../../../src/model/onnx/protobuf';
import { ModelFileError } from '../../../src/core/errors';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

t.test("the specification's examples (protobuf.dev, Encoding)", async (t) => {
  t.equal(hex(new ProtoWriter().int(1, 150).finish()), '089601', 'field 1 = 150');
  t.equal(hex(new ProtoWriter().string(2, 'testing').finish()), '120774657374696e67', "field 2 = 'testing'");
  t.equal(hex(new ProtoWriter().packedInts(4, [3, 270, 86942]).finish()), '2206038e029ea705', 'packed [3, 270, 86942]');
  t.equal(hex(varintBytes(-1)), 'ffffffffffffffffff01', 'int64 -1: ten bytes');
});

t.test('varints round-trip, negative and beyond 32 bits', async (t) => {
  for (const v of [0, 1, 127, 128, 300, 2 ** 31, 2 ** 40 + 5, -1, -(2 ** 33)]) {
    const bytes = varintBytes(v);
    t.equal(Number(BigInt.asIntN(64, readVarint(bytes, 0).value)), v, String(v));
  }
});

t.test('a nested message round-trips field by field', async (t) => {
  const inner = new ProtoWriter().int(1, -5).float(2, 0.25).packedFloats(3, [1.5, -2]);
  const bytes = new ProtoWriter().string(1, 'outer').message(2, inner).int(3, 7).int(3, 8).finish();
  const fields = readFields(bytes);
  t.equal(stringOf(fields[0]), 'outer');
  const nested = readFields(bytesOf(fields[1]));
  t.equal(intOf(nested[0]), -5);
  t.equal(floatOf(nested[1]), 0.25);
  t.same(Array.from(repeatedFloats(nested, 3)), [1.5, -2]);
  t.same(repeatedInts(fields, 3), [7, 8], 'unpacked repeated ints');
});

t.test('truncated bytes are a ModelFileError, never garbage', async (t) => {
  const bytes = new ProtoWriter().string(1, 'a longer string').finish();
  t.throws(() => readFields(bytes.subarray(0, 6)), ModelFileError);
  t.throws(() => readFields(Uint8Array.of(0x80)), ModelFileError);
  t.throws(() => readFields(Uint8Array.of(0x0b)), ModelFileError, 'wire type 3 (groups) is not ONNX');
});
