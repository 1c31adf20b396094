/**
 * The all-reduce's inner loop, dst[i] += src[i] on Float32Arrays, with WebAssembly SIMD.
 *
 * Why: V8 does not vectorise JS loops, and in JS the adds of a large all-reduce cost as much CPU
 * as its socket transfer. WebAssembly can only read its own memory, so blocks of both arrays are
 * copied into a small wasm scratch (a copy is much cheaper than the JS add), added four lanes at
 * a time (f32x4.add), and copied back (docs/measurements.md, "Reduce kernel").
 *
 * Results are bit-identical to the JS loop: f32x4.add is IEEE binary32 addition, and JS's
 * `dst[i] += src[i]` (double sum rounded to float32) is correctly rounded too, because double
 * has more than 2*24+2 mantissa bits. Wasm SIMD keeps subnormals (no flush-to-zero).
 */

/** Floats per scratch block: 128 KiB per operand, so a block stays in L2 between the copies. */
export const BLOCK_ELEMS = 32_768;
const PAGE_BYTES = 65_536;
const BLOCK_BYTES = BLOCK_ELEMS * 4;
const SRC_OFFSET_BYTES = BLOCK_BYTES;
const MEMORY_PAGES = (2 * BLOCK_BYTES) / PAGE_BYTES;

/** Below this many elements the JS loop wins (the copies and the call cost more). */
const MIN_WASM_ELEMS = 256;

/**
 * A module exporting `memory` (MEMORY_PAGES pages) and `add(dst, src, nBytes)`, which does
 * f32x4 dst += src over nBytes (a multiple of 16) at byte offsets dst and src. Hand-assembled
 * so that no toolchain is needed; the text form is:
 *   (func (export "add") (param $dst i32) (param $src i32) (param $n i32) (local $end i32)
 *     (local.set $end (i32.add (local.get $dst) (local.get $n)))
 *     (block (loop
 *       (br_if 1 (i32.ge_u (local.get $dst) (local.get $end)))
 *       (v128.store (local.get $dst)
 *         (f32x4.add (v128.load (local.get $dst)) (v128.load (local.get $src))))
 *       (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
 *       (local.set $src (i32.add (local.get $src) (i32.const 16)))
 *       (br 0))))
 */
function moduleBytes(): Uint8Array {
  const section = (id: number, content: number[]): number[] => [id, content.length, ...content];
  const get = (i: number): number[] => [0x20, i];
  const set = (i: number): number[] => [0x21, i];
  const v128Load = [0xfd, 0x00, 0x04, 0x00]; // align 2^4, offset 0
  const v128Store = [0xfd, 0x0b, 0x04, 0x00];
  const f32x4Add = [0xfd, 0xe4, 0x01];
  const bump = (i: number): number[] => [...get(i), 0x41, 0x10, 0x6a, ...set(i)]; // += 16
  const body = [
    0x01,
    0x01,
    0x7f, // one extra local: i32 $end
    ...get(0),
    ...get(2),
    0x6a,
    ...set(3),
    0x02,
    0x40,
    0x03,
    0x40, // block, loop
    ...get(0),
    ...get(3),
    0x4f,
    0x0d,
    0x01, // br_if 1 (dst >= end)
    ...get(0),
    ...get(0),
    ...v128Load,
    ...get(1),
    ...v128Load,
    ...f32x4Add,
    ...v128Store,
    ...bump(0),
    ...bump(1),
    0x0c,
    0x00,
    0x0b,
    0x0b,
    0x0b, // br 0, end loop, end block, end func
  ];
  const ascii = (s: string): number[] => [s.length, ...Buffer.from(s, 'ascii')];
  return Uint8Array.from([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00, // "\0asm", version 1
    ...section(1, [0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00]), // type: (i32 i32 i32) -> ()
    ...section(3, [0x01, 0x00]), // one function of type 0
    ...section(5, [0x01, 0x01, MEMORY_PAGES, MEMORY_PAGES]), // memory, min = max
    ...section(7, [0x02, ...ascii('memory'), 0x02, 0x00, ...ascii('add'), 0x00, 0x00]),
    ...section(10, [0x01, body.length, ...body]),
  ]);
}

/**
 * The slice of the WebAssembly JS API used here. tsconfig's lib (ES2022, no DOM) does not
 * declare it, although node has it.
 */
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
};

interface SimdKernel {
  add(dstOffsetBytes: number, srcOffsetBytes: number, nBytes: number): void;
  dst: Float32Array;
  src: Float32Array;
}

let kernel: SimdKernel | null | undefined;

/** The wasm kernel, or null where WebAssembly SIMD is unavailable (e.g. node --jitless). */
function simdKernel(): SimdKernel | null {
  if (kernel !== undefined) return kernel;
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes()));
    const memory = instance.exports.memory as { buffer: ArrayBuffer };
    const add = instance.exports.add as SimdKernel['add'];
    kernel = {
      add,
      dst: new Float32Array(memory.buffer, 0, BLOCK_ELEMS),
      src: new Float32Array(memory.buffer, SRC_OFFSET_BYTES, BLOCK_ELEMS),
    };
  } catch {
    kernel = null;
  }
  return kernel;
}

/** Which implementation addInPlace uses here, for benchmark reports. */
export function reduceKernelName(): 'wasm-simd' | 'js' {
  return simdKernel() === null ? 'js' : 'wasm-simd';
}

/** dst[i] += src[i] in plain JS, unrolled by four: faster than the simple loop (docs/measurements.md, "Reduce kernel"). */
export function addInPlaceJs(dst: Float32Array, src: Float32Array, from = 0): void {
  const n = dst.length;
  let i = from;
  for (; i + 4 <= n; i += 4) {
    dst[i] += src[i];
    dst[i + 1] += src[i + 1];
    dst[i + 2] += src[i + 2];
    dst[i + 3] += src[i + 3];
  }
  for (; i < n; i++) dst[i] += src[i];
}

/** dst[i] += src[i] for equal-length arrays; wasm SIMD when available and worth it. */
export function addInPlace(dst: Float32Array, src: Float32Array): void {
  const n = dst.length;
  if (src.length !== n) throw new RangeError(`addInPlace: lengths ${n} and ${src.length} differ`);
  const k = n >= MIN_WASM_ELEMS ? simdKernel() : null;
  if (k === null) return addInPlaceJs(dst, src);
  const simdEnd = n - (n % 4); // f32x4 lanes; the last 0-3 elements go through JS
  for (let start = 0; start < simdEnd; start += BLOCK_ELEMS) {
    const end = Math.min(start + BLOCK_ELEMS, simdEnd);
    const count = end - start;
    k.dst.set(dst.subarray(start, end));
    k.src.set(src.subarray(start, end));
    k.add(0, SRC_OFFSET_BYTES, count * 4);
    dst.set(k.dst.subarray(0, count), start);
  }
  addInPlaceJs(dst, src, simdEnd);
}
