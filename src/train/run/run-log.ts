/**
 * The run's own log files, in one place: their names, their record types, appending a record
 * and reading the files back. The trainer appends; the report, the reproduction scripts and
 * the tests read. Each line is one JSON record, so a run that crashes mid-append loses at most
 * that line, and a resumed run appends on.
 *
 *   metrics.jsonl  one EpochRecord per epoch, then one TestRecord at the end; between them
 *                  events: a CheckpointEvent per step checkpoint, a RestartEvent per restart,
 *                  and an EndEvent when the run ends (finished, stopped or failed)
 *   steps.jsonl    one StepRecord every --log-every steps
 *   workers.jsonl  the coordinator's view of each worker: a WorkerRecord at each hello (rank,
 *                  host, pid), heartbeats (at most one per rank every few seconds) and a
 *                  rank's step timings every --log-every steps
 *   run.json       RunInfo, written once when the run starts: the config, who runs it, since when
 *
 * The dashboard (src/dashboard) reads these files, while the run writes them or after.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { WorkerSeen } from '../../dist/launch/coordinator';
import type { StepTiming } from '../../dist/control/messages';
import type { RestartEvent } from '../../dist/launch/restarts';
import type { MetricSummary } from '../metrics';

export const METRICS_FILE = 'metrics.jsonl';
export const STEPS_FILE = 'steps.jsonl';
export const WORKERS_FILE = 'workers.jsonl';
export const RUN_FILE = 'run.json';

/** One line of metrics.jsonl: an epoch's training and validation metrics. */
export interface EpochRecord {
  /** 1-based. */
  epoch: number;
  globalStep: number;
  lr: number;
  train: MetricSummary;
  val: MetricSummary | null;
  imagesPerSec: number;
  epochMs: number;
  /** Training images that could not be used this epoch, over all ranks. */
  skippedImages: number;
}

/** The last line of metrics.jsonl: the final test. */
export interface TestRecord {
  test: MetricSummary;
  tta: number;
}

/** A line of metrics.jsonl that is an event, not a metric: its `event` field says which. */
export type RunEvent = CheckpointEvent | RestartEventRecord | EndEvent;

/** A step checkpoint was written, and how long training waited for it. */
export interface CheckpointEvent {
  event: 'checkpoint';
  file: string;
  globalStep: number;
  bytes: number;
  /** How long training waited: the snapshot (and a previous write still running). */
  stallMs: number;
  /** The atomic write, in the background. */
  writeMs: number;
}

/** The coordinator restarted the workers (--max-restarts). */
export interface RestartEventRecord extends RestartEvent {
  event: 'restart';
}

/** The run ended: the last line a run writes to metrics.jsonl (a killed process writes none). */
export interface EndEvent {
  event: 'end';
  status: 'finished' | 'stopped' | 'failed';
  /** Wall clock, ms since 1970. */
  timeMs: number;
  /** Why it failed (the error's one line); absent otherwise. */
  message?: string;
}

/** run.json: what a reader needs to know of a run before its first epoch ends. */
export interface RunInfo {
  /** The frozen TrainConfig, as plain data. */
  config: Record<string, unknown>;
  startedMs: number;
  /** The process that trains (or coordinates), and its host: a reader on that host can tell whether it still runs. */
  pid: number;
  host: string;
  worldSize: number;
}

/** One line of workers.jsonl; `timeMs` is the wall clock when the coordinator heard it. */
export type WorkerRecord =
  | WorkerSeen
  | { kind: 'step'; rank: number; epoch: number; step: number; timingsMs: Record<StepTiming, number>; timeMs: number };

/** One line of steps.jsonl (--log-every N): the training metrics of the last N steps. */
export interface StepRecord {
  /** 1-based, as in metrics.jsonl. */
  epoch: number;
  /** Steps done in this epoch. */
  step: number;
  globalStep: number;
  /** Epochs done, fractional: (epoch - 1) + step / steps per epoch. */
  epochs: number;
  lr: number;
  train: MetricSummary;
  /** Steps in each epoch (with `epochs` and the run's epoch count, what an ETA needs). */
  stepsPerEpoch: number;
  /** Wall clock when the line was written, ms since 1970 (with the previous line's and train.count: images/s). */
  timeMs: number;
}

/** What a training run returns (rank 0's, also sent to the coordinator as plain data). */
export interface TrainResult {
  epochs: EpochRecord[];
  test: MetricSummary | null;
  stopped: boolean;
  runDir: string;
  wallMs: number;
}

function appendLine(runDir: string, file: string, record: object): void {
  fs.appendFileSync(path.join(runDir, file), `${JSON.stringify(record)}\n`);
}

export const appendEpochRecord = (runDir: string, r: EpochRecord): void => appendLine(runDir, METRICS_FILE, r);
export const appendTestRecord = (runDir: string, r: TestRecord): void => appendLine(runDir, METRICS_FILE, r);
export const appendStepRecord = (runDir: string, r: StepRecord): void => appendLine(runDir, STEPS_FILE, r);
export const appendRunEvent = (runDir: string, r: RunEvent): void => appendLine(runDir, METRICS_FILE, r);
export const appendWorkerRecord = (runDir: string, r: WorkerRecord): void => appendLine(runDir, WORKERS_FILE, r);

