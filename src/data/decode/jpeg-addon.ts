/**
 * The JPEG addon (addon/jpeg_addon.cc, built by addon/build.sh into dist/native/alexnet_jpeg.node):
 * its function as TypeScript sees it, and whether it loads here. It is optional: where it is
 * not built (no libjpeg-turbo headers), every JPEG goes through sharp as before.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { projectRoot } from '../../core/project-root';
import { squareTaps, type FlatTaps, type PixelImage, type SquareResampler } from './resample';

export const JPEG_ADDON_FILE = 'dist/native/alexnet_jpeg.node';

/** Both axes' taps (resample.ts squareTaps) as the addon's functions take them. */
export type TapArrays = [
  acrossFirst: Int32Array,
  acrossOffset: Int32Array,
  acrossWeights: Float64Array,
  downFirst: Int32Array,
  downOffset: Int32Array,
  downWeights: Float64Array,
];

export function tapArrays({ across, down }: { across: FlatTaps; down: FlatTaps }): TapArrays {
  return [across.first, across.offset, across.weights, down.first, down.offset, down.weights];
}

export interface JpegAddon {
  /**
   * Decode a JPEG at `scale`/8 of its size, turn it upright by its EXIF `orientation` (1-8,
   * read by the caller; it must come out `widthPx` x `heightPx`), and resample it with the
   * taps into `out` (side x side x 3 RGB). Returns null, or why the file must go through sharp
   * instead (colour profile, CMYK, any decoder warning or error). Throws a TypeError (code
   * JPEG_ADDON) for arguments that do not fit together.
   */
  decodeSquare(
    input: Uint8Array,
    scale: number,
    orientation: number,
    widthPx: number,
    heightPx: number,
    ...tapsAndOut: [...TapArrays, out: Uint8Array]
  ): string | null;

  /**
   * Resample an 8-bit `widthPx` x `heightPx` image of 1 or 3 interleaved channels with the taps
   * into `out` (RGB), as decodeSquare resamples. Throws a TypeError (code JPEG_ADDON) for
   * arguments that do not fit together. Absent from builds before 2026-12-07.
   */
  resampleSquare?(
    pixels: Uint8Array,
    widthPx: number,
    heightPx: number,
    channels: number,
    ...tapsAndOut: [...TapArrays, out: Uint8Array]
  ): void;

  /**
   * src/data/augment.ts's writeCrop, the same floats: the crop at (`xPx`, `yPx`) of a
   * `srcSizePx` square of RGB bytes through `affine` ([scale r, g, b, offset r, g, b]) into
   * `dst` from `dstOffset`, mirrored with `flip`. Throws a TypeError (code JPEG_ADDON) for a
   * crop or output that does not fit. Absent from builds before 2026-12-07.
   */
  writeCrop?(
    src: Uint8Array,
    srcSizePx: number,
    cropSizePx: number,
    xPx: number,
    yPx: number,
    flip: boolean,
    affine: Float64Array,
    dst: Float32Array,
    dstOffset: number,
  ): void;
}

/** The last answer of jpegAddonPath and the override it was for: the decode threads ask once per image. */
let lastPath: { override: string | undefined; file: string } | null = null;

/** The addon's file; ALEXNET_JPEG_ADDON overrides it (a path that does not exist: run as where it is not built). */
export function jpegAddonPath(): string {
  const override = process.env['ALEXNET_JPEG_ADDON'];
  if (lastPath === null || lastPath.override !== override) {
    const file = override != null && override !== '' ? override : path.join(projectRoot(__dirname), JPEG_ADDON_FILE);
    lastPath = { override, file };
  }
  return lastPath.file;
}

let loaded: { file: string; addon: JpegAddon | null } | null = null;

/** The addon, or null where it is not built or does not load (once per thread). */
export function loadJpegAddon(file: string = jpegAddonPath()): JpegAddon | null {
  if (loaded?.file === file) return loaded.addon;
  let addon: JpegAddon | null = null;
  if (fs.existsSync(file)) {
    try {
      // A computed require: the addon is a build output, loaded on each decode thread.
      addon = require(file) as JpegAddon;
    } catch {
      addon = null; // a stale or foreign build: sharp decodes every JPEG, as without it
    }
  }
  loaded = { file, addon };
  return addon;
}

/** Calls decodeSquare with both axes' taps, for the upright image at the decode scale. */
export function decodeJpegSquare(
  addon: JpegAddon,
  input: Uint8Array,
  scale: number,
  orientation: number,
  upright: { widthPx: number; heightPx: number },
  taps: { across: FlatTaps; down: FlatTaps },
  out: Uint8Array,
): string | null {
  return addon.decodeSquare(input, scale, orientation, upright.widthPx, upright.heightPx, ...tapArrays(taps), out);
}

const resamplers = new WeakMap<JpegAddon, SquareResampler>();

/**
 * The addon's resample as a resizeCoverToRgb resampler (the same bytes as resample.ts's, in a
 * fraction of the time: docs/measurements.md, "Decoding small PNGs"), or null where the addon or
 * its resampleSquare is missing.
 */
export function nativeResampler(addon: JpegAddon | null): SquareResampler | null {
  if (addon?.resampleSquare == null) return null;
  let resampler = resamplers.get(addon);
  if (!resampler) {
    const resample = addon.resampleSquare.bind(addon);
    resampler = (image: PixelImage, sizePx: number): Uint8Array => {
      const { widthPx, heightPx, channels, data } = image;
      const out = new Uint8Array(sizePx * sizePx * 3);
      const pixels = data.subarray(0, widthPx * heightPx * channels);
      resample(pixels, widthPx, heightPx, channels, ...tapArrays(squareTaps(widthPx, heightPx, sizePx)), out);
      return out;
    };
    resamplers.set(addon, resampler);
  }
  return resampler;
}
