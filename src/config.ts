/**
 * The one typed, validated, frozen TrainConfig, and the only module that reads process.env.
 * It is built once from the command line, saved in every checkpoint and sent to workers;
 * derived values (per-rank batch, class count) are computed elsewhere, never written back.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BACKEND_CHOICES, type BackendChoice } from './backend';
import type { AugmentChoice } from './data/augment';
import { classNamesFromArgs, type ClassNames } from './data/classes';
import { layoutFromArgs } from './data/cli-options';
import type { Layout } from './data/layout';
import { ConfigError } from './errors';
import { checkLocalAddress, parseTcpEndpoint, tcpAddress } from './parallel/ring-address';
import { PRESET_NAMES, type PresetName, type SpecOverrides } from './model/presets';
import { OPTIMIZER_NAMES, type OptimizerName } from './train/optimizer';
import { SCHEDULE_NAMES, type ScheduleName } from './train/schedule';

export interface TrainConfig {
  /** Dataset root: {train,val,test}/<class>/<image> folders or {train,val,test}.txt list files. */
  data: string;
  /** --layout: folders, list files, or auto (src/data/layout.ts). */
  dataLayout: Layout;
  /** --classes / --classes-file: names of numeric labels, read once here so workers need no file. */
  classNames: ClassNames | null;
  preset: PresetName;
  /** Changes to the preset for the paper's ablations. */
  model: Required<Pick<SpecOverrides, 'activation' | 'lrn' | 'overlappingPool'>> & { dropoutRate: number | null; init: 'paper' | 'he' | 'preset' };
  epochs: number;
  /** Global batch: split across all workers each step. */
  batchSize: number;
  /** Stop each epoch after this many steps (0: the whole split). For quick runs and benchmarks. */
  maxStepsPerEpoch: number;
  /** Use at most this many training images (0: all), a seeded stratified-agnostic prefix of the shuffle. */
  trainLimit: number;
  optimizer: OptimizerName;
  lr: number;
  momentum: number;
  weightDecay: number;
  schedule: ScheduleName;
  lrFactor: number;
  lrStepEpochs: number;
  lrPatience: number;
  /** The paper's training augmentations (random crop, flip, PCA lighting), each on by default. */
  augment: AugmentChoice;
  /** Test-time augmentation at evaluation: 1 (centre crop) or 10 (the paper's 10 patches). */
  tta: 1 | 10;
  dropLast: boolean;
  seed: number;
  runDir: string;
  /** A checkpoint file or a run directory to continue from. */
  resume: string | null;
  /** Also save a checkpoint every N steps (0: only at epoch ends and on Ctrl-C). */
  checkpointEverySteps: number;
  /** Append the training loss and errors of every N steps to steps.jsonl (0: off): finer
   * curves than the per-epoch metrics.jsonl, for "epochs to X% training error". */
  logEverySteps: number;
  backend: BackendChoice;
  /** 'auto', a count ('2'), or CPU-simulated devices ('cpu:2'). */
  devices: string;
  strictDevices: boolean;
  /** Compare a checksum of the weights across ranks every N steps. */
  checksumEverySteps: number;
  /** A worker silent for this long (or 3x its slowest step) is reported as hung. */
  hangTimeoutSec: number;
  logLevel: 'quiet' | 'info' | 'debug';
}

export const DEFAULT_DATA = 'data/fashion-mnist';

export type CliArgs = Record<string, unknown>;

function num(args: CliArgs, key: string): number {
  const v = args[key];
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isFinite(n)) throw new ConfigError(`--${key} must be a number, got '${String(v)}'`);
  return n;
}

function positiveInt(args: CliArgs, key: string, allowZero = false): number {
  const n = num(args, key);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) {
    throw new ConfigError(`--${key} must be a whole number ${allowZero ? '>= 0' : '>= 1'}, got ${n}`);
  }
  return n;
}

function positive(args: CliArgs, key: string, allowZero = false): number {
  const n = num(args, key);
  if (n < 0 || (!allowZero && n === 0)) throw new ConfigError(`--${key} must be ${allowZero ? '>= 0' : '> 0'}, got ${n}`);
  return n;
}

