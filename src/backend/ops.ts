/**
 * Fused ops the training code calls on any backend: each runs as one kernel where the current
 * backend registered it (native), and otherwise says so (false, null) so the caller composes
 * tfjs ops. The model and the optimizer use these, never a backend's kernels directly.
 */
import * as tf from '@tensorflow/tfjs';
import { nativeInPlaceUpdates } from './native/backend';
import {
  ADAM_KERNEL,
  CONV_LAYER_GRAD_KERNEL,
  CONV_LAYER_KERNEL,
  LRN_MAX_POOL_GRAD_KERNEL,
  LRN_MAX_POOL_KERNEL,
  SGD_MOMENTUM_KERNEL,
  type AdamAttrs,
  type ConvLayerAttrs,
  type LrnMaxPoolAttrs,
  type SgdMomentumAttrs,
} from './native/kernels';

/**
 * The paper's SGD step as one kernel where the current backend has it (native: one pass over
 * the weights instead of six tensor ops, which took most of a paper step), written into w's and
 * v's own buffers where no one else can see them; returns false where the backend has no such
 * kernel, and the caller does it with tfjs ops.
 */
export function sgdMomentumStep(w: tf.Variable, v: tf.Variable, g: tf.Tensor, attrs: SgdMomentumAttrs): boolean {
  if (tf.getKernel(SGD_MOMENTUM_KERNEL, tf.getBackend()) == null) return false;
  if (nativeInPlaceUpdates()?.sgdMomentum(tf.backend(), w, v, g, attrs)) return true;
  const [wNext, vNext] = tf.engine().runKernel(SGD_MOMENTUM_KERNEL, { w, v, g }, { ...attrs }) as tf.Tensor[];
  assignAll([w, v], [wNext, vNext]);
  return true;
}

/** One Adam step likewise (native), else false. */
export function adamStep(w: tf.Variable, m: tf.Variable, v: tf.Variable, g: tf.Tensor, attrs: AdamAttrs): boolean {
  if (tf.getKernel(ADAM_KERNEL, tf.getBackend()) == null) return false;
  if (nativeInPlaceUpdates()?.adam(tf.backend(), w, m, v, g, attrs)) return true;
  const next = tf.engine().runKernel(ADAM_KERNEL, { w, m, v, g }, { ...attrs }) as tf.Tensor[];
  assignAll([w, m, v], next);
  return true;
}

/** Each variable takes its new value, which then has no other holder (in place next time). */
function assignAll(variables: tf.Variable[], next: tf.Tensor[]): void {
  variables.forEach((variable, i) => variable.assign(next[i]));
  tf.dispose(next);
}

/**
 * A whole conv layer, y = act(conv(x, w) + b) with `groups` groups ([KH, KW, IC / G, OC]
 * filter, output channels split in G blocks), as one op with its own gradient, where the
 * current backend has it (native), else null and the caller composes tfjs ops.
 *
 * Why: under a gradient tfjs unfuses conv + bias + relu into three ops (and a grouped layer
 * into a split, G convs and a concat), then takes the relu's gradient as Step and Multiply and
 * the bias's as a Sum: each a pass over the layer's activations with a fresh buffer. Here the
 * forward is one oneDNN call and the backward one addon call.
 */
export function convLayer(x: tf.Tensor4D, w: tf.Tensor4D, b: tf.Tensor1D, attrs: ConvLayerAttrs): tf.Tensor4D | null {
  if (tf.getKernel(CONV_LAYER_KERNEL, tf.getBackend()) == null) return null;
  const layer = tf.customGrad((...args) => {
    const [xi, wi, bi] = args as tf.Tensor[];
    const save = args[3] as (tensors: tf.Tensor[]) => void;
    const y = tf.engine().runKernel(CONV_LAYER_KERNEL, { x: xi, w: wi, b: bi }, { ...attrs }) as tf.Tensor4D;
    save([xi, wi, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [sx, sw, sy] = saved;
        return tf
          .engine()
          .runKernel(CONV_LAYER_GRAD_KERNEL, { x: sx, w: sw, y: sy, dy: dy as tf.Tensor }, { ...attrs }) as tf.Tensor[];
      },
    };
  });
  return layer(x, w, b) as tf.Tensor4D;
}

/**
 * An LRN and the max pool after it, y = maxPool(lrn(x)) (the paper's conv1 and conv2), as one op
 * with its own gradient where the current backend has it (native), else null and the caller
 * composes tfjs ops. The same values, bit for bit, as the two ops.
 *
 * Why: as two ops, the LRN's output (the size of the conv's, 37 MB for the paper's conv1 at batch
 * 32) is written, read back by the pool and kept for both gradients, and the pool's gradient
 * writes one as large for LRNGrad to read: four passes over memory that this op skips.
 */
export function lrnMaxPool(x: tf.Tensor4D, attrs: LrnMaxPoolAttrs): tf.Tensor4D | null {
  if (tf.getKernel(LRN_MAX_POOL_KERNEL, tf.getBackend()) == null) return null;
  const op = tf.customGrad((...args) => {
    const [xi] = args as tf.Tensor[];
    const save = args[1] as (tensors: tf.Tensor[]) => void;
    const y = tf.engine().runKernel(LRN_MAX_POOL_KERNEL, { x: xi }, { ...attrs }) as tf.Tensor4D;
    save([xi, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [sx, sy] = saved;
        return [
          tf
            .engine()
            .runKernel(LRN_MAX_POOL_GRAD_KERNEL, { x: sx, y: sy, dy: dy as tf.Tensor }, { ...attrs }) as tf.Tensor,
        ];
      },
    };
  });
  return op(x) as tf.Tensor4D;
}
