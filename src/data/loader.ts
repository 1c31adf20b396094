/**
 * The batch loader each rank runs: its contiguous share of every global batch, decoded on
 * decode threads (src/data/decode/decode-pool.ts) while the training step runs on the main thread,
 * augmented and normalised into one Float32Array per batch (NHWC).
 *
 * Bad files: a sample that cannot be read or decoded is left out of its batch (the batch is
 * just smaller and `count` says how many images it really holds), reported once through
 * onSkip, counted in `skipped` every epoch, and not decoded again. No substitute image is
 * drawn: a duplicate would silently reweight the data. The epoch never throws for bad data.
 *
 * Determinism: the shuffle depends on (seed, epoch); a sample's crop, flip and lighting on
 * (seed, epoch, sample index) only, so results do not change with the rank count, the
 * prefetch depth or which decode finishes first.
 */
import { ConfigError } from '../core/errors';
import type { AugmentChoice } from '../core/config';
import {
  centerCropBox,
  channelAffine,
  cropElements,
  drawAugment,
  pcaLightingShift,
  writeCrop,
  writeTenCrops,
} from './augment';
import { Sample } from './index/dataset';
import { DecodeOptions, DecodeResult, decodeFile } from './decode/decode';
import { DecodePool, sharedDecodePool } from './decode/decode-pool';
import { DEFAULT_DECODE_CONCURRENCY, Limiter } from './pool';
import { rngFor, RngStream } from './rng';
import { batchesPerEpoch, epochOrder, planEpoch, RankBatchPlan } from './shard';
import { DatasetStats } from './stats';

export { batchesPerEpoch } from './shard';

export interface Batch {
  /** NHWC [count * cropsPerImage, cropSize, cropSize, 3], normalised. */
  images: Float32Array;
  /** One label per image (not per crop). */
  labels: Int32Array;
  /** Images actually in this batch (skipped samples are not counted). */
  count: number;
  /** Samples of this rank's share that were left out because they could not be decoded. */
  skipped: number;
  /** Batch index within the epoch. */
  index: number;
  /** Samples planned for the whole global batch on all ranks, before skips. */
  globalPlanned: number;
  /** 1, or 10 in 'tenCrop' mode (image i's crops are images[i*10 .. i*10+9]). */
  cropsPerImage: number;
  /** Indices into LoaderOptions.samples of the `count` images, in order. */
  sampleIndices: Int32Array;
}

export type LoaderMode = 'train' | 'center' | 'tenCrop';

