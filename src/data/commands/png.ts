/**
 * Minimal PNG encoder for 8-bit images (filter 0, one IDAT), for materialising MNIST-family
 * datasets: tens of thousands of tiny images, for which a sharp pipeline per file and even
 * zlib.deflateSync's per-call setup cost far more than the bytes. So tiny images are stored
 * uncompressed ("stored" deflate blocks): the files grow but stay within one file-system block
 * (docs/measurements.md, "Tiny PNGs"). Decoding stays with sharp, and the tests check that
 * sharp reads these files back exactly.
 */
import * as zlib from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
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
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]);
}