function oneOf<T extends string>(args: CliArgs, key: string, choices: readonly T[]): T {
  const v = String(args[key]);
  if (!(choices as readonly string[]).includes(v)) throw new ConfigError(`--${key} must be one of ${choices.join(', ')}; got '${v}'`);
  return v as T;
}

function existingPath(p: string, what: string): string {
  if (!fs.existsSync(p)) throw new ConfigError(`${what} '${p}' does not exist`);
  return path.resolve(p);
}

/** Validates parsed CLI arguments into a frozen TrainConfig. Throws ConfigError (exit 2). */
export function buildTrainConfig(args: CliArgs): Readonly<TrainConfig> {
  const tta = positiveInt(args, 'tta');
  if (tta !== 1 && tta !== 10) throw new ConfigError(`--tta must be 1 (centre crop) or 10 (the paper's 10 patches), got ${tta}`);
  const dropout = args['dropout'];
  const config: TrainConfig = {
    data: existingPath(String(args['data']), 'dataset'),
    dataLayout: layoutFromArgs(args),
    classNames: classNamesFromArgs(args),
    preset: oneOf(args, 'preset', PRESET_NAMES),
    model: {
      activation: oneOf(args, 'activation', ['relu', 'tanh'] as const),
      lrn: Boolean(args['lrn']),
      overlappingPool: Boolean(args['overlapping-pool']),
      dropoutRate: dropout === undefined ? null : num(args, 'dropout'),
      init: oneOf(args, 'init', ['paper', 'he', 'preset'] as const),
    },
    epochs: positiveInt(args, 'epochs'),
    batchSize: positiveInt(args, 'batch-size'),
    maxStepsPerEpoch: positiveInt(args, 'max-steps', true),
    trainLimit: positiveInt(args, 'train-limit', true),
    optimizer: oneOf(args, 'optimizer', OPTIMIZER_NAMES),
    lr: positive(args, 'lr'),
    momentum: positive(args, 'momentum', true),
    weightDecay: positive(args, 'weight-decay', true),
    schedule: oneOf(args, 'schedule', SCHEDULE_NAMES),
    lrFactor: positive(args, 'lr-factor'),
    lrStepEpochs: positiveInt(args, 'lr-step-epochs'),
    lrPatience: positiveInt(args, 'lr-patience'),
    augment: { crop: Boolean(args['crop']), flip: Boolean(args['flip']), pcaLighting: Boolean(args['pca-lighting']) },
    tta,
    dropLast: Boolean(args['drop-last']),
    seed: positiveInt(args, 'seed', true),
    runDir: path.resolve(String(args['run-dir'])),
    resume: args['resume'] == null ? null : existingPath(String(args['resume']), '--resume checkpoint'),
    checkpointEverySteps: positiveInt(args, 'checkpoint-every', true),
    logEverySteps: positiveInt(args, 'log-every', true),
    backend: oneOf(args, 'backend', BACKEND_CHOICES),
    devices: String(args['devices'] ?? 'auto'),
    strictDevices: Boolean(args['strict-devices']),
    checksumEverySteps: positiveInt(args, 'checksum-every', true),
    hangTimeoutSec: positive(args, 'hang-timeout'),
    logLevel: oneOf(args, 'log-level', ['quiet', 'info', 'debug'] as const),
  };
  if (config.model.dropoutRate !== null && (config.model.dropoutRate < 0 || config.model.dropoutRate >= 1)) {
    throw new ConfigError(`--dropout must be in [0, 1), got ${config.model.dropoutRate}`);
  }
  return deepFreeze(config);
}

export function specOverrides(config: Pick<TrainConfig, 'model'>): SpecOverrides {
  const { activation, lrn, overlappingPool, dropoutRate, init } = config.model;
  return {
    activation,
    lrn,
    overlappingPool,
    ...(dropoutRate === null ? {} : { dropoutRate }),
    ...(init === 'preset' ? {} : { init }),
  };
}

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value as object)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** How the coordinator tells a worker process who it is (set in its environment). */
export interface WorkerBootstrap {
  controlAddress: string;
  rank: number;
  worldSize: number;
  deviceKind: 'gpu' | 'cpu';
  /** Where this worker's ring socket binds: ipc:// in the run's private folder, or tcp://. */
  ringAddress: string;
  /** The cluster key file (multi-host runs: CURVE on every socket), or null on one host. */
  keyFile: string | null;
}

