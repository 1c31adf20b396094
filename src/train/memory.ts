/**
 * How many images one forward+backward may hold: a memory estimate per backend, pure so that
 * it is tested without allocating anything. A worker's share of the batch that does not fit
 * runs in micro-batches of this size (gradients.ts's localGradients adds their gradients before the all-reduce).
 *
 * The estimate is deliberately coarse: bytes per image = the float32 outputs of every layer
 * times a factor for what autodiff keeps alive and what the backward pass allocates on top
 * (unfused bias/ReLU copies, LRN's saved norms, each layer's input gradient), measured per
 * backend on the paper preset; fixed bytes = the parameters times the copies a step holds.
 */
import type { BackendChoice } from '../core/config';
import { ConfigError } from '../core/errors';
import { countParams, layerShapes } from '../model/alexnet';
import type { ModelSpec } from '../model/presets';

export const GIB = 1024 ** 3;

/** wasm32's address space: tfjs' wasm heap cannot grow past it, whatever the machine has. */
export const WASM_HEAP_BYTES = 4 * GIB;

/** Plan for this share of a budget: the allocator's slack and whatever the estimate misses. */
const SAFETY = 0.8;

/**
 * Live bytes per image per byte of layer outputs during forward+backward, and parameter-sized
 * buffers alive in a step besides the optimizer state (weights, gradients, the fusion buffer and
 * its unpacked copy, the update's temporaries, the allocator's leftovers). Measured on paper
 * steps with bench/memory-probe.ts (1000 classes, 61M parameters, 2026-12-01):
 * - native: peak RSS 1.7 GB at batch 32, 3.6 GB at 128: 20 MB per image (factor 3.6), about
 *   4 parameter copies besides Node itself;
 * - wasm: the heap 2508 MiB at batch 16, 3433 MiB at 64: 19.3 MiB per image (factor 3.6) on
 *   top of 2200 MiB, 9.4 parameter copies.
 * Rounded up; cpu and node (not measured) get a margin over native's.
 */
export const ACTIVATION_FACTOR: Record<MemoryBackend, number> = {
  native: 4,
  wasm: 4,
  cpu: 6,
  node: 6,
  'node-gpu': 6,
  webgpu: 6,
};

export const PARAM_COPIES: Record<MemoryBackend, number> = {
  native: 5,
  wasm: 9,
  cpu: 6,
  node: 6,
  'node-gpu': 6,
  webgpu: 6,
};

/** The backends that run (BackendInfo['active'] in src/backend). */
export type MemoryBackend = Exclude<BackendChoice, 'auto'>;

/** What a step of this model costs in bytes: per image, and fixed. */
export interface StepMemory {
  /** Float32 elements of the input image and every layer's output, per image. */
  activationElements: number;
  bytesPerImage: number;
  /** Weights, gradients, optimizer state and the buffers around the all-reduce. */
  fixedBytes: number;
}

/** Float32 elements one image carries through the network (input and every layer's output). */
export function activationElements(spec: ModelSpec, numClasses: number): number {
  const input = spec.inputSize * spec.inputSize * 3;
  return layerShapes(spec, numClasses).reduce((sum, row) => sum + row.outputShape.reduce((a, b) => a * b, 1), input);
}

/** The step's memory for a model on a backend; `optimizerSlots`: 1 for momentum SGD, 2 for Adam. */
export function stepMemory(
  spec: ModelSpec,
  numClasses: number,
  backend: MemoryBackend,
  optimizerSlots: number,
): StepMemory {
  const elements = activationElements(spec, numClasses);
  return {
    activationElements: elements,
    bytesPerImage: 4 * elements * ACTIVATION_FACTOR[backend],
    fixedBytes: 4 * countParams(spec, numClasses) * (PARAM_COPIES[backend] + optimizerSlots),
  };
}

/** What the machine offers one worker, as the caller read it (os.totalmem(), os.freemem(), rss). */
export interface MachineMemory {
  totalBytes: number;
  freeBytes: number;
  /** Worker processes sharing this machine's memory. */
  localWorkers: number;
}

export interface MemoryBudget {
  bytes: number;
  /** Where the limit comes from, for the start-up line. */
  source: string;
}

