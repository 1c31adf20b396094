/**
 * Forward and backward of this rank's images: the one place a training Batch becomes tensors.
 *
 * Gradients are taken of the *summed* loss, so they add: over micro-batches (memory.ts), and over
 * ranks in the all-reduce, where the optimizer then scales by 1 / (global image count). N ranks at
 * global batch B therefore compute the update of one rank at batch B, even when a rank's share is
 * empty or short because of skipped images.
 */
import * as tf from '@tensorflow/tfjs';
import { readScalarAnd } from '../backend/readback';
import type { Batch } from '../data/loader';
import { forward, type AlexNet, type Param, type ParamHook } from '../model/alexnet';
import { microBatchSizes } from './memory';
import { addSums, batchSums, emptySums, type MetricSums } from './metrics';

/** Gradients (one per trained parameter) and this rank's metric sums. */
export interface Gradients {
  grads: tf.Tensor[];
  sums: MetricSums;
}

/** A batch's images as one NHWC tensor (several crops per image count as several images). */
export function imagesTensor(model: AlexNet, batch: Batch): tf.Tensor4D {
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
 * Forward + backward of one (micro-)batch, the gradients of `params` (the trained ones, in the
 * model's order): tfjs prunes the backward pass to what leads to them, so a frozen layer's
 * weight gradients, and a frozen stem's whole backward, are not computed. Each image's dropout
 * masks are keyed by its sample index (model/alexnet.ts), so they do not depend on how the batch
 * is cut into micro-batches or shared among ranks. `paramHook` wraps each parameter in the
 * forward pass (--overlap's bucket hooks).
 */
export async function microGradients(
  model: AlexNet,
  params: readonly Param[],
  batch: Batch,
  dropoutSeed: number,
  paramHook?: ParamHook,
): Promise<Gradients> {
  let logits: tf.Tensor | null = null;
  const labels = tf.tensor1d(batch.labels, 'int32');
  const x = imagesTensor(model, batch);
  try {
    const vars = params.map((p) => p.variable);
    const { value, grads } = tf.variableGrads(() => {
      const out = forward(model, x, { training: true, dropoutSeed, dropoutKeys: batch.sampleIndices, paramHook });
      logits = tf.keep(out);
      const oneHot = tf.oneHot(labels, model.numClasses);
      return tf.losses.softmaxCrossEntropy(oneHot, out, undefined, undefined, tf.Reduction.SUM) as tf.Scalar;
    }, vars);
    // The loss and the logits in one readback (a GPU sync point on webgpu).
    const read = await readScalarAnd(value, logits as unknown as tf.Tensor).finally(() => value.dispose());
    const sums = batchSums(read.values, batch.labels, model.numClasses, read.scalar);
    return { grads: params.map((p) => grads[p.variable.name]), sums };
  } finally {
    tf.dispose([x, labels, logits as tf.Tensor | null].filter((t): t is tf.Tensor => t != null));
  }
}

/**
 * Forward + backward on this rank's images (the gradients of `params`), `microBatch` images at a time (0: all at once). The
 * sum over micro-batches is the gradient of the whole share (up to float rounding), and so are
 * the metric sums. Only one micro-batch's activations are alive at a time.
 */
export async function localGradients(
  model: AlexNet,
  params: readonly Param[],
  batch: Batch,
  dropoutSeed: number,
  microBatch: number,
): Promise<Gradients> {
  if (batch.count === 0) {
    return { grads: params.map((p) => tf.zerosLike(p.variable)), sums: emptySums() };
  }
  let grads: tf.Tensor[] = [];
  let sums = emptySums();
  let offset = 0;
  for (const n of microBatchSizes(batch.count, microBatch > 0 ? microBatch : batch.count)) {
    const part = n === batch.count ? batch : sliceBatch(batch, model.spec.inputSize, offset, n);
    const local = await microGradients(model, params, part, dropoutSeed);
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
