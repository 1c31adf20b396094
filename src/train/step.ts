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
import { forward } from '../model/alexnet';
import type { Collective } from '../parallel/collective';
import type { FusionBuffer } from './fusion-buffer';
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
  /** Images per forward+backward (0 or absent: the whole share at once); see memory.ts. */
  microBatch?: number;
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
async function microGradients(model: AlexNet, batch: Batch, dropoutSeed: number): Promise<{ grads: tf.Tensor[]; sums: MetricSums }> {
  let logits: tf.Tensor | null = null;
  const labels = tf.tensor1d(batch.labels, 'int32');
  const x = imagesTensor(model, batch);
  try {
    const vars = model.params.map((p) => p.variable);
    const { value, grads } = tf.variableGrads(() => {
      const out = forward(model, x, { training: true, dropoutSeed, dropoutKeys: batch.sampleIndices });
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

export async function trainStep(model: AlexNet, optimizer: Optimizer, batch: Batch, opts: StepOptions): Promise<StepResult> {
  const t0 = performance.now();
  const { grads, sums: local } = await localGradients(model, batch, opts.dropoutSeed, opts.microBatch ?? 0);
  const t1 = performance.now();
  const { collective, fusion } = opts;
  if (collective == null || fusion == null) {
    const scale = local.count > 0 ? 1 / local.count : 0;
    if (local.count > 0) optimizer.apply(grads, opts.lr, scale);
    tf.dispose(grads);
    const t2 = performance.now();
    return { sums: local, skipped: batch.skipped, timings: { computeMs: t1 - t0, copyMs: 0, reduceMs: 0, updateMs: t2 - t1 }, stop: opts.stopVote };
  }
  await fusion.packAsync(grads).finally(() => tf.dispose(grads));
  fusion.writeTail({ sums: local, skipped: batch.skipped, stopVotes: opts.stopVote ? 1 : 0 });
  const t2 = performance.now();
  await collective.allReduce(fusion.data);
  const t3 = performance.now();
  const { sums, skipped, stopVotes } = fusion.readTail();
  if (sums.count > 0) {
    const reduced = fusion.unpack();
    optimizer.apply(reduced, opts.lr, 1 / sums.count);
    tf.dispose(reduced);
  }
  const t4 = performance.now();
  return { sums, skipped, timings: { computeMs: t1 - t0, copyMs: t2 - t1, reduceMs: t3 - t2, updateMs: t4 - t3 }, stop: stopVotes > 0 };
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
