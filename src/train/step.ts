/**
 * One training step and one evaluation batch, the only places that turn a Batch into tensors.
 *
 * Gradients are taken of the *summed* loss over this rank's images. With several ranks they
 * travel, with the sample count and the metric sums, in one flat fusion buffer through the
 * all-reduce; the optimizer then scales by 1 / (global sample count). So N ranks at global
 * batch B compute the same update as one rank at batch B, even when a rank's share is empty
 * or smaller because of skipped images.
 */
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../data/loader';
import type { AlexNet } from '../model/alexnet';
import { forward } from '../model/alexnet';
import { batchSums, emptySums, type MetricSums } from './metrics';
import type { Optimizer } from './optimizer';

/** The data-parallel side of a step, implemented over the ring all-reduce. */
export interface GradientReducer {
  /** Sums `buffer` element-wise over all ranks, in place; identical result on every rank. */
  allReduce(buffer: Float32Array): Promise<void>;
}

/**
 * Where each parameter's gradient lives in the fusion buffer, plus trailing slots that ride the
 * same all-reduce for free: [count, lossSum, top1Correct, top5Correct, stopVotes]. The stop vote
 * makes every rank stop after the same step (Ctrl-C may reach only some of them).
 */
export interface FusionLayout {
  offsets: number[];
  sizes: number[];
  metricsAt: number;
  length: number;
}

const TAIL_SLOTS = 5;

export function fusionLayout(model: AlexNet): FusionLayout {
  const offsets: number[] = [];
  const sizes: number[] = [];
  let at = 0;
  for (const p of model.params) {
    const size = p.shape.reduce((a, b) => a * b, 1);
    offsets.push(at);
    sizes.push(size);
    at += size;
  }
  return { offsets, sizes, metricsAt: at, length: at + TAIL_SLOTS };
}

export interface StepTimings {
  computeMs: number;
  copyMs: number;
  reduceMs: number;
  updateMs: number;
}

export interface StepResult {
  /** Summed over every rank when a reducer is given. */
  sums: MetricSums;
  timings: StepTimings;
  /** Some rank asked to stop: every rank sees the same answer after the same step. */
  stop: boolean;
}

export interface StepOptions {
  lr: number;
  dropoutSeed: number;
  reducer: GradientReducer | null;
  /** Preallocated fusion buffer (reused every step) when reducer is set. */
  fusion: Float32Array | null;
  layout: FusionLayout;
  /** This rank's wish to stop after this step (Ctrl-C, a shutdown request). */
  stopVote: boolean;
}

function imagesTensor(model: AlexNet, batch: Batch): tf.Tensor4D {
  const s = model.spec.inputSize;
  return tf.tensor4d(batch.images, [batch.images.length / (s * s * 3), s, s, 3]);
}

/** Forward + backward on this rank's images: summed-loss gradients and the batch's metric sums. */
function localGradients(model: AlexNet, batch: Batch, dropoutSeed: number): { grads: tf.Tensor[]; sums: MetricSums } {
  if (batch.count === 0) {
    return { grads: model.params.map((p) => tf.zerosLike(p.variable)), sums: emptySums() };
  }
  let logits: tf.Tensor | null = null;
  const labels = tf.tensor1d(batch.labels, 'int32');
  const x = imagesTensor(model, batch);
  try {
    const vars = model.params.map((p) => p.variable);
    const { value, grads } = tf.variableGrads(() => {
      const out = forward(model, x, { training: true, dropoutSeed });
      logits = tf.keep(out);
      const oneHot = tf.oneHot(labels, model.numClasses);
      return tf.losses.softmaxCrossEntropy(oneHot, out, undefined, undefined, tf.Reduction.SUM) as tf.Scalar;
    }, vars);
    const lossSum = value.dataSync()[0];
    value.dispose();
    const logitData = (logits as unknown as tf.Tensor).dataSync() as Float32Array;
    const sums = batchSums(logitData, batch.labels, model.numClasses, lossSum);
    return { grads: model.params.map((p) => grads[p.variable.name]), sums };
  } finally {
    tf.dispose([x, labels, logits as tf.Tensor | null].filter((t): t is tf.Tensor => t != null));
  }
}

export async function trainStep(model: AlexNet, optimizer: Optimizer, batch: Batch, opts: StepOptions): Promise<StepResult> {
  const t0 = performance.now();
  const { grads, sums: local } = localGradients(model, batch, opts.dropoutSeed);
  const t1 = performance.now();
  if (opts.reducer == null || opts.fusion == null) {
    // Single process: no copies, no sockets.
    const scale = local.count > 0 ? 1 / local.count : 0;
    if (local.count > 0) optimizer.apply(grads, opts.lr, scale);
    tf.dispose(grads);
    const t2 = performance.now();
    return { sums: local, timings: { computeMs: t1 - t0, copyMs: 0, reduceMs: 0, updateMs: t2 - t1 }, stop: opts.stopVote };
  }
  const { fusion, layout } = opts;
  grads.forEach((g, i) => fusion.set(g.dataSync() as Float32Array, layout.offsets[i]));
  tf.dispose(grads);
  const m = layout.metricsAt;
  fusion[m] = local.count;
  fusion[m + 1] = local.lossSum;
  fusion[m + 2] = local.top1Correct;
  fusion[m + 3] = local.top5Correct;
  fusion[m + 4] = opts.stopVote ? 1 : 0;
  const t2 = performance.now();
  await opts.reducer.allReduce(fusion);
  const t3 = performance.now();
  const sums: MetricSums = { count: fusion[m], lossSum: fusion[m + 1], top1Correct: fusion[m + 2], top5Correct: fusion[m + 3] };
  if (sums.count > 0) {
    const reduced = layout.offsets.map((o, i) => tf.tensor(fusion.subarray(o, o + layout.sizes[i]), model.params[i].shape));
    optimizer.apply(reduced, opts.lr, 1 / sums.count);
    tf.dispose(reduced);
  }
  const t4 = performance.now();
  return { sums, timings: { computeMs: t1 - t0, copyMs: t2 - t1, reduceMs: t3 - t2, updateMs: t4 - t3 }, stop: fusion[m + 4] > 0 };
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
export function evalBatchScores(model: AlexNet, batch: Batch): EvalOutput {
  if (batch.count === 0) return { sums: emptySums(), scores: new Float32Array(0) };
  const crops = batch.images.length / (model.spec.inputSize ** 2 * 3) / batch.count;
  let output: EvalOutput = { sums: emptySums(), scores: new Float32Array(0) };
  tf.tidy(() => {
    const logits = forward(model, imagesTensor(model, batch), { training: false });
    const probs = tf.mean(tf.reshape(tf.softmax(logits), [batch.count, crops, model.numClasses]), 1);
    const labels = tf.tensor1d(batch.labels, 'int32');
    const picked = tf.sum(tf.mul(probs, tf.oneHot(labels, model.numClasses)), 1);
    const lossSum = tf.sum(tf.neg(tf.log(tf.maximum(picked, 1e-12)))).dataSync()[0];
    // Log-probabilities rank like the averaged softmax and work for top-k.
    const scores = tf.log(tf.maximum(probs, 1e-30)).dataSync() as Float32Array;
    output = { sums: batchSums(scores, batch.labels, model.numClasses, lossSum), scores };
  });
  return output;
}

/** Metric sums for one evaluation batch (see evalBatchScores). */
export function evalBatch(model: AlexNet, batch: Batch): MetricSums {
  return evalBatchScores(model, batch).sums;
}
