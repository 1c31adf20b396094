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

/** A JPEG segment before the first scan: its marker, and its payload's start and length. */
interface JpegSegment {
  marker: number;
  start: number;
  length: number;
}

/** The segments of a JPEG up to its first scan; stops early where the data is not a JPEG's. */
function* jpegSegments(b: Uint8Array): Generator<JpegSegment> {
  if (!isJpeg(b)) return;
  let i = 2;
  while (i + 3 < b.length) {
    if (b[i] !== 0xff) return; // lost sync: let sharp judge the file
    const marker = b[i + 1];
    if (marker === 0xff) {
      i += 1; // fill byte
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return; // end of image / start of scan
    const length = (b[i + 2] << 8) | b[i + 3]; // counts its own two bytes
    if (length < 2) return;
    yield { marker, start: i + 4, length: Math.min(length - 2, b.length - (i + 4)) };
    i += 2 + length;
  }
}

function jpegSize(b: Uint8Array): ImageSize | null {
  for (const { marker, start, length } of jpegSegments(b)) {
    if (isStartOfFrame(marker))
      return length >= 5
        ? { widthPx: (b[start + 3] << 8) | b[start + 4], heightPx: (b[start + 1] << 8) | b[start + 2] }
        : null;
  }
  return null;
}

const APP1 = 0xe1;
const EXIF_HEADER = [0x45, 0x78, 0x69, 0x66, 0, 0]; // "Exif\0\0"
const ORIENTATION_TAG = 0x0112;
const TIFF_SHORT = 3;

/**
 * The EXIF orientation of a JPEG (1-8, the tag of the first EXIF block's IFD0): 1 when it has
 * none, null when its EXIF block cannot be read or the value is not one of the eight (sharp then
 * decides, as it does for every other file).
 */
export function jpegOrientation(b: Uint8Array): number | null {
  for (const { marker, start, length } of jpegSegments(b)) {
    if (marker !== APP1 || length < EXIF_HEADER.length || !EXIF_HEADER.every((v, k) => b[start + k] === v)) continue;
    const tiff = new DataView(b.buffer, b.byteOffset + start + 6, length - 6);
    if (tiff.byteLength < 8) return null;
    const order = tiff.getUint16(0);
    if (order !== 0x4949 && order !== 0x4d4d) return null; // "II" or "MM"
    const little = order === 0x4949;
    const ifd = tiff.getUint32(4, little);
    if (ifd + 2 > tiff.byteLength) return null;
    const entries = tiff.getUint16(ifd, little);
    for (let e = 0; e < entries; e++) {
      const at = ifd + 2 + 12 * e;
      if (at + 12 > tiff.byteLength) return null;
      if (tiff.getUint16(at, little) !== ORIENTATION_TAG) continue;
      if (tiff.getUint16(at + 2, little) !== TIFF_SHORT || tiff.getUint32(at + 4, little) !== 1) return null;
      const value = tiff.getUint16(at + 8, little);
      return value >= 1 && value <= 8 ? value : null;
    }
    return 1;
  }
  return 1;
}

/** Dimensions (before EXIF orientation) of a PNG, JPEG or GIF; null for other or unparsable data. */
export function sniffImageSize(bytes: Uint8Array): ImageSize | null {
  return pngSize(bytes) ?? jpegSize(bytes) ?? gifSize(bytes);
}
