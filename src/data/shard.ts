/**
 * Which samples each rank reads: the epoch order is cut into global batches, and each global
 * batch into contiguous per-rank slices. Pure arithmetic, shared by the loader and its tests.
 */
import { permutation, rngFor, RngStream } from './rng';

/** Global batches in one epoch; every rank yields exactly this many (some possibly empty). */
export function batchesPerEpoch(sampleCount: number, globalBatchSize: number, dropLast: boolean): number {
  if (!(Number.isInteger(globalBatchSize) && globalBatchSize >= 1))
    throw new RangeError(`globalBatchSize must be an integer >= 1, got ${globalBatchSize}`);
  return dropLast ? Math.floor(sampleCount / globalBatchSize) : Math.ceil(sampleCount / globalBatchSize);
}

/** [start, end) of global batch `batchIndex` in the epoch order. */
export function globalBatchRange(batchIndex: number, sampleCount: number, globalBatchSize: number): [number, number] {
  const start = batchIndex * globalBatchSize;
  return [start, Math.min(start + globalBatchSize, sampleCount)];
}

/**
 * [start, end) of rank `rank`'s slice of a batch of `size` samples, relative to the batch
 * start. Sizes differ by at most one and the first `size % worldSize` ranks get the extra
 * sample: the slices tile the batch exactly, so nothing is dropped or read twice.
 */
export function shardRange(size: number, rank: number, worldSize: number): [number, number] {
  if (!(Number.isInteger(worldSize) && worldSize >= 1 && Number.isInteger(rank) && rank >= 0 && rank < worldSize)) {
    throw new RangeError(`need 0 <= rank < worldSize, got rank ${rank}, worldSize ${worldSize}`);
  }
  const base = Math.floor(size / worldSize);
  const extra = size % worldSize;
  const start = rank * base + Math.min(rank, extra);
  return [start, start + base + (rank < extra ? 1 : 0)];
}

/** The epoch's sample order: a seeded shuffle from (seed, epoch), or 0..n-1. */
export function epochOrder(sampleCount: number, shuffle: boolean, seed: number, epoch: number): Uint32Array {
  if (shuffle) return permutation(sampleCount, rngFor(RngStream.shuffle, seed, epoch));
  return Uint32Array.from({ length: sampleCount }, (_, i) => i);
}

export interface RankBatchPlan {
  /** Batch index within the epoch. */
  index: number;
  /** Samples in the whole global batch (all ranks). */
  globalSize: number;
  /** Indices into the sample list that this rank reads, in order. */
  sampleIndices: Uint32Array;
}

/** This rank's share of every global batch of the epoch, in order. */
export function planEpoch(
  order: Uint32Array,
  globalBatchSize: number,
  dropLast: boolean,
  rank: number,
  worldSize: number,
): RankBatchPlan[] {
  const count = batchesPerEpoch(order.length, globalBatchSize, dropLast);
  return Array.from({ length: count }, (_, index) => {
    const [start, end] = globalBatchRange(index, order.length, globalBatchSize);
    const [a, b] = shardRange(end - start, rank, worldSize);
    return { index, globalSize: end - start, sampleIndices: order.subarray(start + a, start + b) };
  });
}
