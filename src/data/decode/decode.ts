/**
 * Decode one image file with sharp into the paper's square: shorter side resized to `sizePx`,
 * centre `sizePx x sizePx` kept, 8-bit sRGB, 3 channels, row-major HWC.
 *
 * Normalisation of what people really have: EXIF orientation applied; grayscale, palette,
 * CMYK (via the embedded or libvips' default profile), 16-bit and other ICC spaces become
 * 8-bit sRGB; alpha is flattened on WHITE (transparent product shots and clip-art are drawn on
 * white paper/web pages, so white is what a person labelling them saw); GIF/WebP/TIFF: first
 * frame/page only.
 *
 * Plain 8-bit PNGs (gray, RGB or palette, no alpha or colour profile) are decoded and resized in
 * JS (src/data/decode/png.ts, src/data/decode/resample.ts): libvips' fixed cost per image is ~1 ms, most of
 * the work for a small image. Their resize is PIL's bilinear, pixel for pixel; sharp's 'linear'
 * agrees when shrinking but its enlargements sit about half an output pixel right and down
 * (docs/measurements.md, "Decoding small PNGs"). Plain JPEGs (8-bit gray or YCbCr, no colour
 * profile, no damage; EXIF orientation applied) are decoded by libjpeg-turbo in the JPEG addon
 * and resampled with the same taps, at under half of sharp's CPU (src/data/decode/jpeg-addon.ts).
 * Every other file goes through sharp.
 *
 * sharp runs each pipeline on a libuv worker thread (sharp.concurrency() threads inside it,
 * 1 on glibc by default), so several decodes in flight use several cores. libuv's pool has
 * UV_THREADPOOL_SIZE threads (default 4), shared with fs: it caps parallel decodes per process.
 */
import { readFile, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import type Sharp from 'sharp';
import { loadSharp } from '../../core/sharp';
import { DEFAULT_MIN_SIDE_PX, ImageSize, isJpeg, jpegOrientation, sniffImageSize } from './header';
import { decodeJpegSquare, loadJpegAddon, nativeResampler } from './jpeg-addon';
import { decodePlainPng } from './png';
import { resizeCoverToRgb, squareTaps } from './resample';

/** The callback readFile: fewer trips through libuv's pool than fs.promises.readFile, half its CPU per small file. */
const readFileAsync = promisify(readFile);

/** sharp's resampling kernels (sharp.KernelEnum, spelled out: its ESM typings hide the namespace). */
export type ResizeKernel =
  'nearest' | 'linear' | 'cubic' | 'mitchell' | 'lanczos2' | 'lanczos3' | 'mks2013' | 'mks2021';

export interface DecodeOptions {
  /** Side of the square output; the paper uses 256. */
  sizePx: number;
  /** Refuse inputs with more pixels than this (decompression bombs). sharp's own default: 268,402,689. */
  maxInputPixels?: number;
  /** Refuse images whose shorter side is below this: 1x1 tracking pixels and icons are not photos. */
  minSidePx?: number;
  /** Resampling kernel; see DEFAULT_KERNEL. */
  kernel?: ResizeKernel;
}

export type DecodeResult = { ok: true; pixels: Uint8Array } | { ok: false; reason: string };

export const DEFAULT_MAX_INPUT_PIXELS = 268_402_689;
/**
 * Bilinear with antialiasing when shrinking, as PIL/torchvision's Resize does; the paper does
 * not name a filter. It is also measurably cheaper than lanczos3 (bench/data.ts).
 */
export const DEFAULT_KERNEL: ResizeKernel = 'linear';
const WHITE = { r: 255, g: 255, b: 255 };

/** A short, user-facing reason for a failed read: the errno, not a stack. */
export function readFailureReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case 'ENOENT':
      return 'file missing (deleted or moved after the dataset was indexed)';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return `cannot read file: ${code ?? (err instanceof Error ? err.message : String(err))}`;
  }
}

