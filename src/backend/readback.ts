/**
 * Reading tensors back to JavaScript, on every backend. The webgpu backend cannot read
 * synchronously in Node (its dataSync needs OffscreenCanvas), and each of its reads is a wait
 * for the GPU's queue plus a copy: there, values go through the async `data()`, several tensors
 * fused into one read. The other backends keep `dataSync()`: their reads are a copy (or none)
 * with nothing to wait for, and the training loop stays as fast as it was.
 */
import * as tf from '@tensorflow/tfjs';
import { webgpuAdapter } from './webgpu/backend';

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
  // A concatenation must fit one binding (webgpu/backend.ts, maxBindingBytes): a paper model's
  // gradients (244 MB) are read in a few groups, a tensor larger than a binding alone (a
  // readback copies its buffer, binding nothing).
  const maxBytes = webgpuAdapter()?.maxBindingBytes ?? Infinity;
  const out = new Float32Array(tensors.reduce((n, t) => n + t.size, 0));
  let at = 0;
  for (const group of bindingGroups(tensors, maxBytes / 4)) {
    const flat = group.length === 1 ? null : tf.tidy(() => tf.concat(group.map((t) => tf.reshape(t, [-1]))));
    try {
      const values = (await (flat ?? group[0]).data()) as Float32Array;
      out.set(values, at);
      at += values.length;
    } finally {
      flat?.dispose();
    }
  }
  return out;
}

/** Consecutive tensors in groups of at most `maxElements` (a bigger tensor is a group alone). */
export function bindingGroups<T extends { size: number }>(tensors: readonly T[], maxElements: number): T[][] {
  const groups: T[][] = [];
  let size = Infinity;
  for (const t of tensors) {
    if (size + t.size > maxElements || groups.length === 0) {
      groups.push([]);
      size = 0;
    }
    groups[groups.length - 1].push(t);
    size += t.size;
  }
  return groups;
}

/** A scalar and a tensor (a loss sum and its logits), in one readback. */
export async function readScalarAnd(
  scalar: tf.Tensor,
  t: tf.Tensor,
): Promise<{ scalar: number; values: Float32Array }> {
  if (readsSync()) return { scalar: scalar.dataSync()[0], values: t.dataSync() as Float32Array };
  const both = await readConcatenated([scalar, t]);
  return { scalar: both[0], values: both.subarray(1) };
}
