/**
 * The one typed, validated, frozen TrainConfig: its fields, their defaults (TRAIN_DEFAULTS, from
 * which the command line's defaults are derived) and the one validator that every receiver runs
 * (the CLI, a worker given its config by the coordinator, a joined host welcomed into a run, a
 * checkpoint being resumed). Also the vocabularies of choices (presets, backends, optimizers,
 * schedules) as plain name lists, so that any layer can name them without loading the modules
 * that implement them (and TensorFlow.js with them).
 *
 * This module imports no other part of the project but the foundation (errors.ts, field-reader.ts,
 * class-names.ts for --classes): everything may depend on it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkedClassNames, classNamesFromArgs, type ClassNames } from './class-names';
import { ConfigError } from './errors';
import { deepFreeze, FieldReader, getPath, readerOfArgs, type CliArgs } from './field-reader';

export type { CliArgs } from './field-reader';

export const PRESET_NAMES = ['paper', 'torchvision', 'small'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

export const BACKEND_CHOICES = ['auto', 'node-gpu', 'webgpu', 'node', 'native', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

export const PARALLEL_MODES = ['data', 'hybrid'] as const;
export type ParallelMode = (typeof PARALLEL_MODES)[number];

/** Number formats of values on the ring (src/dist/ring/wire-codec.ts). */
export const WIRE_DTYPES = ['fp32', 'fp16', 'bf16'] as const;
export type WireDtype = (typeof WIRE_DTYPES)[number];

export const OPTIMIZER_NAMES = ['sgd', 'adam'] as const;
export type OptimizerName = (typeof OPTIMIZER_NAMES)[number];

export const SCHEDULE_NAMES = ['constant', 'step', 'plateau'] as const;
export type ScheduleName = (typeof SCHEDULE_NAMES)[number];

export const ACTIVATION_NAMES = ['relu', 'tanh'] as const;
export type ActivationName = (typeof ACTIVATION_NAMES)[number];

export const INIT_NAMES = ['preset', 'paper', 'he'] as const;
export type InitName = (typeof INIT_NAMES)[number];

/** How a dataset is indexed: auto, its class folders, or its list files (src/data/index/layout.ts). */
export const LAYOUTS = ['auto', 'folders', 'lists'] as const;
export type Layout = (typeof LAYOUTS)[number];