/** A short, user-facing reason for a failed decode, from sharp/libvips' message. */
export function decodeFailureReason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const first = message.split('\n')[0].trim();
  if (/unsupported image format/i.test(first)) return 'not an image (unrecognised format)';
  if (/premature end|truncated|read error|unexpected end/i.test(message))
    return `truncated or corrupt image data (${first})`;
  if (/pixel limit/i.test(first)) return 'too large (exceeds the input pixel limit)';
  if (first === '' || /^unknown error$/i.test(first)) return VAGUE_DECODE_FAILURE;
  return `cannot decode: ${first}`;
}

/**
 * libvips keeps one global error buffer that every finishing sharp job clears, so with several
 * decodes in flight a failing job can lose its message ("Unknown error"). The file is bad
 * either way; `data check` decodes such files again, one at a time, to get the real reason.
 */
export const VAGUE_DECODE_FAILURE = 'corrupt image data (libvips gave no detail)';

/** Check the header's geometry against the limits; null when acceptable. */
export function geometryProblem(widthPx: number, heightPx: number, opts: DecodeOptions): string | null {
  const maxPixels = opts.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  const minSide = opts.minSidePx ?? DEFAULT_MIN_SIDE_PX;
  if (!(widthPx > 0 && heightPx > 0)) return 'no image dimensions in the header';
  if (widthPx * heightPx > maxPixels)
    return `too large: ${widthPx}x${heightPx} = ${widthPx * heightPx} pixels > limit ${maxPixels}`;
  if (Math.min(widthPx, heightPx) < minSide) return `too small: ${widthPx}x${heightPx}, shorter side < ${minSide} px`;
  return null;
}

/** Dimensions from sharp's header read, for formats header.ts does not sniff (one more pool trip). */
async function sharpHeaderSize(image: ReturnType<typeof Sharp>): Promise<ImageSize> {
  const meta = await image.metadata();
  return { widthPx: meta.width ?? 0, heightPx: meta.height ?? 0 };
}

/**
 * The JS path for plain PNGs, or null to use sharp. It resamples with the bilinear filter only,
 * so another kernel choice goes through sharp unless the image needs no resize.
 */
function decodePlainPngSquare(input: Buffer, opts: DecodeOptions): Uint8Array | null {
  const image = decodePlainPng(input);
  if (!image) return null;
  const needsResize = image.widthPx !== opts.sizePx || image.heightPx !== opts.sizePx;
  if (needsResize && (opts.kernel ?? DEFAULT_KERNEL) !== 'linear') return null;
  return resizeCoverToRgb(image, opts.sizePx, nativeResampler(loadJpegAddon()) ?? undefined);
}

/**
 * The scales libjpeg-turbo decodes at with SIMD (1/8, 2/8, 4/8 and the full size); its other
 * M/8 scales are scalar and cost more than a full decode (docs/measurements.md, "JPEGs").
 */
const JPEG_SCALES = [1, 2, 4] as const;
const FULL_SCALE = 8;

/** A side after decoding at `scale`/8, rounded up as libjpeg does. */
const scaledSide = (px: number, scale: number): number => Math.ceil((px * scale) / FULL_SCALE);

/** The smallest decode scale whose shorter side still covers `sizePx` (the full size when none does). */
export function jpegDecodeScale(size: ImageSize, sizePx: number): number {
  const covers = (m: number): boolean => Math.min(scaledSide(size.widthPx, m), scaledSide(size.heightPx, m)) >= sizePx;
  return JPEG_SCALES.find(covers) ?? FULL_SCALE;
}

/**
 * The native path for plain JPEGs (src/data/decode/jpeg-addon.ts), or null to use sharp: the
 * addon is not built, another kernel than bilinear was asked for, or the file needs what only
 * sharp does (colour profiles, CMYK, an unreadable EXIF block, refusing or tolerating damaged data).
 */