export interface LoaderOptions {
  samples: Sample[];
  /** Shorter side before cropping (paper: 256); images are decoded to resizeSize x resizeSize. */
  resizeSize: number;
  /** Model input side (paper: 227). */
  cropSize: number;
  globalBatchSize: number;
  rank: number;
  worldSize: number;
  seed: number;
  /** train: shuffle, random crop, flip, PCA lighting. center: no shuffle, centre crop. tenCrop: no shuffle, the paper's 10 patches. */
  mode: LoaderMode;
  /** Mean/std normalisation and the PCA eigens; null: p / 255 - 0.5 and no lighting. */
  stats: DatasetStats | null;
  /** Train mode's augmentations; each defaults to on. PCA lighting also needs `stats`. */
  augment?: Partial<AugmentChoice>;
  /** Drop the last incomplete global batch. Default false. */
  dropLast?: boolean;
  /** Batches decoded ahead of the one being consumed. Default 2. */
  prefetchBatches?: number;
  /** Keep decoded uint8 squares in memory (bounded by cacheMaxBytes). Default false. */
  cacheDecoded?: boolean;
  /** Memory cap of the decoded cache; images beyond it are decoded every epoch. Default 2 GiB. */
  cacheMaxBytes?: number;
  /**
   * Decode on the process's decode threads (default), or false: on the main thread, with
   * `decodeConcurrency` reads and sharp jobs in flight (what runs from TypeScript sources).
   */
  decodeThreads?: boolean;
  /** Main-thread decoding only: reads and sharp jobs in flight; match UV_THREADPOOL_SIZE. Default 4. */
  decodeConcurrency?: number;
  /** Limits and filter passed to decode (maxInputPixels, minSidePx, kernel). */
  decode?: Omit<DecodeOptions, 'sizePx'>;
  /** Called once per bad file, the first time it is met. */
  onSkip?: (path: string, reason: string) => void;
  /**
   * Each batch's `images` stays valid only until the consumer asks for the next batch; its
   * buffer is then written again by a later batch, of this loader or another one of the process
   * (and `images` may be a view of a larger one).
   * For a consumer that is done with a batch when it asks for the next, as the trainer and the
   * evaluation are: a fresh array per batch pays its page faults on every write (~0.45 ms of
   * CPU an image at 224 px, docs/measurements.md, "JPEGs"). Default false.
   */
  reuseImageBuffers?: boolean;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

const DEFAULT_CACHE_MAX_BYTES = 2 * 1024 ** 3;

/**
 * reuseImageBuffers: image buffers whose batches their consumers are done with, by length in
 * floats. Shared by the process's loaders, so a training and a validation loader of the same
 * batch size take turns with the same few buffers instead of each holding its own between
 * epochs; at most SPARES_PER_LENGTH of a length are kept (a loader has the batch being read and
 * `prefetchBatches` more in hand).
 */
const spareImages = new Map<number, Float32Array[]>();
const SPARES_PER_LENGTH = 4;

/** A buffer of `length` floats: a spare one, else new. Every image written covers its part. */
function imageBuffer(length: number): Float32Array {
  return spareImages.get(length)?.pop() ?? new Float32Array(length);
}

function giveBackImages(images: Float32Array): void {
  const whole = new Float32Array(images.buffer);
  const spares = spareImages.get(whole.length) ?? [];
  if (spares.length < SPARES_PER_LENGTH) spares.push(whole);
  spareImages.set(whole.length, spares);
}

function validate(o: LoaderOptions): void {
  const int = (v: number, min: number): boolean => Number.isInteger(v) && v >= min;
  if (!int(o.cropSize, 1) || !int(o.resizeSize, 1) || o.cropSize > o.resizeSize) {
    throw new ConfigError(`crop size ${o.cropSize} must be an integer between 1 and the resize size ${o.resizeSize}`);
  }
  if (!int(o.globalBatchSize, 1))
    throw new ConfigError(`global batch size must be an integer >= 1, got ${o.globalBatchSize}`);
  if (!int(o.worldSize, 1) || !int(o.rank, 0) || o.rank >= o.worldSize)
    throw new ConfigError(`rank ${o.rank} is not in 0..${o.worldSize - 1}`);
  if (!int(o.seed, 0)) throw new ConfigError(`seed must be a non-negative integer, got ${o.seed}`);
  if (o.prefetchBatches !== undefined && !int(o.prefetchBatches, 0))
    throw new ConfigError(`prefetchBatches must be an integer >= 0`);
}

export class BatchLoader {
  private readonly opts: LoaderOptions;
  private readonly limiter: Limiter;
  private readonly pool: DecodePool | null;
  private readonly cache = new Map<number, Uint8Array>();
  private cacheBytes = 0;
  private readonly bad = new Map<number, string>();

  constructor(opts: LoaderOptions) {
    validate(opts);
    this.opts = opts;
    this.limiter = new Limiter(opts.decodeConcurrency ?? DEFAULT_DECODE_CONCURRENCY);
    this.pool = opts.decodeThreads === false ? null : sharedDecodePool();
  }

  /** Batches per epoch, the same on every rank. */
  get batchCount(): number {
    return batchesPerEpoch(this.opts.samples.length, this.opts.globalBatchSize, this.opts.dropLast ?? false);
  }

  /** Files skipped so far (each once), with the reason. */
  skippedPaths(): SkippedFile[] {
    return [...this.bad].map(([i, reason]) => ({ path: this.opts.samples[i].path, reason }));
  }

  /** This rank's share of every global batch of `epoch`, in order, `prefetchBatches` decoded ahead. */
  async *epoch(epoch: number): AsyncGenerator<Batch> {
    if (!(Number.isInteger(epoch) && epoch >= 0))
      throw new ConfigError(`epoch must be a non-negative integer, got ${epoch}`);
    const o = this.opts;
    const order = epochOrder(o.samples.length, o.mode === 'train', o.seed, epoch);
    const plans = planEpoch(order, o.globalBatchSize, o.dropLast ?? false, o.rank, o.worldSize);
    const depth = o.prefetchBatches ?? 2;
    const pending: Promise<Batch>[] = [];
    let next = 0;
    /** Start batches until `inFlight` are pending. */
    const fill = (inFlight: number): void => {
      while (next < plans.length && pending.length < inFlight) {
        const p = this.loadBatch(epoch, plans[next++]);
        p.catch(() => undefined); // awaited below; this only silences the rejection if the consumer stops early
        pending.push(p);
      }
    };
    fill(depth + 1);
    while (pending.length > 0) {
      const batch = await (pending.shift() as Promise<Batch>);
      fill(depth); // decode ahead while the training step works on this batch
      yield batch;
      // The consumer asks for the next batch, so it is done with this one.
      if (o.reuseImageBuffers === true) giveBackImages(batch.images);
      fill(1); // (only matters when depth is 0)
    }
  }

