/**
 * A run directory holding one checkpoint of a given model, without training: what `export` and
 * `train --init-from` read. Its dataset path does not exist, so the colour statistics come from
 * the stats.json beside the checkpoint (where a run keeps them when the cache is not writable).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { trainConfig } from '../../src/core/config';
import type { AlexNet } from '../../src/model/alexnet';
import { STATS_FILE, saveStatsFile, type DatasetStats } from '../../src/data/stats';
import { encodeCheckpoint } from '../../src/train/run/checkpoint';
import { initialScheduleState } from '../../src/train/schedule';
import { scheduleOptionsOf } from '../../src/train/setup';

export const TEST_STATS: DatasetStats = {
  meanRgb: [0.5, 0.45, 0.4],
  stdRgb: [0.25, 0.24, 0.26],
  eigenvalues: [0.2, 0.02, 0.002],
  eigenvectors: [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
  ],
  imageCount: 10,
  sizePx: 32,
};

/** Writes `<runDir>/best.ckpt` (the model's weights, as after epoch 1) and `<runDir>/stats.json`; returns the checkpoint. */
export async function writeModelCheckpoint(runDir: string, model: AlexNet, classes: string[]): Promise<string> {
  fs.mkdirSync(runDir, { recursive: true });
  const config = trainConfig({ runDir, preset: model.spec.preset, data: path.join(runDir, 'no-dataset') });
  const file = path.join(runDir, 'best.ckpt');
  const bytes = encodeCheckpoint({
    config,
    classes,
    position: { epoch: 1, stepInEpoch: 0, globalStep: 10 },
    schedule: initialScheduleState(scheduleOptionsOf(config)),
    bestValTop1Error: 0.5,
    rng: { seed: 0 },
    weights: model.params.map((p) => ({ name: p.name, shape: p.shape, data: p.variable.dataSync() as Float32Array })),
    optimizer: { name: 'sgd', iterations: 10, slots: {} },
  });
  fs.writeFileSync(file, bytes);
  await saveStatsFile(path.join(runDir, STATS_FILE), TEST_STATS);
  return file;
}
