/**
 * The protobuf wire format, as much of it as ONNX files use: varints (int64 and enums), 32-bit
 * floats, and length-delimited fields (strings, bytes, packed arrays, nested messages). Written
 * here rather than taken from a protobuf library: ONNX needs about a dozen messages, and the
 * format is a few rules (https://protobuf.dev/programming-guides/encoding/).
 *
 * The writer keeps a list of chunks and copies them once at the end, so a 150 MB weight nested
 * three messages deep (ModelProto > GraphProto > TensorProto) is not copied at each level.
 */

import { ModelFileError } from '../../core/errors';

/** How a field's value is laid out after its tag. */
export enum WireType {
  Varint = 0,
  Fixed64 = 1,
  LengthDelimited = 2,
  Fixed32 = 5,
}

/** A field number and wire type, as the varint that starts every field. */
function tag(field: number, wire: WireType): number {
  return field * 8 + wire;
}

/** The varint bytes of a non-negative integer, or of a negative int64 (ten bytes, two's complement). */
export function varintBytes(value: number | bigint): Uint8Array {
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Uint8Array.from(out);
}

/** Builds one message; nested messages are writers of their own. */
export class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];
  private length = 0;

  get byteLength(): number {
    return this.length;
  }

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  /** int64, int32 and enum fields (a negative int64, such as a -1 dimension, takes ten bytes). */
  int(field: number, value: number | bigint): this {
    if (typeof value === 'number' && !Number.isInteger(value))
      throw new RangeError(`field ${field}: ${value} is not an integer`);
    this.push(varintBytes(tag(field, WireType.Varint)));
    this.push(varintBytes(value));
    return this;
  }

  float(field: number, value: number): this {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    this.push(varintBytes(tag(field, WireType.Fixed32)));
    this.push(bytes);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.push(varintBytes(tag(field, WireType.LengthDelimited)));
    this.push(varintBytes(value.length));
    this.push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  /** A nested message: its chunks are appended, not copied. */
  message(field: number, sub: ProtoWriter): this {
    this.push(varintBytes(tag(field, WireType.LengthDelimited)));
    this.push(varintBytes(sub.byteLength));
    for (const c of sub.chunks) this.push(c);
    return this;
  }

  /** A repeated int64 field, packed (proto3's default for repeated scalars). */
  packedInts(field: number, values: readonly number[]): this {
    const parts = values.map((v) => varintBytes(v));
    const body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      body.set(p, at);
      at += p.length;
    }
    return this.bytes(field, body);
  }

  /** A repeated float field, packed: little-endian float32s back to back. */
  packedFloats(field: number, values: readonly number[] | Float32Array): this {
    return this.bytes(field, floatBytes(Float32Array.from(values)));
  }

  /** The message's bytes, in one buffer. */
  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

/** A Float32Array's bytes in little-endian order (protobuf's and ONNX raw_data's order). */
export function floatBytes(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
  return out;
}

/** Little-endian float32 bytes (raw_data, or a packed float field) as floats; copies, so any alignment works. */
export function floatsOf(bytes: Uint8Array): Float32Array {
  if (bytes.length % 4 !== 0) throw new ModelFileError(`${bytes.length} bytes are not a whole number of float32s`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}

/** One field as read: a varint's value, or the bytes of any other wire type. */
export type ProtoField =
  | { field: number; wire: WireType.Varint; value: bigint }
  | { field: number; wire: WireType.Fixed32 | WireType.Fixed64 | WireType.LengthDelimited; bytes: Uint8Array };

/** Reads the varint at `pos`: its value and the position after it. */
export function readVarint(buf: Uint8Array, pos: number): { value: bigint; next: number } {
  let value = 0n;
  for (let shift = 0n, at = pos; shift < 70n; shift += 7n, at++) {
    if (at >= buf.length) throw new ModelFileError(`varint at byte ${pos} runs past the end (truncated file?)`);
    const b = buf[at];
    value |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) return { value: BigInt.asUintN(64, value), next: at + 1 };
  }
  throw new ModelFileError(`varint at byte ${pos} is longer than ten bytes`);
}

/** Every field of one message, in file order; nested messages stay bytes until read themselves. */
export function readFields(buf: Uint8Array): ProtoField[] {
  const fields: ProtoField[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const key = readVarint(buf, pos);
    const field = Number(key.value >> 3n);
    const wire = Number(key.value & 7n);
    pos = key.next;
    if (wire === WireType.Varint) {
      const v = readVarint(buf, pos);
      fields.push({ field, wire, value: v.value });
      pos = v.next;
      continue;
    }
    let size: number;
    if (wire === WireType.Fixed32) size = 4;
    else if (wire === WireType.Fixed64) size = 8;
    else if (wire === WireType.LengthDelimited) {
      const len = readVarint(buf, pos);
      size = Number(len.value);
      pos = len.next;
    } else throw new ModelFileError(`field ${field} at byte ${pos} has wire type ${wire}, which ONNX does not use`);
    if (pos + size > buf.length) throw new ModelFileError(`field ${field} runs past the end (truncated file?)`);
    fields.push({ field, wire, bytes: buf.subarray(pos, pos + size) });
    pos += size;
  }
  return fields;
}

/** A varint field as a signed int64 number (ONNX dims and attribute ints). */
export function intOf(f: ProtoField): number {
  if (f.wire !== WireType.Varint) throw new ModelFileError(`field ${f.field} is not a varint`);
  return Number(BigInt.asIntN(64, f.value));
}

export function floatOf(f: ProtoField): number {
  if (f.wire !== WireType.Fixed32) throw new ModelFileError(`field ${f.field} is not a float`);
  return new DataView(f.bytes.buffer, f.bytes.byteOffset, 4).getFloat32(0, true);
}

export function bytesOf(f: ProtoField): Uint8Array {
  if (f.wire !== WireType.LengthDelimited) throw new ModelFileError(`field ${f.field} is not length-delimited`);
  return f.bytes;
}

export function stringOf(f: ProtoField): string {
  return new TextDecoder().decode(bytesOf(f));
}

/** A repeated int64 field, packed or not: every occurrence of `field` in order. */
export function repeatedInts(fields: readonly ProtoField[], field: number): number[] {
  return fields
    .filter((f) => f.field === field)
    .flatMap((f) => (f.wire === WireType.Varint ? [intOf(f)] : packedIntsOf(bytesOf(f))));
}

/** A repeated float field, packed or not. */
export function repeatedFloats(fields: readonly ProtoField[], field: number): Float32Array {
  const parts = fields
    .filter((f) => f.field === field)
    .map((f) => (f.wire === WireType.Fixed32 ? Float32Array.of(floatOf(f)) : floatsOf(bytesOf(f))));
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function packedIntsOf(bytes: Uint8Array): number[] {
  const out: number[] = [];
  for (let pos = 0; pos < bytes.length;) {
    const v = readVarint(bytes, pos);
    out.push(Number(BigInt.asIntN(64, v.value)));
    pos = v.next;
  }
  return out;
}
