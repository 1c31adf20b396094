/**
 * How a spawner (the coordinator, or a join agent) tells a worker process who it is: its
 * bootstrap travels in the worker's environment. Written by `workerEnvironment`, read back by
 * `readWorkerBootstrap` in the worker; the variable names live only here.
 */
import { ConfigError } from '../../core/errors';
import { gpuEnvironment } from '../../devices/discover';

/** What a worker process needs before it can say hello. */
export interface WorkerBootstrap {
  controlAddress: string;
  rank: number;
  worldSize: number;
  deviceKind: 'gpu' | 'cpu';
  /** Where this worker's ring socket binds: ipc:// in the run's private folder, or tcp://. */
  ringAddress: string;
  /** The cluster key file (multi-host runs: CURVE on every socket), or null on one host. */
  keyFile: string | null;
  /**
   * The prefix of this host's shared-memory segments (fresh per attempt): on one host the data
   * plane may then be shared memory, across hosts the hierarchical plane
   * (dist/comm-thread/data-plane.ts). Null where the spawner hands out none.
   */
  shmPrefix: string | null;
  /**
   * Multi-host runs: where this worker's cross-ring socket binds (the hierarchical plane's ring
   * between hosts: the host's ring port + L + local index, docs/allreduce.md), else null.
   */
  crossRingAddress: string | null;
}

export const WORKER_ENV = {
  controlAddress: 'ALEXNET_CONTROL',
  rank: 'ALEXNET_RANK',
  worldSize: 'ALEXNET_WORLD_SIZE',
  deviceKind: 'ALEXNET_DEVICE_KIND',
  ringAddress: 'ALEXNET_RING_ADDRESS',
  keyFile: 'ALEXNET_KEY_FILE',
  shmPrefix: 'ALEXNET_SHM_PREFIX',
  crossRingAddress: 'ALEXNET_CROSS_RING_ADDRESS',
  /** The pid of the process that spawned the worker: its orphan guard compares its parent with it. */
  parentPid: 'ALEXNET_PARENT_PID',
} as const;

/** The environment for a worker process: the spawner's plus the bootstrap and the device. */
export function workerEnvironment(
  b: WorkerBootstrap,
  gpuId: string | null,
  base: NodeJS.ProcessEnv = process.env,
): NodeJS.ProcessEnv {
  return {
    ...base,
    [WORKER_ENV.controlAddress]: b.controlAddress,
    [WORKER_ENV.rank]: String(b.rank),
    [WORKER_ENV.worldSize]: String(b.worldSize),
    [WORKER_ENV.deviceKind]: b.deviceKind,
    [WORKER_ENV.ringAddress]: b.ringAddress,
    [WORKER_ENV.keyFile]: b.keyFile ?? '',
    [WORKER_ENV.shmPrefix]: b.shmPrefix ?? '',
    [WORKER_ENV.crossRingAddress]: b.crossRingAddress ?? '',
    [WORKER_ENV.parentPid]: String(process.pid),
    // One GPU per process, chosen through the environment before any GPU library starts
    // (docs/architecture.md, "Processes").
    ...gpuEnvironment(gpuId),
  };
}

/** The bootstrap a spawner put in this process's environment. */
export function readWorkerBootstrap(environment: NodeJS.ProcessEnv = process.env): WorkerBootstrap {
  const get = (name: string): string => {
    const v = environment[name];
    if (v === undefined || v === '')
      throw new ConfigError(`${name} is not set: workers are started by the coordinator (alexnet train)`);
    return v;
  };
  const count = (name: string, min: number): number => {
    const n = Number(get(name));
    if (!Number.isInteger(n) || n < min)
      throw new ConfigError(`${name} must be a whole number >= ${min}, got '${get(name)}'`);
    return n;
  };
  return {
    controlAddress: get(WORKER_ENV.controlAddress),
    rank: count(WORKER_ENV.rank, 0),
    worldSize: count(WORKER_ENV.worldSize, 1),
    deviceKind: get(WORKER_ENV.deviceKind) === 'gpu' ? 'gpu' : 'cpu',
    ringAddress: get(WORKER_ENV.ringAddress),
    keyFile: environment[WORKER_ENV.keyFile] || null,
    shmPrefix: environment[WORKER_ENV.shmPrefix] || null,
    crossRingAddress: environment[WORKER_ENV.crossRingAddress] || null,
  };
}

/** The spawner's pid as it set it, or null (then the worker takes its parent at start). */
export function readSpawnerPid(environment: NodeJS.ProcessEnv = process.env): number | null {
  const pid = Number(environment[WORKER_ENV.parentPid]);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

/**
 * Tests only: the script to run instead of the worker entry, so that a fixture worker
 * (test/dist/fixtures/faulty-worker.ts) can crash, hang or send garbage on purpose.
 */
export const TEST_WORKER_SCRIPT_ENV = 'ALEXNET_TEST_WORKER_SCRIPT';
