/**
 * The arithmetic and the tables of the training benchmark (bench/train.ts), pure so that the
 * tests hold them to hand-made step reports: repetitions out of step end times, the per-step
 * breakdown, scaling efficiency, and the markdown tables.
 */
import { formatTable, type Align } from '../src/core/text-format';
import { STEP_TIMINGS, type StepReportMessage } from '../src/dist/control/messages';
import { busBandwidth } from '../src/dist/ring/ring-schedule';
import { median } from './harness';

export type StepPart = (typeof STEP_TIMINGS)[number];

/** One rank's report of one step, stamped with when it arrived (ms, one clock per run). */
export interface StepSample {
  rank: number;
  step: number;
  atMs: number;
  /** Images in the step over all ranks (the count rides the all-reduce). */
  images: number;
  partsMs: Record<StepPart, number>;
  /** The reporting worker's peak resident memory so far. */
  peakRssMb: number;
  /** Bytes the rank sent on the ring in this step (absent in older result files). */
  wireBytes?: number;
}

/** The largest peak resident memory any worker reported: what one worker needs. */
export function peakRssPerWorkerMb(samples: readonly StepSample[]): number {
  return samples.reduce((peak, s) => Math.max(peak, s.peakRssMb), 0);
}

export function sampleOf(m: StepReportMessage, atMs: number): StepSample {
  return {
    rank: m.rank,
    step: m.step,
    atMs,
    images: m.images,
    partsMs: { ...m.timingsMs },
    peakRssMb: m.peakRssMb,
    wireBytes: m.wireBytes,
  };
}

/** Warm-up steps, then `reps` repetitions of `stepsPerRep` consecutive steps each. */
export interface RepPlan {
  warmupSteps: number;
  stepsPerRep: number;
  reps: number;
}

export function totalSteps(plan: RepPlan): number {
  return plan.warmupSteps + plan.stepsPerRep * plan.reps;
}

/** Each rank's samples by step number; throws when a step of the plan is missing. */
function stepsOf(samples: readonly StepSample[], rank: number, plan: RepPlan): Map<number, StepSample> {
  const byStep = new Map(samples.filter((s) => s.rank === rank).map((s) => [s.step, s]));
  for (let step = plan.warmupSteps; step <= totalSteps(plan); step++) {
    if (!byStep.has(step)) throw new Error(`rank ${rank} reported no step ${step}: the run ended early`);
  }
  return byStep;
}

/**
 * Images per second of each repetition, from rank 0's step ends: repetition r runs from the end
 * of step w + r*k to the end of step w + (r+1)*k (w warm-up steps, k steps per repetition), so
 * it includes everything between steps (data wait, progress, checksums), as a user's run does.
 */
export function repImagesPerSec(samples: readonly StepSample[], plan: RepPlan): number[] {
  if (plan.warmupSteps < 1)
    throw new RangeError('warmupSteps must be >= 1: the first repetition starts where the warm-up ends');
  const byStep = stepsOf(samples, 0, plan);
  const at = (step: number): StepSample => byStep.get(step) as StepSample;
  return Array.from({ length: plan.reps }, (_, r) => {
    const first = plan.warmupSteps + r * plan.stepsPerRep;
    let images = 0;
    for (let s = first + 1; s <= first + plan.stepsPerRep; s++) images += at(s).images;
    return (images / (at(first + plan.stepsPerRep).atMs - at(first).atMs)) * 1000;
  });
}

/** Mean milliseconds per measured step; the parts and `otherMs` add up to `stepMs`. */
export interface Breakdown {
  stepMs: number;
  partsMs: Record<StepPart, number>;
  /** Between the timed parts: progress, checksums, the report itself. */
  otherMs: number;
  /**
   * The all-reduce of the last rank to reach it (the per-step minimum over ranks): the transfer
   * and the additions alone. The rest of `partsMs.reduceMs` is ranks waiting for a slower one.
   */
  reduceLastInMs: number;
}

