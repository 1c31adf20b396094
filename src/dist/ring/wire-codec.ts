/**
 * The number format of gradients and activations on the wire (`--wire-dtype`): fp32 as they
 * are, or 16 bits per value (fp16, IEEE binary16; bf16, the top half of a binary32). Halving
 * the bytes halves the ring's transfer time, which is the whole cost of an all-reduce over
 * sockets. Only the wire narrows: every sum is taken in fp32 after decoding, and the master
 * weights stay fp32 (the optimizer never sees a 16-bit number, only fp32 sums of them).
 *
 * Conversions round to nearest, ties to even, as hardware converters do; NaN stays NaN and
 * overflow becomes +-Infinity (fp16's largest finite value is 65504; bf16 keeps fp32's range).
 *
 * Speed: V8 does not vectorise these loops, and in JS fp16 encoding costs more than the socket
 * time it saves. Where the shared-memory addon is built (g++ only), its vectorised C++ loops (the same rules, bit
 * for bit) take over: `useWireKernels`. The JS loops remain the reference and the fallback
 * (docs/parallel-modes.md, "16-bit conversions").
 */
import type { WireDtype } from '../../core/config';
import { ProtocolError } from '../../core/errors';
import type { RingTransport } from './transport';

export type { WireDtype } from '../../core/config';

/** Bytes one value takes on the wire. */
export function wireBytesPerValue(dtype: WireDtype): number {
  return dtype === 'fp32' ? 4 : 2;
}

/** The native conversions (src/dist/shm/addon/wire.h, in the shared-memory addon): kind 0 fp16, 1 bf16. */
export interface WireKernels {
  wireEncode(kind: Int32Array, src: Float32Array, dst: Uint16Array): void;
  wireDecode(kind: Int32Array, src: Uint16Array, dst: Float32Array): void;
}

let kernels: WireKernels | null = null;
const KIND = { fp16: Int32Array.of(0), bf16: Int32Array.of(1) } as const;
/** Below this, the call into the addon costs more than the JS loop. */
const MIN_NATIVE_VALUES = 512;

/**
 * Loads the conversions from a native module file (the addon), or goes back to the JS loops
 * (null). Returns which are in use: 'native', or 'js' with the reason the file did not load.
 */
