/**
 * PNG in JS, both ways, for the plain 8-bit case.
 *
 * Decoding: grayscale, RGB or palette images without transparency, interlacing or a colour
 * profile. That is what image datasets written by scripts look like (Fashion-MNIST, MNIST,
 * CIFAR dumps), and for those libvips' fixed cost per image is most of the work: ~1 ms of CPU
 * for a 28x28 file, against tens of microseconds here (docs/measurements.md, "Decoding small
 * PNGs"). Anything else (16-bit, alpha, tRNS, ICC/gamma/EXIF chunks, interlaced, a bad CRC,
 * truncated or corrupt data) returns null, and the caller decodes the file with sharp, which
 * also gives the user-facing reason for a broken file. So this path never changes which files
 * are refused.
 *
 * Encoding (filter 0, one IDAT), for materialising MNIST-family datasets: tens of thousands of
 * tiny images, for which a sharp pipeline per file and even zlib.deflateSync's per-call setup
 * cost far more than the bytes. So tiny images are stored uncompressed ("stored" deflate
 * blocks): the files grow but stay within one file-system block (docs/measurements.md, "Tiny
 * PNGs"). The tests check that sharp reads these files back exactly.
 */
import * as zlib from 'node:zlib';
import type { PixelImage } from './resample';

/** The 8 bytes every PNG file starts with. */
export const PNG_SIGNATURE: readonly number[] = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Chunks that do not change the pixels' colours. Any other ancillary chunk sends the file to sharp. */
const HARMLESS_CHUNKS = new Set(['tEXt', 'zTXt', 'iTXt', 'tIME', 'pHYs', 'sRGB', 'sBIT', 'bKGD', 'hIST', 'sPLT']);

const enum ColourType {
  Gray = 0,
  Rgb = 2,
  Palette = 3,
}

