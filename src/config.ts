/**
 * The one typed, validated, frozen TrainConfig: its fields, their defaults (TRAIN_DEFAULTS, from
 * which the command line's defaults are derived) and the one validator that every receiver runs
 * (the CLI, a worker given its config by the coordinator, a joined host welcomed into a run, a
 * checkpoint being resumed). Also the vocabularies of choices (presets, backends, optimizers,
 * schedules) as plain name lists, so that any layer can name them without loading the modules
 * that implement them (and TensorFlow.js with them).
 *
 * This module imports no other part of the project but errors.ts: everything may depend on it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from './errors';

export const PRESET_NAMES = ['paper', 'torchvision', 'small'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

export const BACKEND_CHOICES = ['auto', 'node-gpu', 'node', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

export const OPTIMIZER_NAMES = ['sgd', 'adam'] as const;
export type OptimizerName = (typeof OPTIMIZER_NAMES)[number];

export const SCHEDULE_NAMES = ['constant', 'step', 'plateau'] as const;
export type ScheduleName = (typeof SCHEDULE_NAMES)[number];

export const ACTIVATION_NAMES = ['relu', 'tanh'] as const;
export type ActivationName = (typeof ACTIVATION_NAMES)[number];

export const INIT_NAMES = ['preset', 'paper', 'he'] as const;
export type InitName = (typeof INIT_NAMES)[number];

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
  /** The network: paper, torchvision or small. */
  preset: PresetName;
  /** Changes to the preset for the paper's ablations. */
  model: ModelChoice;
  /** Passes over the training split. */
  epochs: number;
  /** Global batch in images: split across all workers each step. */
  batchSize: number;
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
  /** tfjs backend: auto tries node-gpu, node, wasm, cpu. */
  backend: BackendChoice;
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
  preset: 'paper',
  model: { activation: 'relu', lrn: true, overlappingPool: true, dropoutRate: null, init: 'preset' },
  epochs: 90,
  batchSize: 128,
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
  preset: 'preset',
  'model.activation': 'activation',
  'model.lrn': 'lrn',
  'model.overlappingPool': 'overlapping-pool',
  'model.dropoutRate': 'dropout',
  'model.init': 'init',
  epochs: 'epochs',
  batchSize: 'batch-size',
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
  devices: 'devices',
  strictDevices: 'strict-devices',
  checksumEverySteps: 'checksum-every',
  hangTimeoutSec: 'hang-timeout',
  logLevel: 'log-level',
} as const;

export type TrainFlag = (typeof TRAIN_FLAGS)[keyof typeof TRAIN_FLAGS];

function getPath(obj: unknown, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((o, k) => (o !== null && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj);
}

function setPath(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
  o[keys[keys.length - 1]] = value;
}

/** The default of a `train` flag, for the option table (undefined: no default, e.g. --resume). */
export function trainFlagDefault(flag: TrainFlag): string | number | boolean | undefined {
  if (flag === 'run-dir') return defaultRunDir();
  const field = (Object.keys(TRAIN_FLAGS) as (keyof typeof TRAIN_FLAGS)[]).find((f) => TRAIN_FLAGS[f] === flag);
  const value = field === undefined ? undefined : getPath(TRAIN_DEFAULTS, field);
  return value === null ? undefined : (value as string | number | boolean | undefined);
}

export type CliArgs = Record<string, unknown>;

/**
 * Reads fields of an untrusted object (parsed options, a message from another process, a
 * checkpoint's header) and throws a ConfigError naming the field as its source calls it.
 */
export class FieldReader {
  constructor(
    private readonly source: Record<string, unknown>,
    /** How a message names a field: '--batch-size' for the CLI, 'batchSize' for a message. */
    readonly name: (key: string) => string,
  ) {}

  raw(key: string): unknown {
    return getPath(this.source, key);
  }

  number(key: string): number {
    const v = this.raw(key);
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
    if (!Number.isFinite(n)) throw new ConfigError(`${this.name(key)} must be a number, got '${String(v)}'`);
    return n;
  }

  /** A whole number >= 1 (>= 0 with allowZero). */
  count(key: string, allowZero = false): number {
    const n = this.number(key);
    if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) {
      throw new ConfigError(`${this.name(key)} must be a whole number ${allowZero ? '>= 0' : '>= 1'}, got ${n}`);
    }
    return n;
  }

  /** > 0 (>= 0 with allowZero). */
  positive(key: string, allowZero = false): number {
    const n = this.number(key);
    if (n < 0 || (!allowZero && n === 0)) throw new ConfigError(`${this.name(key)} must be ${allowZero ? '>= 0' : '> 0'}, got ${n}`);
    return n;
  }

  oneOf<T extends string>(key: string, choices: readonly T[]): T {
    const v = String(this.raw(key));
    if (!(choices as readonly string[]).includes(v)) throw new ConfigError(`${this.name(key)} must be one of ${choices.join(', ')}; got '${v}'`);
    return v as T;
  }

  bool(key: string): boolean {
    const v = this.raw(key);
    if (typeof v !== 'boolean') throw new ConfigError(`${this.name(key)} must be true or false, got '${String(v)}'`);
    return v;
  }

  string(key: string): string {
    const v = this.raw(key);
    if (typeof v !== 'string' || v === '') throw new ConfigError(`${this.name(key)} must be a non-empty string, got '${String(v)}'`);
    return v;
  }

  optionalString(key: string): string | null {
    const v = this.raw(key);
    return v == null ? null : this.string(key);
  }
}

