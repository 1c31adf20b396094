/**
 * Optimizers that own their state, so checkpoints can save and restore it exactly and every
 * rank applies the identical update to identical (all-reduced) gradients.
 *
 * The paper's SGD keeps weight decay inside the velocity (tf.train.momentum has no decay):
 *   v <- momentum * v - weightDecay * lr * w - lr * g ;  w <- w + v
 * Weight decay applies to weights, not biases (cuda-convnet's config; biases start at 1 to
 * keep ReLUs alive, decaying them would undo that).
 */
import * as tf from '@tensorflow/tfjs';
import type { OptimizerName } from '../core/config';
import type { Param } from '../model/alexnet';
import { adamStep, sgdMomentumStep } from '../backend/ops';
import { readFloats } from '../backend/readback';

export interface OptimizerOptions {
  name: OptimizerName;
  momentum: number;
  weightDecay: number;
  /** Adam's decay rates and epsilon. */
  beta1: number;
  beta2: number;
  epsilon: number;
}

/** Named state tensors, one list per parameter, in the params' order: what a checkpoint holds. */
export interface OptimizerState {
  name: OptimizerName;
  /** Updates applied so far (Adam's bias correction needs it). */
  iterations: number;
  /** slots[slotName][paramIndex] */
  slots: Record<string, Float32Array[]>;
}

/** The paper's update on plain numbers: the reference the tests hold the tensor code to. */
export function sgdReference(
  w: number,
  v: number,
  g: number,
  lr: number,
  momentum: number,
  weightDecay: number,
): { w: number; v: number } {
  const vNext = momentum * v - weightDecay * lr * w - lr * g;
  return { w: w + vNext, v: vNext };
}

export class Optimizer {
  readonly options: OptimizerOptions;
  private iterations = 0;
  private readonly slots: Record<string, tf.Variable[]>;

  constructor(
    options: OptimizerOptions,
    private readonly params: Param[],
  ) {
    this.options = options;
    const zeros = () => params.map((p) => tf.variable(tf.zerosLike(p.variable), false));
    this.slots = options.name === 'sgd' ? { velocity: zeros() } : { m: zeros(), v: zeros() };
  }

  /**
   * Applies one update. `grads[i]` is the gradient of params[i]; `gradScale` turns the summed
   * gradients into a mean (1 / global sample count). SGD folds it into the rate for free.
   */
  apply(grads: tf.Tensor[], lr: number, gradScale = 1): void {
    this.iterations++;
    tf.tidy(() => {
      if (this.options.name === 'sgd') this.applySgd(grads, lr, gradScale);
      else this.applyAdam(grads, lr, gradScale);
    });
  }

  private applySgd(grads: tf.Tensor[], lr: number, gradScale: number): void {
    const { momentum, weightDecay } = this.options;
    this.params.forEach((p, i) => {
      const v = this.slots.velocity[i];
      const decay = p.kind === 'weight' ? weightDecay : 0;
      if (sgdMomentumStep(p.variable, v, grads[i], { momentum, lrScaled: lr * gradScale, decayLr: decay * lr })) return;
      let vNext = tf.sub(tf.mul(v, momentum), tf.mul(grads[i], lr * gradScale));
      if (decay > 0) vNext = tf.sub(vNext, tf.mul(p.variable, decay * lr));
      v.assign(vNext);
      p.variable.assign(tf.add(p.variable, vNext));
    });
  }

  /** Adam (Kingma & Ba) with L2 weight decay added to the gradient of weights. */
  private applyAdam(grads: tf.Tensor[], lr: number, gradScale: number): void {
    const { beta1, beta2, epsilon, weightDecay } = this.options;
    const t = this.iterations;
    const stepSize = (lr * Math.sqrt(1 - beta2 ** t)) / (1 - beta1 ** t);
    this.params.forEach((p, i) => {
      const decay = p.kind === 'weight' ? weightDecay : 0;
      const m = this.slots.m[i];
      const v = this.slots.v[i];
      if (adamStep(p.variable, m, v, grads[i], { beta1, beta2, epsilon, stepSize, gradScale, decay })) return;
      const mean = gradScale === 1 ? grads[i] : tf.mul(grads[i], gradScale);
      const g = decay > 0 ? tf.add(mean, tf.mul(p.variable, decay)) : mean;
      m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
      v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)));
      p.variable.assign(tf.sub(p.variable, tf.div(tf.mul(m, stepSize), tf.add(tf.sqrt(v), epsilon))));
    });
  }

  /** Each slot's variables, in slot order (the tests compare them across backends without a readback). */
  slotVariables(): readonly (readonly tf.Variable[])[] {
    return Object.values(this.slots);
  }

  async getState(): Promise<OptimizerState> {
    const slots: Record<string, Float32Array[]> = {};
    for (const [name, vars] of Object.entries(this.slots))
      slots[name] = await Promise.all(vars.map((v) => readFloats(v)));
    return { name: this.options.name, iterations: this.iterations, slots };
  }

  setState(state: OptimizerState): void {
    if (state.name !== this.options.name)
      throw new Error(`optimizer state is for ${state.name}, this run uses ${this.options.name}`);
    for (const [name, vars] of Object.entries(this.slots)) {
      const saved = state.slots[name];
      if (saved == null || saved.length !== vars.length)
        throw new Error(`optimizer state has no complete '${name}' slot`);
      vars.forEach((v, i) => v.assign(tf.tensor(saved[i], v.shape)));
    }
    this.iterations = state.iterations;
  }

  dispose(): void {
    for (const vars of Object.values(this.slots)) for (const v of vars) v.dispose();
  }
}
