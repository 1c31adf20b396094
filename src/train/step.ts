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
import { readScalarAnd } from '../backend/readback';
import type { Batch } from '../data/loader';
import type { AlexNet } from '../model/alexnet';
import { forward, type ParamHook } from '../model/alexnet';
import type { Collective } from '../parallel/collective';
import { isSyncCollective } from '../parallel/comm-thread';
import type { FusionBuffer, StepTail } from './fusion-buffer';
import { hybridGradients, hybridSums, type HybridHead } from './hybrid';
import type { OverlappedReduce } from './overlap';
import { addSums, batchSums, emptySums, type MetricSums } from './metrics';
import { microBatchSizes } from './memory';
import type { Optimizer } from './optimizer';

export interface StepTimings {
  computeMs: number;
  copyMs: number;
  reduceMs: number;
  updateMs: number;
}

export interface StepResult {
  /** Summed over every rank when a collective is given. */
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
  /** The other ranks (null: this process trains alone, no copies, no sockets). */
  collective: Collective | null;
  /** Preallocated fusion buffer (reused every step) when a collective is given. */
  fusion: FusionBuffer | null;
  /** This rank's wish to stop after this step (Ctrl-C, a shutdown request). */
  stopVote: boolean;
  /** This rank's wish for a step checkpoint after this step (rank 0's timer). */
  checkpointVote?: boolean;
  /** Images per forward+backward (0 or absent: the whole share at once); see memory.ts. */
  microBatch?: number;
  /** Hybrid mode: this rank's FC slices and their optimizer (see hybrid.ts); absent: data mode. */
  hybrid?: HybridHead | null;
  /**
   * All-reduce the (data mode: all; hybrid: conv) gradients in buckets during the backward pass
   * (see overlap.ts). Only with the whole share in one pass (no micro-batches).
   */
  overlap?: OverlappedReduce | null;
}

/**
 * All-reduces a fusion buffer: the values in the run's wire dtype, the tail (image counts,
 * metric sums, votes) always exact, since a 16-bit wire would round counts above 2048. With
 * `overlap`, the values already left in buckets during backward: wait for them, then the tail.
 */
export async function reduceFusion(collective: Collective, fusion: FusionBuffer, overlap: OverlappedReduce | null = null): Promise<void> {
  if (overlap) {
    await overlap.settle();
    await collective.allReduce(fusion.tail, { exact: true });
    return;
  }
  if (!isSyncCollective(collective) || collective.wireDtype === 'fp32') {
    await collective.allReduce(fusion.data);
    return;
  }
  if (fusion.tailAt > 0) await collective.allReduce(fusion.params);
  await collective.allReduce(fusion.tail, { exact: true });
}

function imagesTensor(model: AlexNet, batch: Batch): tf.Tensor4D {
  const s = model.spec.inputSize;
  return tf.tensor4d(batch.images, [batch.images.length / (s * s * 3), s, s, 3]);
}

/** Images [from, from + n) of a training batch (one crop per image), as a batch of their own. */
function sliceBatch(batch: Batch, imageSize: number, from: number, n: number): Batch {
  const per = imageSize * imageSize * 3;
  return {
    ...batch,
    images: batch.images.subarray(from * per, (from + n) * per),
    labels: batch.labels.subarray(from, from + n),
    sampleIndices: batch.sampleIndices.subarray(from, from + n),
    count: n,
    skipped: 0,
  };
}

/**
 * Forward + backward of one (micro-)batch: summed-loss gradients and metric sums. Each image's
 * dropout masks are keyed by its sample index (alexnet.ts), so they do not depend on how the
 * batch is cut into micro-batches or shared among ranks.
 */
async function microGradients(model: AlexNet, batch: Batch, dropoutSeed: number, paramHook?: ParamHook): Promise<{ grads: tf.Tensor[]; sums: MetricSums }> {
  let logits: tf.Tensor | null = null;
  const labels = tf.tensor1d(batch.labels, 'int32');
  const x = imagesTensor(model, batch);
  try {
    const vars = model.params.map((p) => p.variable);
    const { value, grads } = tf.variableGrads(() => {
      const out = forward(model, x, { training: true, dropoutSeed, dropoutKeys: batch.sampleIndices, paramHook });
      logits = tf.keep(out);
      const oneHot = tf.oneHot(labels, model.numClasses);
      return tf.losses.softmaxCrossEntropy(oneHot, out, undefined, undefined, tf.Reduction.SUM) as tf.Scalar;
    }, vars);
    // The loss and the logits in one readback (a GPU sync point on webgpu).
    const read = await readScalarAnd(value, logits as unknown as tf.Tensor).finally(() => value.dispose());
    const sums = batchSums(read.values, batch.labels, model.numClasses, read.scalar);
    return { grads: model.params.map((p) => grads[p.variable.name]), sums };
  } finally {
    tf.dispose([x, labels, logits as tf.Tensor | null].filter((t): t is tf.Tensor => t != null));
  }
}

/**
 * Forward + backward on this rank's images, `microBatch` images at a time: the gradients of a
 * summed loss add, so the sum over micro-batches is the gradient of the whole share (up to
 * float rounding), and so are the metric sums. Only one micro-batch's activations are alive.
 */
async function localGradients(model: AlexNet, batch: Batch, dropoutSeed: number, microBatch: number): Promise<{ grads: tf.Tensor[]; sums: MetricSums }> {
  if (batch.count === 0) {
    return { grads: model.params.map((p) => tf.zerosLike(p.variable)), sums: emptySums() };
  }
  let grads: tf.Tensor[] = [];
  let sums = emptySums();
  let offset = 0;
  for (const n of microBatchSizes(batch.count, microBatch > 0 ? microBatch : batch.count)) {
    const part = n === batch.count ? batch : sliceBatch(batch, model.spec.inputSize, offset, n);
    const local = await microGradients(model, part, dropoutSeed);
    if (offset === 0) {
      grads = local.grads;
    } else {
      const summed = grads.map((g, i) => tf.add(g, local.grads[i]));
      tf.dispose([...grads, ...local.grads]);
      grads = summed;
    }
    sums = addSums(sums, local.sums);
    offset += n;
  }
  return { grads, sums };
}