export const WORKER_ENV = {
  controlAddress: 'ALEXNET_CONTROL',
  rank: 'ALEXNET_RANK',
  worldSize: 'ALEXNET_WORLD_SIZE',
  deviceKind: 'ALEXNET_DEVICE_KIND',
  ringAddress: 'ALEXNET_RING_ADDRESS',
  keyFile: 'ALEXNET_KEY_FILE',
  /** The pid of the process that spawned the worker: its orphan guard compares its parent with it. */
  parentPid: 'ALEXNET_PARENT_PID',
  /** Test hook: 'rank:step:kind' makes that worker fail on purpose (kind: crash | hang | garbage). */
  fault: 'ALEXNET_FAULT',
} as const;

export interface FaultInjection {
  rank: number;
  step: number;
  kind: 'crash' | 'hang' | 'garbage';
}

/** Environment facts, read here only. */
export const env = {
  isTTY: (): boolean => Boolean(process.stderr.isTTY) && process.env.CI !== 'true' && process.env.TERM !== 'dumb',
  /** Where derived files (dataset statistics) go: never into the dataset folder. */
  cacheDir: (): string => process.env.ALEXNET_CACHE_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'alexnet'),
  cudaVisibleDevices: (): string | undefined => process.env.CUDA_VISIBLE_DEVICES,
  workerBootstrap: (): WorkerBootstrap => {
    const get = (name: string): string => {
      const v = process.env[name];
      if (v === undefined || v === '') throw new ConfigError(`${name} is not set: workers are started by the coordinator (alexnet train)`);
      return v;
    };
    const kind = get(WORKER_ENV.deviceKind);
    return {
      controlAddress: get(WORKER_ENV.controlAddress),
      rank: Number(get(WORKER_ENV.rank)),
      worldSize: Number(get(WORKER_ENV.worldSize)),
      deviceKind: kind === 'gpu' ? 'gpu' : 'cpu',
      ringAddress: get(WORKER_ENV.ringAddress),
      keyFile: process.env[WORKER_ENV.keyFile] || null,
    };
  },
  /** The spawner's pid as it set it, or null (an older spawner: fall back to the parent at start). */
  workerParentPid: (): number | null => {
    const pid = Number(process.env[WORKER_ENV.parentPid]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  },
  fault: (): FaultInjection | null => {
    const m = /^(\d+):(\d+):(crash|hang|garbage)$/.exec(process.env[WORKER_ENV.fault] ?? '');
    return m ? { rank: Number(m[1]), step: Number(m[2]), kind: m[3] as FaultInjection['kind'] } : null;
  },
  /** The environment for a worker process: ours plus its bootstrap and device. */
  forWorker: (b: WorkerBootstrap, gpuId: string | null): NodeJS.ProcessEnv => ({
    ...process.env,
    [WORKER_ENV.controlAddress]: b.controlAddress,
    [WORKER_ENV.rank]: String(b.rank),
    [WORKER_ENV.worldSize]: String(b.worldSize),
    [WORKER_ENV.deviceKind]: b.deviceKind,
    [WORKER_ENV.ringAddress]: b.ringAddress,
    [WORKER_ENV.keyFile]: b.keyFile ?? '',
    [WORKER_ENV.parentPid]: String(process.pid),
    // One GPU per process: tfjs-node-gpu has no in-process device choice (FINDINGS.md).
    ...(gpuId !== null ? { CUDA_VISIBLE_DEVICES: gpuId, TF_FORCE_GPU_ALLOW_GROWTH: 'true' } : { CUDA_VISIBLE_DEVICES: '' }),
  }),
};

/** Why a run across hosts needs a key, for every option that would otherwise go without one. */
function requireKeyFile(args: CliArgs, what: string): string {
  const file = args['key-file'];
  if (file == null || file === '') {
    throw new ConfigError(
      `${what} needs --key-file: runs across hosts always use CURVE encryption and authentication ` +
        "(make a key with 'alexnet keygen --out cluster.key' and copy it to every host)",
    );
  }
  return path.resolve(String(file));
}

