/**
 * The dashboard's numbers, as small pure functions of what a run's files hold: the curves'
 * downsampling, images/s and the ETA from steps.jsonl, and the all-reduce's split into
 * transfer and skew wait from workers.jsonl.
 */
import type { StepRecord, WorkerRecord } from '../train/run/run-log';

/** Columns of equal length; column 0 is x. */
export type Columns = number[][];

/** Mean of the finite values; NaN when there are none (a diverged loss stays visible as a gap). */
function finiteMean(values: readonly number[], from: number, to: number): number {
  let sum = 0;
  let n = 0;
  for (let i = from; i < to; i++) {
    if (Number.isFinite(values[i])) {
      sum += values[i];
      n++;
    }
  }
  return n === 0 ? NaN : sum / n;
}

/**
 * At most `maxPoints` rows: consecutive rows averaged in buckets of equal size (the last one
 * may be shorter), so a curve of a million steps costs what one of `maxPoints` does and keeps
 * its shape (a bucket's mean is a smoothed loss, not a random sample of a noisy one).
 * Shorter columns come back as copies.
 */
export function downsample(columns: Columns, maxPoints: number): Columns {
  const n = columns[0]?.length ?? 0;
  if (n <= maxPoints) return columns.map((c) => c.slice());
  const bucket = Math.ceil(n / Math.max(1, maxPoints));
  return columns.map((c) => {
    const out: number[] = [];
    for (let from = 0; from < n; from += bucket) out.push(finiteMean(c, from, Math.min(n, from + bucket)));
    return out;
  });
}

/**
 * Images/s of each steps.jsonl line: its images over the time since the previous line. NaN for
 * the first line and for the first of an epoch (validation ran in between).
 */
export function imagesPerSec(steps: readonly StepRecord[]): number[] {
  return steps.map((s, i) => {
    const prev = steps[i - 1];
    if (prev === undefined || prev.epoch !== s.epoch) return NaN;
    const sec = (s.timeMs - prev.timeMs) / 1000;
    return sec > 0 ? s.train.count / sec : NaN;
  });
}

/** How far back the ETA's rate looks, in steps.jsonl lines: recent speed, smoothed. */
const ETA_WINDOW = 20;

/**
 * Seconds left until `totalEpochs`, at the pace of the last ETA_WINDOW lines (an epoch boundary
 * inside the window counts its validation too); null until there are two lines.
 */
export function etaSeconds(steps: readonly StepRecord[], totalEpochs: number): number | null {
  const last = steps[steps.length - 1];
  const ref = steps[Math.max(0, steps.length - 1 - ETA_WINDOW)];
  if (last === undefined || ref === last || last.epochs <= ref.epochs) return null;
  const msPerEpoch = (last.timeMs - ref.timeMs) / (last.epochs - ref.epochs);
  return Math.max(0, ((totalEpochs - last.epochs) * msPerEpoch) / 1000);
}

/** One rank's step timings at one logged step, with the all-reduce split in two. */
export interface StepBreakdown {
  rank: number;
  timeMs: number;
  dataWaitMs: number;
  computeMs: number;
  copyMs: number;
  /** The all-reduce as the rank that waited least saw it: the transfer itself. */
  reduceMs: number;
  /** This rank's all-reduce beyond that: waiting in the ring for slower ranks. */
  skewWaitMs: number;
  updateMs: number;
}

type StepSample = Extract<WorkerRecord, { kind: 'step' }>;

/**
 * Splits each rank's all-reduce time at each logged step: a ring all-reduce finishes together
 * on every rank, so the rank that arrived last waited least, and its time is the transfer;
 * every other rank's excess over it is skew wait (a slow rank's data, compute or host).
 * A step whose other ranks are not logged yet counts its own time as transfer.
 */
export function stepBreakdowns(samples: readonly StepSample[]): StepBreakdown[] {
  const fastest = new Map<string, number>();
  const key = (s: StepSample) => `${s.epoch}:${s.step}`;
  for (const s of samples) fastest.set(key(s), Math.min(fastest.get(key(s)) ?? Infinity, s.timingsMs.reduceMs));
  return samples.map((s) => {
    const transfer = fastest.get(key(s)) ?? s.timingsMs.reduceMs;
    return {
      rank: s.rank,
      timeMs: s.timeMs,
      dataWaitMs: s.timingsMs.dataWaitMs,
      computeMs: s.timingsMs.computeMs,
      copyMs: s.timingsMs.copyMs,
      reduceMs: transfer,
      skewWaitMs: s.timingsMs.reduceMs - transfer,
      updateMs: s.timingsMs.updateMs,
    };
  });
}