/** The mean of each part over the measured steps, averaged over ranks. */
export function stepBreakdown(samples: readonly StepSample[], plan: RepPlan): Breakdown {
  const ranks = [...new Set(samples.map((s) => s.rank))].sort((a, b) => a - b);
  const byRank = ranks.map((rank) => stepsOf(samples, rank, plan));
  const at = (r: number, step: number): StepSample => byRank[r].get(step) as StepSample;
  const partsMs = { dataWaitMs: 0, computeMs: 0, copyMs: 0, reduceMs: 0, updateMs: 0 };
  let stepMs = 0;
  let reduceLastInMs = 0;
  const steps = plan.stepsPerRep * plan.reps;
  for (let s = plan.warmupSteps + 1; s <= totalSteps(plan); s++) {
    reduceLastInMs += Math.min(...ranks.map((_, r) => at(r, s).partsMs.reduceMs)) / steps;
    for (let r = 0; r < ranks.length; r++) {
      stepMs += (at(r, s).atMs - at(r, s - 1).atMs) / (steps * ranks.length);
      for (const part of STEP_TIMINGS) partsMs[part] += at(r, s).partsMs[part] / (steps * ranks.length);
    }
  }
  return { stepMs, partsMs, otherMs: stepMs - STEP_TIMINGS.reduce((a, p) => a + partsMs[p], 0), reduceLastInMs };
}

/** n-worker throughput over n times the 1-worker throughput at the same per-worker batch: 1 is perfect. */
export function scalingEfficiency(oneWorkerImagesPerSec: number, imagesPerSec: number, workers: number): number {
  return imagesPerSec / (workers * oneWorkerImagesPerSec);
}

/** A throughput with the spread of its repetitions. */
export interface Throughput {
  repImagesPerSec: number[];
  /** The median repetition. */
  imagesPerSec: number;
}

export function throughputOf(repImagesPerSec: number[]): Throughput {
  return { repImagesPerSec, imagesPerSec: median(repImagesPerSec) };
}

export interface OursResult extends Throughput {
  breakdown: Breakdown;
  /** Every rank's report of every step, for analyses the tables do not make (rank skew, outliers). */
  samples: StepSample[];
  backend: string;
  /** Peak resident memory of the run's own process (the whole model with one worker; the coordinator with more). */
  maxRssMb: number;
  /** The largest peak resident memory of one worker (reported with its steps); absent in older result files. */
  workerPeakRssMb?: number;
  command: string;
}

export interface TorchResult extends Throughput {
  params: number;
  torch: string;
  blas: string[];
}

export interface TrainRow {
  preset: string;
  /** --backend of our runs (absent in files from before it was recorded: wasm). */
  backend?: string;
  workers: number;
  batchPerWorker: number;
  /** Trainable parameters at the benchmark's class count (the all-reduced floats). */
  params: number;
  plan: RepPlan;
  /** 1-minute load average before and after the row's runs. */
  loadAverage: [number, number];
  ours: OursResult;
  /** The PyTorch reference, or why it did not run. */
  torch: TorchResult | string;
}

const fixed = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');
const imagesCell = (t: Throughput): string => {
  const digits = t.imagesPerSec < 100 ? 2 : 1;
  return `${fixed(t.imagesPerSec, digits)} (${fixed(Math.min(...t.repImagesPerSec), digits)}-${fixed(Math.max(...t.repImagesPerSec), digits)})`;
};

export const backendOfRow = (r: TrainRow): string => r.backend ?? 'wasm';

/** The 1-worker row of the same preset, backend and per-worker batch. */
function baselineOf(rows: readonly TrainRow[], row: TrainRow): TrainRow | undefined {
  return rows.find(
    (r) =>
      r.preset === row.preset &&
      backendOfRow(r) === backendOfRow(row) &&
      r.batchPerWorker === row.batchPerWorker &&
      r.workers === 1,
  );
}

/**
 * Several runs of the benchmark as one (the native and the wasm pass of `make bench`). A row
 * without its own PyTorch figure (a pass run with --no-torch) takes the one measured for the same
 * preset, workers and batch in another pass.
 */
export function mergeTrainResults(results: readonly TrainBenchJson[]): TrainBenchJson {
  const rows = results.flatMap((r) => r.rows);
  const torchFor = (row: TrainRow): TrainRow['torch'] =>
    typeof row.torch !== 'string'
      ? row.torch
      : (rows.find(
          (o) =>
            o.preset === row.preset &&
            o.workers === row.workers &&
            o.batchPerWorker === row.batchPerWorker &&
            typeof o.torch !== 'string',
        )?.torch ?? row.torch);
  return {
    ...results[0],
    command: results.map((r) => r.command).join('`, then `'),
    torchNote: results.every((r) => r.torchNote !== null) ? results[0].torchNote : null,
    rows: rows.map((row) => ({ ...row, torch: torchFor(row) })),
  };
}

function efficiencyCell(rows: readonly TrainRow[], row: TrainRow, pick: (r: TrainRow) => Throughput | string): string {
  const base = baselineOf(rows, row);
  const mine = pick(row);
  const theirs = base && pick(base);
  if (row.workers === 1 || theirs === undefined || typeof mine === 'string' || typeof theirs === 'string') return '-';
  return fixed(scalingEfficiency(theirs.imagesPerSec, mine.imagesPerSec, row.workers), 2);
}

