/**
 * The hybrid mode (`--parallel hybrid`), after Krizhevsky's "One weird trick for parallelizing
 * convolutional neural networks" (2014): the conv layers are data-parallel, the FC layers
 * model-parallel. 96% of AlexNet's parameters sit in fc6-fc8 but only ~6% of its FLOPs, so
 * all-reducing their gradients (data mode: 244 MB a step on the paper preset) costs far more
 * than moving the activations they consume.
 *
 * One step, with N ranks and b_r images on rank r (B in all):
 *   conv stage on the rank's own images            -> features [b_r, F]
 *   all-gather the rows of every rank              -> X [B, F]            (same on every rank)
 *   each FC layer: this rank's output units only   -> [B, units / N]
 *   all-gather the columns                         -> [B, units]          (the next layer's input)
 *   loss on the rank's own rows of the logits
 * Backward is tfjs's autodiff through the same graph: every gather's gradient is the matching
 * reduce-scatter (each rank holds a partial sum of the activations' gradient; the owner of a
 * row or column gets the total). So the FC slices' gradients cover the whole global batch and
 * need no all-reduce; only the conv gradients (2.3M values on paper) are all-reduced.
 *
 * The gathers run inside tf.variableGrads, which is synchronous: they block on the comm thread
 * (dist/comm-thread/comm-thread.ts). Dropout masks are keyed by image (the sample index) and cut to the rank's
 * columns, so the result does not depend on N. The model's full FC variables are kept too, stale
 * during training: `materialize` gathers the slices into them (and the optimizer's slots into a
 * full state) for evaluation, checkpoints and export, which therefore do not depend on the mode.
 */
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../../data/loader';
import { readFloats } from '../../backend/readback';
import { ConfigError } from '../../core/errors';
import {
  convFeatures,
  dense,
  dropoutPerImage,
  firstDenseParam,
  type AlexNet,
  type Param,
  type ParamHook,
} from '../../model/alexnet';
import type { SyncCollective } from '../../dist/collective';
import { segmentRange, type ElemRange } from '../../dist/collective';
import { FusionBuffer } from './fusion-buffer';
import { batchSums, type MetricSums } from '../metrics';
import { Optimizer, type OptimizerState } from '../optimizer';

/** One FC layer of the head and the columns (output units) each rank owns. */
export interface HeadLayer {
  name: string;
  /** Index of its kernel in model.params (the bias follows). */
  kernelIndex: number;
  inputs: number;
  units: number;
  /** columns[r]: the output units rank r owns. */
  columns: ElemRange[];
}

/** The FC layers of `model` split over `worldSize` ranks; every layer needs >= worldSize units. */
export function headLayers(model: AlexNet, worldSize: number): HeadLayer[] {
  const first = firstDenseParam(model.spec);
  const layers: HeadLayer[] = [];
  for (let k = first; k < model.params.length; k += 2) {
    const [inputs, units] = model.params[k].shape;
    const name = model.params[k].name.replace(/\/kernel$/, '');
    if (units < worldSize) {
      throw new ConfigError(
        `--parallel hybrid splits every FC layer's outputs over the workers, but ${name} has ${units} for ${worldSize} workers: use --parallel data, or fewer workers`,
      );
    }
    layers.push({
      name,
      kernelIndex: k,
      inputs,
      units,
      columns: Array.from({ length: worldSize }, (_, r) => segmentRange(units, worldSize, r)),
    });
  }
  return layers;
}

/** Columns `range` of a row-major [rows, cols] matrix, as a [rows, width] matrix (a bias: rows = 1). */
export function sliceColumns(data: Float32Array, rows: number, cols: number, range: ElemRange): Float32Array {
  const width = range.end - range.start;
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) out.set(data.subarray(r * cols + range.start, r * cols + range.end), r * width);
  return out;
}

/** The inverse of sliceColumns over all ranks: pieces [rows, width_r] side by side. */
export function joinColumns(pieces: readonly Float32Array[], rows: number, widths: readonly number[]): Float32Array {
  const cols = widths.reduce((a, b) => a + b, 0);
  const out = new Float32Array(rows * cols);
  let start = 0;
  pieces.forEach((piece, p) => {
    const w = widths[p];
    for (let r = 0; r < rows; r++) out.set(piece.subarray(r * w, (r + 1) * w), r * cols + start);
    start += w;
  });
  return out;
}

const widthsOf = (columns: readonly ElemRange[]): number[] => columns.map((c) => c.end - c.start);

