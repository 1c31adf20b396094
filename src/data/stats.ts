/**
 * Dataset colour statistics: per-channel mean/std and the eigen-decomposition of the 3x3 RGB
 * covariance over all pixels of the (training) images, in [0, 1] pixel units, as the paper's
 * PCA lighting and the mean/std normalisation need. Kept in a cache folder (or the run
 * directory), never written into the dataset; a stats.json the user put beside the dataset is read.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { DataError } from '../core/errors';
import { Sample } from './index/dataset';
import { DecodeOptions, decodeFile } from './decode/decode';
import { DEFAULT_DECODE_CONCURRENCY, mapLimit } from './pool';
import { seededSubset } from './rng';
import { writeAtomic } from '../core/atomic-write';

export interface DatasetStats {
  meanRgb: [number, number, number];
  stdRgb: [number, number, number];
  /** Descending. */
  eigenvalues: [number, number, number];
  /** 3x3, columns = eigenvectors (eigenvectors[row][col]). */
  eigenvectors: number[][];
  imageCount: number;
  /** Square side the images were resized to before counting pixels. */
  sizePx?: number;
}

/**
 * ImageNet's published RGB statistics in [0, 1] units: torchvision's mean and std, and the
 * eigen-decomposition of the pixel covariance that fb.resnet.torch's lighting uses. For runs
 * without a dataset of their own to measure (benchmarks, tests of the lighting path).
 */
export const IMAGENET_STATS: DatasetStats = {
  meanRgb: [0.485, 0.456, 0.406],
  stdRgb: [0.229, 0.224, 0.225],
  eigenvalues: [0.2175, 0.0188, 0.0045],
  eigenvectors: [
    [-0.5675, 0.7192, 0.4009],
    [-0.5808, -0.0045, -0.814],
    [-0.5836, -0.6948, 0.4203],
  ],
  imageCount: 1,
};

export const STATS_FILE = 'stats.json';
const STATS_FORMAT = 'alexnet-dataset-stats/1';

/** Running sums over pixels, kept exact per image (integers) and in float64 across images. */
export interface PixelMoments {
  pixelCount: number;
  /** sum of r, g, b (uint8 units). */
  sum: [number, number, number];
  /** sum of products: rr, rg, rb, gg, gb, bb (uint8^2 units). */
  sumProducts: [number, number, number, number, number, number];
}

export function emptyMoments(): PixelMoments {
  return { pixelCount: 0, sum: [0, 0, 0], sumProducts: [0, 0, 0, 0, 0, 0] };
}

/** Add the pixels of one uint8 RGB image. Per-image integer sums stay below 2^53 up to ~138 Mpx. */
export function addImage(m: PixelMoments, rgb: Uint8Array): void {
  let r = 0,
    g = 0,
    b = 0,
    rr = 0,
    rg = 0,
    rb = 0,
    gg = 0,
    gb = 0,
    bb = 0;
  for (let i = 0; i + 2 < rgb.length; i += 3) {
    const x = rgb[i],
      y = rgb[i + 1],
      z = rgb[i + 2];
    r += x;
    g += y;
    b += z;
    rr += x * x;
    rg += x * y;
    rb += x * z;
    gg += y * y;
    gb += y * z;
    bb += z * z;
  }
  m.pixelCount += Math.floor(rgb.length / 3);
  m.sum[0] += r;
  m.sum[1] += g;
  m.sum[2] += b;
  const p = m.sumProducts;
  p[0] += rr;
  p[1] += rg;
  p[2] += rb;
  p[3] += gg;
  p[4] += gb;
  p[5] += bb;
}

/** Mean (3) and covariance (3x3), [0, 1] units. */
export function meanAndCovariance(m: PixelMoments): { mean: [number, number, number]; cov: number[][] } {
  if (m.pixelCount === 0) throw new DataError('no pixels to compute statistics from');
  const n = m.pixelCount;
  const mean: [number, number, number] = [m.sum[0] / n / 255, m.sum[1] / n / 255, m.sum[2] / n / 255];
  const idx = [
    [0, 1, 2],
    [1, 3, 4],
    [2, 4, 5],
  ];
  const cov = idx.map((row, i) => row.map((k, j) => m.sumProducts[k] / n / (255 * 255) - mean[i] * mean[j]));
  return { mean, cov };
}

