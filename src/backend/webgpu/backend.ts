/**
 * The webgpu backend: @tensorflow/tfjs-backend-webgpu on Dawn (npm's `webgpu`, which ships
 * dawn.node prebuilt), over the machine's Vulkan driver. Any GPU with a Vulkan driver runs it,
 * with no CUDA or cuDNN version to match; Mesa's software Vulkan device (lavapipe) runs it too,
 * slowly, which is what makes the GPU path testable on a machine without a GPU.
 *
 * A software adapter is used only when asked for (allowSoftware): `auto` must never pick a
 * CPU emulation of a GPU over the native CPU backend, which is far faster.
 *
 * In Node this backend cannot read tensors synchronously (its readSync needs OffscreenCanvas):
 * every readback goes through ../readback.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { isSoftwareAdapter, type GpuAdapterInfo } from '../../devices/gpu';
import { installPolitePolling } from './polling';

interface DawnAdapter {
  readonly info: GpuAdapterInfo;
  readonly isFallbackAdapter?: boolean;
  readonly limits: { readonly maxStorageBufferBindingSize: number };
}

interface DawnGpu {
  requestAdapter(options?: { powerPreference?: 'high-performance' | 'low-power' }): Promise<DawnAdapter | null>;
}

interface DawnModule {
  create(flags: string[]): DawnGpu;
  globals: object;
}

/** The adapter this process runs on, and whether it is a CPU emulation. */
export interface WebgpuAdapter {
  info: GpuAdapterInfo;
  software: boolean;
  /**
   * The largest buffer a kernel can bind, in bytes. tfjs binds each tensor whole, and a bigger
   * one is not an error there: the kernel reads zeros. Lavapipe allows 128 MiB, less than the
   * paper's fc6 weight (144 MiB); discrete GPUs' Vulkan drivers typically allow 2-4 GiB.
   */
  maxBindingBytes: number;
}

/**
 * `webgpu` is an ES module and this project compiles to CommonJS, where tsc would turn a plain
 * `import()` into a `require()` that cannot load it; a Function keeps the real dynamic import.
 */
const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

function isDawnModule(m: unknown): m is DawnModule {
  return (
    typeof m === 'object' &&
    m !== null &&
    typeof (m as DawnModule).create === 'function' &&
    typeof (m as DawnModule).globals === 'object'
  );
}

/** "mesa llvmpipe: Mesa 25.0.7 (LLVM 15.0.6) (software)": the start-up line's adapter. */
export function describeAdapter(adapter: WebgpuAdapter): string {
  const { vendor, description, device } = adapter.info;
  return `${vendor || 'unknown vendor'} ${description || device || 'unnamed adapter'} (${adapter.software ? 'software' : 'hardware'})`;
}

let gpu: DawnGpu | null = null;

/** Dawn, once per process, as `navigator.gpu` (where tfjs-backend-webgpu looks for it). */
async function dawn(): Promise<DawnGpu> {
  if (gpu != null) return gpu;
  let mod: unknown;
  try {
    mod = await importEsm('webgpu');
  } catch (err) {
    throw new Error(
      `npm package 'webgpu' (Dawn) is not installed (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`,
    );
  }
  if (!isDawnModule(mod)) throw new Error("npm package 'webgpu' does not export create() and globals");
  Object.assign(globalThis, mod.globals);
  // Dawn polls for finished GPU work with setImmediate, spinning a core while it waits.
  installPolitePolling();
  // Vulkan only: Dawn's other Linux backends (OpenGL ES) lack what tfjs' kernels need.
  gpu = mod.create(process.platform === 'linux' ? ['backend=vulkan'] : []);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  return gpu;
}

/** The adapter tfjs-backend-webgpu will take (it asks for high-performance too), or null. */
export async function probeAdapter(): Promise<WebgpuAdapter | null> {
  const adapter = await (await dawn()).requestAdapter({ powerPreference: 'high-performance' });
  if (adapter == null) return null;
  // Dawn's GPUAdapterInfo keeps its fields as getters on the prototype: copy them by name.
  const { vendor, architecture, device, description } = adapter.info;
  const info: GpuAdapterInfo = {
    vendor,
    architecture,
    device,
    description,
    isFallbackAdapter: adapter.info.isFallbackAdapter ?? adapter.isFallbackAdapter,
  };
  return { info, software: isSoftwareAdapter(info), maxBindingBytes: adapter.limits.maxStorageBufferBindingSize };
}

let active: WebgpuAdapter | null = null;

/** The adapter of this process' webgpu backend (null when another backend runs). */
export function webgpuAdapter(): WebgpuAdapter | null {
  return active;
}

/**
 * Starts tfjs' webgpu backend. Throws (a plain Error: initBackend words it for the user) when
 * Dawn or a Vulkan adapter is missing, or when the only adapter is a software one and
 * allowSoftware is false.
 */
export async function loadWebgpu(allowSoftware: boolean): Promise<string> {
  const adapter = await probeAdapter();
  if (adapter == null) throw new Error('Dawn found no Vulkan adapter (no GPU driver, or no Vulkan ICD installed)');
  if (adapter.software && !allowSoftware) {
    throw new Error(
      `the only adapter is a software one (${describeAdapter(adapter)}); --allow-software-gpu uses it anyway`,
    );
  }
  // Registers the 'webgpu' backend factory; it must see navigator.gpu, set by dawn() above.
  require('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tf.setBackend("webgpu") failed');
  active = adapter;
  return 'webgpu';
}

/**
 * Null when every tensor fits the adapter's binding limit, else which do not, as a sentence
 * for a ConfigError: a model that does not fit must fail before its first step, not train on
 * zeros (see maxBindingBytes).
 */
export function oversizeTensors(
  adapter: WebgpuAdapter,
  tensors: readonly { name: string; shape: readonly number[] }[],
): string | null {
  const over = tensors.filter((t) => 4 * t.shape.reduce((a, b) => a * b, 1) > adapter.maxBindingBytes);
  if (over.length === 0) return null;
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
  const list = over
    .map((t) => `${t.name} [${t.shape.join('x')}] ${mib(4 * t.shape.reduce((a, b) => a * b, 1))}`)
    .join(', ');
  return `the webgpu adapter ${describeAdapter(adapter)} binds at most ${mib(adapter.maxBindingBytes)} per tensor, and ${list} ${over.length === 1 ? 'is' : 'are'} larger: use a smaller preset or another backend`;
}
