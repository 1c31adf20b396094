/**
 * How `--devices auto` uses a machine without GPUs on the native backend: N worker processes
 * of one oneDNN thread each (data parallel, the gradients all-reduced every step), or one
 * process with N threads (no all-reduce, but threads that do not scale perfectly).
 *
 * A model of the two, with costs measured on our 2-core machines:
 *   data parallel: step = compute(B / N) x (1 + skew) + the bytes each worker sends / rate + per-step cost
 *   threads:       step = compute(B) / (N x efficiency)
 * compute(n images) = n x 3 x forward FLOPs / the core's training FLOP rate. At 32 images per
 * core threads win for both presets: the paper's all-reduce is large, and the small preset's
 * steps are so short that the all-reduce's latency, the wait for the slower rank and the
 * loader's share of the core outweigh its tiny gradients. At 64 paper images per core the
 * all-reduce is amortised and the model picks workers (docs/benchmarks.md, "One worker with two
 * threads or two workers"). The bytes come from the run's --parallel mode and --wire-dtype
 * (wire-bytes.ts): hybrid mode's 1/17 of data mode's bytes tips the paper preset towards workers.
 */

export interface CpuCosts {
  /** Training FLOPs (3 x forward) one core runs per second, measured on the paper preset. */
  coreTrainFlopsPerSec: number;
  /** Bytes a worker sends per second through the ring, copies into and out of the fusion buffer included. */
  allReduceBytesPerSec: number;
  /** A data-parallel step's fixed cost: the all-reduce's latency and the loader's time on the core. */
  stepOverheadSec: number;
  /** The wait for the slowest rank, as a fraction of a worker's compute. */
  skewFraction: number;
  /** Speed-up of one process per added thread, as a fraction of perfect. */
  threadEfficiency: number;
}

/**
 * Measured 2026-12-01 on the 2-core machine, native backend; the figures behind each value are
 * in docs/measurements.md, "CPU layout costs".
 */
export const CPU_COSTS: CpuCosts = {
  coreTrainFlopsPerSec: 140e9,
  allReduceBytesPerSec: 0.9e9,
  stepOverheadSec: 0.015,
  skewFraction: 0.05,
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
  /** Bytes one worker would send per step in the workers layout (wire-bytes.ts). */
  wireBytes: number;
  forwardFlopsPerImage: number;
}

/**
 * What data parallelism adds to one worker's step (all-reduce, skew, fixed costs) as a fraction
 * of its compute. Threads are faster exactly when it exceeds what the threads lose: writing a
 * for the addition, c for one worker's compute (B / N images), N workers against N threads of
 * efficiency e, N e / (N c) > 1 / (c + a) holds iff a / c > (1 - e) / e.
 */
export function dataParallelOverhead(input: LayoutInput, costs: CpuCosts = CPU_COSTS): number {
  const { cores: n, globalBatch: b, wireBytes, forwardFlopsPerImage: f } = input;
  const computeSec = ((b / n) * 3 * f) / costs.coreTrainFlopsPerSec;
  return (wireBytes / costs.allReduceBytesPerSec + costs.stepOverheadSec) / computeSec + costs.skewFraction;
}

export function chooseCpuLayout(input: LayoutInput, costs: CpuCosts = CPU_COSTS): CpuLayout {
  const n = input.cores;
  if (n <= 1) return { workers: 1, threadsPerWorker: 1, reason: 'one core: one process, one thread' };
  const share = dataParallelOverhead(input, costs);
  const threadLoss = (1 - costs.threadEfficiency) / costs.threadEfficiency;
  const pct = (x: number): string => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;
  const why = `sending ${(input.wireBytes / 1e6).toFixed(1)} MB per worker every step would add ~${pct(share)} to each worker's compute, ${n} threads in one process lose ~${pct(threadLoss)}`;
  return share > threadLoss
    ? { workers: 1, threadsPerWorker: n, reason: `1 worker with ${n} oneDNN threads: ${why}` }
    : { workers: n, threadsPerWorker: 1, reason: `${n} workers with 1 oneDNN thread each: ${why}` };
}