/**
 * Eigen-decomposition of a symmetric 3x3 matrix by cyclic Jacobi rotations. Returns values in
 * descending order and vectors as columns, each with a non-negative component sum so the
 * result is reproducible (the sign of an eigenvector is otherwise arbitrary).
 */
export function symmetricEigen3(matrix: number[][]): { values: [number, number, number]; vectors: number[][] } {
  const a = matrix.map((row) => [...row]);
  const v = [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
  ];
  for (let sweep = 0; sweep < 50; sweep++) {
    const off = a[0][1] ** 2 + a[0][2] ** 2 + a[1][2] ** 2;
    if (off < 1e-30) break;
    for (const [p, q] of [
      [0, 1],
      [0, 2],
      [1, 2],
    ]) {
      if (Math.abs(a[p][q]) < 1e-300) continue;
      const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
      const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
      const c = 1 / Math.sqrt(t * t + 1);
      const s = t * c;
      for (let k = 0; k < 3; k++) {
        const akp = a[k][p],
          akq = a[k][q];
        a[k][p] = c * akp - s * akq;
        a[k][q] = s * akp + c * akq;
      }
      for (let k = 0; k < 3; k++) {
        const apk = a[p][k],
          aqk = a[q][k];
        a[p][k] = c * apk - s * aqk;
        a[q][k] = s * apk + c * aqk;
      }
      for (let k = 0; k < 3; k++) {
        const vkp = v[k][p],
          vkq = v[k][q];
        v[k][p] = c * vkp - s * vkq;
        v[k][q] = s * vkp + c * vkq;
      }
    }
  }
  const order = [0, 1, 2].sort((i, j) => a[j][j] - a[i][i]);
  const vectors = [
    [0, 0, 0],
    [0, 0, 0],
    [0, 0, 0],
  ];
  order.forEach((src, dst) => {
    const sign = v[0][src] + v[1][src] + v[2][src] < 0 ? -1 : 1;
    for (let k = 0; k < 3; k++) vectors[k][dst] = sign * v[k][src];
  });
  const values = order.map((i) => Math.max(0, a[i][i])) as [number, number, number];
  return { values, vectors };
}

/** DatasetStats from accumulated moments. A constant channel gets std 1 so normalisation never divides by 0. */
export function statsFromMoments(m: PixelMoments, imageCount: number, sizePx?: number): DatasetStats {
  const { mean, cov } = meanAndCovariance(m);
  const std = [0, 1, 2].map((c) => Math.sqrt(Math.max(cov[c][c], 0))).map((s) => (s > 1e-8 ? s : 1)) as [
    number,
    number,
    number,
  ];
  const { values, vectors } = symmetricEigen3(cov);
  return { meanRgb: mean, stdRgb: std, eigenvalues: values, eigenvectors: vectors, imageCount, sizePx };
}

export interface ComputeStatsOptions extends DecodeOptions {
  /** Use a seeded random subset of at most this many images (statistics converge long before 1.2M). */
  maxImages?: number;
  seed?: number;
  concurrency?: number;
  onSkip?: (path: string, reason: string) => void;
  onProgress?: (done: number, total: number) => void;
}

/** The samples to use: all, or a seeded random subset. */

/** Decode the images (skipping bad ones) and compute their colour statistics. */
export async function computeStats(samples: Sample[], opts: ComputeStatsOptions): Promise<DatasetStats> {
  const chosen = seededSubset(samples, opts.maxImages, opts.seed ?? 0);
  const moments = emptyMoments();
  let used = 0;
  let done = 0;
  await mapLimit(chosen, opts.concurrency ?? DEFAULT_DECODE_CONCURRENCY, async (s) => {
    const r = await decodeFile(s.path, opts);
    if (r.ok) {
      addImage(moments, r.pixels);
      used += 1;
    } else {
      opts.onSkip?.(s.path, r.reason);
    }
    opts.onProgress?.(++done, chosen.length);
  });
  if (used === 0)
    throw new DataError(
      `none of the ${chosen.length} image(s) could be decoded; run \`alexnet data check\` to see why`,
    );
  return statsFromMoments(moments, used, opts.sizePx);
}

function isNumberArray(x: unknown, n: number): x is number[] {
  return Array.isArray(x) && x.length === n && x.every((v) => typeof v === 'number' && Number.isFinite(v));
}

