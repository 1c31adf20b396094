/**
 * What training needs from the data-parallel layer, as interfaces only: the one file of src/dist
 * that src/train imports. The comm thread (dist/comm-thread) implements them over the ZeroMQ
 * ring; the gradient-sync strategies (train/sync) use them and never see a transport.
 */
import type { WireDtype } from '../core/config';

export { segmentRange, type ElemRange } from './ring/ring-schedule';

/** Who this rank is, a sum over all ranks, and a copy from one rank to all. */
export interface Collective {
  readonly rank: number;
  readonly worldSize: number;
  /** The number format values travel in (`--wire-dtype`; sums are always taken in fp32). */
  readonly wireDtype: WireDtype;
  /**
   * Sums `buffer` element-wise over all ranks, in place; identical result on every rank.
   * `exact`: in fp32 even when gradients travel in a 16-bit wire dtype (counts, metric sums).
   */
  allReduce(buffer: Float32Array, options?: { exact?: boolean }): Promise<void>;
  /** Copies rank `root`'s buffer into every rank's buffer. */
  broadcast(buffer: Float32Array, root: number): Promise<void>;
  /** Bytes this rank has put on the wire so far (after wire encoding), as of the last finished collective. */
  bytesSent(): number;
}

/**
 * A Collective that can also be called from inside tfjs's synchronous backward pass (blocking),
 * or started there and awaited later: the hybrid mode's gathers and scatters, and `--overlap`'s
 * buckets. Implemented by the comm thread, which drives the ring while the main thread blocks.
 */
export interface SyncCollective extends Collective {
  /** All-gather of segments of these sizes (one per rank). `exact`: fp32 whatever the wire dtype. */
  allGather(local: Float32Array, sizes: readonly number[], exact?: boolean): Promise<Float32Array>;
  /** allGather, blocking. */
  allGatherSync(local: Float32Array, sizes: readonly number[], exact?: boolean): Float32Array;
  /** Reduce-scatter over segments of these sizes, blocking: this rank's segment of the sum. */
  reduceScatterSync(values: Float32Array, sizes: readonly number[]): Float32Array;
  /**
   * Starts all-reducing `values` (in shared memory, see sharedFloats) and returns at once; the
   * caller must not touch them until `settle()` resolved. Requests run in the order started.
   */
  allReduceStart(values: Float32Array): void;
  /** Waits for every all-reduce started so far. */
  settle(): Promise<void>;
  /**
   * `length` zeroed floats that the collectives reduce where they are: in the shared-memory
   * segment of the host's ranks (every rank must allocate in the same order, the same lengths),
   * else in a SharedArrayBuffer the comm thread reads without a copy. For the step's buffers.
   */
  allocate(length: number): Float32Array;
  /** Milliseconds the calling thread spent blocked in the sync calls since the last call of this. */
  takeBlockedMs(): number;
}

/** A zeroed Float32Array in shared memory, which a collective can reduce without a copy. */
export function sharedFloats(length: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(length * 4));
}
