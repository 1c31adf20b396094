/**
 * The one typed, validated, frozen TrainConfig, declared once in TRAIN_OPTIONS: one entry per
 * field with its flag, type, default, help text and check. From it come the TrainConfig type,
 * TRAIN_DEFAULTS, the command line's options and the one validator that every receiver runs
 * (the CLI, a worker given its config by the coordinator, a joined host welcomed into a run, a
 * checkpoint being resumed); EVAL_OPTIONS does the same for `eval`. Also the vocabularies of choices (presets, backends, optimizers,
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
import {
  deepFreeze,
  defaultNow,
  defaultsOf,
  FieldReader,
  flagsOf,
  is,
  optionTable,
  readerOfArgs,
  readFields,
  type CliArgs,
  type FieldsOf,
} from './field-reader';

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

/** The data plane between the workers of one host (src/dist/comm-thread/data-plane.ts). */
export const TRANSPORTS = ['auto', 'shm', 'zmq'] as const;
export type Transport = (typeof TRANSPORTS)[number];

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

/**
 * The layers with parameters, in order, as every preset names them (src/model/presets.ts; a
 * test holds the presets to it): what --freeze and --lr-mult accept.
 */
export const LAYER_NAMES = ['conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7', 'fc8'] as const;
export type LayerName = (typeof LAYER_NAMES)[number];

/** The layer a parameter belongs to: 'conv3/kernel' -> 'conv3'. */
export function layerOfParam(paramName: string): string {
  return paramName.split('/')[0];
}

function layerName(text: string, flag: string): LayerName {
  const name = text.trim();
  if (!(LAYER_NAMES as readonly string[]).includes(name))
    throw new ConfigError(`${flag}: unknown layer '${name}'; the layers are ${LAYER_NAMES.join(', ')}`);
  return name as LayerName;
}

/** 'conv1-conv3,fc6' -> ['conv1', 'conv2', 'conv3', 'fc6'], in the network's order, each once. */
export function parseLayerList(text: string, flag: string): LayerName[] {
  const picked = new Set<LayerName>();
  for (const item of text.split(',')) {
    const [from, to, extra] = item.split('-');
    if (extra !== undefined) throw new ConfigError(`${flag}: '${item}' is not a layer or a range like conv1-conv5`);
    const a = LAYER_NAMES.indexOf(layerName(from, flag));
    const b = to === undefined ? a : LAYER_NAMES.indexOf(layerName(to, flag));
    if (b < a) throw new ConfigError(`${flag}: the range '${item}' runs backwards; write it first layer first`);
    for (let i = a; i <= b; i++) picked.add(LAYER_NAMES[i]);
  }
  return LAYER_NAMES.filter((l) => picked.has(l));
}

/** 'fc8=10,fc7=2' -> { fc7: 2, fc8: 10 }: each a known layer, once, with a positive finite factor. */
export function parseLrMult(text: string, flag: string): Partial<Record<LayerName, number>> {
  const mult: Partial<Record<LayerName, number>> = {};
  for (const item of text.split(',')) {
    const [name, value, extra] = item.split('=');
    if (value === undefined || extra !== undefined)
      throw new ConfigError(`${flag}: '${item}' is not layer=factor (e.g. fc8=10)`);
    const layer = layerName(name, flag);
    const factor = value.trim() === '' ? NaN : Number(value);
    if (!Number.isFinite(factor) || factor <= 0)
      throw new ConfigError(`${flag}: the factor of ${layer} must be a positive finite number, got '${value}'`);
    if (layer in mult) throw new ConfigError(`${flag}: ${layer} is given twice`);
    mult[layer] = factor;
  }
  return mult;
}

/** --freeze, checked and written out ('conv1-conv3' -> 'conv1,conv2,conv3'); null: nothing frozen. */
function frozenLayerList(r: FieldReader, key: string): string | null {
  const text = r.optionalString(key);
  if (text === null) return null;
  const layers = parseLayerList(text, r.name(key));
  if (layers.length === LAYER_NAMES.length)
    throw new ConfigError(`${r.name(key)} freezes every layer: leave at least one to train`);
  return layers.join(',');
}