/**
 * After the all-reduce: the step's global sums and votes from the tail, and the update with the
 * reduced gradients (then `ownGrads`: hybrid mode's FC slices, already global) scaled by
 * 1 / global image count.
 */
function applyReduced(fusion: FusionBuffer, optimizer: Optimizer, lr: number, ownGrads: tf.Tensor[] = []): Omit<StepResult, 'timings'> {
  const { sums, skipped, stopVotes, checkpointVotes } = fusion.readTail();
  if (sums.count > 0) {
    const reduced = fusion.unpack();
    optimizer.apply([...reduced, ...ownGrads], lr, 1 / sums.count);
    tf.dispose(reduced);
  }
  return { sums, skipped, stop: stopVotes > 0, checkpoint: (checkpointVotes ?? 0) > 0 };
}

function tailOf(local: MetricSums, batch: Batch, opts: StepOptions): StepTail {
  return { sums: local, skipped: batch.skipped, stopVotes: opts.stopVote ? 1 : 0, checkpointVotes: opts.checkpointVote ? 1 : 0 };
}

/**
 * A hybrid step: gathers and scatters run inside forward+backward (their blocked time is
 * counted as communication, not compute); then only the conv gradients are all-reduced.
 */
async function hybridStep(model: AlexNet, head: HybridHead, batch: Batch, opts: StepOptions): Promise<StepResult> {
  const { collective } = head;
  collective.takeBlockedMs();
  const { overlap } = opts;
  const t0 = performance.now();
  const g = hybridGradients(model, head, batch, opts.dropoutSeed, overlap?.begin());
  overlap?.finish();
  const local = hybridSums(batch, model.numClasses, g);
  const t1 = performance.now();
  const inPassCommMs = collective.takeBlockedMs();
  const { fusion } = head;
  const convGrads = g.grads.slice(0, head.replicated);
  if (!overlap) fusion.pack(convGrads);
  tf.dispose(convGrads);
  fusion.writeTail(tailOf(local, batch, opts));
  const t2 = performance.now();
  await reduceFusion(collective, fusion, overlap ?? null);
  const t3 = performance.now();
  const headGrads = g.grads.slice(head.replicated);
  const result = applyReduced(fusion, head.optimizer, opts.lr, headGrads);
  tf.dispose(headGrads);
  const t4 = performance.now();
  return { ...result, timings: { computeMs: t1 - t0 - inPassCommMs, copyMs: t2 - t1, reduceMs: t3 - t2 + inPassCommMs, updateMs: t4 - t3 } };
}

/**
 * A data-mode step with the all-reduce overlapped: the backward pass's hooks start the buckets;
 * what is left after it (the exposed communication) is the reduce time.
 */
async function overlappedStep(model: AlexNet, optimizer: Optimizer, batch: Batch, opts: StepOptions, overlap: OverlappedReduce, collective: Collective, fusion: FusionBuffer): Promise<StepResult> {
  const t0 = performance.now();
  const hook = overlap.begin();
  let local = emptySums();
  if (batch.count > 0) {
    const g = await microGradients(model, batch, opts.dropoutSeed, hook);
    tf.dispose(g.grads);
    local = g.sums;
  }
  overlap.finish();
  fusion.writeTail(tailOf(local, batch, opts));
  const t1 = performance.now();
  await reduceFusion(collective, fusion, overlap);
  const t2 = performance.now();
  const result = applyReduced(fusion, optimizer, opts.lr);
  const t3 = performance.now();
  return { ...result, timings: { computeMs: t1 - t0, copyMs: 0, reduceMs: t2 - t1, updateMs: t3 - t2 } };
}

export async function trainStep(model: AlexNet, optimizer: Optimizer, batch: Batch, opts: StepOptions): Promise<StepResult> {
  if (opts.hybrid) return hybridStep(model, opts.hybrid, batch, opts);
  if (opts.overlap && isSyncCollective(opts.collective) && opts.fusion) return overlappedStep(model, optimizer, batch, opts, opts.overlap, opts.collective, opts.fusion);
  const t0 = performance.now();
  const { grads, sums: local } = await localGradients(model, batch, opts.dropoutSeed, opts.microBatch ?? 0);
  const t1 = performance.now();
  const { collective, fusion } = opts;
  if (collective == null || fusion == null) {
    const scale = local.count > 0 ? 1 / local.count : 0;
    if (local.count > 0) optimizer.apply(grads, opts.lr, scale);
    tf.dispose(grads);
    const t2 = performance.now();
    return { sums: local, skipped: batch.skipped, timings: { computeMs: t1 - t0, copyMs: 0, reduceMs: 0, updateMs: t2 - t1 }, stop: opts.stopVote, checkpoint: opts.checkpointVote ?? false };
  }
  await fusion.packAsync(grads).finally(() => tf.dispose(grads));
  fusion.writeTail(tailOf(local, batch, opts));
  const t2 = performance.now();
  await reduceFusion(collective, fusion);
  const t3 = performance.now();
  const result = applyReduced(fusion, optimizer, opts.lr);
  const t4 = performance.now();
  return { ...result, timings: { computeMs: t1 - t0, copyMs: t2 - t1, reduceMs: t3 - t2, updateMs: t4 - t3 } };
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
