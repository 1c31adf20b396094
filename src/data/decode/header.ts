/**
 * Image dimensions from the first bytes of PNG, JPEG and GIF files, read in JS. The size
 * limits are checked before decoding; asking sharp.metadata() instead costs a second trip
 * through libuv's pool per image, a noticeable share of decoding a prepared image
 * (docs/measurements.md, "Image headers in JS").
 * Other formats (WebP, TIFF) return null and go through sharp.metadata().
 */
import { PNG_SIGNATURE } from './png';

/** Images whose shorter side is below this are refused (decode.ts): here, so `data check --help` needs no sharp. */
export const DEFAULT_MIN_SIDE_PX = 8;

export interface ImageSize {
  widthPx: number;
  heightPx: number;
}

function pngSize(b: Uint8Array): ImageSize | null {
  if (b.length < 24 || !PNG_SIGNATURE.every((v, i) => b[i] === v)) return null;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { widthPx: view.getUint32(16), heightPx: view.getUint32(20) };
}

function gifSize(b: Uint8Array): ImageSize | null {
  if (b.length < 10 || b[0] !== 0x47 || b[1] !== 0x49 || b[2] !== 0x46) return null; // "GIF"
  return { widthPx: b[6] | (b[7] << 8), heightPx: b[8] | (b[9] << 8) };
}

/** Start-of-frame markers C0-CF, except DHT (C4), JPG (C8) and DAC (CC), carry the frame size. */
function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

/** The JPEG signature: start of image, then a marker. */
export function isJpeg(b: Uint8Array): boolean {
  return b.length >= 4 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
}

function jpegSize(b: Uint8Array): ImageSize | null {
  if (!isJpeg(b)) return null;
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return null; // lost sync: let sharp judge the file
    const marker = b[i + 1];
    if (marker === 0xff) {
      i += 1; // fill byte
      continue;
    }
    const length = (b[i + 2] << 8) | b[i + 3];
    if (isStartOfFrame(marker)) return { widthPx: (b[i + 7] << 8) | b[i + 8], heightPx: (b[i + 5] << 8) | b[i + 6] };
    if (marker === 0xd9 || marker === 0xda) return null; // end of image / start of scan before any frame
    i += 2 + length;
  }
  return null;
}

/** Dimensions (before EXIF orientation) of a PNG, JPEG or GIF; null for other or unparsable data. */
export function sniffImageSize(bytes: Uint8Array): ImageSize | null {
  return pngSize(bytes) ?? jpegSize(bytes) ?? gifSize(bytes);
}