/** --reinit: the layers, checked and written out like --freeze's; null: none. */
function layerList(r: FieldReader, key: string): string | null {
  const text = r.optionalString(key);
  return text === null ? null : parseLayerList(text, r.name(key)).join(',');
}

/** --lr-mult, checked and written out in the network's order ('fc8=10,fc7=2' -> 'fc7=2,fc8=10'); null: none. */
function lrMultList(r: FieldReader, key: string): string | null {
  const text = r.optionalString(key);
  if (text === null) return null;
  const mult = parseLrMult(text, r.name(key));
  return LAYER_NAMES.filter((l) => l in mult)
    .map((l) => `${l}=${mult[l]}`)
    .join(',');
}

/** The layers a run trains without updating (--freeze). */
export function frozenLayers(config: Pick<TrainConfig, 'freeze'>): ReadonlySet<string> {
  return new Set(config.freeze === null ? [] : parseLayerList(config.freeze, '--freeze'));
}

/** The layers --init-from leaves at their fresh initialisation (--reinit). */
export function reinitLayers(config: Pick<TrainConfig, 'reinit'>): ReadonlySet<string> {
  return new Set(config.reinit === null ? [] : parseLayerList(config.reinit, '--reinit'));
}

/** Each layer's learning-rate multiplier (--lr-mult); a layer not named has 1. */
export function lrMultipliers(config: Pick<TrainConfig, 'lrMult'>): Readonly<Record<string, number>> {
  return config.lrMult === null ? {} : parseLrMult(config.lrMult, '--lr-mult');
}

/** The bundled dataset that `make train` writes. */
export const DEFAULT_DATA = 'data/fashion-mnist';

/** `runs/<UTC start time>`: a new run directory for each run that does not name one. */
export function defaultRunDir(now: Date = new Date()): string {
  return `runs/${now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}`;
}

/** Dropout of the hidden FC layers; null: the preset's. */
function dropoutRate(r: FieldReader, key: string): number | null {
  if (r.raw(key) == null) return null;
  const rate = r.number(key);
  if (rate < 0 || rate >= 1) throw new ConfigError(`${r.name(key)} must be in [0, 1), got ${rate}`);
  return rate;
}

/** Test-time crops: 1 (centre) or 10 (the paper's 10 patches). */
function tta(r: FieldReader, key: string): 1 | 10 {
  const crops = r.count(key);
  if (crops !== 1 && crops !== 10)
    throw new ConfigError(`${r.name(key)} must be 1 (centre crop) or 10 (the paper's 10 patches), got ${crops}`);
  return crops;
}

/**
 * Every option of `train`, once: each config field (by dotted path) with its flag, type,
 * default (the paper's recipe), help text and check. TrainConfig, TRAIN_DEFAULTS, TRAIN_FLAGS,
 * the validator and the command line's options are derived from it; --help lists them in this order.
 */
