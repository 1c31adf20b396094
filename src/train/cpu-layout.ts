/**
 * How `--devices auto` uses a machine without GPUs on the native backend: N worker processes
 * of one oneDNN thread each (data parallel, the gradients all-reduced every step), or one
 * process with N threads (no all-reduce, but threads that do not scale perfectly).
 *
 * A model of the two, with costs measured on our 2-core machines (docs/benchmarks.md, "One
 * worker with two threads or two workers"):
 *   data parallel: step = compute(B / N images) + all-reduce(4 x params bytes)
 *   threads:       step = compute(B images) / (N x efficiency)
 * compute(n) = n x 3 x forward FLOPs / the core's training FLOP rate. The paper's 61M
 * parameters make its all-reduce cost a large part of its compute at 32 images per core, so it
 * trains faster on threads; the small preset's 0.3M cost nothing, and it runs data parallel.
 */

export interface CpuCosts {
  /** Training FLOPs (3 x forward) one core runs per second, measured on the paper preset. */
  coreTrainFlopsPerSec: number;
  /** Bytes of gradients all-reduced per second, copies into and out of the fusion buffer included. */
  allReduceBytesPerSec: number;
  /** Speed-up of one process per added thread, as a fraction of perfect. */
  threadEfficiency: number;
}

/** Measured 2026-12-01 (docs/benchmarks.md): see CPU_COSTS' uses in chooseCpuLayout. */
export const CPU_COSTS: CpuCosts = {
  coreTrainFlopsPerSec: 140e9,
  allReduceBytesPerSec: 0.6e9,
  threadEfficiency: 0.8,
};

export interface CpuLayout {
  workers: number;
  threadsPerWorker: number;
  /** One line for the start-up log: the choice and the predicted rates behind it. */
  reason: string;
}

export interface LayoutInput {
  cores: number;
  /** The global batch: B / cores images per worker when data parallel. */
  globalBatch: number;
  params: number;
  forwardFlopsPerImage: number;
}

/**
 * The all-reduce's cost as a fraction of one worker's compute per step, when data parallel.
 * Threads are faster exactly when it exceeds what the threads lose: writing a for the
 * all-reduce, c for one worker's compute (B / N images), N workers against N threads of
 * efficiency e, N e / (N c) > 1 / (c + a) holds iff a / c > (1 - e) / e.
 */
export function allReduceShare(input: LayoutInput, costs: CpuCosts = CPU_COSTS): number {
  const { cores: n, globalBatch: b, params, forwardFlopsPerImage: f } = input;
  const computeSec = ((b / n) * 3 * f) / costs.coreTrainFlopsPerSec;
  const allReduceSec = ((4 * params * 2 * (n - 1)) / n) / costs.allReduceBytesPerSec;
  return allReduceSec / computeSec;
}

export function chooseCpuLayout(input: LayoutInput, costs: CpuCosts = CPU_COSTS): CpuLayout {
  const n = input.cores;
  if (n <= 1) return { workers: 1, threadsPerWorker: 1, reason: 'one core: one process, one thread' };
  const share = allReduceShare(input, costs);
  const threadLoss = (1 - costs.threadEfficiency) / costs.threadEfficiency;
  const pct = (x: number): string => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;
  const why = `all-reducing ${(input.params / 1e6).toFixed(1)}M parameters would add ~${pct(share)} to each worker's step, ${n} threads in one process lose ~${pct(threadLoss)}`;
  return share > threadLoss
    ? { workers: 1, threadsPerWorker: n, reason: `1 worker with ${n} oneDNN threads: ${why}` }
    : { workers: n, threadsPerWorker: 1, reason: `${n} workers with 1 oneDNN thread each: ${why}` };
}