export const LOG_LEVELS = ['quiet', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Which of the paper's training augmentations are on (all three by default; off for ablations). */
export interface AugmentChoice {
  /** Random crop; off: the centre crop. */
  crop: boolean;
  /** Horizontal flip with p = 0.5. */
  flip: boolean;
  /** PCA colour lighting (needs dataset statistics). */
  pcaLighting: boolean;
}

/** Changes to a preset for the paper's ablations. */
export interface ModelChoice {
  activation: ActivationName;
  /** LRN where the preset has it. */
  lrn: boolean;
  /** 3/2 overlapping max-pooling (false: 2/2). */
  overlappingPool: boolean;
  /** Dropout in the hidden FC layers; null: the preset's. */
  dropoutRate: number | null;
  /** 'preset': the preset's own initialisation. */
  init: InitName;
}

export interface TrainConfig {
  /** Dataset root: {train,val,test}/<class>/<image> folders or {train,val,test}.txt list files. */
  data: string;
  /** Which index of the dataset: its class folders, its list files, or auto (src/data/index/layout.ts). */
  dataLayout: Layout;
  /** Names of numeric labels (--classes / --classes-file), read once here so workers need no file; null: classes.txt or the numbers. */
  classNames: ClassNames | null;
  /** The network: paper, torchvision or small. */
  preset: PresetName;
  /** Changes to the preset for the paper's ablations. */
  model: ModelChoice;
  /** Passes over the training split. */
  epochs: number;
  /** Global batch in images: split across all workers each step. */
  batchSize: number;
  /**
   * Images per forward+backward inside a worker (0: chosen from a memory estimate). A worker's
   * share of the batch runs in micro-batches of this size whose gradients add up before the
   * all-reduce, so the update is the one of the whole batch.
   */
  microBatch: number;
  /** Stop each epoch after this many steps (0: the whole split). For quick runs and benchmarks. */
  maxStepsPerEpoch: number;
  /** Use at most this many training images (0: all), a seeded subset. */
  trainLimit: number;
  /** sgd: the paper's momentum SGD with weight decay in the velocity; adam. */
  optimizer: OptimizerName;
  /** Initial learning rate. */
  lr: number;
  /** SGD momentum. */
  momentum: number;
  /** Weight decay on weights (not biases). */
  weightDecay: number;
  /** plateau: drop when val top-1 stops improving (at most 3 times, as the paper); step; constant. */
  schedule: ScheduleName;
  /** Divisor at each learning-rate drop. */
  lrFactor: number;
  /** Epochs between drops (step schedule). */
  lrStepEpochs: number;
  /** Epochs without val improvement before a drop (plateau schedule). */
  lrPatience: number;
  /** The paper's training augmentations (random crop, flip, PCA lighting), each on by default. */
  augment: AugmentChoice;
  /** Test-time augmentation at evaluation: 1 (centre crop) or 10 (the paper's 10 patches). */
  tta: 1 | 10;
  /** Drop the last incomplete global batch of each epoch. */
  dropLast: boolean;
  /** Seed of initialisation, shuffling, augmentation and dropout. */
  seed: number;
  /** Where checkpoints, metrics.jsonl and exported models go. */
  runDir: string;
  /** A checkpoint file or a run directory to continue from. */
  resume: string | null;
  /** Also save a step checkpoint every N steps (0: off; last.ckpt is saved at epoch ends and on Ctrl-C). */
  checkpointEverySteps: number;
  /** Also save a step checkpoint when this many minutes passed since the last one (0: off). */
  checkpointEveryMin: number;
  /** Step checkpoints kept in the run directory (the newest; last.ckpt and best.ckpt apart). */
  keepCheckpoints: number;
  /** Times a failed worker group is restarted from the newest checkpoint (0: a failure ends the run). */
  maxRestarts: number;
  /** Append the training loss and errors of every N steps to steps.jsonl (0: off): finer
   * curves than the per-epoch metrics.jsonl, for "epochs to X% training error". */
  logEverySteps: number;
  /** tfjs backend: auto tries node-gpu, webgpu (a hardware adapter only), node, native, wasm, cpu. */
  backend: BackendChoice;
  /** Let the webgpu backend run on a software adapter (lavapipe, SwiftShader): slow, for tests. */
  allowSoftwareGpu: boolean;
  /** oneDNN threads per process of the native backend (default 1: one worker per core). */
  threads: number;
  /**
   * data: every worker holds the whole model and all gradients are all-reduced. hybrid
   * (Krizhevsky 2014, "one weird trick"): the conv layers are data-parallel, the FC layers
   * model-parallel, each worker owning 1/N of every FC layer's output units.
   */
  parallel: ParallelMode;
  /** Number format of gradients and activations on the wire: fp32, fp16 or bf16 (sums stay fp32). */
  wireDtype: WireDtype;
  /** All-reduce gradients in buckets while the backward pass still runs (DDP/Horovod style). */
  overlap: boolean;
  /** Bucket size of the overlapped all-reduce, in MB. */
  bucketMb: number;
  /** 'auto', a count ('2'), or CPU-simulated devices ('cpu:2'). */
  devices: string;
  /** Fail instead of simulating when fewer GPUs than asked exist. */
  strictDevices: boolean;
  /** Compare a checksum of the weights across ranks every N steps (0: never). */
  checksumEverySteps: number;
  /** A worker silent for this long (or 3x its slowest step) is reported as hung. */
  hangTimeoutSec: number;
  /** How much to print. */
  logLevel: LogLevel;
}

/** The bundled dataset that `make train` writes. */
export const DEFAULT_DATA = 'data/fashion-mnist';

/** `runs/<UTC start time>`: a new run directory for each run that does not name one. */
export function defaultRunDir(now: Date = new Date()): string {
  return `runs/${now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}`;
}

/**
 * Every default of a training run, in one place: the command line's defaults are read from
 * here, and code and tests build configs from it (`trainConfig({...})`). The paper's recipe.
 */
export const TRAIN_DEFAULTS: Readonly<Omit<TrainConfig, 'runDir'>> = deepFreeze({
  data: DEFAULT_DATA,
  dataLayout: 'auto',
  classNames: null,
  preset: 'paper',
  model: { activation: 'relu', lrn: true, overlappingPool: true, dropoutRate: null, init: 'preset' },
  epochs: 90,
  batchSize: 128,
  microBatch: 0,
  maxStepsPerEpoch: 0,
  trainLimit: 0,
  optimizer: 'sgd',
  lr: 0.01,
  momentum: 0.9,
  weightDecay: 0.0005,
  schedule: 'plateau',
  lrFactor: 10,
  lrStepEpochs: 30,
  lrPatience: 1,
  augment: { crop: true, flip: true, pcaLighting: true },
  tta: 1,
  dropLast: false,
  seed: 0,
  resume: null,
  checkpointEverySteps: 0,
  checkpointEveryMin: 10,
  keepCheckpoints: 3,
  maxRestarts: 3,
  logEverySteps: 0,
  backend: 'auto',
  allowSoftwareGpu: false,
  threads: 1,
  parallel: 'data',
  wireDtype: 'fp32',
  overlap: false,
  bucketMb: 25,
  devices: 'auto',
  strictDevices: false,
  checksumEverySteps: 50,
  hangTimeoutSec: 120,
  logLevel: 'info',
} as const);

/**
 * Each config field's command-line flag: the CLI's arguments map onto the config through it,
 * and a bad value's message names the flag the user typed.
 */
export const TRAIN_FLAGS = {
  data: 'data',
  dataLayout: 'layout',
  preset: 'preset',
  'model.activation': 'activation',
  'model.lrn': 'lrn',
  'model.overlappingPool': 'overlapping-pool',
  'model.dropoutRate': 'dropout',
  'model.init': 'init',
  epochs: 'epochs',
  batchSize: 'batch-size',
  microBatch: 'micro-batch',
  maxStepsPerEpoch: 'max-steps',
  trainLimit: 'train-limit',
  optimizer: 'optimizer',
  lr: 'lr',
  momentum: 'momentum',
  weightDecay: 'weight-decay',
  schedule: 'schedule',
  lrFactor: 'lr-factor',
  lrStepEpochs: 'lr-step-epochs',
  lrPatience: 'lr-patience',
  'augment.crop': 'crop',
  'augment.flip': 'flip',
  'augment.pcaLighting': 'pca-lighting',
  tta: 'tta',
  dropLast: 'drop-last',
  seed: 'seed',
  runDir: 'run-dir',
  resume: 'resume',
  checkpointEverySteps: 'checkpoint-every',
  checkpointEveryMin: 'checkpoint-every-min',
  keepCheckpoints: 'keep-checkpoints',
  maxRestarts: 'max-restarts',
  logEverySteps: 'log-every',
  backend: 'backend',
  allowSoftwareGpu: 'allow-software-gpu',
  threads: 'threads',
  parallel: 'parallel',
  wireDtype: 'wire-dtype',
  overlap: 'overlap',
  bucketMb: 'bucket-mb',
  devices: 'devices',
  strictDevices: 'strict-devices',
  checksumEverySteps: 'checksum-every',
  hangTimeoutSec: 'hang-timeout',
  logLevel: 'log-level',
} as const;

export type TrainFlag = (typeof TRAIN_FLAGS)[keyof typeof TRAIN_FLAGS];

/** The default of a `train` flag, for the option table (undefined: no default, e.g. --resume). */
export function trainFlagDefault(flag: TrainFlag): string | number | boolean | undefined {
  if (flag === 'run-dir') return defaultRunDir();
  const field = (Object.keys(TRAIN_FLAGS) as (keyof typeof TRAIN_FLAGS)[]).find((f) => TRAIN_FLAGS[f] === flag);
  const value = field === undefined ? undefined : getPath(TRAIN_DEFAULTS, field);
  return value === null ? undefined : (value as string | number | boolean | undefined);
}

/** The class names a config carries (set by --classes or --classes-file, not by one flag). */
function readClassNames(r: FieldReader): ClassNames | null {
  const v = r.raw('classNames');
  if (v == null) return null;
  const names = (v as { names?: unknown }).names;
  const source = (v as { source?: unknown }).source;
  if (!Array.isArray(names) || typeof source !== 'string') throw new ConfigError(`${r.name('classNames')} must be {names: string[], source: string}`);
  return checkedClassNames(names as string[], source);
}

/** Checks every field of a TrainConfig and returns it frozen; errors name fields as `r` does. */
function readTrainConfig(r: FieldReader): Readonly<TrainConfig> {
  const dropoutRate = r.raw('model.dropoutRate') == null ? null : r.number('model.dropoutRate');
  if (dropoutRate !== null && (dropoutRate < 0 || dropoutRate >= 1)) {
    throw new ConfigError(`${r.name('model.dropoutRate')} must be in [0, 1), got ${dropoutRate}`);
  }
  return deepFreeze({
    data: r.string('data'),
    dataLayout: r.oneOf('dataLayout', LAYOUTS),
    classNames: readClassNames(r),
    preset: r.oneOf('preset', PRESET_NAMES),
    model: {
      activation: r.oneOf('model.activation', ACTIVATION_NAMES),
      lrn: r.bool('model.lrn'),
      overlappingPool: r.bool('model.overlappingPool'),
      dropoutRate,
      init: r.oneOf('model.init', INIT_NAMES),
    },
    epochs: r.count('epochs'),
    batchSize: r.count('batchSize'),
    microBatch: r.count('microBatch', true),
    maxStepsPerEpoch: r.count('maxStepsPerEpoch', true),
    trainLimit: r.count('trainLimit', true),
    optimizer: r.oneOf('optimizer', OPTIMIZER_NAMES),
    lr: r.positive('lr'),
    momentum: r.positive('momentum', true),
    weightDecay: r.positive('weightDecay', true),
    schedule: r.oneOf('schedule', SCHEDULE_NAMES),
    lrFactor: r.positive('lrFactor'),
    lrStepEpochs: r.count('lrStepEpochs'),
    lrPatience: r.count('lrPatience'),
    augment: { crop: r.bool('augment.crop'), flip: r.bool('augment.flip'), pcaLighting: r.bool('augment.pcaLighting') },
    tta: readTta(r),
    dropLast: r.bool('dropLast'),
    seed: r.count('seed', true),
    runDir: r.string('runDir'),
    resume: r.optionalString('resume'),
    checkpointEverySteps: r.count('checkpointEverySteps', true),
    checkpointEveryMin: r.positive('checkpointEveryMin', true),
    keepCheckpoints: r.count('keepCheckpoints'),
    maxRestarts: r.count('maxRestarts', true),
    logEverySteps: r.count('logEverySteps', true),
    backend: r.oneOf('backend', BACKEND_CHOICES),
    allowSoftwareGpu: r.bool('allowSoftwareGpu'),
    threads: r.count('threads'),
    parallel: r.oneOf('parallel', PARALLEL_MODES),
    wireDtype: r.oneOf('wireDtype', WIRE_DTYPES),
    overlap: r.bool('overlap'),
    bucketMb: r.positive('bucketMb'),
    devices: r.string('devices'),
    strictDevices: r.bool('strictDevices'),
    checksumEverySteps: r.count('checksumEverySteps', true),
    hangTimeoutSec: r.positive('hangTimeoutSec'),
    logLevel: r.oneOf('logLevel', LOG_LEVELS),
  });
}

/**
 * A TrainConfig received from elsewhere (the coordinator's config or welcome message, a
 * checkpoint), checked field by field: `source` says where it came from in the error.
 */
export function validateTrainConfig(value: unknown, source: string): Readonly<TrainConfig> {
  if (value === null || typeof value !== 'object') throw new ConfigError(`${source}: the training config is not an object`);
  return readTrainConfig(new FieldReader(value as Record<string, unknown>, (key) => `${source}: config field ${key}`));
}

function existingPath(p: string, what: string): string {
  if (!fs.existsSync(p)) throw new ConfigError(`${what} '${p}' does not exist`);
  return path.resolve(p);
}

/** Parsed `train` options into a frozen TrainConfig. Throws ConfigError (exit 2) naming the flag. */
export function buildTrainConfig(args: CliArgs): Readonly<TrainConfig> {
  const reader = readerOfArgs(TRAIN_FLAGS, { ...TRAIN_DEFAULTS, runDir: defaultRunDir() }, args);
  // Two flags name the classes, and one of them a file: read here, once.
  const config = readTrainConfig(new FieldReader({ ...reader.source, classNames: classNamesFromArgs(args) }, reader.name));
  return deepFreeze({
    ...config,
    data: existingPath(config.data, 'dataset'),
    runDir: path.resolve(config.runDir),
    resume: config.resume === null ? null : existingPath(config.resume, '--resume checkpoint'),
  });
}

/** A config from TRAIN_DEFAULTS with some fields changed, validated: for code and tests. */
export function trainConfig(changes: Partial<TrainConfig> & Pick<TrainConfig, 'runDir'>): Readonly<TrainConfig> {
  return validateTrainConfig({ ...TRAIN_DEFAULTS, ...changes }, 'trainConfig()');
}

/** `alexnet eval`: a checkpoint scored on one split. */
export interface EvalConfig {
  /** A checkpoint file, or a run directory (its best.ckpt, else last.ckpt). */
  checkpoint: string;
  /** Dataset root; null: the one the checkpoint was trained on. */
  data: string | null;
  split: 'train' | 'val' | 'test';
  /** 1 (centre crop) or 10 (the paper's 10 patches). */
  tta: 1 | 10;
  /** Images per batch. */
  batchSize: number;
  /** Folder for confusion.csv, per-class.csv and confusion.png; null: beside the checkpoint. */
  out: string | null;
  /** Replace those files in `out` even when eval did not write them. */
  force: boolean;
  backend: BackendChoice;
  /** Let --backend webgpu run on a software adapter (lavapipe, SwiftShader). */
  allowSoftwareGpu: boolean;
  /** How to index the dataset; 'auto': as the checkpoint's run did. */
  dataLayout: Layout;
  /** Names of numeric labels; null: the checkpoint's. */
  classNames: ClassNames | null;
}

export const EVAL_DEFAULTS: Readonly<Omit<EvalConfig, 'checkpoint'>> = deepFreeze({
  data: null,
  split: 'test',
  tta: 1,
  batchSize: 128,
  out: null,
  force: false,
  backend: 'auto',
  allowSoftwareGpu: false,
  dataLayout: 'auto',
  classNames: null,
} as const);

export const EVAL_FLAGS = {
  checkpoint: 'checkpoint',
  data: 'data',
  split: 'split',
  tta: 'tta',
  batchSize: 'batch-size',
  out: 'out',
  force: 'force',
  backend: 'backend',
  allowSoftwareGpu: 'allow-software-gpu',
  dataLayout: 'layout',
} as const;

/** Test-time crops: 1 (centre) or 10 (the paper's 10 patches). */
function readTta(r: FieldReader): 1 | 10 {
  const tta = r.count('tta');
  if (tta !== 1 && tta !== 10) throw new ConfigError(`${r.name('tta')} must be 1 (centre crop) or 10 (the paper's 10 patches), got ${tta}`);
  return tta;
}

/** Parsed `eval` options into a frozen EvalConfig. */
export function buildEvalConfig(args: CliArgs): Readonly<EvalConfig> {
  const r = readerOfArgs(EVAL_FLAGS, EVAL_DEFAULTS, args);
  return deepFreeze({
    checkpoint: r.string('checkpoint'),
    data: r.optionalString('data'),
    split: r.oneOf('split', ['train', 'val', 'test'] as const),
    tta: readTta(r),
    batchSize: r.count('batchSize'),
    out: r.optionalString('out'),
    force: r.bool('force'),
    backend: r.oneOf('backend', BACKEND_CHOICES),
    allowSoftwareGpu: r.bool('allowSoftwareGpu'),
    dataLayout: r.oneOf('dataLayout', LAYOUTS),
    classNames: classNamesFromArgs(args),
  });
}

/** Environment facts of the user's terminal and devices, read here only. */
export const env = {
  isTTY: (): boolean => Boolean(process.stderr.isTTY) && process.env.CI !== 'true' && process.env.TERM !== 'dumb',
  /** Where derived files (dataset statistics) go: never into the dataset folder. */
  cacheDir: (): string => process.env.ALEXNET_CACHE_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'alexnet'),
  cudaVisibleDevices: (): string | undefined => process.env.CUDA_VISIBLE_DEVICES,
  /** The named variables a cluster scheduler sets (MASTER_ADDR, SLURM_NODEID, ...), unset ones left out. */
  variables: <N extends string>(names: readonly N[]): Partial<Record<N, string>> =>
    Object.fromEntries(names.flatMap((n) => (process.env[n] === undefined ? [] : [[n, process.env[n]]]))) as Partial<Record<N, string>>,
};