export const TRAIN_OPTIONS = optionTable({
  data: {
    flag: 'data',
    type: 'string',
    default: DEFAULT_DATA,
    check: is.string,
    describe: 'dataset root: {train,val|valid,test}/<class>/<image> folders or {train,val,test}.txt list files',
  },
  // Declared on the command line by datasetOptions (src/data/cli-options.ts), for every command that opens a dataset.
  dataLayout: {
    flag: 'layout',
    type: LAYOUTS,
    default: 'auto',
    check: is.oneOf(LAYOUTS),
    describe:
      'auto: list files when they name every split the folders have, else the folders (says which, when both exist); folders; lists',
  },
  preset: {
    flag: 'preset',
    type: PRESET_NAMES,
    default: 'paper',
    check: is.oneOf(PRESET_NAMES),
    describe:
      'network: paper (60,965,224 params at 1000 classes, 227 px), torchvision (61,100,840, 224 px), small (CPU-sized, 28 px)',
  },
  epochs: { flag: 'epochs', type: 'number', default: 90, check: is.count, describe: 'passes over the training split' },
  batchSize: {
    flag: 'batch-size',
    type: 'number',
    default: 128,
    check: is.count,
    describe: 'global batch in images, split across all workers',
  },
  // Micro-batches add their gradients before the all-reduce, so the update is the one of the whole batch.
  microBatch: {
    flag: 'micro-batch',
    type: 'number',
    default: 0,
    check: is.countOrZero,
    describe:
      "images per forward+backward in a worker; its share of the batch runs in micro-batches whose gradients add up (0: the largest that the backend's memory fits)",
  },
  maxStepsPerEpoch: {
    flag: 'max-steps',
    type: 'number',
    default: 0,
    check: is.countOrZero,
    describe: 'cap on steps per epoch (0: the whole split)',
  },
  trainLimit: {
    flag: 'train-limit',
    type: 'number',
    default: 0,
    check: is.countOrZero,
    describe: 'use a seeded subset of this many training images (0: all)',
  },
  // Decoded squares kept between epochs; a dataset beyond it decodes the rest every epoch (on
  // decode threads, src/data/decode/decode-pool.ts). 2 GiB holds ~11,000 paper-size (256 px) images.
  decodeCacheMb: {
    flag: 'decode-cache-mb',
    type: 'number',
    default: 2048,
    check: is.countOrZero,
    describe:
      'memory for decoded images kept between epochs, per split and worker, in MiB; images beyond it are decoded every epoch (0: no cache)',
  },

  optimizer: {
    flag: 'optimizer',
    type: OPTIMIZER_NAMES,
    default: 'sgd',
    check: is.oneOf(OPTIMIZER_NAMES),
    describe: "sgd: the paper's momentum SGD with weight decay in the velocity; adam",
  },
  lr: { flag: 'lr', type: 'number', default: 0.01, check: is.positive, describe: 'initial learning rate' },
  momentum: { flag: 'momentum', type: 'number', default: 0.9, check: is.positiveOrZero, describe: 'SGD momentum' },
  weightDecay: {
    flag: 'weight-decay',
    type: 'number',
    default: 0.0005,
    check: is.positiveOrZero,
    describe: 'weight decay on weights (not biases)',
  },
  schedule: {
    flag: 'schedule',
    type: SCHEDULE_NAMES,
    default: 'plateau',
    check: is.oneOf(SCHEDULE_NAMES),
    describe:
      'plateau: divide lr by --lr-factor when val top-1 stops improving (at most 3 times, as the paper); step: every --lr-step-epochs epochs',
  },
  lrFactor: {
    flag: 'lr-factor',
    type: 'number',
    default: 10,
    check: is.positive,
    describe: 'divisor at each learning-rate drop',
  },
  lrStepEpochs: {
    flag: 'lr-step-epochs',
    type: 'number',
    default: 30,
    check: is.count,
    describe: 'epochs between drops (step schedule)',
  },
  lrPatience: {
    flag: 'lr-patience',
    type: 'number',
    default: 1,
    check: is.count,
    describe: 'epochs without val improvement before a drop (plateau schedule)',
  },

  // Changes to the preset, for the paper's ablations.
  'model.activation': {
    flag: 'activation',
    type: ACTIVATION_NAMES,
    default: 'relu',
    check: is.oneOf(ACTIVATION_NAMES),
    describe: "ReLU (paper) or tanh (the paper's Figure 1 comparison)",
  },
  'model.lrn': {
    flag: 'lrn',
    type: 'boolean',
    default: true,
    check: is.bool,
    describe: 'local response normalisation where the preset has it (--no-lrn to ablate)',
  },
  'model.overlappingPool': {
    flag: 'overlapping-pool',
    type: 'boolean',
    default: true,
    check: is.bool,
    describe: '3/2 overlapping max-pooling (--no-overlapping-pool: 2/2)',
  },
  'model.dropoutRate': {
    flag: 'dropout',
    type: 'number',
    default: null,
    check: dropoutRate,
    describe: "dropout rate in the hidden FC layers (default: the preset's, 0.5)",
  },
  'model.init': {
    flag: 'init',
    type: INIT_NAMES,
    default: 'preset',
    check: is.oneOf(INIT_NAMES),
    describe:
      "weight init: paper N(0, 0.01), he N(0, sqrt(2/fan-in)), or the preset's (paper: N(0, 0.01); small and torchvision: he)",
  },
  tta: {
    flag: 'tta',
    type: 'number',
    default: 1,
    check: tta,
    describe: "test-time crops: 1 (centre) or 10 (the paper's 4 corners + centre, and flips)",
  },
  dropLast: {
    flag: 'drop-last',
    type: 'boolean',
    default: false,
    check: is.bool,
    describe: 'drop the last incomplete global batch of each epoch',
  },
  seed: {
    flag: 'seed',
    type: 'number',
    default: 0,
    check: is.countOrZero,
    describe: 'seed of initialisation, shuffling, augmentation and dropout',
  },

  runDir: {
    flag: 'run-dir',
    type: 'string',
    default: () => defaultRunDir(),
    check: is.string,
    describe: 'where checkpoints, metrics.jsonl and exported models go',
  },
  resume: {
    flag: 'resume',
    type: 'string',
    default: null,
    check: is.optionalString,
    describe: 'continue from a checkpoint file, or a run directory (its newest checkpoint that loads)',
  },
  initFrom: {
    flag: 'init-from',
    type: 'string',
    default: null,
    check: is.optionalString,
    describe:
      "start from the weights of a checkpoint, an exported model folder or an ONNX file of an AlexNet (torchvision's too): a new run from epoch 1 with fresh optimizer state; fc8 is replaced when the class count differs; the preset is inferred from the file unless --preset is given",
  },
  freeze: {
    flag: 'freeze',
    type: 'string',
    default: null,
    check: frozenLayerList,
    describe:
      'layers not trained: a range (conv1-conv5) or a list (conv1,conv2,fc6) of conv1..conv5, fc6, fc7, fc8; they get no gradients, no optimizer state, no weight decay and no all-reduce, and checkpoints still hold them',
  },
  lrMult: {
    flag: 'lr-mult',
    type: 'string',
    default: null,
    check: lrMultList,
    describe:
      "per-layer learning-rate multipliers, Caffe's lr_mult: fc8=10[,fc7=2]; the layer's kernel and bias alike (its weight decay step too)",
  },
  reinit: {
    flag: 'reinit',
    type: 'string',
    default: null,
    check: layerList,
    describe:
      'with --init-from: layers that keep their fresh initialisation instead, as a range or a list (fc8: a new head for a task with as many classes as the file has, but other ones)',
  },
  checkpointEverySteps: {
    flag: 'checkpoint-every',
    type: 'number',
    default: 0,
    check: is.countOrZero,
    describe:
      'also write a step checkpoint every N steps (0: off; last.ckpt is written at each epoch end and on Ctrl-C)',
  },
  checkpointEveryMin: {
    flag: 'checkpoint-every-min',
    type: 'number',
    default: 10,
    check: is.positiveOrZero,
    describe: 'also checkpoint when this many minutes passed since the last step checkpoint (0: off)',
  },
  keepCheckpoints: {
    flag: 'keep-checkpoints',
    type: 'number',
    default: 3,
    check: is.count,
    describe: 'step checkpoints kept in the run directory, the newest (last.ckpt and best.ckpt apart)',
  },
  maxRestarts: {
    flag: 'max-restarts',
    type: 'number',
    default: 3,
    check: is.countOrZero,
    describe:
      'restart the workers from the newest checkpoint when one dies or hangs, at most N times (0: a failure ends the run)',
  },

  // The paper's training augmentations, each on by default (off for ablations).
  'augment.crop': {
    flag: 'crop',
    type: 'boolean',
    default: true,
    check: is.bool,
    describe: 'random crops of the input size from the resized square (--no-crop: centre crop)',
  },
  'augment.flip': {
    flag: 'flip',
    type: 'boolean',
    default: true,
    check: is.bool,
    describe: 'random horizontal flips (--no-flip to turn off)',
  },
  'augment.pcaLighting': {
    flag: 'pca-lighting',
    type: 'boolean',
    default: true,
    check: is.bool,
    describe: "the paper's PCA colour augmentation, a ~ N(0, 0.1) (--no-pca-lighting to turn off)",
  },
  // Finer curves than the per-epoch metrics.jsonl, for "epochs to X% training error".
  logEverySteps: {
    flag: 'log-every',
    type: 'number',
    default: 0,
    check: is.countOrZero,
    describe: 'append the training loss/top-1/top-5 of every N steps to steps.jsonl in the run directory (0: off)',
  },

  backend: {
    flag: 'backend',
    type: BACKEND_CHOICES,
    default: 'auto',
    check: is.oneOf(BACKEND_CHOICES),
    describe:
      'tfjs backend: auto tries node-gpu, webgpu (Vulkan, a hardware adapter only), node, native (oneDNN), wasm, cpu',
  },
  allowSoftwareGpu: {
    flag: 'allow-software-gpu',
    type: 'boolean',
    default: false,
    check: is.bool,
    describe: 'let webgpu run on a software Vulkan device (lavapipe, SwiftShader): slow, for tests',
  },
  threads: {
    flag: 'threads',
    type: 'number',
    default: 1,
    check: is.count,
    describe:
      'oneDNN threads per native worker (--devices auto: as many workers of this many threads as the cores hold; 1: auto picks)',
  },
  parallel: {
    flag: 'parallel',
    type: PARALLEL_MODES,
    default: 'data',
    check: is.oneOf(PARALLEL_MODES),
    describe:
      'data: every worker holds the whole model, all gradients all-reduced; hybrid: conv layers data-parallel, FC layers split across workers by output unit (Krizhevsky 2014), far fewer bytes per step',
  },
  wireDtype: {
    flag: 'wire-dtype',
    type: WIRE_DTYPES,
    default: 'fp32',
    check: is.oneOf(WIRE_DTYPES),
    describe: 'number format of gradients and activations between workers; sums and weights stay fp32',
  },
  transport: {
    flag: 'transport',
    type: TRANSPORTS,
    default: 'auto',
    check: is.oneOf(TRANSPORTS),
    describe:
      'data plane between the workers of one host: shm (shared memory), zmq (the ZeroMQ ring); auto: shm where its addon is built. Across hosts shm/auto mean the hierarchical plane (shm inside each host, rings between hosts)',
  },
  // DDP/Horovod style.
  overlap: {
    flag: 'overlap',
    type: 'boolean',
    default: false,
    check: is.bool,
    describe: 'all-reduce gradients in buckets while the backward pass still runs',
  },
  bucketMb: {
    flag: 'bucket-mb',
    type: 'number',
    default: 25,
    check: is.positive,
    describe: 'bucket size of --overlap, in MB',
  },
  devices: {
    flag: 'devices',
    type: 'string',
    default: 'auto',
    check: is.string,
    describe:
      "workers: 'auto', a GPU count, 'cpu:N' CPU-simulated devices, or 'webgpu:N' workers on whatever WebGPU adapter exists (software too)",
  },
  strictDevices: {
    flag: 'strict-devices',
    type: 'boolean',
    default: false,
    check: is.bool,
    describe: 'fail instead of simulating when fewer GPUs than asked exist',
  },
  checksumEverySteps: {
    flag: 'checksum-every',
    type: 'number',
    default: 50,
    check: is.countOrZero,
    describe: 'compare a checksum of the weights across workers every N steps (0: never)',
  },
  hangTimeoutSec: {
    flag: 'hang-timeout',
    type: 'number',
    default: 120,
    check: is.positive,
    describe: 'seconds of silence (or 3x the slowest step) before a worker counts as hung',
  },
  logLevel: {
    flag: 'log-level',
    type: LOG_LEVELS,
    default: 'info',
    check: is.oneOf(LOG_LEVELS),
    describe: 'how much to print',
  },
});

