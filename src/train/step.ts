/**
 * One training step and one evaluation batch. A step is the same for every parallel mode: the
 * run's gradient-sync strategy (sync/gradient-sync.ts) computes this rank's gradients, sums them
 * and the step's tail over every rank, and the optimizer applies the sum scaled by 1 / (global
 * image count), the same update on every rank.
 */
import * as tf from '@tensorflow/tfjs';
import { readScalarAnd } from '../backend/readback';
import type { Batch } from '../data/loader';
import type { AlexNet } from '../model/alexnet';
import { forward } from '../model/alexnet';
import { imagesTensor } from './gradients';
import { batchSums, emptySums, type MetricSums } from './metrics';
import type { Optimizer } from './optimizer';
import type { StepTail } from './sync/fusion-buffer';
import type { GradientSync } from './sync/gradient-sync';
import { LocalSync } from './sync/local-sync';

export interface StepTimings {
  computeMs: number;
  copyMs: number;
  reduceMs: number;
  updateMs: number;
}

export interface StepResult {
  /** Summed over every rank. */
  sums: MetricSums;
  /** Images of the batch that could not be used, summed over every rank likewise. */
  skipped: number;
  timings: StepTimings;
  /** Some rank asked to stop: every rank sees the same answer after the same step. */
  stop: boolean;
  /** Rank 0 asked for a step checkpoint after this step (every rank sees it). */
  checkpoint: boolean;
}

export interface StepOptions {
  lr: number;
  dropoutSeed: number;
  /** How gradients are summed over ranks (absent: this process trains alone, LocalSync). */
  sync?: GradientSync;
  /** This rank's wish to stop after this step (Ctrl-C, a shutdown request). */
  stopVote: boolean;
  /** This rank's wish for a step checkpoint after this step (rank 0's timer). */
  checkpointVote?: boolean;
  /** Images per forward+backward (0 or absent: the whole share at once); see memory.ts. */
  microBatch?: number;
}

function tailOf(sums: MetricSums, batch: Batch, opts: StepOptions): StepTail {
  return {
    sums,
    skipped: batch.skipped,
    stopVotes: opts.stopVote ? 1 : 0,
    checkpointVotes: opts.checkpointVote ? 1 : 0,
  };
}

/**
 * One step: compute, reduce, apply. Time blocked in collectives inside the pass (hybrid's
 * gathers) counts as communication, not compute.
 */
export async function trainStep(
  model: AlexNet,
  optimizer: Optimizer,
  batch: Batch,
  opts: StepOptions,
): Promise<StepResult> {
  const sync = opts.sync ?? new LocalSync(optimizer);
  const t0 = performance.now();
  const local = await sync.compute(model, batch, opts.dropoutSeed, opts.microBatch ?? 0);
  const t1 = performance.now();
  const { grads, tail, copyMs } = await sync.reduce(local, tailOf(local.sums, batch, opts));
  const t2 = performance.now();
  if (tail.sums.count > 0) optimizer.apply(grads, opts.lr, 1 / tail.sums.count);
  tf.dispose(grads);
  const t3 = performance.now();
  return {
    sums: tail.sums,
    skipped: tail.skipped,
    stop: tail.stopVotes > 0,
    checkpoint: (tail.checkpointVotes ?? 0) > 0,
    timings: {
      computeMs: t1 - t0 - local.inPassCommMs,
      copyMs,
      reduceMs: t2 - t1 - copyMs + local.inPassCommMs,
      updateMs: t3 - t2,
    },
  };
}

export interface EvalOutput {
  sums: MetricSums;
  /**
   * Per image, row-major [count, numClasses]: the log of the crop-averaged softmax. It ranks
   * classes like the averaged probabilities, so its argmax is the prediction.
   */
  scores: Float32Array;
}

/**
 * Metric sums and class scores for one evaluation batch. With several crops per image (the
 * paper's 10-patch testing) the softmax of the crops is averaged before scoring.
 */
export async function evalBatchScores(model: AlexNet, batch: Batch): Promise<EvalOutput> {
  if (batch.count === 0) return { sums: emptySums(), scores: new Float32Array(0) };
  const crops = batch.images.length / (model.spec.inputSize ** 2 * 3) / batch.count;
  const [lossSum, scores] = tf.tidy(() => {
    const logits = forward(model, imagesTensor(model, batch), { training: false });
    const probs = tf.mean(tf.reshape(tf.softmax(logits), [batch.count, crops, model.numClasses]), 1);
    const labels = tf.tensor1d(batch.labels, 'int32');
    const picked = tf.sum(tf.mul(probs, tf.oneHot(labels, model.numClasses)), 1);
    // Log-probabilities rank like the averaged softmax and work for top-k.
    return [tf.sum(tf.neg(tf.log(tf.maximum(picked, 1e-12)))), tf.log(tf.maximum(probs, 1e-30))];
  });
  try {
    const read = await readScalarAnd(lossSum, scores);
    return { sums: batchSums(read.values, batch.labels, model.numClasses, read.scalar), scores: read.values };
  } finally {
    tf.dispose([lossSum, scores]);
  }
}

/** Metric sums for one evaluation batch (see evalBatchScores). */
export async function evalBatch(model: AlexNet, batch: Batch): Promise<MetricSums> {
  return (await evalBatchScores(model, batch)).sums;
}
