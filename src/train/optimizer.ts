/**
 * Optimizers that own their state, so checkpoints can save and restore it exactly and every
 * rank applies the identical update to identical (all-reduced) gradients.
 *
 * The paper's SGD keeps weight decay inside the velocity (tf.train.momentum has no decay):
 *   v <- momentum * v - weightDecay * lr * w - lr * g ;  w <- w + v
 * Weight decay applies to weights, not biases (cuda-convnet's config; biases start at 1 to
 * keep ReLUs alive, decaying them would undo that).
 *
 * An optimizer trains the params it is given and keeps state for those only: a frozen layer's
 * (--freeze) are left out, so they get no slots, no update and no decay. --lr-mult scales a
 * layer's learning rate as Caffe's lr_mult does: the whole step of its kernel and bias, decay
 * included.
 */
import * as tf from '@tensorflow/tfjs';
import { layerOfParam, type OptimizerName } from '../core/config';
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
  /** Learning-rate multipliers by layer name (--lr-mult); a layer not named has 1. */
  lrMult?: Readonly<Record<string, number>>;
}

/** Named state tensors, one list per parameter, in the params' order: what a checkpoint holds. */
export interface OptimizerState {
  name: OptimizerName;
  /** Updates applied so far (Adam's bias correction needs it). */
  iterations: number;
  /** slots[slotName][paramIndex] */
  slots: Record<string, Float32Array[]>;
  /**
   * The names of the params the slots belong to, in slot order. Absent (older checkpoints):
   * every param of the model, in its order.
   */
  params?: string[];
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
  /** Each param's learning-rate multiplier, in the params' order. */
  private readonly lrScale: number[];

  /** Trains `params` (a frozen layer's are not among them) and keeps state for them only. */
  constructor(
    options: OptimizerOptions,
    readonly params: readonly Param[],
  ) {
    this.options = options;
    this.lrScale = params.map((p) => options.lrMult?.[layerOfParam(p.name)] ?? 1);
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

  private applySgd(grads: tf.Tensor[], baseLr: number, gradScale: number): void {
    const { momentum, weightDecay } = this.options;
    this.params.forEach((p, i) => {
      const v = this.slots.velocity[i];
      const decay = p.kind === 'weight' ? weightDecay : 0;
      const lr = baseLr * this.lrScale[i];
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
    const baseStep = (lr * Math.sqrt(1 - beta2 ** t)) / (1 - beta1 ** t);
    this.params.forEach((p, i) => {
      const stepSize = baseStep * this.lrScale[i];
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
    return { name: this.options.name, iterations: this.iterations, slots, params: this.params.map((p) => p.name) };
  }

  /**
   * Takes a saved state, matched to this optimizer's params by name: a param the state has no
   * slots for (a layer frozen when it was saved, trained now) starts from zero, and slots of
   * params not trained here (frozen now) are left out.
   */
  setState(state: OptimizerState): void {
    if (state.name !== this.options.name)
      throw new Error(`optimizer state is for ${state.name}, this run uses ${this.options.name}`);
    const names = state.params ?? this.params.map((p) => p.name);
    const at = new Map(names.map((name, i) => [name, i]));
    for (const [name, vars] of Object.entries(this.slots)) {
      const saved = state.slots[name];
      if (saved == null || saved.length !== names.length)
        throw new Error(`optimizer state has no complete '${name}' slot`);
      this.params.forEach((p, i) => {
        const k = at.get(p.name);
        vars[i].assign(k === undefined ? tf.zerosLike(vars[i]) : tf.tensor(saved[k], vars[i].shape));
      });
    }
    this.iterations = state.iterations;
  }

  dispose(): void {
    for (const vars of Object.values(this.slots)) for (const v of vars) v.dispose();
  }
}
