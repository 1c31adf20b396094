/**
 * The shm addon's wireEncode/wireDecode (the WireKernels of src/dist/ring/wire-codec.ts, now
 * without oneDNN) give the JS reference's bits: every binary16 and bfloat16 pattern decoded,
 * and edge values encoded (NaN, infinities, subnormals, ties, overflow), on lengths that take
 * both the 8-wide F16C path and the scalar tail.
 */
import t from 'tap';
import { loadShmAddon, shmAddonPath, shmUnavailableReason } from '../../../src/dist/shm/addon';
import { decodeWire, encodeWire, useWireKernels } from '../../../src/dist/ring/wire-codec';

const unavailable = shmUnavailableReason();
const KIND = { fp16: Int32Array.of(0), bf16: Int32Array.of(1) } as const;

function edgeBits(): Uint32Array {
  const bits: number[] = [
    0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x7fbfffff, 0x00000001, 0x807fffff,
    0x00800000,
  ];
  // fp16 boundaries: largest finite (65504), the overflow threshold 65520 and around it, the smallest subnormal and half of it.
  for (const v of [
    65504,
    65519.99,
    65520,
    65536,
    2 ** -24,
    2 ** -25,
    2 ** -25 * 1.5,
    2 ** -14,
    2 ** -14 * (1 - 2 ** -11),
  ]) {
    const f = new Float32Array([v, -v]);
    bits.push(...new Uint32Array(f.buffer));
  }
  // Exact ties and their neighbours, for both formats' rounding bit.
  for (let e = 100; e < 160; e += 3) {
    for (const low of [0x1000, 0x0fff, 0x1001, 0x3000, 0x8000, 0x7fff, 0x8001, 0x18000])
      bits.push(((e << 23) | low) >>> 0, ((e << 23) | (1 << 13) | low) >>> 0);
  }
  let seed = 12345;
  for (let i = 0; i < 4000; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    bits.push(seed);
  }
  return Uint32Array.from(bits);
}

t.test('encode and decode match the JS reference bit for bit', { skip: unavailable ?? false }, async (t) => {
  const addon = loadShmAddon();
  useWireKernels(null); // the JS loops: the reference
  const src = new Float32Array(edgeBits().buffer);
  for (const dtype of ['fp16', 'bf16'] as const) {
    for (const length of [src.length, 7, 13]) {
      const input = src.subarray(0, length);
      const want = new Uint16Array(length);
      encodeWire(dtype, input, want);
      const got = new Uint16Array(length);
      addon.wireEncode(KIND[dtype], input, got);
      t.same(Array.from(got), Array.from(want), `${dtype} encode, ${length} values`);
    }
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const want = new Float32Array(65536);
    decodeWire(dtype, all, want);
    const got = new Float32Array(65536);
    addon.wireDecode(KIND[dtype], all, got);
    t.same(
      Array.from(new Uint32Array(got.buffer)),
      Array.from(new Uint32Array(want.buffer)),
      `${dtype} decode, all 65536 patterns`,
    );
  }
});

t.test('the wire codec loads the conversions from the shm addon', { skip: unavailable ?? false }, async (t) => {
  t.equal(useWireKernels(shmAddonPath()), 'native');
  useWireKernels(null);
});

t.test('bad arguments are errors, not crashes', { skip: unavailable ?? false }, async (t) => {
  const addon = loadShmAddon();
  t.throws(() => addon.wireEncode(KIND.fp16, new Float32Array(3), new Uint16Array(4)), /lengths differ/);
  t.throws(
    () =>
      addon.wireDecode(
        KIND.fp16,
        new Uint16Array(3) as unknown as Uint16Array,
        new Float64Array(3) as unknown as Float32Array,
      ),
    /wrong type/,
  );
});
