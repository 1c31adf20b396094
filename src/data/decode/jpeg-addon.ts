/**
 * The JPEG addon (addon/jpeg_addon.cc, built by addon/build.sh into dist/native/alexnet_jpeg.node):
 * its function as TypeScript sees it, and whether it loads here. It is optional: where it is
 * not built (no libjpeg-turbo headers), every JPEG goes through sharp as before.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { projectRoot } from '../../core/project-root';
import type { FlatTaps } from './resample';

export const JPEG_ADDON_FILE = 'dist/native/alexnet_jpeg.node';

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
    acrossFirst: Int32Array,
    acrossOffset: Int32Array,
    acrossWeights: Float64Array,
    downFirst: Int32Array,
    downOffset: Int32Array,
    downWeights: Float64Array,
    out: Uint8Array,
  ): string | null;
}

/** The addon's file; ALEXNET_JPEG_ADDON overrides it (a path that does not exist: run as where it is not built). */
export function jpegAddonPath(): string {
  const override = process.env['ALEXNET_JPEG_ADDON'];
  return override != null && override !== '' ? override : path.join(projectRoot(__dirname), JPEG_ADDON_FILE);
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
  const { across, down } = taps;
  return addon.decodeSquare(
    input,
    scale,
    orientation,
    upright.widthPx,
    upright.heightPx,
    across.first,
    across.offset,
    across.weights,
    down.first,
    down.offset,
    down.weights,
    out,
  );
}