/** A training run's settings: one field per train option (TRAIN_OPTIONS), and the class names. */
export interface TrainConfig extends FieldsOf<typeof TRAIN_OPTIONS> {
  /** Names of numeric labels, from two flags (--classes, --classes-file): read once here, so workers need no file; null: classes.txt or the numbers. */
  classNames: ClassNames | null;
}

/** Changes to a preset for the paper's ablations. */
export type ModelChoice = TrainConfig['model'];

/** Which of the paper's training augmentations are on. */
export type AugmentChoice = TrainConfig['augment'];

/** Every default of a training run: code and tests build configs from it (`trainConfig({...})`). */
export const TRAIN_DEFAULTS: Readonly<Omit<TrainConfig, 'runDir'>> = deepFreeze({
  ...defaultsOf(TRAIN_OPTIONS),
  classNames: null,
});

/** Each config field's command-line flag: a bad value's message names the flag the user typed. */
export const TRAIN_FLAGS = flagsOf(TRAIN_OPTIONS);

/** The class names a config carries (set by --classes or --classes-file, not by one flag). */
function readClassNames(r: FieldReader): ClassNames | null {
  const v = r.raw('classNames');
  if (v == null) return null;
  const names = (v as { names?: unknown }).names;
  const source = (v as { source?: unknown }).source;
  if (!Array.isArray(names) || typeof source !== 'string')
    throw new ConfigError(`${r.name('classNames')} must be {names: string[], source: string}`);
  return checkedClassNames(names as string[], source);
}

