/**
 * Pure arithmetic of the ring all-reduce: which part of the flat buffer each rank sends and
 * receives at each step, and how a segment is cut into pipelined chunks. No I/O here, so every
 * rule is unit tested on its own (test/dist/ring/ring-schedule.test.ts).
 *
 * Vocabulary: the buffer of `length` elements is split into `worldSize` contiguous segments;
 * segment k is fully reduced by rank k-1 at the end of the reduce-scatter, then circulated by
 * the all-gather. Each segment travels as one or more chunks of at most `chunkElems` elements.
 */

/** A half-open element range [start, end) of the flat buffer. */
export interface ElemRange {
  readonly start: number;
  readonly end: number;
}

/** Bytes per float32 element. */
export const FLOAT32_BYTES = 4;

/** `a mod n` that is never negative (JS `%` keeps the dividend's sign). */
export function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

/** Throws unless `value` is an integer >= `min`: these inputs come from config and callers. */
export function assertInt(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(`${name} must be an integer >= ${min}, got ${value}`);
  }
}

/**
 * Bounds of segment `segment` when `length` elements are split over `worldSize` ranks.
 * The first `length % worldSize` segments get one extra element, so sizes differ by at most
 * one; when length < worldSize the trailing segments are empty (start === end).
 */
export function segmentRange(length: number, worldSize: number, segment: number): ElemRange {
  assertInt('length', length, 0);
  assertInt('worldSize', worldSize, 1);
  if (!Number.isInteger(segment) || segment < 0 || segment >= worldSize) {
    throw new RangeError(`segment must be in [0, ${worldSize}), got ${segment}`);
  }
  const base = Math.floor(length / worldSize);
  const extra = length % worldSize;
  const start = segment * base + Math.min(segment, extra);
  const size = base + (segment < extra ? 1 : 0);
  return { start, end: start + size };
}

/** Elements per chunk for a chunk size in bytes: at least one element. */
export function chunkElemsFor(chunkBytes: number): number {
  if (!(chunkBytes > 0)) throw new RangeError(`chunkBytes must be > 0, got ${chunkBytes}`);
  return Math.max(1, Math.floor(chunkBytes / FLOAT32_BYTES));
}

/** Chunks per segment the all-reduce aims for, so that mid-sized buffers pipeline too. */
export const PIPELINE_CHUNKS = 4;
/** Smallest chunk the pipelining split makes (16 KiB): smaller messages cost more than they overlap. */
export const MIN_PIPELINE_CHUNK_ELEMS = 4096;

/**
 * Chunk size in elements for an all-reduce of `length` elements over `worldSize` ranks: at most
 * `chunkBytes`, and small enough that a segment is cut into PIPELINE_CHUNKS pieces (but not
 * below 16 KiB). Without the split, a 1 MB buffer on 2 ranks would move each 512 KB segment as
 * one message, and the all-gather could not start before the whole reduce-scatter transfer
 * ended. Every rank computes the same value from the same inputs.
 */
export function allReduceChunkElems(length: number, worldSize: number, chunkBytes: number): number {
  const maxElems = chunkElemsFor(chunkBytes);
  const pipelined = Math.ceil(Math.ceil(length / worldSize) / PIPELINE_CHUNKS);
  return Math.min(maxElems, Math.max(pipelined, MIN_PIPELINE_CHUNK_ELEMS));
}

/**
 * Cuts `range` into consecutive chunks of `chunkElems` elements (the last one shorter).
 * An empty range has no chunks: nothing is sent for it, and sender and receiver agree on
 * that because both call this function with the same inputs.
 */
export function chunkRanges(range: ElemRange, chunkElems: number): ElemRange[] {
  assertInt('chunkElems', chunkElems, 1);
  const chunks: ElemRange[] = [];
  for (let start = range.start; start < range.end; start += chunkElems) {
    chunks.push({ start, end: Math.min(start + chunkElems, range.end) });
  }
  return chunks;
}

/** Segment that `rank` sends at reduce-scatter step `step` (0 .. worldSize-2). */
export function reduceScatterSendSegment(rank: number, step: number, worldSize: number): number {
  return mod(rank - step, worldSize);
}

/** Segment that `rank` receives (and adds its own values to) at reduce-scatter step `step`. */
export function reduceScatterRecvSegment(rank: number, step: number, worldSize: number): number {
  return mod(rank - step - 1, worldSize);
}

/** The segment `rank` holds fully reduced after the reduce-scatter. */
export function ownedSegment(rank: number, worldSize: number): number {
  return mod(rank + 1, worldSize);
}

/** Segment that `rank` sends at all-gather step `step` (0 .. worldSize-2). */
export function allGatherSendSegment(rank: number, step: number, worldSize: number): number {
  return mod(rank + 1 - step, worldSize);
}

/** Segment that `rank` receives (final values, copied in) at all-gather step `step`. */
export function allGatherRecvSegment(rank: number, step: number, worldSize: number): number {
  return mod(rank - step, worldSize);
}

/**
 * Ranks whose values are added into segment `segment`, in the order the ring adds them:
 * the sum is ((x[k] + x[k+1]) + x[k+2]) + ... with k = segment. The order is the same for
 * every element of the segment and on every run, which is what makes the result reproducible;
 * tests use it to compute the exact expected float32 result.
 */
export function reductionOrder(segment: number, worldSize: number): number[] {
  return Array.from({ length: worldSize }, (_, i) => mod(segment + i, worldSize));
}

/**
 * Bytes one rank sends (and receives) in a ring all-reduce of `length` elements: each of the
 * 2(n-1) steps moves one segment. Used by the benchmark for bus bandwidth.
 */
export function ringBytesPerRank(length: number, worldSize: number): number {
  return worldSize <= 1 ? 0 : (2 * (worldSize - 1) * length * FLOAT32_BYTES) / worldSize;
}

/** nccl-tests' bus bandwidth in bytes/s: algorithm bandwidth times 2(n-1)/n. */
export function busBandwidth(bytes: number, seconds: number, worldSize: number): number {
  return (bytes / seconds) * ((2 * (worldSize - 1)) / worldSize);
}
