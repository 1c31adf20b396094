/**
 * IDX files (the MNIST family's format): magic 0x0000 <type> <ndims>, then ndims big-endian
 * uint32 sizes, then the data. Only unsigned bytes (type 0x08) occur in MNIST-like sets.
 * Gzipped files (.gz, as distributed and as Debian ships them) are inflated first.
 */
import { promises as fsp } from 'node:fs';
import * as zlib from 'node:zlib';
import { DataError } from '../../core/errors';

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

const UBYTE = 0x08;

/** Parse an (uncompressed) IDX buffer of unsigned bytes. */
export function parseIdx(buf: Uint8Array, name = 'IDX data'): IdxArray {
  if (buf.length < 4 || buf[0] !== 0 || buf[1] !== 0) throw new DataError(`${name}: not an IDX file (bad magic)`);
  if (buf[2] !== UBYTE)
    throw new DataError(
      `${name}: IDX element type 0x${buf[2].toString(16)} is not supported (only unsigned bytes, 0x08)`,
    );
  const ndims = buf[3];
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.length < 4 + 4 * ndims) throw new DataError(`${name}: truncated IDX header`);
  const dims = Array.from({ length: ndims }, (_, i) => view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, b) => a * b, 1);
  const start = 4 + 4 * ndims;
  if (buf.length !== start + count)
    throw new DataError(`${name}: expected ${count} data bytes for dims [${dims}], found ${buf.length - start}`);
  return { dims, data: buf.subarray(start) };
}

/** Read an IDX file, gzipped or not (detected by the gzip magic, not the name). */
export async function readIdxFile(file: string): Promise<IdxArray> {
  const raw = await fsp.readFile(file);
  const gz = raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b;
  let bytes: Buffer;
  try {
    bytes = gz ? zlib.gunzipSync(raw) : raw;
  } catch (err) {
    throw new DataError(`${file}: corrupt gzip data (${(err as Error).message})`);
  }
  return parseIdx(bytes, file);
}

/** Images and labels of an IDX pair: checks that the counts agree. */
export function idxImages(
  images: IdxArray,
  labels: IdxArray,
  name: string,
): { widthPx: number; heightPx: number; pixels: Uint8Array[]; labels: number[] } {
  if (images.dims.length !== 3)
    throw new DataError(`${name}: images must be 3-dimensional (count, rows, cols), got [${images.dims}]`);
  if (labels.dims.length !== 1) throw new DataError(`${name}: labels must be 1-dimensional, got [${labels.dims}]`);
  const [count, heightPx, widthPx] = images.dims;
  if (labels.dims[0] !== count) throw new DataError(`${name}: ${count} images but ${labels.dims[0]} labels`);
  const size = widthPx * heightPx;
  return {
    widthPx,
    heightPx,
    pixels: Array.from({ length: count }, (_, i) => images.data.subarray(i * size, (i + 1) * size)),
    labels: Array.from(labels.data),
  };
}