/** Checks every field of a TrainConfig and returns it frozen; errors name fields as `r` does. */
function readTrainConfig(r: FieldReader): Readonly<TrainConfig> {
  return deepFreeze({ ...readFields(TRAIN_OPTIONS, r), classNames: readClassNames(r) });
}

/**
 * A TrainConfig received from elsewhere (the coordinator's config or welcome message, a
 * checkpoint), checked field by field: `source` says where it came from in the error.
 */
export function validateTrainConfig(value: unknown, source: string): Readonly<TrainConfig> {
  if (value === null || typeof value !== 'object')
    throw new ConfigError(`${source}: the training config is not an object`);
  return readTrainConfig(new FieldReader(value as Record<string, unknown>, (key) => `${source}: config field ${key}`));
}

function existingPath(p: string, what: string): string {
  if (!fs.existsSync(p)) throw new ConfigError(`${what} '${p}' does not exist`);
  return path.resolve(p);
}

/** Parsed `train` options into a frozen TrainConfig. Throws ConfigError (exit 2) naming the flag. */
export function buildTrainConfig(args: CliArgs): Readonly<TrainConfig> {
  const reader = readerOfArgs(TRAIN_FLAGS, { ...TRAIN_DEFAULTS, runDir: defaultNow(TRAIN_OPTIONS.runDir) }, args);
  // Two flags name the classes, and one of them a file: read here, once.
  const config = readTrainConfig(
    new FieldReader({ ...reader.source, classNames: classNamesFromArgs(args) }, reader.name),
  );
  return deepFreeze({
    ...config,
    data: existingPath(config.data, 'dataset'),
    runDir: path.resolve(config.runDir),
    resume: config.resume === null ? null : existingPath(config.resume, '--resume checkpoint'),
    initFrom: config.initFrom === null ? null : existingPath(config.initFrom, '--init-from file'),
  });
}