function decodePlainJpegSquare(input: Buffer, size: ImageSize, opts: DecodeOptions): Uint8Array | null {
  if (!isJpeg(input) || (opts.kernel ?? DEFAULT_KERNEL) !== 'linear') return null;
  const addon = loadJpegAddon();
  const orientation = jpegOrientation(input);
  if (!addon || orientation === null) return null;
  const scale = jpegDecodeScale(size, opts.sizePx);
  const [widthPx, heightPx] = [scaledSide(size.widthPx, scale), scaledSide(size.heightPx, scale)];
  // Orientations 5-8 turn the image a quarter: the square is cut from the upright image.
  const upright = orientation >= 5 ? { widthPx: heightPx, heightPx: widthPx } : { widthPx, heightPx };
  const taps = squareTaps(upright.widthPx, upright.heightPx, opts.sizePx);
  const out = new Uint8Array(opts.sizePx * opts.sizePx * 3);
  return decodeJpegSquare(addon, input, scale, orientation, upright, taps, out) === null ? out : null;
}

/**
 * The JS and native paths' square, or null for sharp: also when one of them throws (an allocation
 * failure, or a bug), so that the file still decodes and the decode thread lives on.
 */
function fastSquare(input: Buffer, sniffed: ImageSize, opts: DecodeOptions): Uint8Array | null {
  try {
    return decodePlainPngSquare(input, opts) ?? decodePlainJpegSquare(input, sniffed, opts);
  } catch {
    return null;
  }
}

/**
 * Decode an in-memory encoded image. Never throws for bad data: returns { ok: false, reason }.
 * Plain PNGs and JPEGs decode synchronously on the calling thread (training decodes on decode
 * threads), so that training, evaluation, `predict` and `data prepare` see the same pixels.
 */
export async function decodeBuffer(input: Buffer, opts: DecodeOptions): Promise<DecodeResult> {
  if (input.length === 0) return { ok: false, reason: 'empty file (0 bytes)' };
  // The pixel limit is enforced on the header before any pixel is decoded (the protection of
  // sharp's limitInputPixels, with a message that can give the size).
  const sniffed = sniffImageSize(input);
  if (sniffed) {
    const problem = geometryProblem(sniffed.widthPx, sniffed.heightPx, opts);
    if (problem) return { ok: false, reason: problem };
    const pixels = fastSquare(input, sniffed, opts);
    if (pixels) return { ok: true, pixels };
  }
  try {
    // failOn 'error': truncated/corrupt pixel data is refused (it would decode to a grey
    // band), while benign warnings (extraneous bytes, odd EXIF) that abound in scraped JPEGs are not.
    const image = loadSharp()(input, { failOn: 'error', limitInputPixels: false, autoOrient: true });
    if (!sniffed) {
      const size = await sharpHeaderSize(image);
      const problem = geometryProblem(size.widthPx, size.heightPx, opts);
      if (problem) return { ok: false, reason: problem };
    }
    const data = await image
      .flatten({ background: WHITE }) // applied only when the image has alpha
      .resize(opts.sizePx, opts.sizePx, { fit: 'cover', position: 'centre', kernel: opts.kernel ?? DEFAULT_KERNEL })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer();
    const expected = opts.sizePx * opts.sizePx * 3;
    if (data.length !== expected)
      return { ok: false, reason: `decoder returned ${data.length} bytes, expected ${expected}` };
    return { ok: true, pixels: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (err) {
    return { ok: false, reason: decodeFailureReason(err) };
  }
}

/** Read `file` with `read`, then decode it; a failed read gets its own reason (readFailureReason). */
async function readAndDecode(
  file: string,
  opts: DecodeOptions,
  read: (file: string) => Buffer | Promise<Buffer>,
): Promise<DecodeResult> {
  let input: Buffer;
  try {
    input = await read(file);
  } catch (err) {
    return { ok: false, reason: readFailureReason(err) };
  }
  return decodeBuffer(input, opts);
}

/**
 * Read and decode one file. The file is read by Node (not libvips) so that a missing file,
 * a permission problem and bad pixel data get distinct reasons.
 */
export function decodeFile(file: string, opts: DecodeOptions): Promise<DecodeResult> {
  return readAndDecode(file, opts, readFileAsync);
}

/**
 * decodeFile with a blocking read: for decode threads (src/data/decode/decode-worker.ts), where a
 * blocking read stalls no one and costs a fifth of the asynchronous one's CPU for a small file.
 */
export function decodeFileBlocking(file: string, opts: DecodeOptions): Promise<DecodeResult> {
  return readAndDecode(file, opts, readFileSync);
}
