/**
 * Everything a training run needs before its first step: the dataset and its statistics, the
 * model (fresh or from a checkpoint), the optimizer and the schedule. Kept apart from the
 * loop so the loop reads top to bottom.
 */
import * as path from 'node:path';
import type { TrainConfig } from '../core/config';
import { env, frozenLayers, layerOfParam, lrMultipliers, reinitLayers } from '../core/config';
import { DataError } from '../core/errors';
import { preflight } from '../data/commands/check';
import { openDataset, type Dataset, type Sample } from '../data/index/dataset';
import { seededSubset } from '../data/rng';
import {
  cachedStatsPath,
  computeStats,
  findStats,
  saveStatsFirstWritable,
  STATS_FILE,
  statsPath,
  type DatasetStats,
} from '../data/stats';
import { assertFitsBackend } from '../backend/select';
import { createAlexNet, paramShapes, type AlexNet, type Param } from '../model/alexnet';
import { buildSpec } from '../model/presets';
import type { Logger } from '../core/log';
import { checkCompatible, type CheckpointContents, type EpochSoFar, type TrainingPosition } from './run/checkpoint';
import { emptySums } from './metrics';
import { loadResume } from './run/checkpoint-store';
import { applyInitFrom, readInitSource } from './init-from';
import { Optimizer } from './optimizer';
import { initialScheduleState, type ScheduleOptions, type ScheduleState } from './schedule';
import * as tf from '@tensorflow/tfjs';

export interface RunState {
  dataset: Dataset;
  train: Sample[];
  stats: DatasetStats | null;
  model: AlexNet;
  optimizer: Optimizer;
  scheduleOptions: ScheduleOptions;
  schedule: ScheduleState;
  position: TrainingPosition;
  /** The current epoch's metric sums so far (checkpointed with the position). */
  epochSoFar: EpochSoFar;
  bestValTop1Error: number;
}

export function scheduleOptionsOf(config: TrainConfig): ScheduleOptions {
  return {
    name: config.schedule,
    baseLr: config.lr,
    factor: config.lrFactor,
    stepEpochs: config.lrStepEpochs,
    patience: config.lrPatience,
    minDelta: 1e-4,
    maxDrops: 3,
  };
}

/** A seeded subset this large pins the mean and the 3x3 colour covariance to ~3 digits. */
const STATS_MAX_IMAGES = 10_000;

/**
 * Where a run looks for the dataset statistics, in order: a stats.json beside the dataset (the
 * user's, or an older version's: read, never written), the cache folder, the run directory
 * (where they go when the cache cannot be written).
 */
export function statsPlaces(
  root: string,
  split: readonly Sample[],
  sizePx: number,
  runDir: string,
  cacheDir: string = env.cacheDir(),
): string[] {
  return [statsPath(root), cachedStatsPath(cacheDir, root, split, sizePx), path.join(runDir, STATS_FILE)];
}

/**
 * Loads the dataset statistics from `places`, or computes them from the training split and
 * saves them to the first writable place after the first (only `canWrite` processes write:
 * rank 0 or the coordinator).
 */
export async function datasetStats(
  places: readonly string[],
  train: Sample[],
  sizePx: number,
  canWrite: boolean,
  log: Logger,
): Promise<DatasetStats> {
  const saved = await findStats(places);
  if (saved != null) return saved.stats;
  const maxImages = Math.min(train.length, STATS_MAX_IMAGES);
  log.info(`computing dataset statistics (mean, std, RGB eigenvectors) over ${maxImages} training images...`);
  const stats = await computeStats(train, { sizePx, maxImages });
  if (canWrite) log.info(`saved ${await saveStatsFirstWritable(places.slice(1), stats)}`);
  return stats;
}

