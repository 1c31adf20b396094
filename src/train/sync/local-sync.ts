/** One process, no collective (the single-device fallback): its own gradients are the sums. */
import type { Batch } from '../../data/loader';
import type { AlexNet } from '../../model/alexnet';
import { localGradients } from '../gradients';
import type { Optimizer, OptimizerState } from '../optimizer';
import { packWeights, type StepTail } from './fusion-buffer';
import type { GradientSync, LocalGradients, ReducedGradients } from './gradient-sync';

export class LocalSync implements GradientSync {
  readonly rank = 0;
  readonly worldSize = 1;

  constructor(readonly optimizer: Optimizer) {}

  async compute(model: AlexNet, batch: Batch, dropoutSeed: number, microBatch: number): Promise<LocalGradients> {
    return { ...(await localGradients(model, this.optimizer.params, batch, dropoutSeed, microBatch)), inPassCommMs: 0 };
  }

  async reduce(local: LocalGradients, tail: StepTail): Promise<ReducedGradients> {
    return { grads: local.grads, tail, copyMs: 0 };
  }

  async sumTail(tail: StepTail): Promise<StepTail> {
    return tail;
  }

  async replicatedWeights(model: AlexNet): Promise<Float32Array> {
    return (await packWeights(model.params)).params;
  }

  async materialize(_slots: boolean): Promise<OptimizerState | null> {
    return null;
  }

  bytesSent(): number {
    return 0;
  }
}
