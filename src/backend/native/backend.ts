/**
 * The 'native' tfjs backend: tfjs-backend-cpu with its hot kernels replaced by our N-API addon's
 * (convolutions and matrix products on oneDNN, max pooling and LRN in its own C++ loops), their
 * outputs taken from a pool of reused buffers, and the optimizer's update written in place.
 *
 * Why a backend of its own rather than native kernels over wasm: the cpu backend keeps every
 * tensor in a plain Float32Array, which the addon can read and write in place; the wasm heap
 * would need a copy in and out of every kernel (or oneDNN memory inside the wasm heap, which it
 * cannot address). Element-wise ops, the optimizer's updates, SplitV/Concat and the bias Sum run
 * on the addon too (fast-cpu-kernels.ts, kernels.ts); the rest stays on the cpu backend's JS
 * kernels.
 *
 * The addon is built by `make native` (src/backend/native/addon/build.sh) into
 * dist/native/alexnet_native.node; ALEXNET_NATIVE_ADDON overrides the path.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { NativeBackendError } from '../../core/errors';
import { projectRoot } from '../../core/project-root';
import { fastCpuKernelConfigs } from './fast-cpu-kernels';
import {
  inPlaceUpdates,
  missingAddonFunctions,
  nativeKernelConfigs,
  type DnnlAddon,
  type InPlaceUpdates,
} from './kernels';
import { attachPool, type PooledCpuBackend } from './storage-pool';

export const NATIVE_BACKEND_NAME = 'native';
const ADDON_FILE = path.join('dist', 'native', 'alexnet_native.node');

export function addonPath(): string {
  const override = process.env['ALEXNET_NATIVE_ADDON'];
  return override != null && override !== '' ? override : path.join(projectRoot(__dirname), ADDON_FILE);
}

/** One line for a failed dlopen: the missing library, or the loader's own first line. */
export function describeLoadFailure(err: unknown): string {
  const text = (err instanceof Error ? err.message : String(err)).split('\n')[0];
  const missing = /(libdnnl\.so[.\d]*): cannot open shared object file/.exec(text);
  if (missing) return `${missing[1]} not found (apt-get install libdnnl-dev)`;
  return `addon failed to load: ${text}`;
}

/** The installed oneDNN must be the one the addon was compiled against (major.minor). */
export function versionMismatch(v: { compiled: string; runtime: string }): string | null {
  const majorMinor = (s: string) => s.split('.').slice(0, 2).join('.');
  if (majorMinor(v.compiled) === majorMinor(v.runtime)) return null;
  return `addon built against oneDNN ${v.compiled} but ${v.runtime} is installed (make native rebuilds it)`;
}

let loaded: DnnlAddon | null = null;

/** Loads the addon once; every reason it cannot be used is a one-line NativeBackendError. */
export function loadAddon(file: string = addonPath()): DnnlAddon {
  if (loaded != null) return loaded;
  if (!fs.existsSync(file)) throw new NativeBackendError(`addon not built (make native)`);
  let addon: DnnlAddon;
  try {
    // A computed require: the addon is a build output, not a module tsc should resolve.
    addon = require(file) as DnnlAddon;
  } catch (err) {
    throw new NativeBackendError(describeLoadFailure(err));
  }
  const missing = missingAddonFunctions(addon);
  if (missing.length > 0)
    throw new NativeBackendError(
      `addon built from older sources, without ${missing.join(', ')} (make native rebuilds it)`,
    );
  const mismatch = versionMismatch(addon.version());
  if (mismatch != null) throw new NativeBackendError(mismatch);
  loaded = addon;
  return addon;
}

let registered = false;
let inPlace: InPlaceUpdates | null = null;

/** The optimizer updates that write in place on the native backend (null before it is registered). */
export function nativeInPlaceUpdates(): InPlaceUpdates | null {
  return inPlace;
}

/**
 * Registers the 'native' backend: a new tfjs-backend-cpu instance (its factory, so no direct
 * dependency on the package), every cpu kernel under the new name, then the native kernels
 * over them, with the JS fast paths of fast-cpu-kernels.ts for the ops left in JS. Idempotent.
 */
export function registerNativeBackend(addon: DnnlAddon): void {
  if (registered) return;
  const cpuFactory = tf.findBackendFactory('cpu');
  if (cpuFactory == null) throw new NativeBackendError('the tfjs cpu backend is not registered');
  for (const config of tf.getKernelsForBackend('cpu')) {
    tf.registerKernel({ ...config, backendName: NATIVE_BACKEND_NAME });
  }
  for (const config of [
    ...fastCpuKernelConfigs(addon, NATIVE_BACKEND_NAME),
    ...nativeKernelConfigs(addon, NATIVE_BACKEND_NAME),
  ]) {
    if (tf.getKernel(config.kernelName, NATIVE_BACKEND_NAME) != null)
      tf.unregisterKernel(config.kernelName, NATIVE_BACKEND_NAME);
    tf.registerKernel(config);
  }
  // Priority 0: never picked by tfjs on its own; initBackend chooses it explicitly. The cpu
  // backend's first write prints "Hi, looks like you are running TensorFlow.js in Node.js ...
  // install our node backend": wrong advice on this backend, and once per worker. Each instance
  // gets its buffer pool (storage-pool.ts).
  const quietFactory = () => {
    const backend = cpuFactory() as tf.KernelBackend & { firstUse?: boolean };
    backend.firstUse = false;
    attachPool(backend as unknown as PooledCpuBackend);
    return backend;
  };
  inPlace = inPlaceUpdates(addon);
  tf.registerBackend(NATIVE_BACKEND_NAME, quietFactory, 0);
  registered = true;
}

/** Loads the addon, registers the backend, sets oneDNN's threads and makes it current. */
export async function loadNative(threads: number): Promise<string> {
  const addon = loadAddon();
  registerNativeBackend(addon);
  addon.setThreads(threads);
  if (!(await tf.setBackend(NATIVE_BACKEND_NAME))) throw new NativeBackendError('tf.setBackend("native") failed');
  return NATIVE_BACKEND_NAME;
}