  /** Decoded squares of `indices` (cached ones from the cache), null for a bad one (reported once). */
  private async pixels(indices: Uint32Array): Promise<(Uint8Array | null)[]> {
    const out: (Uint8Array | null)[] = Array.from(indices, (i) => this.cache.get(i) ?? null);
    const todo = [...indices.keys()].filter((k) => out[k] === null && !this.bad.has(indices[k]));
    const results = await this.decodeFiles(todo.map((k) => this.opts.samples[indices[k]].path));
    todo.forEach((k, j) => (out[k] = this.keep(indices[k], results[j])));
    return out;
  }

  private decodeFiles(files: string[]): Promise<DecodeResult[]> {
    const opts = { ...this.opts.decode, sizePx: this.opts.resizeSize };
    if (this.pool) return this.pool.decode(files, opts);
    return Promise.all(files.map((file) => this.limiter.run(() => decodeFile(file, opts))));
  }

  /** Record a decode: a bad file once, good pixels in the cache while it has room. */
  private keep(index: number, r: DecodeResult): Uint8Array | null {
    const o = this.opts;
    if (!r.ok) {
      this.bad.set(index, r.reason);
      o.onSkip?.(o.samples[index].path, r.reason);
      return null;
    }
    if (o.cacheDecoded && this.cacheBytes + r.pixels.length <= (o.cacheMaxBytes ?? DEFAULT_CACHE_MAX_BYTES)) {
      this.cache.set(index, r.pixels);
      this.cacheBytes += r.pixels.length;
    }
    return r.pixels;
  }

  private async loadBatch(epoch: number, plan: RankBatchPlan): Promise<Batch> {
    const decoded = await this.pixels(plan.sampleIndices);
    const kept: { index: number; pixels: Uint8Array }[] = [];
    decoded.forEach((pixels, k) => {
      if (pixels) kept.push({ index: plan.sampleIndices[k], pixels });
    });
    const crops = this.opts.mode === 'tenCrop' ? 10 : 1;
    const per = cropElements(this.opts.cropSize);
    // Sized for the planned samples, so a batch with skips reuses the full batches' buffers.
    const images = imageBuffer(plan.sampleIndices.length * crops * per).subarray(0, kept.length * crops * per);
    kept.forEach(({ index, pixels }, k) => this.writeImage(epoch, index, pixels, images, k * crops * per));
    return {
      images,
      labels: Int32Array.from(kept, (k) => this.opts.samples[k.index].label),
      count: kept.length,
      skipped: plan.sampleIndices.length - kept.length,
      index: plan.index,
      globalPlanned: plan.globalSize,
      cropsPerImage: crops,
      sampleIndices: Int32Array.from(kept, (k) => k.index),
    };
  }

  /** Crop(s) of one image into `out` at `offset`, as the mode asks. */
  private writeImage(epoch: number, index: number, pixels: Uint8Array, out: Float32Array, offset: number): void {
    const { resizeSize, cropSize, stats, seed, mode } = this.opts;
    if (mode === 'train') {
      const { crop = true, flip = true, pcaLighting = true } = this.opts.augment ?? {};
      // Drawn even when a part is off, so turning one augmentation off leaves the others' draws as they were.
      const aug = drawAugment(rngFor(RngStream.augment, seed, epoch, index), resizeSize, cropSize);
      const affine = channelAffine(stats, stats && pcaLighting ? pcaLightingShift(stats, aug.alphas) : undefined);
      const box = crop ? aug.box : centerCropBox(resizeSize, cropSize);
      writeCrop(pixels, resizeSize, cropSize, box, flip && aug.flip, affine, out, offset);
    } else if (mode === 'center') {
      writeCrop(
        pixels,
        resizeSize,
        cropSize,
        centerCropBox(resizeSize, cropSize),
        false,
        channelAffine(stats),
        out,
        offset,
      );
    } else {
      writeTenCrops(pixels, resizeSize, cropSize, channelAffine(stats), out, offset);
    }
  }
}