function portOption(args: CliArgs, key: string): number {
  const port = positiveInt(args, key, true);
  if (port > 65535) throw new ConfigError(`--${key} must be a port 0-65535, got ${port}`);
  return port;
}

/** The coordinator host's side of a multi-host run (README "Multi-host runs"). */
export interface ClusterConfig {
  /** tcp://<this host's IP>:<port> where the control plane listens (port 0: any free port). */
  rendezvous: string;
  /** Workers on all hosts together. */
  worldSize: number;
  /** Absolute path of the cluster key file (`alexnet keygen`). */
  keyFile: string;
  /** Interface address this host's ring sockets bind (default: the rendezvous address). */
  ringHost: string;
  /** Port of this host's first ring socket, one more per local worker (0: any free port). */
  ringPort: number;
  /** How long the coordinator waits for the other hosts to join. */
  joinTimeoutSec: number;
}

/** `train --rendezvous ...`: null when the run stays on this host. */
export function buildClusterConfig(args: CliArgs): Readonly<ClusterConfig> | null {
  const rendezvous = args['rendezvous'];
  if (rendezvous == null || rendezvous === '') {
    for (const key of ['world-size', 'key-file', 'ring-host']) {
      if (args[key] != null) throw new ConfigError(`--${key} only applies to a multi-host run (with --rendezvous)`);
    }
    return null;
  }
  const address = String(rendezvous);
  const endpoint = parseTcpEndpoint(address, '--rendezvous');
  const keyFile = requireKeyFile(args, `--rendezvous ${address}`);
  checkLocalAddress(endpoint.host, '--rendezvous host');
  if (args['world-size'] == null) throw new ConfigError('--rendezvous needs --world-size: the number of workers on all hosts together');
  const worldSize = positiveInt(args, 'world-size');
  if (worldSize < 2) throw new ConfigError(`--world-size must be >= 2 for a multi-host run, got ${worldSize}`);
  const ringHost = args['ring-host'] == null ? endpoint.host : String(args['ring-host']);
  checkLocalAddress(ringHost, '--ring-host');
  return deepFreeze({
    rendezvous: tcpAddress(endpoint.host, endpoint.port === 0 ? '*' : endpoint.port),
    worldSize,
    keyFile,
    ringHost,
    ringPort: portOption(args, 'ring-port'),
    joinTimeoutSec: positive(args, 'join-timeout'),
  });
}

/** `alexnet join <rendezvous>`: another host's side of a multi-host run. */
export interface JoinConfig {
  /** tcp://<coordinator host>:<port>, as the coordinator printed it. */
  rendezvous: string;
  keyFile: string;
  /** This host's workers: 'auto', a GPU count or 'cpu:N', as for train. */
  devices: string;
  strictDevices: boolean;
  /** Interface address this host's ring sockets bind; null: the one that routes to the coordinator. */
  ringHost: string | null;
  ringPort: number;
  /** How long to wait for the coordinator and for the run to start. */
  joinTimeoutSec: number;
  logLevel: 'quiet' | 'info' | 'debug';
}

export function buildJoinConfig(args: CliArgs): Readonly<JoinConfig> {
  const rendezvous = String(args['rendezvous']);
  const endpoint = parseTcpEndpoint(rendezvous, 'the rendezvous address');
  if (endpoint.port === 0) throw new ConfigError(`${rendezvous}: give the port the coordinator printed, not 0`);
  const keyFile = requireKeyFile(args, `join ${rendezvous}`);
  const ringHost = args['ring-host'] == null ? null : String(args['ring-host']);
  if (ringHost !== null) checkLocalAddress(ringHost, '--ring-host');
  return deepFreeze({
    rendezvous,
    keyFile,
    devices: String(args['devices'] ?? 'auto'),
    strictDevices: Boolean(args['strict-devices']),
    ringHost,
    ringPort: portOption(args, 'ring-port'),
    joinTimeoutSec: positive(args, 'join-timeout'),
    logLevel: oneOf(args, 'log-level', ['quiet', 'info', 'debug'] as const),
  });
}