/** Splits a gathered flat buffer into per-rank pieces of these sizes. */
function piecesOf(all: Float32Array, sizes: readonly number[]): Float32Array[] {
  let at = 0;
  return sizes.map((n) => all.subarray(at, (at += n)));
}

/**
 * The parameters of a rank in hybrid mode: the model's conv params, then its FC slices; and of
 * those the trained ones (a frozen layer's are used in the pass but get no gradient, no slots
 * and, for conv layers, no place in the all-reduce).
 */
export class HybridHead {
  readonly layers: HeadLayer[];
  /** What the forward pass uses: the conv params (the model's own variables), then each FC layer's kernel and bias slices. */
  readonly forwardParams: Param[];
  /** The trained ones of forwardParams, in order: what the optimizer updates and the step computes gradients of. */
  readonly trainParams: Param[];
  /** trainParams[0, replicated) are conv params, the same on every rank and all-reduced. */
  readonly replicated: number;
  readonly optimizer: Optimizer;
  /** The trained conv gradients and the step's tail travel in this. */
  readonly fusion: FusionBuffer;

  private constructor(
    private readonly model: AlexNet,
    readonly collective: SyncCollective,
    layers: HeadLayer[],
    forwardParams: Param[],
    trainParams: Param[],
    optimizer: Optimizer,
  ) {
    this.layers = layers;
    this.forwardParams = forwardParams;
    this.trainParams = trainParams;
    const convs = new Set(model.params.slice(0, firstDenseParam(model.spec)));
    this.replicated = trainParams.filter((p) => convs.has(p)).length;
    this.optimizer = optimizer;
    this.fusion = new FusionBuffer(
      trainParams.slice(0, this.replicated).map((p) => p.shape),
      (length) => collective.allocate(length),
    );
  }

  /**
   * Cuts this rank's slices out of the full model and the full optimizer state (a fresh start
   * or a checkpoint of either mode). The full optimizer's params say which are trained. It is
   * disposed: the head's replaces it.
   */
  static async create(model: AlexNet, fullOptimizer: Optimizer, collective: SyncCollective): Promise<HybridHead> {
    const { rank, worldSize } = collective;
    const layers = headLayers(model, worldSize);
    const full = await fullOptimizer.getState();
    const trained = new Set(fullOptimizer.params.map((p) => p.name));
    const fullAt = new Map(fullOptimizer.params.map((p, i) => [p.name, i]));
    const slotNames = Object.keys(full.slots);
    const slots: Record<string, Float32Array[]> = Object.fromEntries(slotNames.map((name) => [name, []]));
    const forwardParams = model.params.slice(0, firstDenseParam(model.spec));
    const trainParams = forwardParams.filter((p) => trained.has(p.name));
    for (const p of trainParams) for (const name of slotNames) slots[name].push(full.slots[name][fullAt.get(p.name)!]);
    for (const layer of layers) {
      const range = layer.columns[rank];
      const width = range.end - range.start;
      const cut = (data: Float32Array, rows: number) => sliceColumns(data, rows, layer.units, range);
      for (const [part, rows, shape] of [
        [0, layer.inputs, [layer.inputs, width]],
        [1, 1, [width]],
      ] as const) {
        const whole = model.params[layer.kernelIndex + part];
        const slice: Param = {
          name: whole.name,
          shape: [...shape],
          kind: whole.kind,
          variable: tf.variable(tf.tensor(cut(await readFloats(whole.variable), rows), [...shape]), true),
        };
        forwardParams.push(slice);
        if (!trained.has(whole.name)) continue;
        trainParams.push(slice);
        for (const name of slotNames) slots[name].push(cut(full.slots[name][fullAt.get(whole.name)!], rows));
      }
    }
    const optimizer = new Optimizer(fullOptimizer.options, trainParams);
    optimizer.setState({ name: full.name, iterations: full.iterations, slots, params: trainParams.map((p) => p.name) });
    fullOptimizer.dispose();
    return new HybridHead(model, collective, layers, forwardParams, trainParams, optimizer);
  }

