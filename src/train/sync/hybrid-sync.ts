/**
 * The hybrid mode as a gradient-sync strategy (hybrid.ts has the mode itself): forward and
 * backward gather and scatter activations inside the pass, the FC slices' gradients come out
 * global, and only the conv gradients (with the tail) are all-reduced, after backward or in
 * buckets during it (`--overlap`).
 */
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../../data/loader';
import type { SyncCollective } from '../../dist/collective';
import type { AlexNet } from '../../model/alexnet';
import type { OptimizerState } from '../optimizer';
import { reducedFrom, sumTailOver } from './data-parallel-sync';
import { packWeights, reduceFusion, type StepTail } from './fusion-buffer';
import type { GradientSync, LocalGradients, ReducedGradients } from './gradient-sync';
import { hybridGradients, hybridSums, type HybridHead } from './hybrid';
import type { OverlappedReduce } from './overlap';

export class HybridSync implements GradientSync {
  readonly rank: number;
  readonly worldSize: number;

  constructor(
    private readonly head: HybridHead,
    private readonly collective: SyncCollective,
    private readonly overlap: OverlappedReduce | null = null,
  ) {
    this.rank = collective.rank;
    this.worldSize = collective.worldSize;
  }

  get optimizer(): HybridHead['optimizer'] {
    return this.head.optimizer;
  }

  /** The whole share in one pass: the FC layers see the global batch, so no micro-batches. */
  async compute(model: AlexNet, batch: Batch, dropoutSeed: number, _microBatch: number): Promise<LocalGradients> {
    this.collective.takeBlockedMs();
    const g = hybridGradients(model, this.head, batch, dropoutSeed, this.overlap?.begin());
    this.overlap?.finish();
    return {
      grads: g.grads,
      sums: hybridSums(batch, model.numClasses, g),
      inPassCommMs: this.collective.takeBlockedMs(),
    };
  }

  async reduce(local: LocalGradients, tail: StepTail): Promise<ReducedGradients> {
    const started = performance.now();
    const { fusion, replicated } = this.head;
    const convGrads = local.grads.slice(0, replicated);
    if (this.overlap === null) fusion.pack(convGrads);
    tf.dispose(convGrads);
    fusion.writeTail(tail);
    const copyMs = performance.now() - started;
    await reduceFusion(this.collective, fusion, this.overlap);
    return reducedFrom(fusion, copyMs, local.grads.slice(replicated));
  }

  sumTail(tail: StepTail): Promise<StepTail> {
    return sumTailOver(this.collective, tail);
  }

  /** The conv layers' weights (the FC slices differ by design), packed into the step's buffer. */
  async replicatedWeights(_model: AlexNet): Promise<Float32Array> {
    const { trainParams, replicated, fusion } = this.head;
    return (await packWeights(trainParams.slice(0, replicated), fusion)).params;
  }

  materialize(slots: boolean): Promise<OptimizerState | null> {
    return this.head.materialize(slots);
  }

  bytesSent(): number {
    return this.collective.bytesSent();
  }
}
