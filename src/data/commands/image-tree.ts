/**
 * Writing an image-folder dataset from in-memory images (scripts/make-fashion-mnist.ts,
 * scripts/import-idx.ts). The tree is built beside its destination and renamed into place
 * with a marker file inside, so an interrupted run never leaves a half tree that looks done,
 * and a rerun with the same parameters is a no-op.
 */
import { promises as fsp, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { DataError } from '../../core/errors';
import { SplitName } from '../index/dataset';
import { encodePng } from '../decode/png';

export interface TreeImage {
  split: SplitName;
  className: string;
  /** File name inside the class folder, e.g. "00042.png". */
  fileName: string;
  pixels: Uint8Array;
}

export interface TreeGeometry {
  widthPx: number;
  heightPx: number;
  channels: 1 | 3;
}

/** Dotfile: the dataset scanner ignores it. */
export const COMPLETE_MARKER = '.complete.json';

export interface TreeMarker {
  /** Whatever determines the content (source, seed, split sizes...): a rerun with equal params is skipped. */
  params: Record<string, unknown>;
  counts: Record<string, number>;
}

/** The marker of a finished tree, or null. */
export async function readMarker(dir: string): Promise<TreeMarker | null> {
  try {
    return JSON.parse(await fsp.readFile(path.join(dir, COMPLETE_MARKER), 'utf8')) as TreeMarker;
  } catch {
    return null;
  }
}

/** True when `dir` holds a finished tree made with exactly these params. */
export async function isCompleteTree(dir: string, params: Record<string, unknown>): Promise<boolean> {
  const marker = await readMarker(dir);
  return marker !== null && JSON.stringify(marker.params) === JSON.stringify(params);
}

/** Per-split image counts. */
export function splitCounts(images: readonly TreeImage[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const img of images) counts[img.split] = (counts[img.split] ?? 0) + 1;
  return counts;
}

/**
 * Write `images` as PNGs to outDir/<split>/<class>/<fileName>. A finished tree made by an
 * earlier run (it has a marker) is replaced; any other existing folder is left alone and is
 * an error, so user data is never deleted.
 */
export async function buildImageTree(
  outDir: string,
  images: readonly TreeImage[],
  geometry: TreeGeometry,
  params: Record<string, unknown>,
): Promise<TreeMarker> {
  const out = path.resolve(outDir);
  const exists = await fsp.stat(out).then(
    () => true,
    () => false,
  );
  if (exists && (await readMarker(out)) === null) {
    throw new DataError(
      `${out} exists but was not made by this tool (no ${COMPLETE_MARKER}); delete it or choose another output folder`,
    );
  }
  const staging = `${out}.partial-${process.pid}`;
  await fsp.rm(staging, { recursive: true, force: true });
  const dirs = new Set(images.map((img) => path.join(staging, img.split, img.className)));
  for (const d of dirs) await fsp.mkdir(d, { recursive: true });
  // Synchronous writes: for ~1 KB files a promise round trip through libuv's pool costs more
  // than the write itself (docs/measurements.md, "Synchronous writes of small files"), and this
  // is a batch tool with nothing else to do.
  for (const img of images) {
    writeFileSync(
      path.join(staging, img.split, img.className, img.fileName),
      encodePng(img.pixels, geometry.widthPx, geometry.heightPx, geometry.channels),
    );
  }
  const marker: TreeMarker = { params, counts: splitCounts(images) };
  await fsp.writeFile(path.join(staging, COMPLETE_MARKER), JSON.stringify(marker, null, 2) + '\n');
  if (exists) {
    const old = `${out}.old-${process.pid}`;
    await fsp.rename(out, old);
    await fsp.rename(staging, out);
    await fsp.rm(old, { recursive: true, force: true });
  } else {
    await fsp.mkdir(path.dirname(out), { recursive: true });
    await fsp.rename(staging, out);
  }
  return marker;
}