/** A config from TRAIN_DEFAULTS with some fields changed, validated: for code and tests. */
export function trainConfig(changes: Partial<TrainConfig> & Pick<TrainConfig, 'runDir'>): Readonly<TrainConfig> {
  return validateTrainConfig({ ...TRAIN_DEFAULTS, ...changes }, 'trainConfig()');
}

export const EVAL_SPLITS = ['train', 'val', 'test'] as const;

/**
 * Every option of `eval`, once, as TRAIN_OPTIONS is for `train`; the options that mean the same
 * as a train option are that option, with help text of their own where eval's differs.
 */
export const EVAL_OPTIONS = optionTable({
  data: {
    flag: 'data',
    type: 'string',
    default: null,
    check: is.optionalString,
    describe: 'dataset root (default: the one the checkpoint was trained on)',
  },
  split: {
    flag: 'split',
    type: EVAL_SPLITS,
    default: 'test',
    check: is.oneOf(EVAL_SPLITS),
    describe: 'split to evaluate',
  },
  tta: { ...TRAIN_OPTIONS.tta, describe: "1 (centre crop) or 10 (the paper's 10 patches)" },
  batchSize: { ...TRAIN_OPTIONS.batchSize, describe: 'images per batch' },
  out: {
    flag: 'out',
    type: 'string',
    default: null,
    check: is.optionalString,
    describe: 'folder for confusion.csv, per-class.csv and confusion.png (default: <run dir>/eval-<split>[-tta10])',
  },
  force: {
    flag: 'force',
    type: 'boolean',
    default: false,
    check: is.bool,
    describe: 'replace those files in --out even when eval did not write them',
  },
  backend: { ...TRAIN_OPTIONS.backend, describe: 'tfjs backend' },
  allowSoftwareGpu: { ...TRAIN_OPTIONS.allowSoftwareGpu, describe: 'let webgpu run on a software Vulkan device' },
  // 'auto' here: as the checkpoint's run indexed its dataset.
  dataLayout: TRAIN_OPTIONS.dataLayout,
});