export function useWireKernels(file: string | null): string {
  kernels = null;
  if (file === null) return 'js (no native addon built)';
  try {
    // A computed require: the addon is a build output (and this may run on the comm thread).
    const loaded = require(file) as Partial<WireKernels>;
    if (typeof loaded.wireEncode !== 'function' || typeof loaded.wireDecode !== 'function')
      return 'js (the addon predates the wire kernels: make shm)';
    kernels = loaded as WireKernels;
    return 'native';
  } catch (err) {
    return `js (${(err instanceof Error ? err.message : String(err)).split('\n')[0]})`;
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** One binary32 bit pattern to binary16, round to nearest even (pure; the tables below use it). */
export function fp32BitsToFp16(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  // Inf; a NaN keeps its top payload bits and is made quiet (what the F16C instructions do).
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 | (mantissa >>> 13) : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: signed zero
    // Subnormal: shift the mantissa with its implicit 1 into place, rounding to nearest even.
    const m = mantissa | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let h = m >>> shift;
    if (rest > half || (rest === half && (h & 1) === 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++; // may carry into the exponent: correct
  return sign | h;
}

/** One binary16 value as a number (exact). */
export function fp16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** One binary32 bit pattern to bfloat16, round to nearest even; NaN stays a quiet NaN. */
export function fp32BitsToBf16(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) & 0x8000) | 0x7fc0;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

let fp16DecodeTable: Uint32Array | null = null;

/**
 * All 65536 binary16 values as float32 bit patterns, built once (256 KiB). Bits, not numbers:
 * a NaN keeps its sign and payload (shifted into place), as the native kernel's does.
 */
function fp16Table(): Uint32Array {
  if (fp16DecodeTable === null) {
    fp16DecodeTable = new Uint32Array(65536);
    const value = new Float32Array(1);
    const bits = new Uint32Array(value.buffer);
    for (let h = 0; h < 65536; h++) {
      if (((h >>> 10) & 0x1f) === 0x1f) {
        // Inf, or a NaN made quiet with its payload shifted into place (as F16C decodes it).
        fp16DecodeTable[h] =
          (((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13) | ((h & 0x3ff) !== 0 ? 0x400000 : 0)) >>> 0;
      } else {
        value[0] = fp16ToNumber(h);
        fp16DecodeTable[h] = bits[0];
      }
    }
  }
  return fp16DecodeTable;
}

/**
 * fp16 encoding by exponent: values whose binary32 exponent maps into binary16's normal range
 * take the fast path (shift and round); the rest (subnormal, overflow, Inf/NaN, zero) go through
 * fp32BitsToFp16. Which path a value takes depends only on its exponent bits.
 */
function encodeFp16(src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    const exponent = (b >>> 23) & 0xff;
    if (exponent > 112 && exponent < 142) {
      const rest = b & 0x1fff;
      // Exponents 113..141 stay normal after rounding (a carry reaches at most exponent 30).
      const h =
        (((exponent - 112) << 10) | ((b >>> 13) & 0x3ff)) +
        (rest > 0x1000 || (rest === 0x1000 && ((b >>> 13) & 1) === 1) ? 1 : 0);
      dst[i] = ((b >>> 16) & 0x8000) | h;
    } else {
      dst[i] = fp32BitsToFp16(b);
    }
  }
}

function encodeBf16(src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    dst[i] =
      (b & 0x7fffffff) > 0x7f800000
        ? ((b >>> 16) & 0x8000) | 0x7fc0
        : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
}

/** Encodes `src` into `dst` (same length) in a 16-bit dtype. */
export function encodeWire(dtype: Exclude<WireDtype, 'fp32'>, src: Float32Array, dst: Uint16Array): void {
  if (dst.length !== src.length) throw new RangeError(`encodeWire: ${src.length} values into ${dst.length} slots`);
  if (kernels !== null && src.length >= MIN_NATIVE_VALUES) kernels.wireEncode(KIND[dtype], src, dst);
  else if (dtype === 'fp16') encodeFp16(src, dst);
  else encodeBf16(src, dst);
}

/** Decodes `src` into `dst` (same length) from a 16-bit dtype. */
export function decodeWire(dtype: Exclude<WireDtype, 'fp32'>, src: Uint16Array, dst: Float32Array): void {
  if (dst.length !== src.length) throw new RangeError(`decodeWire: ${src.length} values into ${dst.length} slots`);
  if (kernels !== null && src.length >= MIN_NATIVE_VALUES) {
    kernels.wireDecode(KIND[dtype], src, dst);
  } else if (dtype === 'fp16') {
    const table = fp16Table();
    const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
    for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
  } else {
    const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
    for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  }
}

/** Rounds `values` in place to what the wire would carry: the sender's copy then matches the receivers'. */
export function quantizeInPlace(dtype: WireDtype, values: Float32Array): void {
  if (dtype === 'fp32') return;
  const scratch = new Uint16Array(values.length);
  encodeWire(dtype, values, scratch);
  decodeWire(dtype, scratch, values);
}

/** A number as it comes out of the wire (tests and docs). */
export function roundTrip(dtype: WireDtype, value: number): number {
  f32[0] = value;
  if (dtype === 'fp32') return f32[0];
  return dtype === 'fp16' ? fp16ToNumber(fp32BitsToFp16(u32[0])) : ((u32[0] = fp32BitsToBf16(u32[0]) << 16), f32[0]);
}

/**
 * A RingTransport that carries each chunk in `dtype`: [u32 value count][u16 values][padding],
 * sent as a Float32Array view so the transport underneath stays a float32 pipe. Every message
 * is a fresh buffer, so the zero-copy rules hold trivially on this layer. Counts the bytes it
 * puts on the wire (what the benchmarks report).
 */
export class WireCodecTransport implements RingTransport {
  bytesSent = 0;

  constructor(
    private readonly inner: RingTransport,
    readonly dtype: WireDtype,
  ) {}

  get rank(): number {
    return this.inner.rank;
  }

  get worldSize(): number {
    return this.inner.worldSize;
  }

  send(chunk: Float32Array): Promise<void> {
    if (this.dtype === 'fp32') {
      this.bytesSent += chunk.byteLength;
      return this.inner.send(chunk);
    }
    const words = 1 + Math.ceil(chunk.length / 2);
    const message = new Float32Array(words);
    new Uint32Array(message.buffer, 0, 1)[0] = chunk.length;
    encodeWire(this.dtype, chunk, new Uint16Array(message.buffer, 4, chunk.length));
    this.bytesSent += message.byteLength;
    return this.inner.send(message);
  }

  async recv(timeoutMs: number): Promise<Float32Array> {
    const message = await this.inner.recv(timeoutMs);
    if (this.dtype === 'fp32') return message;
    const count = new DataView(message.buffer, message.byteOffset, message.byteLength).getUint32(0, true);
    if (4 + 2 * count > message.byteLength) {
      throw new ProtocolError(
        `rank ${this.rank}: a ${this.dtype} message says ${count} values but has ${message.byteLength - 4} bytes. Do all ranks use the same --wire-dtype?`,
      );
    }
    const values = new Float32Array(count);
    decodeWire(this.dtype, new Uint16Array(message.buffer, message.byteOffset + 4, count), values);
    return values;
  }

  quantize(values: Float32Array): void {
    quantizeInPlace(this.dtype, values);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
