/**
 * How a step's gradients become the update every rank applies: a strategy chosen once per run,
 * as horovod's DistributedOptimizer wraps an optimizer. The step (../step.ts) is the same for all:
 *
 *   local = await sync.compute(...)          forward + backward of this rank's images
 *   reduced = await sync.reduce(local, tail) sums over every rank, with the step's tail
 *   optimizer.apply(reduced.grads, lr, 1 / reduced.tail.sums.count)
 *
 * - LocalSync: one process, no collective: the gradients are already the sums.
 * - DataParallelSync: every rank holds the whole model; the gradients travel in one fusion
 *   buffer through the all-reduce, after backward or (`--overlap`) in buckets during it.
 * - HybridSync (`--parallel hybrid`): conv layers data-parallel, FC layers split by output unit.
 *
 * Everything else that crosses ranks in a run goes through the strategy too (the initial
 * broadcast, evaluation's metric sums, the replica checksum, gathering hybrid slices), so the
 * trainer never sees a collective.
 */
import type * as tf from '@tensorflow/tfjs';
import type { Batch } from '../../data/loader';
import type { AlexNet } from '../../model/alexnet';
import type { StepTail } from './fusion-buffer';
import type { MetricSums } from '../metrics';
import type { Optimizer, OptimizerState } from '../optimizer';

/** What one rank's forward and backward produced. */
export interface LocalGradients {
  /** One per parameter the strategy trains (hybrid: this rank's FC slices are already global). */
  grads: tf.Tensor[];
  sums: MetricSums;
  /** Time blocked in collectives inside the pass (hybrid's gathers): communication, not compute. */
  inPassCommMs: number;
}

/** The step's sums over every rank. */
export interface ReducedGradients {
  /** What the optimizer applies (the caller disposes them); none when no rank had an image. */
  grads: tf.Tensor[];
  tail: StepTail;
  /** Time spent copying gradients into the fusion buffer (counted apart from the reduction). */
  copyMs: number;
}

export interface GradientSync {
  readonly rank: number;
  readonly worldSize: number;
  /** The optimizer the step applies (hybrid: over the replicated params and this rank's slices). */
  readonly optimizer: Optimizer;
  /** Forward + backward of this rank's images (`microBatch` images at a time where allowed). */
  compute(model: AlexNet, batch: Batch, dropoutSeed: number, microBatch: number): Promise<LocalGradients>;
  /** Sums the gradients and the tail over every rank; takes ownership of `local.grads`. */
  reduce(local: LocalGradients, tail: StepTail): Promise<ReducedGradients>;
  /** A tail summed over every rank, exactly (evaluation's metric sums). */
  sumTail(tail: StepTail): Promise<StepTail>;
  /** This rank's replicated weights, flat (the replica checksum; hybrid's slices differ by design). */
  replicatedWeights(model: AlexNet): Promise<Float32Array>;
  /**
   * Hybrid: gathers the FC slices into the model's full variables on every rank (and, with
   * `slots`, the optimizer's full state for a checkpoint). Others: nothing to gather, null.
   */
  materialize(slots: boolean): Promise<OptimizerState | null>;
  /** Bytes this rank has put on the wire so far (0 without one). */
  bytesSent(): number;
}