/** Validate parsed JSON as DatasetStats; throws DataError naming the file and the field. */
export function parseStats(json: unknown, file: string): DatasetStats {
  const o = json as Record<string, unknown> | null;
  const bad = (field: string): never => {
    throw new DataError(`${file}: invalid or missing '${field}'; delete it and run \`alexnet data stats\` again`);
  };
  if (!o || typeof o !== 'object' || o.format !== STATS_FORMAT) bad('format');
  const s = o as Record<string, unknown>;
  for (const f of ['meanRgb', 'stdRgb', 'eigenvalues']) if (!isNumberArray(s[f], 3)) bad(f);
  const vec = s.eigenvectors;
  if (!Array.isArray(vec) || vec.length !== 3 || !vec.every((row) => isNumberArray(row, 3))) bad('eigenvectors');
  if (typeof s.imageCount !== 'number' || !(s.imageCount > 0)) bad('imageCount');
  if ((s.stdRgb as number[]).some((v) => v <= 0)) bad('stdRgb');
  return {
    meanRgb: s.meanRgb as [number, number, number],
    stdRgb: s.stdRgb as [number, number, number],
    eigenvalues: s.eigenvalues as [number, number, number],
    eigenvectors: vec as number[][],
    imageCount: s.imageCount as number,
    sizePx: typeof s.sizePx === 'number' ? s.sizePx : undefined,
  };
}

/** Legacy and user-provided place: read when present, never written (the dataset is the user's). */
export function statsPath(root: string): string {
  return path.join(root, STATS_FILE);
}

/**
 * The cache file of the statistics of these samples at this size: a folder per dataset and
 * image set under `cacheDir`, so a changed split or size never reuses stale numbers.
 */
export function cachedStatsPath(cacheDir: string, root: string, samples: readonly Sample[], sizePx: number): string {
  const h = createHash('sha256').update(`${path.resolve(root)}\n${sizePx}\n`);
  for (const s of samples) h.update(`${s.path}\t${s.label}\n`);
  return path.join(
    cacheDir,
    'datasets',
    `${path.basename(root)}-${h.digest('hex').slice(0, 16)}`,
    `stats-${sizePx}px.json`,
  );
}

/** Stats from the first of `files` that exists, or null. */
export async function findStats(files: readonly string[]): Promise<{ stats: DatasetStats; file: string } | null> {
  for (const file of files) {
    const stats = await loadStatsFile(file);
    if (stats !== null) return { stats, file };
  }
  return null;
}

/** Stats stored beside the dataset (root/stats.json), or null when there are none. */
export async function loadStats(root: string): Promise<DatasetStats | null> {
  return loadStatsFile(statsPath(root));
}

async function loadStatsFile(file: string): Promise<DatasetStats | null> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new DataError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new DataError(`${file} is not valid JSON; delete it and run \`alexnet data stats\` again`);
  }
  return parseStats(json, file);
}

/** Write a stats file (atomically: a reader never sees half a file), creating its folder. */
export async function saveStatsFile(file: string, stats: DatasetStats): Promise<string> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  writeAtomic(file, JSON.stringify({ format: STATS_FORMAT, ...stats }, null, 2) + '\n');
  return file;
}

/** Write stats.json into `dir` (tests and tools that own the folder). */
export async function saveStats(dir: string, stats: DatasetStats): Promise<string> {
  return saveStatsFile(statsPath(dir), stats);
}

/**
 * Errors that mean "this place cannot be written", so the next place is tried (a recursive
 * mkdir on a read-only mount reports ENOENT, not EROFS).
 */
const UNWRITABLE = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'ENOTDIR', 'EEXIST', 'ENOENT']);

/** Save to the first of `files` that can be written; throws the last error when none can. */
export async function saveStatsFirstWritable(files: readonly string[], stats: DatasetStats): Promise<string> {
  let last: unknown = null;
  for (const file of files) {
    try {
      return await saveStatsFile(file, stats);
    } catch (err) {
      if (!UNWRITABLE.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
      last = err;
    }
  }
  throw new DataError(
    `cannot save dataset statistics to ${files.join(' or ')}: ${(last as Error | null)?.message ?? 'no place given'}`,
  );
}
