/**
 * Chooses and initialises the TensorFlow.js backend for this process.
 *
 * Order for `auto`: tfjs-node-gpu (when a GPU is visible), webgpu (Dawn over Vulkan, when a GPU
 * is visible and its adapter is a hardware one: webgpu/backend.ts), tfjs-node, native
 * (tfjs-backend-cpu with oneDNN kernels from our addon, native/backend.ts), wasm (with the kernel
 * patches that make it train), the pure-JS cpu backend. tfjs-node(-gpu) and webgpu (Dawn) are
 * optional dependencies: tfjs-node's install downloads libtensorflow and fails offline, so a
 * failed `require` is expected and just moves on to the next choice; the native addon is
 * optional in the same way (`make native`).
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendChoice, TrainConfig } from '../core/config';
import { ConfigError } from '../core/errors';
import { webgpuDeviceCount } from '../devices/gpu';
import { loadNative } from './native/backend';
import { patchWasmKernels } from './wasm/patches';
import { describeAdapter, loadWebgpu, oversizeTensors, webgpuAdapter } from './webgpu/backend';

export interface BackendInfo {
  /** What was asked for. */
  requested: BackendChoice;
  /** What is running: 'node-gpu' | 'webgpu' | 'node' | 'native' | 'wasm' | 'cpu'. */
  active: Exclude<BackendChoice, 'auto'>;
  /** tfjs' own backend name ('tensorflow', 'webgpu', 'native', 'wasm', 'cpu'). */
  tfName: string;
  /** Why the choices before it were passed over, for the start-up line. */
  notes: string[];
}

/** How this process will compute: it decides the `auto` order and native's thread count. */
export interface BackendOptions {
  /** A CPU-simulated device: one worker process per core, so only single-threaded choices. */
  cpuDevice?: boolean;
  /** oneDNN threads of the native backend (default 1). */
  threads?: number;
  /** webgpu may run on a software adapter (lavapipe): only when asked, never by `auto`'s choice. */
  allowSoftwareGpu?: boolean;
}

type Loader = (options: BackendOptions) => Promise<string>;

function requireNative(pkg: string): Loader {
  return async () => {
    // A plain require so that bundlers and tsc leave the optional package alone.
    require(pkg);
    await tf.setBackend('tensorflow');
    return 'tensorflow';
  };
}

async function loadWasm(): Promise<string> {
  require('@tensorflow/tfjs-backend-wasm');
  patchWasmKernels();
  if (!(await tf.setBackend('wasm'))) throw new Error('tf.setBackend("wasm") failed');
  return 'wasm';
}

async function loadCpu(): Promise<string> {
  if (!(await tf.setBackend('cpu'))) throw new Error('tf.setBackend("cpu") failed');
  return 'cpu';
}

const LOADERS: Record<BackendInfo['active'], Loader> = {
  'node-gpu': requireNative('@tensorflow/tfjs-node-gpu'),
  webgpu: (options) => loadWebgpu(options.allowSoftwareGpu ?? false),
  node: requireNative('@tensorflow/tfjs-node'),
  // One oneDNN thread unless asked: there is one worker process per core.
  native: (options) => loadNative(options.threads ?? 1),
  wasm: loadWasm,
  cpu: loadCpu,
};

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0];
}

/**
 * The order `auto` tries; node-gpu only when the caller found a GPU for this process, and only
 * single-threaded backends for a CPU-simulated device (one worker process per core: tfjs-node
 * would spread every worker over all cores).
 */
export function autoOrder(gpuVisible: boolean, cpuDevice = false): BackendInfo['active'][] {
  if (cpuDevice) return ['native', 'wasm', 'cpu'];
  return gpuVisible ? ['node-gpu', 'webgpu', 'node', 'native', 'wasm', 'cpu'] : ['node', 'native', 'wasm', 'cpu'];
}

/** What a CPU-simulated device runs for the run's --backend: a single-threaded choice, or auto among them. */
export function cpuDeviceChoice(choice: BackendChoice): BackendChoice {
  return choice === 'native' || choice === 'wasm' || choice === 'cpu' ? choice : 'auto';
}

/**
 * The backend a process on this device asks for, and how: CPU-simulated devices a
 * single-threaded one; `webgpu:N` workers webgpu, software adapters allowed (that is what the
 * request is for: the CI's simulated GPUs); GPUs the run's --backend. A single process on the
 * CPU (`singleProcess`) has every core: the run's --backend and --threads as given.
 */
export function backendRequest(
  config: Pick<TrainConfig, 'backend' | 'devices' | 'threads' | 'allowSoftwareGpu'>,
  deviceKind: 'gpu' | 'cpu',
  singleProcess = false,
): { choice: BackendChoice; options: BackendOptions } {
  if (singleProcess && deviceKind === 'cpu')
    return { choice: config.backend, options: { threads: config.threads, allowSoftwareGpu: config.allowSoftwareGpu } };
  const cpuDevice = deviceKind === 'cpu';
  const shared = webgpuDeviceCount(config.devices) !== null;
  const choice = cpuDevice ? cpuDeviceChoice(config.backend) : shared ? 'webgpu' : config.backend;
  return {
    choice,
    options: { cpuDevice, threads: config.threads, allowSoftwareGpu: config.allowSoftwareGpu || shared },
  };
}

let current: BackendInfo | null = null;

/**
 * Initialises a backend once per process. An explicit choice that fails is a ConfigError
 * (the user asked for it); `auto` falls through the list and records why.
 */
export async function initBackend(
  requested: BackendChoice,
  gpuVisible: boolean,
  options: BackendOptions = {},
): Promise<BackendInfo> {
  if (current != null) {
    if (requested === 'auto' || requested === current.active) return current;
    throw new ConfigError(`backend already initialised as ${current.active}, cannot switch to ${requested}`);
  }
  const order = requested === 'auto' ? autoOrder(gpuVisible, options.cpuDevice) : [requested];
  const notes: string[] = [];
  for (const active of order) {
    try {
      const tfName = await LOADERS[active](options);
      await tf.ready();
      current = { requested, active, tfName, notes };
      return current;
    } catch (err) {
      if (requested !== 'auto') {
        throw new ConfigError(`--backend ${requested} is not available here: ${firstLine(err)}`);
      }
      notes.push(`${active}: ${firstLine(err)}`);
    }
  }
  throw new ConfigError(`no TensorFlow.js backend could start (${notes.join('; ')})`);
}

/** The backend this process initialised (null before initBackend): the memory estimate reads it. */
export function currentBackend(): BackendInfo | null {
  return current;
}

/** Throws a ConfigError when the backend cannot hold one of these tensors (webgpu: its binding limit). */
export function assertFitsBackend(tensors: readonly { name: string; shape: readonly number[] }[]): void {
  const adapter = current?.active === 'webgpu' ? webgpuAdapter() : null;
  const problem = adapter === null ? null : oversizeTensors(adapter, tensors);
  if (problem !== null) throw new ConfigError(problem);
}

/** One line for the start of a run. */
export function describeBackend(info: BackendInfo): string {
  const passed = info.notes.length > 0 ? ` (passed over: ${info.notes.join('; ')})` : '';
  const adapter = info.active === 'webgpu' ? webgpuAdapter() : null;
  const on = adapter === null ? '' : `; adapter ${describeAdapter(adapter)}`;
  return `backend: ${info.active} [tfjs ${tf.version.tfjs}, ${info.tfName}${on}]${passed}`;
}
