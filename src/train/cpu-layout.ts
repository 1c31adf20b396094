/**
 * How `--devices auto` uses a machine without GPUs on the native backend: N worker processes
 * of one oneDNN thread each (data parallel, the gradients all-reduced every step), or one
 * process with N threads (no all-reduce, but threads that do not scale perfectly).
 *
 * A model of the two, with costs measured on our 2-core machines:
 *   data parallel: step = compute(B / N) x slowdown x (1 + skew) + the bytes each worker sends / rate + per-step cost
 *   threads:       step = compute(B) / (N x efficiency)
 * compute(n images) = n x 3 x forward FLOPs / the core's training FLOP rate; slowdown is how much
 * the worker processes slow each other's compute. On the 2-core AMD EPYC machines that is 2x (a
 * paper step's forward+backward: 885 ms alone, 1,784 ms beside another worker; two threads of
 * one process lose only 20%), so threads win whatever the data plane. Where cores compute
 * independently (slowdown 1), the plane decides: shared memory's cheap all-reduce tips the paper
 * preset at 32 images per core to workers, the ZeroMQ ring's does not (docs/benchmarks.md, "One
 * worker with two threads or two workers"). The bytes come from the run's --parallel mode and
 * --wire-dtype (wire-bytes.ts).
 */

export interface CpuCosts {
  /** Training FLOPs (3 x forward) one core runs per second, measured on the paper preset. */
  coreTrainFlopsPerSec: number;
  /** Bytes a worker sends per second through the data plane, copies into and out of the fusion buffer included. */
  allReduceBytesPerSec: number;
  /** A data-parallel step's fixed cost: the all-reduce's latency and the loader's time on the core. */
  stepOverheadSec: number;
  /** The wait for the slowest rank, as a fraction of a worker's compute. */
  skewFraction: number;
  /** Speed-up of one process per added thread, as a fraction of perfect. */
  threadEfficiency: number;
  /**
   * How much longer a worker's forward+backward takes while the other workers compute beside it
   * (1: cores that compute independently). Processes share the memory system and caches, and on
   * some machines they slow each other far more than threads of one process do.
   */
  concurrentSlowdown: number;
}

/** The data planes a layout can run on (dist/comm-thread/data-plane.ts). */
export type PlaneKind = 'shm' | 'zmq';

/**
 * Measured on the 2-core machines, native backend; the figures behind each value are in
 * docs/measurements.md, "CPU layout costs".
 */
const ZMQ_COSTS: CpuCosts = {
  coreTrainFlopsPerSec: 140e9,
  allReduceBytesPerSec: 0.9e9,
  stepOverheadSec: 0.015,
  skewFraction: 0.05,
  threadEfficiency: 0.8,
  concurrentSlowdown: 2.0,
};

export const CPU_COSTS: Record<PlaneKind, CpuCosts> = {
  zmq: ZMQ_COSTS,
  // The copy into the segment, the reduction and the unpacking: memory speed, and no socket latency.
  shm: { ...ZMQ_COSTS, allReduceBytesPerSec: 3e9, stepOverheadSec: 0.012 },
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
  /** What would carry the workers' bytes. */
  plane: PlaneKind;
}

/**
 * What data parallelism adds to one worker's step (the others' interference s, skew k, the
 * all-reduce and fixed costs a) as a fraction of its compute c (B / N images alone): the step
 * takes c s (1 + k) + a. Threads are faster exactly when it exceeds what the threads lose: N
 * threads of efficiency e take c / e, and c s (1 + k) + a > c / e iff s (1 + k) - 1 + a / c >
 * (1 - e) / e.
 */
export function dataParallelOverhead(input: LayoutInput, costs: CpuCosts = CPU_COSTS[input.plane]): number {
  const { cores: n, globalBatch: b, wireBytes, forwardFlopsPerImage: f } = input;
  const computeSec = ((b / n) * 3 * f) / costs.coreTrainFlopsPerSec;
  const addedSec = wireBytes / costs.allReduceBytesPerSec + costs.stepOverheadSec;
  return costs.concurrentSlowdown * (1 + costs.skewFraction) - 1 + addedSec / computeSec;
}

export function chooseCpuLayout(input: LayoutInput, costs: CpuCosts = CPU_COSTS[input.plane]): CpuLayout {
  const n = input.cores;
  if (n <= 1) return { workers: 1, threadsPerWorker: 1, reason: 'one core: one process, one thread' };
  const share = dataParallelOverhead(input, costs);
  const threadLoss = (1 - costs.threadEfficiency) / costs.threadEfficiency;
  const pct = (x: number): string => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;
  const plane = input.plane === 'shm' ? 'shared memory' : 'the ZeroMQ ring';
  const mb = (input.wireBytes / 1e6).toFixed(1);
  const why = `${n} workers would each take ~${pct(share)} longer than one computing alone (each other's compute beside them, the wait for the slower one, ${mb} MB per step through ${plane}), ${n} threads in one process lose ~${pct(threadLoss)}`;
  return share > threadLoss
    ? { workers: 1, threadsPerWorker: n, reason: `1 worker with ${n} oneDNN threads: ${why}` }
    : { workers: n, threadsPerWorker: 1, reason: `${n} workers with 1 oneDNN thread each: ${why}` };
}

/**
 * `--devices auto` with an explicit `--threads T` on C cores: floor(C / T) workers (at least
 * one) of T threads each, so the threads never outnumber the cores. One worker per core with T
 * threads each would put C x T OpenMP threads on C cores, whose barriers then wait on threads
 * that are not running: the default recipe with --threads 2 on 2 cores ran at 260 img/s that
 * way, 1,442 as one worker (docs/measurements.md, "CPU layout costs").
 */
export function layoutForThreads(cores: number, threads: number): CpuLayout {
  const workers = Math.max(1, Math.floor(cores / threads));
  const used = workers * threads;
  const fit =
    used <= cores
      ? `${used} of ${cores} cores busy`
      : `more threads than the ${cores} cores: they will wait on each other`;
  return {
    workers,
    threadsPerWorker: threads,
    reason: `${workers} worker(s) with ${threads} oneDNN threads each (--threads ${threads}; ${fit})`,
  };
}