  /**
   * Gathers every rank's slices of the trained FC layers into the model's full variables (every
   * rank), so the model evaluates, checkpoints and exports as in data mode; a frozen layer's
   * full variables never went stale. With `slots`, also returns the full optimizer state for a
   * checkpoint. Every rank must call this at the same point.
   */
  async materialize(slots: boolean): Promise<OptimizerState | null> {
    const state = slots ? await this.optimizer.getState() : null;
    const fullSlots: Record<string, Float32Array[]> = {};
    const names = this.trainParams.slice(0, this.replicated).map((p) => p.name);
    if (state)
      for (const name of Object.keys(state.slots)) fullSlots[name] = state.slots[name].slice(0, this.replicated);
    let index = this.replicated;
    for (const layer of this.layers) {
      const widths = widthsOf(layer.columns);
      for (const [part, rows] of [
        [0, layer.inputs],
        [1, 1],
      ] as const) {
        const target = this.model.params[layer.kernelIndex + part];
        if (this.trainParams[index]?.name !== target.name) continue; // frozen
        const gather = async (local: Float32Array): Promise<Float32Array> => {
          const sizes = widths.map((w) => w * rows);
          const all = await this.collective.allGather(local, sizes, true);
          return joinColumns(piecesOf(all, sizes), rows, widths);
        };
        const weights = await gather(await readFloats(this.trainParams[index].variable));
        target.variable.assign(tf.tensor(weights, target.shape));
        names.push(target.name);
        if (state)
          for (const name of Object.keys(state.slots)) fullSlots[name].push(await gather(state.slots[name][index]));
        index++;
      }
    }
    return state ? { name: state.name, iterations: state.iterations, slots: fullSlots, params: names } : null;
  }

  dispose(): void {
    this.optimizer.dispose();
    for (const p of this.forwardParams.slice(firstDenseParam(this.model.spec))) p.variable.dispose();
  }
}

/**
 * A tfjs op over all ranks: forward, an all-gather of each rank's piece (`sizes[r]` values), laid
 * out by `assemble`; backward, the reduce-scatter of the incoming (partial) gradient, cut into the
 * ranks' pieces by `split`, so each rank gets the sum for its own piece.
 */
function gatherOp(
  collective: SyncCollective,
  sizes: readonly number[],
  localShape: [number, number],
  assemble: (all: Float32Array) => tf.Tensor2D,
  split: (dy: Float32Array) => Float32Array,
): (x: tf.Tensor2D) => tf.Tensor2D {
  return tf.customGrad((...args) => {
    const x = args[0] as tf.Tensor;
    return {
      value: assemble(collective.allGatherSync(x.dataSync() as Float32Array, sizes)),
      gradFunc: (dy: tf.Tensor) =>
        tf.tensor2d(collective.reduceScatterSync(split(dy.dataSync() as Float32Array), sizes), localShape),
    };
  }) as (x: tf.Tensor2D) => tf.Tensor2D;
}

/** All-gather of rows: [b_r, width] on each rank -> [B, width], rows in rank order. */
function gatherRows(
  collective: SyncCollective,
  counts: readonly number[],
  width: number,
): (x: tf.Tensor2D) => tf.Tensor2D {
  const total = counts.reduce((a, b) => a + b, 0);
  const sizes = counts.map((c) => c * width);
  return gatherOp(
    collective,
    sizes,
    [counts[collective.rank], width],
    (all) => tf.tensor2d(all, [total, width]),
    (dy) => dy,
  );
}

/** All-gather of columns: [B, width_r] on each rank -> [B, sum of widths], columns in rank order. */
function gatherColumns(
  collective: SyncCollective,
  rows: number,
  widths: readonly number[],
): (x: tf.Tensor2D) => tf.Tensor2D {
  const sizes = widths.map((w) => w * rows);
  const cols = widths.reduce((a, b) => a + b, 0);
  const starts = widths.map((_, r) => widths.slice(0, r).reduce((a, b) => a + b, 0));
  // The gradient's columns, rank by rank, one block after another: the reduce-scatter's segments.
  const split = (dy: Float32Array): Float32Array => {
    const flat = new Float32Array(rows * cols);
    widths.forEach((w, r) =>
      flat.set(sliceColumns(dy, rows, cols, { start: starts[r], end: starts[r] + w }), rows * starts[r]),
    );
    return flat;
  };
  return gatherOp(
    collective,
    sizes,
    [rows, widths[collective.rank]],
    (all) => tf.tensor2d(joinColumns(piecesOf(all, sizes), rows, widths), [rows, cols]),
    split,
  );
}

export interface HybridGradients {
  /** One per head.trainParams: conv gradients are this rank's own (all-reduce them), FC slices' are global. */
  grads: tf.Tensor[];
  lossSum: number;
  /** This rank's own logits, [count, classes], for its metric sums. */
  logits: Float32Array;
}