/**
 * Bytes one worker's step may use. wasm: its 4 GiB heap (and the machine's share, if smaller).
 * The others hold tensors in the process (native and cpu in the JS heap's ArrayBuffers, node in
 * libtensorflow's allocator): the machine's memory, split over the local workers. node-gpu and webgpu keep
 * activations on the GPU, whose memory is not read here: no limit (use --micro-batch there).
 */
export function memoryBudget(backend: MemoryBackend, machine: MachineMemory): MemoryBudget {
  const workers = Math.max(1, machine.localWorkers);
  // Split evenly: the other local workers start at the same time, their memory not yet taken.
  const machineShare = Math.min(machine.totalBytes / workers, machine.freeBytes / workers);
  const share = workers > 1 ? `free memory split over ${workers} local workers` : 'free memory';
  if (backend === 'node-gpu' || backend === 'webgpu') return { bytes: Infinity, source: 'GPU memory is not estimated' };
  if (backend === 'wasm' && WASM_HEAP_BYTES < machineShare)
    return { bytes: WASM_HEAP_BYTES, source: 'the 4 GiB wasm heap' };
  return { bytes: machineShare, source: share };
}

export function formatGiB(bytes: number): string {
  return bytes < GIB / 10 ? `${(bytes / 2 ** 20).toFixed(0)} MiB` : `${(bytes / GIB).toFixed(1)} GiB`;
}

export interface MicroBatchChoice {
  /** Images per forward+backward (>= 1; equal to the share when it fits whole). */
  size: number;
  /** One line for the start of the run: the size and why. */
  reason: string;
}

/**
 * The micro-batch of a worker whose share of the batch is `share` images: the whole share when
 * it fits the budget, else the fewest micro-batches that fit, of even sizes. `forced`
 * (--micro-batch N > 0) wins. Throws a ConfigError, before any step, when not even one image fits.
 */
export function chooseMicroBatch(
  share: number,
  forced: number,
  memory: StepMemory,
  budget: MemoryBudget,
): MicroBatchChoice {
  const whole = Math.max(1, share);
  const need = (n: number) => memory.fixedBytes + n * memory.bytesPerImage;
  const limit = Number.isFinite(budget.bytes) ? `budget ${formatGiB(budget.bytes)} (${budget.source})` : budget.source;
  const estimate = `~${formatGiB(need(whole))} for ${whole} image${whole === 1 ? '' : 's'}, ${limit}`;
  if (forced > 0) {
    const size = Math.min(forced, whole);
    return {
      size,
      reason: `micro-batch ${size} of ${whole} images per worker (--micro-batch ${forced}; estimate ${estimate})`,
    };
  }
  const usable = budget.bytes * SAFETY;
  if (need(1) > usable) {
    throw new ConfigError(
      `one image does not fit this backend's memory: a step needs ~${formatGiB(need(1))} at 1 image (weights and optimizer ~${formatGiB(memory.fixedBytes)}), ` +
        `usable ${formatGiB(usable)} of ${budget.source}; use a smaller --preset or another --backend`,
    );
  }
  const largest = Math.floor((usable - memory.fixedBytes) / memory.bytesPerImage);
  // As few passes as the largest size allows, of even sizes: 128 by at most 69 is 64 + 64, not 69 + 59.
  const size = Math.ceil(whole / Math.ceil(whole / Math.min(whole, largest)));
  if (size >= whole) return { size: whole, reason: `micro-batch ${whole}: the worker's whole share (${estimate})` };
  return {
    size,
    reason: `micro-batch ${size} of ${whole} images per worker: the whole share does not fit (${estimate}); --micro-batch N forces a size`,
  };
}

/** Sizes of the micro-batches that cover `count` images, in order: [4, 4, 2] for 10 by 4. */
export function microBatchSizes(count: number, size: number): number[] {
  if (!(size >= 1)) throw new RangeError(`micro-batch size must be >= 1, got ${size}`);
  const sizes: number[] = [];
  for (let start = 0; start < count; start += size) sizes.push(Math.min(size, count - start));
  return sizes;
}
