/**
 * Overlapping the gradient all-reduce with the backward pass (`--overlap`), as PyTorch DDP and
 * Horovod do. Backward produces gradients from the last layer to the first: fc8's (16 MB on the
 * paper preset) are ready long before conv1's. Each parameter is wrapped in an identity whose
 * gradient copies the finished gradient into its place in the fusion buffer; once every
 * parameter of a bucket (about --bucket-mb, consecutive parameters from the back) is in, the
 * comm thread starts all-reducing that bucket while the main thread goes on with backward.
 *
 * What the step then waits for is only the communication left when backward ends: the
 * "exposed" time, reported as the step's reduce time. Buckets start in the same order on every
 * rank (the tape's order is deterministic), so the ring's messages match up.
 */
import * as tf from '@tensorflow/tfjs';
import type { ParamHook } from '../../model/alexnet';
import type { SyncCollective } from '../../dist/collective';
import type { FusionBuffer } from './fusion-buffer';

/** Buckets of consecutive parameter indices, from the last parameter back, each >= bucketBytes (the first one may be smaller). */
export function planBuckets(sizes: readonly number[], bucketBytes: number): number[][] {
  const buckets: number[][] = [];
  let current: number[] = [];
  let bytes = 0;
  for (let i = sizes.length - 1; i >= 0; i--) {
    current.push(i);
    bytes += sizes[i] * 4;
    if (bytes >= bucketBytes) {
      buckets.push(current);
      current = [];
      bytes = 0;
    }
  }
  if (current.length > 0) buckets.push(current);
  return buckets;
}

export class OverlappedReduce {
  private readonly buckets: number[][];
  /** bucketOf[param] */
  private readonly bucketOf: number[];
  private missing: number[] = [];
  private arrived: boolean[] = [];
  /** Buckets start strictly in order, so every rank posts the same sequence to the ring. */
  private nextBucket = 0;

  /** The fusion slot of each hooked parameter, by its index in model.params (a frozen one has none). */
  private readonly slotOf: Map<number, number>;

  /**
   * All-reduces parameters [0, fusion.count) of `fusion` in buckets of about `bucketBytes`.
   * `modelIndices[k]`: the index in model.params of the parameter in slot k (default: k), so
   * that the hooks, which see every parameter of the pass, skip the frozen ones.
   */
  constructor(
    private readonly fusion: FusionBuffer,
    private readonly collective: SyncCollective,
    bucketBytes: number,
    modelIndices: readonly number[] = Array.from({ length: fusion.count }, (_, k) => k),
  ) {
    this.slotOf = new Map(modelIndices.map((index, k) => [index, k]));
    const sizes = Array.from({ length: fusion.count }, (_, i) => fusion.rangeOf(i).end - fusion.rangeOf(i).start);
    this.buckets = planBuckets(sizes, bucketBytes);
    this.bucketOf = new Array<number>(fusion.count);
    this.buckets.forEach((b, k) => b.forEach((i) => (this.bucketOf[i] = k)));
  }

  get bucketCount(): number {
    return this.buckets.length;
  }

  /** Call before each backward pass; returns the hook for the forward pass. */
  begin(): ParamHook {
    this.missing = this.buckets.map((b) => b.length);
    this.nextBucket = 0;
    this.arrived = new Array<boolean>(this.fusion.count).fill(false);
    return (index, variable) => {
      const slot = this.slotOf.get(index);
      return slot === undefined ? variable : this.identity(slot)(variable);
    };
  }

  /**
   * After the backward pass: parameters whose gradient never arrived (not used by this pass, for
   * example a rank without images) count as zero, and their buckets start now.
   */
  finish(): void {
    for (let i = 0; i < this.fusion.count; i++) {
      if (this.arrived[i]) continue;
      const { start, end } = this.fusion.rangeOf(i);
      this.fusion.data.fill(0, start, end);
      this.arrive(i);
    }
  }

  /** Waits for every bucket's all-reduce. */
  settle(): Promise<void> {
    return this.collective.settle();
  }

  private identity(index: number): (x: tf.Tensor) => tf.Tensor {
    return tf.customGrad((...args) => {
      const x = args[0] as tf.Tensor;
      return {
        value: tf.clone(x),
        gradFunc: (dy: tf.Tensor) => {
          this.fusion.data.set(dy.dataSync() as Float32Array, this.fusion.rangeOf(index).start);
          this.arrive(index);
          return dy;
        },
      };
    }) as (x: tf.Tensor) => tf.Tensor;
  }

  private arrive(index: number): void {
    if (this.arrived[index]) throw new Error(`overlapped all-reduce: parameter ${index} is used twice in one pass`);
    this.arrived[index] = true;
    this.missing[this.bucketOf[index]]--;
    // Backward finishes parameters from the last to the first, so buckets complete in order;
    // starting them only in order keeps the ranks in step even if a pass ever differs.
    while (this.nextBucket < this.buckets.length && this.missing[this.nextBucket] === 0) {
      const bucket = this.buckets[this.nextBucket++];
      const start = this.fusion.rangeOf(bucket[bucket.length - 1]).start;
      const end = this.fusion.rangeOf(bucket[0]).end;
      this.collective.allReduceStart(this.fusion.data.subarray(start, end));
    }
  }
}