export async function openTrainingData(
  config: TrainConfig,
  canWrite: boolean,
  log: Logger,
): Promise<{ dataset: Dataset; train: Sample[]; stats: DatasetStats }> {
  const dataset = await openDataset(config.data, { layout: config.dataLayout, classNames: config.classNames });
  const trainSplit = dataset.splits.train;
  if (trainSplit == null || trainSplit.samples.length === 0) {
    throw new DataError(
      `${config.data} has no training split: expected ${path.join(config.data, 'train')}/<class>/<image> or train.txt`,
    );
  }
  const train = seededSubset(trainSplit.samples, config.trainLimit, config.seed);
  const spec = buildSpec(config.preset, config.model);
  await preflight(train, { sizePx: spec.resizeSize });
  const stats = await datasetStats(
    statsPlaces(dataset.root, trainSplit.samples, spec.resizeSize, config.runDir),
    train,
    spec.resizeSize,
    canWrite,
    log,
  );
  return { dataset, train, stats };
}

export function setWeights(model: AlexNet, weights: CheckpointContents['weights'], file: string): void {
  const byName = new Map(weights.map((w) => [w.name, w]));
  for (const p of model.params) {
    const w = byName.get(p.name);
    if (w == null || w.data.length !== p.variable.size) {
      throw new DataError(`${file} does not fit this model: ${p.name} is missing or has the wrong size`);
    }
    p.variable.assign(tf.tensor(w.data, p.shape));
  }
}

/** The params a run trains: every layer's but those --freeze names. */
export function trainedParams(model: AlexNet, config: Pick<TrainConfig, 'freeze'>): Param[] {
  const frozen = frozenLayers(config);
  return model.params.filter((p) => !frozen.has(layerOfParam(p.name)));
}

export async function buildRunState(config: TrainConfig, canWrite: boolean, log: Logger): Promise<RunState> {
  const { dataset, train, stats } = await openTrainingData(config, canWrite, log);
  const spec = buildSpec(config.preset, config.model);
  // Checked before allocating: the paper preset's fc6 alone is 144 MiB.
  assertFitsBackend(paramShapes(spec, dataset.classes.length));
  const model = createAlexNet(spec, dataset.classes.length, config.seed);
  const optimizer = new Optimizer(
    {
      name: config.optimizer,
      momentum: config.momentum,
      weightDecay: config.weightDecay,
      beta1: 0.9,
      beta2: 0.999,
      epsilon: 1e-8,
      lrMult: lrMultipliers(config),
    },
    trainedParams(model, config),
  );
  const scheduleOptions = scheduleOptionsOf(config);
  const state: RunState = {
    dataset,
    train,
    stats,
    model,
    optimizer,
    scheduleOptions,
    schedule: initialScheduleState(scheduleOptions),
    position: { epoch: 0, stepInEpoch: 0, globalStep: 0 },
    epochSoFar: { sums: emptySums(), skipped: 0 },
    bestValTop1Error: Infinity,
  };
  // A restart of a fine-tune resumes from its own checkpoint: --init-from counts only at the start.
  if (config.initFrom != null && config.resume == null) {
    const line = applyInitFrom(model, await readInitSource(config.initFrom), reinitLayers(config));
    if (canWrite) log.info(line);
  }
  if (config.resume != null) {
    // A run directory resumes from its newest checkpoint that loads (a damaged one is named and skipped).
    const { file, contents: ckpt } = loadResume(config.resume, log);
    checkCompatible(ckpt, config.preset, dataset.classes, file);
    setWeights(model, ckpt.weights, file);
    optimizer.setState(ckpt.optimizer);
    state.schedule = ckpt.schedule;
    state.position = ckpt.position;
    if (ckpt.epochSoFar) state.epochSoFar = ckpt.epochSoFar;
    state.bestValTop1Error = ckpt.bestValTop1Error ?? Infinity;
    log.info(
      `resumed from ${file}: epoch ${ckpt.position.epoch + 1}, step ${ckpt.position.stepInEpoch}, global step ${ckpt.position.globalStep}`,
    );
  }
  return state;
}
