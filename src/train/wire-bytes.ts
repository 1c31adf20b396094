/**
 * Bytes one rank puts on the ring per training step, by mode and wire dtype: the model the
 * parallel-modes benchmark tabulates for every preset, and that a test holds to the bytes the
 * comm thread actually counts.
 *
 * A ring all-reduce of V values sends 2 (N-1)/N V values per rank; an all-gather or a
 * reduce-scatter of V values (all ranks' segments together) sends (N-1)/N V. Data mode
 * all-reduces every gradient. Hybrid mode all-reduces the conv gradients and, per step, gathers
 * the conv features [B, F] and each FC layer's outputs [B, units] in the forward pass and
 * reduce-scatters their gradients in the backward pass (B: the global batch).
 * Small terms: the metric tail (7 fp32 values, all-reduced), hybrid's image counts and keys,
 * and the 16-bit wire's 4-byte header and padding per message.
 */
import type { ParallelMode, WireDtype } from '../core/config';
import { layerShapes } from '../model/alexnet';
import type { ModelSpec } from '../model/presets';

export interface WireBytes {
  /** Gradients all-reduced: every parameter (data), the conv layers' (hybrid). */
  gradients: number;
  /** Hybrid: activations gathered and their gradients reduce-scattered. */
  activations: number;
  /** Metric tail, image counts and sample keys. */
  control: number;
  total: number;
}

export interface WirePlan {
  spec: ModelSpec;
  numClasses: number;
  mode: ParallelMode;
  dtype: WireDtype;
  worldSize: number;
  batchPerWorker: number;
  /**
   * Layers not trained (--freeze): no gradients to all-reduce, and in hybrid mode no gradient
   * to reduce-scatter for an activation that no trained layer lies below.
   */
  frozen?: ReadonlySet<string>;
}

const TAIL_VALUES = 7;

/** Parameters of the conv layers and of the FC layers, and the FC layers' input and output widths. */
export function modelParts(
  spec: ModelSpec,
  numClasses: number,
): { convParams: number; fcParams: number; features: number; fcUnits: number[] } {
  const rows = layerShapes(spec, numClasses);
  const firstDense = rows.findIndex((r) => r.outputShape.length === 1);
  const convParams = rows.slice(0, firstDense).reduce((s, r) => s + r.params, 0);
  const fcRows = rows.slice(firstDense);
  return {
    convParams,
    fcParams: fcRows.reduce((s, r) => s + r.params, 0),
    features: rows[firstDense - 1].outputShape.reduce((a, b) => a * b, 1),
    fcUnits: fcRows.map((r) => r.outputShape[0]),
  };
}

/** Each layer with parameters, in order: its name ('conv2', 'fc6'), parameter count and whether it is a conv layer. */
function paramLayers(spec: ModelSpec, numClasses: number): { name: string; params: number; conv: boolean }[] {
  const rows = layerShapes(spec, numClasses);
  const firstDense = rows.findIndex((r) => r.outputShape.length === 1);
  return rows
    .map((r, i) => ({ name: r.layer.split(' ')[0], params: r.params, conv: i < firstDense }))
    .filter((r) => r.params > 0);
}

export function wireBytesPerStep(plan: WirePlan): WireBytes {
  const n = plan.worldSize;
  if (n <= 1) return { gradients: 0, activations: 0, control: 0, total: 0 };
  const w = plan.dtype === 'fp32' ? 4 : 2;
  const share = (n - 1) / n;
  const { features, fcUnits } = modelParts(plan.spec, plan.numClasses);
  const layers = paramLayers(plan.spec, plan.numClasses);
  const trained = layers.map((l) => !plan.frozen?.has(l.name));
  const trainedParams = (conv: boolean) =>
    layers.reduce((sum, l, i) => sum + (trained[i] && (l.conv || !conv) ? l.params : 0), 0);
  const tail = 2 * share * TAIL_VALUES * 4;
  if (plan.mode === 'data') {
    const gradients = 2 * share * trainedParams(false) * w;
    return { gradients, activations: 0, control: tail, total: gradients + tail };
  }
  const batch = plan.batchPerWorker * n;
  const gradients = 2 * share * trainedParams(true) * w;
  // Forward gathers every activation; backward reduce-scatters an activation's gradient only
  // when a trained layer lies below it (tfjs prunes the rest of the backward pass).
  const convCount = layers.filter((l) => l.conv).length;
  const below = (layer: number) => trained.slice(0, layer + 1).some(Boolean);
  const widths = [features, ...fcUnits];
  const owners = [convCount - 1, ...fcUnits.map((_, k) => convCount + k)];
  const activations = widths.reduce((sum, width, k) => sum + share * batch * width * w * (below(owners[k]) ? 2 : 1), 0);
  const control = tail + share * (n + batch) * 4;
  return { gradients, activations, control, total: gradients + activations + control };
}
