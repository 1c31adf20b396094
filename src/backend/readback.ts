/**
 * Reading tensors back to JavaScript, on every backend. The webgpu backend cannot read
 * synchronously in Node (its dataSync needs OffscreenCanvas), and each of its reads is a wait
 * for the GPU's queue plus a copy: there, values go through the async `data()`, several tensors
 * fused into one read. The other backends keep `dataSync()`: their reads are a copy (or none)
 * with nothing to wait for, and the training loop stays as fast as it was.
 */
import * as tf from '@tensorflow/tfjs';

/** Whether the active backend can read synchronously (every backend but webgpu). */
export function readsSync(): boolean {
  return tf.getBackend() !== 'webgpu';
}

/** One tensor's values as float32. */
export async function readFloats(t: tf.Tensor): Promise<Float32Array> {
  return (readsSync() ? t.dataSync() : await t.data()) as Float32Array;
}

/**
 * Several tensors' values, flattened and concatenated, in one readback: on webgpu they are
 * concatenated on the device first, so a step waits for the GPU once instead of once per tensor.
 */
export async function readConcatenated(tensors: readonly tf.Tensor[]): Promise<Float32Array> {
  if (readsSync()) {
    const out = new Float32Array(tensors.reduce((n, t) => n + t.size, 0));
    let at = 0;
    for (const t of tensors) {
      out.set(t.dataSync() as Float32Array, at);
      at += t.size;
    }
    return out;
  }
  const flat = tf.tidy(() => tf.concat(tensors.map((t) => tf.reshape(t, [-1]))));
  try {
    return (await flat.data()) as Float32Array;
  } finally {
    flat.dispose();
  }
}

/** A scalar and a tensor (a loss sum and its logits), in one readback. */
export async function readScalarAnd(scalar: tf.Tensor, t: tf.Tensor): Promise<{ scalar: number; values: Float32Array }> {
  if (readsSync()) return { scalar: scalar.dataSync()[0], values: t.dataSync() as Float32Array };
  const both = await readConcatenated([scalar, t]);
  return { scalar: both[0], values: both.subarray(1) };
}