/** img/s (median, and the range of the repetitions), ratio to PyTorch, scaling efficiency. */
export function throughputTable(rows: readonly TrainRow[]): string {
  return formatTable(
    [
      'preset',
      'backend',
      'workers',
      'batch/worker',
      'ours img/s (range)',
      'PyTorch img/s (range)',
      'ours / PyTorch',
      'ours scaling eff.',
      'PyTorch scaling eff.',
      'peak RSS per worker',
      'load avg',
    ],
    rows.map((r) => [
      r.preset,
      backendOfRow(r),
      r.workers,
      r.batchPerWorker,
      imagesCell(r.ours),
      typeof r.torch === 'string' ? 'not run' : imagesCell(r.torch),
      typeof r.torch === 'string' ? '-' : `${fixed(r.ours.imagesPerSec / r.torch.imagesPerSec, 2)}x`,
      efficiencyCell(rows, r, (x) => x.ours),
      efficiencyCell(rows, r, (x) => x.torch),
      r.ours.workerPeakRssMb != null ? `${fixed(r.ours.workerPeakRssMb / 1024, 2)} GiB` : '-',
      `${fixed(r.loadAverage[0], 1)}-${fixed(r.loadAverage[1], 1)}`,
    ]),
    ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
}

/** Bytes the ring all-reduces each step: the gradients plus the 5 metric slots (step.ts). */
export function fusionBytes(params: number): number {
  return (params + 5) * 4;
}

/** Milliseconds per step by part (mean over the measured steps and the ranks). */
export function breakdownTable(rows: readonly TrainRow[]): string {
  return formatTable(
    [
      'preset',
      'backend',
      'workers',
      'step ms',
      'data wait',
      'fwd+bwd',
      'grad copy-out',
      'all-reduce',
      'of which skew wait',
      'update',
      'other',
      'busbw GB/s (last in)',
    ],
    rows.map((r) => {
      const b = r.ours.breakdown;
      const lastInSec = b.reduceLastInMs / 1000;
      const busbw =
        r.workers > 1 && lastInSec > 0
          ? fixed(busBandwidth(fusionBytes(r.params), lastInSec, r.workers) / 1e9, 2)
          : '-';
      const skew = r.workers > 1 ? fixed(b.partsMs.reduceMs - b.reduceLastInMs, 1) : '-';
      const [dataWait, compute, copy, reduce, update] = STEP_TIMINGS.map((p) => fixed(b.partsMs[p], 1));
      return [
        r.preset,
        backendOfRow(r),
        r.workers,
        fixed(b.stepMs, 1),
        dataWait,
        compute,
        copy,
        reduce,
        skew,
        update,
        fixed(b.otherMs, 1),
        busbw,
      ];
    }),
    ['left', 'left', ...Array<Align>(10).fill('right')],
  );
}

export interface TrainBenchJson {
  date: string;
  machine: string;
  command: string;
  classes: number;
  /** Why the PyTorch reference did not run, or null. */
  torchNote: string | null;
  rows: TrainRow[];
}

/** The report as markdown: the context line, both tables, and what the reference used. */
export function trainMarkdown(result: TrainBenchJson, heading = '#'): string {
  const torchRow = result.rows.map((r) => r.torch).find((t): t is TorchResult => typeof t !== 'string');
  const plans = [
    ...new Set(
      result.rows.map(
        (r) => `${r.preset}: ${r.plan.warmupSteps} warm-up step(s), ${r.plan.reps} x ${r.plan.stepsPerRep} step(s)`,
      ),
    ),
  ];
  const loads = result.rows.flatMap((r) => r.loadAverage);
  return [
    `${heading} training throughput (${result.machine}; ${result.date})`,
    '',
    `\`${result.command}\`; ${result.classes} classes of synthetic JPEGs; median of repetitions (${plans.join('; ')}); ` +
      `1-minute load average ${Math.min(...loads).toFixed(2)}-${Math.max(...loads).toFixed(2)} during the runs.`,
    torchRow
      ? `PyTorch ${torchRow.torch}, 1 thread per process, random in-memory inputs, BLAS ${torchRow.blas.join(', ') || 'unknown'}.`
      : `PyTorch reference: ${result.torchNote ?? 'not run'}.`,
    '',
    throughputTable(result.rows),
    '',
    'Milliseconds per step (ours; mean over the measured steps and the workers):',
    '',
    breakdownTable(result.rows),
  ].join('\n');
}
