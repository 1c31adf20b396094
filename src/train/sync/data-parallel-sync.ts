/**
 * Data parallelism: every rank holds the whole model and trains on its share of the global
 * batch; the gradients travel in one fusion buffer through the all-reduce, with the step's tail
 * (image count, metric sums, votes). With `--overlap` they leave in buckets during backward
 * (overlap.ts), and what the step waits for is the communication left when backward ends.
 */
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../../data/loader';
import type { Collective } from '../../dist/collective';
import type { AlexNet, Param } from '../../model/alexnet';
import { localGradients, microGradients } from '../gradients';
import { emptySums } from '../metrics';
import type { Optimizer, OptimizerState } from '../optimizer';
import { FusionBuffer, packWeights, reduceFusion, type StepTail } from './fusion-buffer';
import type { GradientSync, LocalGradients, ReducedGradients } from './gradient-sync';
import type { OverlappedReduce } from './overlap';

/** A tail summed over every rank, exactly (shared by the data and hybrid strategies). */
export async function sumTailOver(collective: Collective, tail: StepTail): Promise<StepTail> {
  const buffer = new FusionBuffer();
  buffer.writeTail(tail);
  await reduceFusion(collective, buffer);
  return buffer.readTail();
}

/** Makes every rank's `params` rank 0's (they already match for one seed; this makes sure). */
export async function broadcastParams(collective: Collective, params: readonly Param[]): Promise<void> {
  const weights = await packWeights(params);
  await collective.broadcast(weights.data, 0);
  const received = weights.unpack();
  params.forEach((p, i) => p.variable.assign(received[i]));
  tf.dispose(received);
}

/**
 * The step's fusion buffer after the all-reduce: the global tail, and (when some rank had an
 * image) the summed gradients as tensors, followed by `ownGrads` (hybrid's already-global FC
 * slices, disposed here when there is nothing to apply).
 */
export function reducedFrom(fusion: FusionBuffer, copyMs: number, ownGrads: tf.Tensor[] = []): ReducedGradients {
  const tail = fusion.readTail();
  if (tail.sums.count > 0) return { grads: [...fusion.unpack(), ...ownGrads], tail, copyMs };
  tf.dispose(ownGrads);
  return { grads: [], tail, copyMs };
}

export class DataParallelSync implements GradientSync {
  readonly rank: number;
  readonly worldSize: number;

  /**
   * `fusion` must be shaped for the optimizer's parameters (the trained ones: a frozen layer
   * neither computes nor sends gradients); `overlap`, if given, reduces into it.
   */
  constructor(
    private readonly collective: Collective,
    readonly optimizer: Optimizer,
    private readonly fusion: FusionBuffer,
    private readonly overlap: OverlappedReduce | null = null,
  ) {
    this.rank = collective.rank;
    this.worldSize = collective.worldSize;
  }

  async compute(model: AlexNet, batch: Batch, dropoutSeed: number, microBatch: number): Promise<LocalGradients> {
    if (this.overlap === null)
      return {
        ...(await localGradients(model, this.optimizer.params, batch, dropoutSeed, microBatch)),
        inPassCommMs: 0,
      };
    // One pass (the trainer turns --overlap off under micro-batches): the hooks copy each
    // gradient into the fusion buffer as backward finishes it and start its bucket.
    const hook = this.overlap.begin();
    let sums = emptySums();
    if (batch.count > 0) {
      const g = await microGradients(model, this.optimizer.params, batch, dropoutSeed, hook);
      tf.dispose(g.grads);
      sums = g.sums;
    }
    this.overlap.finish();
    return { grads: [], sums, inPassCommMs: 0 };
  }

  async reduce(local: LocalGradients, tail: StepTail): Promise<ReducedGradients> {
    const started = performance.now();
    if (this.overlap === null) await this.fusion.packAsync(local.grads).finally(() => tf.dispose(local.grads));
    this.fusion.writeTail(tail);
    const copyMs = performance.now() - started;
    await reduceFusion(this.collective, this.fusion, this.overlap);
    return reducedFrom(this.fusion, copyMs);
  }

  sumTail(tail: StepTail): Promise<StepTail> {
    return sumTailOver(this.collective, tail);
  }

  /**
   * The trained weights, packed into the step's fusion buffer, free between steps (no 244 MB
   * allocation per checksum on paper). Frozen ones are left out: they were broadcast at the
   * start and nothing changes them.
   */
  async replicatedWeights(_model: AlexNet): Promise<Float32Array> {
    return (await packWeights(this.optimizer.params, this.fusion)).params;
  }

  async materialize(_slots: boolean): Promise<OptimizerState | null> {
    return null;
  }

  bytesSent(): number {
    return this.collective.bytesSent();
  }
}