/** Checks every field of a TrainConfig and returns it frozen; errors name fields as `r` does. */
function readTrainConfig(r: FieldReader): Readonly<TrainConfig> {
  const dropoutRate = r.raw('model.dropoutRate') == null ? null : r.number('model.dropoutRate');
  if (dropoutRate !== null && (dropoutRate < 0 || dropoutRate >= 1)) {
    throw new ConfigError(`${r.name('model.dropoutRate')} must be in [0, 1), got ${dropoutRate}`);
  }
  return deepFreeze({
    data: r.string('data'),
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

/**
 * The parsed options of a command as a reader of its config's fields: each field takes its
 * flag's value, or the default where the flag was not given; messages name the flag.
 */
function readerOfArgs(flags: Readonly<Record<string, string>>, defaults: object, args: CliArgs): FieldReader {
  const candidate: Record<string, unknown> = {};
  for (const [field, flag] of Object.entries(flags)) setPath(candidate, field, args[flag] ?? getPath(defaults, field) ?? null);
  return new FieldReader(candidate, (key) => `--${flags[key] ?? key}`);
}

/** Parsed `train` options into a frozen TrainConfig. Throws ConfigError (exit 2) naming the flag. */
export function buildTrainConfig(args: CliArgs): Readonly<TrainConfig> {
  const config = readTrainConfig(readerOfArgs(TRAIN_FLAGS, { ...TRAIN_DEFAULTS, runDir: defaultRunDir() }, args));
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
  backend: BackendChoice;
}

export const EVAL_DEFAULTS: Readonly<Omit<EvalConfig, 'checkpoint'>> = deepFreeze({ data: null, split: 'test', tta: 1, batchSize: 128, out: null, backend: 'auto' } as const);

export const EVAL_FLAGS = { checkpoint: 'checkpoint', data: 'data', split: 'split', tta: 'tta', batchSize: 'batch-size', out: 'out', backend: 'backend' } as const;

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
    backend: r.oneOf('backend', BACKEND_CHOICES),
  });
}

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value as object)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Environment facts of the user's terminal and devices, read here only. */
export const env = {
  isTTY: (): boolean => Boolean(process.stderr.isTTY) && process.env.CI !== 'true' && process.env.TERM !== 'dumb',
  cudaVisibleDevices: (): string | undefined => process.env.CUDA_VISIBLE_DEVICES,
  /** The named variables a cluster scheduler sets (MASTER_ADDR, SLURM_NODEID, ...), unset ones left out. */
  variables: <N extends string>(names: readonly N[]): Partial<Record<N, string>> =>
    Object.fromEntries(names.flatMap((n) => (process.env[n] === undefined ? [] : [[n, process.env[n]]]))) as Partial<Record<N, string>>,
};