export function writeRunInfo(runDir: string, info: RunInfo): void {
  fs.mkdirSync(runDir, { recursive: true });
  fs.writeFileSync(path.join(runDir, RUN_FILE), `${JSON.stringify(info, null, 2)}\n`);
}

export interface RunMetrics {
  /** One per epoch, in epoch order; a later line for the same epoch (a resumed run) wins. */
  epochs: EpochRecord[];
  /** The last test line, if the run got that far. */
  test: TestRecord | null;
  /** Checkpoint and restart events, in file order. */
  events: RunEvent[];
  /** Lines that are not JSON or not a known record (a crash mid-append leaves half a line). */
  badLines: number;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
/** JSON wrote NaN (an empty split, a diverged loss) as null: read it back as NaN. */
const num = (v: unknown): number => (typeof v === 'number' ? v : NaN);

function summaryOf(v: unknown): MetricSummary | null {
  if (!isObject(v)) return null;
  return { loss: num(v.loss), top1Error: num(v.top1Error), top5Error: num(v.top5Error), count: num(v.count) };
}

function epochRecordOf(v: unknown): EpochRecord | null {
  if (!isObject(v)) return null;
  const train = summaryOf(v.train);
  if (typeof v.epoch !== 'number' || train === null) return null;
  return {
    epoch: v.epoch,
    globalStep: num(v.globalStep),
    lr: num(v.lr),
    train,
    val: summaryOf(v.val),
    imagesPerSec: num(v.imagesPerSec),
    epochMs: num(v.epochMs),
    skippedImages: num(v.skippedImages),
  };
}

function stepRecordOf(v: unknown): StepRecord | null {
  if (!isObject(v)) return null;
  const train = summaryOf(v.train);
  if (typeof v.epochs !== 'number' || train === null) return null;
  return {
    epoch: num(v.epoch),
    step: num(v.step),
    globalStep: num(v.globalStep),
    epochs: v.epochs,
    lr: num(v.lr),
    train,
    stepsPerEpoch: num(v.stepsPerEpoch),
    timeMs: num(v.timeMs),
  };
}

/** The JSON value of `text`; null when it is not JSON (a half-written line or file). */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}

/** Parses each non-blank line as JSON; null for a line that is not (a half-written last line). */
function jsonLines(text: string): unknown[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map(parseJson);
}

/** An event line as written (its fields are this program's own); null if it is not one. */
function runEventOf(v: unknown): RunEvent | null {
  if (!isObject(v) || (v.event !== 'checkpoint' && v.event !== 'restart' && v.event !== 'end')) return null;
  return v as unknown as RunEvent;
}

export function parseMetricsJsonl(text: string): RunMetrics {
  const byEpoch = new Map<number, EpochRecord>();
  let test: TestRecord | null = null;
  const events: RunEvent[] = [];
  let badLines = 0;
  for (const value of jsonLines(text)) {
    const record = epochRecordOf(value);
    const testSummary = isObject(value) ? summaryOf(value.test) : null;
    const event = runEventOf(value);
    if (record) byEpoch.set(record.epoch, record);
    else if (testSummary && isObject(value)) test = { test: testSummary, tta: num(value.tta) };
    else if (event) events.push(event);
    else badLines++;
  }
  return { epochs: [...byEpoch.values()].sort((a, b) => a.epoch - b.epoch), test, events, badLines };
}

/** The step records of steps.jsonl; unreadable lines (a run still writing) are left out. */
export function parseStepsJsonl(text: string): StepRecord[] {
  return jsonLines(text)
    .map(stepRecordOf)
    .filter((r): r is StepRecord => r !== null);
}

/** A workers.jsonl line as written (its fields are this program's own); null if it is not one. */
function workerRecordOf(v: unknown): WorkerRecord | null {
  if (!isObject(v) || typeof v.rank !== 'number' || typeof v.timeMs !== 'number') return null;
  if (v.kind === 'hello' || v.kind === 'heartbeat' || (v.kind === 'step' && isObject(v.timingsMs)))
    return v as unknown as WorkerRecord;
  return null;
}

/** The records of workers.jsonl; unreadable lines (a run still writing) are left out. */
export function parseWorkersJsonl(text: string): WorkerRecord[] {
  return jsonLines(text)
    .map(workerRecordOf)
    .filter((r): r is WorkerRecord => r !== null);
}

/** run.json back; null when it is not one (a run from before the file, or half written). */
export function parseRunInfo(text: string): RunInfo | null {
  const v = parseJson(text);
  if (!isObject(v) || !isObject(v.config) || typeof v.pid !== 'number' || typeof v.host !== 'string') return null;
  return { config: v.config, startedMs: num(v.startedMs), pid: v.pid, host: v.host, worldSize: num(v.worldSize) };
}

/** A TrainResult as plain data for a message (NaN and Infinity become null, as in the files). */
export function plainTrainResult(result: TrainResult): Record<string, unknown> {
  return JSON.parse(JSON.stringify(result)) as Record<string, unknown>;
}

/** A TrainResult back from plain data (rank 0's, relayed by the coordinator). */
export function trainResultOf(plain: Record<string, unknown>): TrainResult {
  const epochs = Array.isArray(plain.epochs)
    ? plain.epochs.map(epochRecordOf).filter((r): r is EpochRecord => r !== null)
    : [];
  return {
    epochs,
    test: summaryOf(plain.test),
    stopped: plain.stopped === true,
    runDir: String(plain.runDir),
    wallMs: num(plain.wallMs),
  };
}