/** `alexnet eval`: a checkpoint scored on one split. */
export interface EvalConfig extends FieldsOf<typeof EVAL_OPTIONS> {
  /** A checkpoint file, or a run directory (its best.ckpt, else last.ckpt): the command's positional. */
  checkpoint: string;
  /** Names of numeric labels (--classes, --classes-file); null: the checkpoint's. */
  classNames: ClassNames | null;
}

export const EVAL_DEFAULTS: Readonly<Omit<EvalConfig, 'checkpoint'>> = deepFreeze({
  ...defaultsOf(EVAL_OPTIONS),
  classNames: null,
});

export const EVAL_FLAGS = { checkpoint: 'checkpoint', ...flagsOf(EVAL_OPTIONS) } as const;

/** Parsed `eval` options into a frozen EvalConfig. */
export function buildEvalConfig(args: CliArgs): Readonly<EvalConfig> {
  const r = readerOfArgs(EVAL_FLAGS, EVAL_DEFAULTS, args);
  return deepFreeze({
    checkpoint: r.string('checkpoint'),
    ...readFields(EVAL_OPTIONS, r),
    classNames: classNamesFromArgs(args),
  });
}

export const EXPORT_FORMATS = ['tfjs', 'onnx'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** Every option of `alexnet export`, as TRAIN_OPTIONS is for `train`. */
export const EXPORT_OPTIONS = optionTable({
  format: {
    flag: 'format',
    type: EXPORT_FORMATS,
    default: 'tfjs',
    check: is.oneOf(EXPORT_FORMATS),
    describe:
      'tfjs: a TensorFlow.js graph-model folder (model.json + weights.bin); onnx: one .onnx file (opset 13, NCHW input) for onnxruntime, PyTorch and other ONNX tools',
  },
  out: {
    flag: 'out',
    type: 'string',
    default: null,
    check: is.optionalString,
    describe: 'where to write (default: beside the checkpoint, <name>.onnx or <name>-tfjs/)',
  },
  force: {
    flag: 'force',
    type: 'boolean',
    default: false,
    check: is.bool,
    describe: 'replace what --out names if it exists',
  },
});

/** `alexnet export`: a checkpoint written as a model other programs run. */
export interface ExportConfig extends FieldsOf<typeof EXPORT_OPTIONS> {
  /** A checkpoint file, or a run directory (its best.ckpt, else last.ckpt): the command's positional. */
  run: string;
}

export const EXPORT_DEFAULTS: Readonly<Omit<ExportConfig, 'run'>> = deepFreeze(defaultsOf(EXPORT_OPTIONS));

export const EXPORT_FLAGS = { run: 'run', ...flagsOf(EXPORT_OPTIONS) } as const;

/** Parsed `export` options into a frozen ExportConfig. */
export function buildExportConfig(args: CliArgs): Readonly<ExportConfig> {
  const r = readerOfArgs(EXPORT_FLAGS, EXPORT_DEFAULTS, args);
  return deepFreeze({ run: r.string('run'), ...readFields(EXPORT_OPTIONS, r) });
}

/** Environment facts of the user's terminal and devices, read here only. */
export const env = {
  isTTY: (): boolean => Boolean(process.stderr.isTTY) && process.env.CI !== 'true' && process.env.TERM !== 'dumb',
  /** Where derived files (dataset statistics) go: never into the dataset folder. */
  cacheDir: (): string =>
    process.env.ALEXNET_CACHE_DIR ||
    path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'alexnet'),
  cudaVisibleDevices: (): string | undefined => process.env.CUDA_VISIBLE_DEVICES,
  /** The named variables a cluster scheduler sets (MASTER_ADDR, SLURM_NODEID, ...), unset ones left out. */
  variables: <N extends string>(names: readonly N[]): Partial<Record<N, string>> =>
    Object.fromEntries(names.flatMap((n) => (process.env[n] === undefined ? [] : [[n, process.env[n]]]))) as Partial<
      Record<N, string>
    >,
};
