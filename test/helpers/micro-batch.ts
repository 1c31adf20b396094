/**
 * One training step of the same model on the same 6 images, whole and in micro-batches, on the
 * backend the calling test file initialised: the weights after it must agree to 1e-4.
 */
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../../src/data/loader';
import { mulberry32 } from '../../src/data/rng';
import { createAlexNet, disposeModel, type AlexNet } from '../../src/model/alexnet';
import { buildSpec, type ModelSpec } from '../../src/model/presets';
import type { MetricSums } from '../../src/train/metrics';
import { Optimizer } from '../../src/train/optimizer';
import { trainStep } from '../../src/train/step';
import { TRAIN_DEFAULTS } from '../../src/core/config';
import { readFloats } from '../../src/backend/readback';
import type { CheckpointContents } from '../../src/train/run/checkpoint';

const CLASSES = 4;

/** The small preset with few filters and units: a real AlexNet graph (groups, LRN, dropout), fast. */
export const TINY_SPEC: ModelSpec = {
  ...buildSpec('small', { ...TRAIN_DEFAULTS.model, init: 'he' }),
  convs: buildSpec('small').convs.map((c) => ({ ...c, filters: 4 })),
  hidden: [
    { name: 'fc6', units: 8, biasInit: 0.1 },
    { name: 'fc7', units: 8, biasInit: 0.1 },
  ],
};

export function randomBatch(model: AlexNet, count: number, seed: number): Batch {
  const rng = mulberry32(seed);
  const s = model.spec.inputSize;
  const images = Float32Array.from({ length: count * s * s * 3 }, () => rng.nextFloat() - 0.5);
  const labels = Int32Array.from({ length: count }, (_, i) => i % CLASSES);
  return {
    images,
    labels,
    count,
    skipped: 0,
    index: 0,
    globalPlanned: count,
    cropsPerImage: 1,
    sampleIndices: Int32Array.from({ length: count }, (_, i) => i),
  };
}

export interface StepOutcome {
  weights: CheckpointContents['weights'];
  sums: MetricSums;
  /** tf.memory().numTensors after each step: flat when nothing leaks. */
  tensorsAfterStep: number[];
}

/** Three steps (so momentum carries a micro-batched gradient too) from the same seeded model. */
export async function stepWithMicroBatch(microBatch: number, dropoutRate: number): Promise<StepOutcome> {
  const spec = buildSpec('small', { ...TRAIN_DEFAULTS.model, dropoutRate });
  const model = createAlexNet(spec, CLASSES, 11);
  const optimizer = new Optimizer(
    { name: 'sgd', momentum: 0.9, weightDecay: 5e-4, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
    model.params,
  );
  let sums: MetricSums | null = null;
  const tensorsAfterStep: number[] = [];
  for (let step = 0; step < 3; step++) {
    const result = await trainStep(model, optimizer, randomBatch(model, 6, 100 + step), {
      lr: 0.05,
      dropoutSeed: 7 + step,
      stopVote: false,
      microBatch,
    });
    sums = result.sums;
    tensorsAfterStep.push(tf.memory().numTensors);
  }
  const weights = await Promise.all(
    model.params.map(async (p) => ({ name: p.name, shape: p.shape, data: await readFloats(p.variable) })),
  );
  optimizer.dispose();
  disposeModel(model);
  if (sums == null) throw new Error('no step ran');
  return { weights, sums, tensorsAfterStep };
}
