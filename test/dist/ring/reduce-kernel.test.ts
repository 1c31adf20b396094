import t from 'tap';
import { BLOCK_ELEMS, addInPlace, addInPlaceJs, reduceKernelName } from '../../../src/dist/ring/reduce-kernel';

function sameBits(a: Float32Array, b: Float32Array): boolean {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return ua.length === ub.length && ua.every((w, i) => w === ub[i]);
}

t.test('wasm SIMD is available on node 20', async (t) => {
  t.equal(reduceKernelName(), 'wasm-simd');
});

t.test('addInPlace equals the JS loop bit for bit, at every length and offset', async (t) => {
  const special = [0, -0, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38, -3.4028235e38, Infinity, -Infinity];
  for (const length of [
    0,
    1,
    3,
    4,
    5,
    255,
    256,
    257,
    1023,
    BLOCK_ELEMS - 1,
    BLOCK_ELEMS,
    BLOCK_ELEMS + 5,
    3 * BLOCK_ELEMS + 2,
  ]) {
    for (const offset of [0, 1, 3]) {
      const src = new Float32Array(length + offset);
      const dst = new Float32Array(length + offset);
      for (let i = 0; i < src.length; i++) {
        src[i] = i % 11 === 0 ? special[i % special.length] : Math.sin(i) * 10 ** ((i % 9) - 4);
        dst[i] = i % 13 === 0 ? special[(i + 3) % special.length] : Math.cos(i) * 10 ** ((i % 7) - 3);
      }
      const before = dst.slice();
      const want = dst.slice(offset);
      addInPlaceJs(want, src.subarray(offset));
      const got = dst.subarray(offset);
      addInPlace(got, src.subarray(offset));
      if (!sameBits(got, want)) t.fail(`length ${length} offset ${offset}`);
      if (!sameBits(dst.subarray(0, offset), before.subarray(0, offset))) t.fail('wrote outside the view');
    }
  }
  t.throws(() => addInPlace(new Float32Array(3), new Float32Array(4)), RangeError);
  t.pass('checked');
});

t.test('subnormals are kept and rounding is IEEE', async (t) => {
  const dst = Float32Array.of(1e-45, 1, 16777216, ...new Array<number>(300).fill(0));
  const src = Float32Array.of(1e-45, 2 ** -24, 1, ...new Array<number>(300).fill(0));
  addInPlace(dst, src);
  t.equal(dst[0], 2 * 2 ** -149, 'smallest subnormal doubled, not flushed to zero');
  t.equal(dst[1], 1, 'ties to even: 1 + 2^-24 rounds to 1');
  t.equal(dst[2], 16777216, '2^24 + 1 rounds to 2^24');
});
