/**
 * The one flat Float32Array a step sends through the all-reduce: every parameter's gradient at
 * its offset, then a short tail of per-step numbers that ride the same collective for free.
 * One class packs and unpacks it, for gradients (training), weights (the initial broadcast and
 * the replica checksum) and the tail alone (evaluation's metric sums).
 *
 * The tail, summed over ranks: [images, loss sum, top-1 hits, top-5 hits, skipped images,
 * stop votes, checkpoint votes]. The sums scale the gradients (1 / global image count) and feed
 * the progress line; the stop vote makes every rank stop after the same step (Ctrl-C may reach
 * only some); rank 0's checkpoint vote (its timer) tells every rank that this step ends with a
 * step checkpoint, which in hybrid mode every rank must take part in.
 */
import * as tf from '@tensorflow/tfjs';
import { readConcatenated, readsSync } from '../../backend/readback';
import { sharedFloats, type Collective } from '../../dist/collective';
import type { Param } from '../../model/alexnet';
import type { MetricSums } from '../metrics';
import type { OverlappedReduce } from './overlap';

export interface StepTail {
  sums: MetricSums;
  /** Images that could not be used in this step's batch. */
  skipped: number;
  /** Ranks that asked to stop after this step. */
  stopVotes: number;
  /** Ranks that want a step checkpoint after this step (rank 0's timer); absent: 0. */
  checkpointVotes?: number;
}

const TAIL_SLOTS = 7;

export class FusionBuffer {
  /** Gradients (or weights) of every parameter, then the tail. */
  readonly data: Float32Array;
  private readonly offsets: number[] = [];
  private readonly shapes: number[][];
  /** Where the tail starts: the number of parameter values. */
  readonly tailAt: number;

  /**
   * A buffer for parameters of these shapes (none: a buffer for the tail alone), its floats from
   * `allocate`: a collective's (the host's shared-memory segment), or a plain SharedArrayBuffer.
   */
  constructor(shapes: readonly (readonly number[])[] = [], allocate: (length: number) => Float32Array = sharedFloats) {
    this.shapes = shapes.map((s) => [...s]);
    let at = 0;
    for (const shape of this.shapes) {
      this.offsets.push(at);
      at += shape.reduce((a, b) => a * b, 1);
    }
    this.tailAt = at;
    // Shared memory: a worker's collectives run on a thread of their own
    // (dist/comm-thread/comm-thread.ts) and reduce the buffer where it is, without a copy.
    this.data = allocate(at + TAIL_SLOTS);
    if (this.data.length !== at + TAIL_SLOTS)
      throw new Error(`FusionBuffer: ${this.data.length} floats allocated for ${at + TAIL_SLOTS}`);
  }

  /** Number of parameters. */
  get count(): number {
    return this.shapes.length;
  }

  /** Where parameter `i`'s values sit in `data`. */
  rangeOf(i: number): { start: number; end: number } {
    return { start: this.offsets[i], end: this.offsets[i + 1] ?? this.tailAt };
  }

  /** Copies each tensor (one per parameter, in order) into its place. */
  pack(tensors: readonly tf.Tensor[]): void {
    if (tensors.length !== this.shapes.length)
      throw new Error(`FusionBuffer.pack: ${tensors.length} tensors for ${this.shapes.length} parameters`);
    tensors.forEach((t, i) => this.data.set(t.dataSync() as Float32Array, this.offsets[i]));
  }

  /**
   * pack() on any backend: where reads are async (webgpu) the tensors are concatenated on the
   * device and read back once, whole; elsewhere it is pack() itself.
   */
  async packAsync(tensors: readonly tf.Tensor[]): Promise<void> {
    if (readsSync()) return this.pack(tensors);
    if (tensors.length !== this.shapes.length)
      throw new Error(`FusionBuffer.pack: ${tensors.length} tensors for ${this.shapes.length} parameters`);
    this.data.set(await readConcatenated(tensors), 0);
  }

  /** Every parameter's values, as new tensors of their shapes (the caller disposes them). */
  unpack(): tf.Tensor[] {
    return this.shapes.map((shape, i) =>
      tf.tensor(this.data.subarray(this.offsets[i], this.offsets[i + 1] ?? this.tailAt), shape),
    );
  }

  /** The parameter part, one flat view (no copy). */
  get params(): Float32Array {
    return this.data.subarray(0, this.tailAt);
  }

  /** The tail alone, one flat view (no copy). */
  get tail(): Float32Array {
    return this.data.subarray(this.tailAt);
  }

  writeTail(t: StepTail): void {
    this.data.set(
      [
        t.sums.count,
        t.sums.lossSum,
        t.sums.top1Correct,
        t.sums.top5Correct,
        t.skipped,
        t.stopVotes,
        t.checkpointVotes ?? 0,
      ],
      this.tailAt,
    );
  }

  readTail(): StepTail {
    const d = this.data.subarray(this.tailAt);
    return {
      sums: { count: d[0], lossSum: d[1], top1Correct: d[2], top5Correct: d[3] },
      skipped: d[4],
      stopVotes: d[5],
      checkpointVotes: d[6],
    };
  }
}

/** A fusion buffer shaped for these parameters (floats from `allocate`, see the constructor). */
export function fusionFor(params: readonly Param[], allocate?: (length: number) => Float32Array): FusionBuffer {
  return new FusionBuffer(
    params.map((p) => p.shape),
    allocate,
  );
}

/** The parameters' current values, packed into `into` (or a new buffer): returns the buffer. */
export async function packWeights(
  params: readonly Param[],
  into: FusionBuffer = fusionFor(params),
): Promise<FusionBuffer> {
  await into.packAsync(params.map((p) => p.variable));
  return into;
}

/**
 * All-reduces a fusion buffer: the values in the run's wire dtype, the tail (image counts,
 * metric sums, votes) always exact, since a 16-bit wire would round counts above 2048. With
 * `overlap`, the values already left in buckets during backward: wait for them, then the tail.
 */
export async function reduceFusion(
  collective: Collective,
  fusion: FusionBuffer,
  overlap: OverlappedReduce | null = null,
): Promise<void> {
  if (overlap) {
    await overlap.settle();
    await collective.allReduce(fusion.tail, { exact: true });
    return;
  }
  if (collective.wireDtype === 'fp32') {
    await collective.allReduce(fusion.data);
    return;
  }
  if (fusion.tailAt > 0) await collective.allReduce(fusion.params);
  await collective.allReduce(fusion.tail, { exact: true });
}