/**
 * The conv features of a rank with no images this step: [0, width], but computed from a trained
 * conv parameter (times 0), as real features are. tfjs runs an op's gradient only on the path
 * from the trained variables, and the row gather's gradient is a collective that the ranks with
 * images run: without that path this rank would skip it and the ranks would disagree.
 */
function noFeatures(width: number, head: HybridHead, vars: tf.Variable[]): tf.Tensor2D {
  const empty = tf.zeros([0, width]) as tf.Tensor2D;
  return head.replicated > 0 ? tf.mul(empty, tf.sum(vars[0])) : empty;
}

/**
 * Forward and backward of one hybrid step. Every rank calls the same collectives in the same
 * order, whatever its image count (a rank with none still joins every gather and scatter).
 */
export function hybridGradients(
  model: AlexNet,
  head: HybridHead,
  batch: Batch,
  dropoutSeed: number,
  convHook?: ParamHook,
): HybridGradients {
  const { collective } = head;
  const { rank, worldSize } = collective;
  const { spec, numClasses } = model;
  const counts = Array.from(
    collective.allGatherSync(Float32Array.of(batch.count), new Array<number>(worldSize).fill(1), true),
  );
  const keyBits = collective.allGatherSync(new Float32Array(Int32Array.from(batch.sampleIndices).buffer), counts, true);
  // The sample indices travelled as raw bits (exact): read them back as integers.
  const keys = new Int32Array(keyBits.buffer, keyBits.byteOffset, keyBits.length);
  const total = counts.reduce((a, b) => a + b, 0);
  const firstRow = counts.slice(0, rank).reduce((a, b) => a + b, 0);
  const featureSize = head.layers[0].inputs;
  const rate = spec.dropoutRate;
  const vars = head.trainParams.map((p) => p.variable);
  const used = head.forwardParams.map((p) => p.variable);
  const labels = tf.tensor1d(batch.labels, 'int32');
  const size = spec.inputSize;
  const images = batch.count > 0 ? tf.tensor4d(batch.images, [batch.count, size, size, 3]) : null;
  let logits: tf.Tensor | null = null;
  try {
    const { value, grads } = tf.variableGrads(() => {
      const features = images ? convFeatures(model, images, convHook) : noFeatures(featureSize, head, vars);
      let h = gatherRows(collective, counts, featureSize)(features);
      let next = firstDenseParam(spec);
      head.layers.forEach((layer, l) => {
        const isLast = l === head.layers.length - 1;
        const drop = (x: tf.Tensor2D, columns?: { start: number; of: number }) =>
          rate > 0 ? dropoutPerImage(x, rate, dropoutSeed, l, keys, columns) : x;
        if (!isLast && spec.dropoutPlacement === 'before') h = drop(h);
        let z = dense(h, used[next++] as tf.Tensor2D, used[next++] as tf.Tensor1D, isLast ? 'linear' : spec.activation);
        if (!isLast && spec.dropoutPlacement === 'after')
          z = drop(z, { start: layer.columns[rank].start, of: layer.units });
        h = gatherColumns(collective, total, widthsOf(layer.columns))(z);
      });
      if (batch.count === 0) return tf.mul(tf.sum(h), 0) as tf.Scalar; // joins the backward's scatters
      const own = tf.slice(h, [firstRow, 0], [batch.count, numClasses]);
      logits = tf.keep(own);
      return tf.losses.softmaxCrossEntropy(
        tf.oneHot(labels, numClasses),
        own,
        undefined,
        undefined,
        tf.Reduction.SUM,
      ) as tf.Scalar;
    }, vars);
    const lossSum = batch.count > 0 ? value.dataSync()[0] : 0;
    value.dispose();
    const logitData = logits ? ((logits as tf.Tensor).dataSync() as Float32Array) : new Float32Array(0);
    return {
      grads: head.trainParams.map((p) => grads[p.variable.name] ?? tf.zerosLike(p.variable)),
      lossSum,
      logits: logitData,
    };
  } finally {
    tf.dispose([labels, images, logits as tf.Tensor | null].filter((t): t is tf.Tensor => t != null));
  }
}

/** This rank's metric sums of a hybrid step. */
export function hybridSums(batch: Batch, numClasses: number, g: HybridGradients): MetricSums {
  return batchSums(g.logits, batch.labels, numClasses, g.lossSum);
}