/** Bytes per pixel in the filtered stream, for the colour types handled here (8-bit). */
function samplesPerPixel(colourType: number): number | null {
  if (colourType === ColourType.Gray || colourType === ColourType.Palette) return 1;
  if (colourType === ColourType.Rgb) return 3;
  return null;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

/**
 * Undo PNG's per-row filters in place (PNG spec section 9). `data` holds `height` rows of
 * 1 filter byte + `stride` bytes; returns the unfiltered rows without the filter bytes, or null
 * for an unknown filter type.
 */
export function unfilter(data: Uint8Array, heightPx: number, stride: number, bpp: number): Uint8Array | null {
  const out = new Uint8Array(heightPx * stride);
  for (let y = 0; y < heightPx; y++) {
    const filter = data[y * (stride + 1)];
    const src = y * (stride + 1) + 1;
    const row = y * stride;
    const prev = row - stride; // only read when y > 0
    const lead = Math.min(bpp, stride); // the first pixel's bytes: no left neighbour
    // One loop per filter type, the first pixel (no left neighbour) and the first row (no row
    // above) apart: the row's filter is chosen once, not per byte (a third of the decode's time).
    switch (filter) {
      case 0:
        out.set(data.subarray(src, src + stride), row);
        break;
      case 1:
        for (let x = 0; x < lead; x++) out[row + x] = data[src + x];
        for (let x = bpp; x < stride; x++) out[row + x] = (data[src + x] + out[row + x - bpp]) & 0xff;
        break;
      case 2:
        if (y === 0) out.set(data.subarray(src, src + stride), row);
        else for (let x = 0; x < stride; x++) out[row + x] = (data[src + x] + out[prev + x]) & 0xff;
        break;
      case 3:
        if (y === 0) {
          for (let x = 0; x < lead; x++) out[row + x] = data[src + x];
          for (let x = bpp; x < stride; x++) out[row + x] = (data[src + x] + (out[row + x - bpp] >> 1)) & 0xff;
        } else {
          for (let x = 0; x < lead; x++) out[row + x] = (data[src + x] + (out[prev + x] >> 1)) & 0xff;
          for (let x = bpp; x < stride; x++)
            out[row + x] = (data[src + x] + ((out[row + x - bpp] + out[prev + x]) >> 1)) & 0xff;
        }
        break;
      case 4:
        if (y === 0) {
          // paeth(left, 0, 0) is left: the Sub filter.
          for (let x = 0; x < lead; x++) out[row + x] = data[src + x];
          for (let x = bpp; x < stride; x++) out[row + x] = (data[src + x] + out[row + x - bpp]) & 0xff;
        } else {
          // paeth(0, up, 0) is up.
          for (let x = 0; x < lead; x++) out[row + x] = (data[src + x] + out[prev + x]) & 0xff;
          for (let x = bpp; x < stride; x++)
            out[row + x] = (data[src + x] + paeth(out[row + x - bpp], out[prev + x], out[prev + x - bpp])) & 0xff;
        }
        break;
      default:
        return null;
    }
  }
  return out;
}

/** Palette indices to RGB; null for an index past the palette (sharp then judges the file). */
function expandPalette(indices: Uint8Array, palette: Uint8Array): Uint8Array | null {
  const entries = palette.length / 3;
  const rgb = new Uint8Array(indices.length * 3);
  for (let i = 0; i < indices.length; i++) {
    const k = indices[i];
    if (k >= entries) return null;
    rgb[3 * i] = palette[3 * k];
    rgb[3 * i + 1] = palette[3 * k + 1];
    rgb[3 * i + 2] = palette[3 * k + 2];
  }
  return rgb;
}

const crc32 = (bytes: Uint8Array): number => zlib.crc32(bytes) >>> 0;

/**
 * Decode `bytes` when it is a PNG of the plain kind described above (gray stays one channel,
 * a palette becomes RGB); null otherwise (not a PNG,
 * a kind left to sharp, or damaged in any way).
 */
export function decodePlainPng(bytes: Uint8Array): PixelImage | null {
  if (bytes.length < 8 + 25 || !PNG_SIGNATURE.every((v, i) => bytes[i] === v)) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let widthPx = 0;
  let heightPx = 0;
  let colourType: ColourType = ColourType.Gray;
  let palette: Uint8Array | null = null;
  const idat: Uint8Array[] = [];
  let ended = false;
  for (let at = 8; at + 12 <= bytes.length && !ended;) {
    const length = view.getUint32(at);
    if (at + 12 + length > bytes.length) return null; // truncated
    const type = String.fromCharCode(bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]);
    const body = bytes.subarray(at + 8, at + 8 + length);
    if (crc32(bytes.subarray(at + 4, at + 8 + length)) !== view.getUint32(at + 8 + length)) return null;
    if (at === 8 && type !== 'IHDR') return null;
    switch (type) {
      case 'IHDR': {
        if (length !== 13) return null;
        widthPx = view.getUint32(at + 8);
        heightPx = view.getUint32(at + 12);
        const [depth, colour, compression, filterMethod, interlace] = body.subarray(8, 13);
        if (depth !== 8 || compression !== 0 || filterMethod !== 0 || interlace !== 0) return null;
        if (samplesPerPixel(colour) === null) return null;
        colourType = colour as ColourType;
        break;
      }
      case 'PLTE':
        if (length % 3 !== 0 || length === 0) return null;
        palette = body;
        break;
      case 'IDAT':
        idat.push(body);
        break;
      case 'IEND':
        ended = true;
        break;
      default:
        if (!HARMLESS_CHUNKS.has(type)) return null; // tRNS, iCCP, gAMA, cHRM, eXIf, unknown: sharp's job
    }
    at += 12 + length;
  }
  if (!ended || widthPx === 0 || heightPx === 0 || idat.length === 0) return null;
  const bpp = samplesPerPixel(colourType) as number;
  const stride = widthPx * bpp;
  let inflated: Buffer;
  try {
    inflated = zlib.inflateSync(idat.length === 1 ? idat[0] : Buffer.concat(idat));
  } catch {
    return null;
  }
  if (inflated.length !== heightPx * (stride + 1)) return null;
  const samples = unfilter(inflated, heightPx, stride, bpp);
  if (!samples) return null;
  if (colourType !== ColourType.Palette) return { widthPx, heightPx, channels: bpp === 1 ? 1 : 3, data: samples };
  const rgb = palette && expandPalette(samples, palette);
  return rgb ? { widthPx, heightPx, channels: 3, data: rgb } : null;
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** PNG colour types by channel count: grey, grey+alpha, RGB, RGBA. */
const COLOUR_TYPE: Readonly<Record<number, number>> = { 1: 0, 2: 4, 3: 2, 4: 6 };
/** Largest payload of one stored deflate block. */
const STORED_BLOCK_BYTES = 0xffff;
/** Up to this many raw bytes are stored rather than compressed. */
const STORE_BELOW_BYTES = 16 * 1024;

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(data, zlib.crc32(head.subarray(4))) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

export function adler32(data: Uint8Array): number {
  let a = 1;
  let b = 0;
  for (let i = 0; i < data.length; i++) {
    a = (a + data[i]) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

/** A zlib stream of stored (uncompressed) deflate blocks. */
export function zlibStored(data: Uint8Array): Buffer {
  const blocks = Math.max(1, Math.ceil(data.length / STORED_BLOCK_BYTES));
  const out = Buffer.alloc(2 + blocks * 5 + data.length + 4);
  out[0] = 0x78; // deflate, 32 KiB window
  out[1] = 0x01; // no preset dictionary, fastest; (0x78 << 8 | 0x01) % 31 === 0
  let o = 2;
  for (let k = 0; k < blocks; k++) {
    const part = data.subarray(k * STORED_BLOCK_BYTES, (k + 1) * STORED_BLOCK_BYTES);
    out[o] = k === blocks - 1 ? 1 : 0; // BFINAL, BTYPE 00 = stored
    out.writeUInt16LE(part.length, o + 1);
    out.writeUInt16LE(~part.length & 0xffff, o + 3);
    out.set(part, o + 5);
    o += 5 + part.length;
  }
  out.writeUInt32BE(adler32(data), o);
  return out;
}

/** PNG bytes of row-major interleaved 8-bit pixels. */
export function encodePng(pixels: Uint8Array, widthPx: number, heightPx: number, channels: 1 | 2 | 3 | 4): Buffer {
  const rowBytes = widthPx * channels;
  if (pixels.length !== rowBytes * heightPx)
    throw new RangeError(
      `expected ${rowBytes * heightPx} bytes for ${widthPx}x${heightPx}x${channels}, got ${pixels.length}`,
    );
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(widthPx, 0);
  ihdr.writeUInt32BE(heightPx, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = COLOUR_TYPE[channels];
  // bytes 10-12: deflate, adaptive filtering, no interlace (all 0)
  const raw = Buffer.alloc((rowBytes + 1) * heightPx); // each row: filter byte 0 + pixels
  for (let y = 0; y < heightPx; y++) raw.set(pixels.subarray(y * rowBytes, (y + 1) * rowBytes), y * (rowBytes + 1) + 1);
  const idat = raw.length < STORE_BELOW_BYTES ? zlibStored(raw) : zlib.deflateSync(raw);
  return Buffer.concat([
    Buffer.from(PNG_SIGNATURE),
    chunk('IHDR', ihdr),
    chunk('IDAT', idat),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
