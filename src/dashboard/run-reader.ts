/**
 * One run directory as the dashboard sees it, read from the files the run writes (train/run/run-log.ts,
 * train/run/bad-files.ts, eval's outputs) and nothing else, so a finished run, a running one and one
 * whose trainer died read the same way. Growing files are tailed: each refresh reads only the
 * bytes appended since the last one, up to the last complete line, so following a long run
 * costs what it appends. Files are only ever opened for reading.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CONFUSION_CSV, EVAL_DIR_PREFIX, PER_CLASS_CSV } from '../eval/file-names';
import { BAD_FILES } from '../train/run/bad-files';
import { BEST_CHECKPOINT, LAST_CHECKPOINT, readCheckpointSummary } from '../train/run/checkpoint';
import {
  METRICS_FILE,
  RUN_FILE,
  STEPS_FILE,
  WORKERS_FILE,
  parseMetricsJsonl,
  parseRunInfo,
  parseStepsJsonl,
  parseWorkersJsonl,
  type EndEvent,
  type RunInfo,
  type RunMetrics,
  type StepRecord,
  type WorkerRecord,
} from '../train/run/run-log';
import { downsample, etaSeconds, imagesPerSec, stepBreakdowns, type StepBreakdown } from './series';

/** The files whose presence makes a folder a run (a run writes run.json first). */
export const RUN_MARKERS = [RUN_FILE, METRICS_FILE, STEPS_FILE];

/** Reads the complete lines appended to a file since the last read. */
export class LineTail {
  private offset = 0;

  constructor(readonly file: string) {}

  /** New complete lines; `reset` when the file shrank (rewritten: read again from its start). Null: nothing new. */
  read(): { text: string; reset: boolean } | null {
    let size: number;
    try {
      size = fs.statSync(this.file).size;
    } catch {
      return null;
    }
    const reset = size < this.offset;
    if (reset) this.offset = 0;
    if (size === this.offset) return reset ? { text: '', reset } : null;
    const bytes = Buffer.alloc(size - this.offset);
    const fd = fs.openSync(this.file, 'r');
    try {
      fs.readSync(fd, bytes, 0, bytes.length, this.offset);
    } finally {
      fs.closeSync(fd);
    }
    // Only up to the last newline: a line still being appended is read next time, whole.
    const end = bytes.lastIndexOf(0x0a) + 1;
    if (end === 0 && !reset) return null;
    this.offset += end;
    return { text: bytes.subarray(0, end).toString('utf8'), reset };
  }
}

/** RFC 4180 CSV (as eval writes it: quoted fields, doubled quotes) into rows of fields. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length > 0) rows.push([...row, field]);
  return rows;
}

export type RunState = 'running' | 'finished' | 'stopped' | 'failed' | 'gone' | 'unknown';

export interface RunStatus {
  state: RunState;
  /** When the run ended (its end event), or null. */
  endedMs: number | null;
  /** Why it failed, or why it counts as gone. */
  message: string | null;
  /** The newest modification time among the run's files. */
  lastUpdateMs: number;
}

/** Whether a process runs: signal 0 checks without sending anything. EPERM: it runs, as another user. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A run is over when its last end event is newer than its start (a resumed run starts again);
 * without one it runs while its process does, which this host can check only for its own
 * processes (on another host the page judges by the age of the last update).
 */
export function runState(
  info: RunInfo | null,
  end: EndEvent | null,
  alive: (pid: number) => boolean,
  hostname: string,
): { state: RunState; message: string | null } {
  if (end !== null && (info === null || end.timeMs >= info.startedMs))
    return { state: end.status, message: end.message ?? null };
  if (info === null)
    return {
      state: 'unknown',
      message: 'no run.json and no end record: a run from before the dashboard, or one that is starting',
    };
  if (info.host === hostname && !alive(info.pid))
    return { state: 'gone', message: `the trainer (pid ${info.pid}) is no longer running and wrote no end record` };
  return { state: 'running', message: null };
}

/** One rank as the coordinator last heard of it. */
export interface WorkerHealth {
  rank: number;
  host: string | null;
  pid: number | null;
  /** The last time anything came from it: a hello, a heartbeat or a step. */
  lastSeenMs: number;
  /** Hellos after the first: each restart of the group starts every rank again. */
  restarts: number;
  epoch: number | null;
  step: number | null;
}

/** An `alexnet eval` folder of the run: its confusion matrix and per-class table. */
export interface EvalView {
  name: string;
  classes: string[];
  /** Counts, rows = true class; a last '(no score)' column when eval had one. */
  predictedColumns: string[];
  matrix: number[][];
  perClass: string[][];
}

type StepSample = Extract<WorkerRecord, { kind: 'step' }>;
const STEP_PARTS = ['dataWaitMs', 'computeMs', 'copyMs', 'reduceMs', 'skewWaitMs', 'updateMs'] as const;
/** Step samples a rank's mean breakdown (the worker table) averages over. */
const RECENT_SAMPLES = 10;
/** Bad files listed on the page (the count is of all of them). */
const BAD_FILES_SHOWN = 100;

/** Everything the page draws for one run, as plain JSON (NaN becomes null: a gap in a chart). */
export interface RunSnapshot {
  name: string;
  status: RunStatus;
  info: Omit<RunInfo, 'config'> | null;
  config: Record<string, unknown> | null;
  progress: {
    globalStep: number;
    epoch: number;
    step: number;
    stepsPerEpoch: number;
    epochs: number;
    totalEpochs: number | null;
    lr: number;
    imagesPerSec: number | null;
    etaSec: number | null;
  } | null;
  /** Per steps.jsonl line (downsampled): x = epochs (fractional). */
  steps: {
    epochs: number[];
    loss: number[];
    top1Error: number[];
    top5Error: number[];
    lr: number[];
    imagesPerSec: number[];
  };
  /** Per epoch: x = epoch number. */
  epochs: {
    epoch: number[];
    trainLoss: number[];
    valLoss: number[];
    valTop1Error: number[];
    valTop5Error: number[];
    imagesPerSec: number[];
    skippedImages: number[];
  };
  test: { loss: number; top1Error: number; top5Error: number; count: number; tta: number } | null;
  workers: (WorkerHealth & { recent: Record<(typeof STEP_PARTS)[number], number> | null })[];
  /** Per rank (downsampled): x = seconds since 1970. */
  breakdown: { rank: number; timeSec: number[]; parts: Record<(typeof STEP_PARTS)[number], number[]> }[];
  restarts: string[];
  badFiles: { count: number; shown: { file: string; reason: string }[] };
  evals: EvalView[];
}

interface Stamp {
  size: number;
  mtimeMs: number;
}

function stampOf(file: string): Stamp | null {
  try {
    const s = fs.statSync(file);
    return { size: s.size, mtimeMs: s.mtimeMs };
  } catch {
    return null;
  }
}

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

export class RunReader {
  private readonly stepsTail: LineTail;
  private readonly workersTail: LineTail;
  private readonly badTail: LineTail;
  private readonly stamps = new Map<string, Stamp | null>();
  private steps: StepRecord[] = [];
  private samples: StepSample[] = [];
  private health = new Map<number, Omit<WorkerHealth, 'restarts'> & { hellos: number }>();
  private metrics: RunMetrics = { epochs: [], test: null, events: [], badLines: 0 };
  private info: RunInfo | null = null;
  private checkpointConfig: Record<string, unknown> | null = null;
  private badFiles: { file: string; reason: string }[] = [];
  private badCount = 0;
  private evals = new Map<string, EvalView>();
  private lastUpdateMs = 0;
  private changes = 0;

  constructor(
    readonly name: string,
    readonly dir: string,
  ) {
    this.stepsTail = new LineTail(path.join(dir, STEPS_FILE));
    this.workersTail = new LineTail(path.join(dir, WORKERS_FILE));
    this.badTail = new LineTail(path.join(dir, BAD_FILES));
  }

  /** Reads what changed since the last call; true when anything did. */
  refresh(): boolean {
    let changed = false;
    for (const name of [STEPS_FILE, WORKERS_FILE, METRICS_FILE, RUN_FILE])
      this.lastUpdateMs = Math.max(this.lastUpdateMs, stampOf(path.join(this.dir, name))?.mtimeMs ?? 0);
    const steps = this.stepsTail.read();
    if (steps) {
      this.steps = steps.reset ? parseStepsJsonl(steps.text) : this.steps.concat(parseStepsJsonl(steps.text));
      changed = true;
    }
    const workers = this.workersTail.read();
    if (workers) {
      if (workers.reset) [this.samples, this.health] = [[], new Map()];
      for (const r of parseWorkersJsonl(workers.text)) this.addWorkerRecord(r);
      changed = true;
    }
    const bad = this.badTail.read();
    if (bad) {
      if (bad.reset) [this.badFiles, this.badCount] = [[], 0];
      for (const line of bad.text.split('\n').filter((l) => l !== '')) {
        const [file, ...reason] = line.split('\t');
        this.badCount++;
        this.badFiles = [...this.badFiles.slice(-(BAD_FILES_SHOWN - 1)), { file, reason: reason.join('\t') }];
      }
      changed = true;
    }
    if (this.changedFile(METRICS_FILE)) {
      this.metrics = parseMetricsJsonl(this.readText(METRICS_FILE) ?? '');
      changed = true;
    }
    if (this.changedFile(RUN_FILE)) {
      this.info = parseRunInfo(this.readText(RUN_FILE) ?? '');
      changed = true;
    }
    if (this.info === null && this.checkpointConfig === null) changed = this.readCheckpointConfig() || changed;
    changed = this.refreshEvals() || changed;
    if (changed) this.changes++;
    return changed;
  }

  /** Counts the refreshes that found a change: a stream compares it with the one it last sent. */
  get version(): number {
    return this.changes;
  }

  snapshot(maxPoints: number, alive: (pid: number) => boolean = processAlive, hostname = os.hostname()): RunSnapshot {
    const end = [...this.metrics.events].reverse().find((e): e is EndEvent => e.event === 'end') ?? null;
    const { state, message } = runState(this.info, end, alive, hostname);
    const config = this.info?.config ?? this.checkpointConfig;
    const totalEpochs = typeof config?.['epochs'] === 'number' ? config['epochs'] : null;
    const rates = imagesPerSec(this.steps);
    const [epochs, loss, top1Error, top5Error, lr, ips] = downsample(
      [
        this.steps.map((s) => s.epochs),
        this.steps.map((s) => s.train.loss),
        this.steps.map((s) => s.train.top1Error),
        this.steps.map((s) => s.train.top5Error),
        this.steps.map((s) => s.lr),
        rates,
      ],
      maxPoints,
    );
    const e = this.metrics.epochs;
    const breakdowns = stepBreakdowns(this.samples);
    const info =
      this.info === null
        ? null
        : { startedMs: this.info.startedMs, pid: this.info.pid, host: this.info.host, worldSize: this.info.worldSize };
    return {
      name: this.name,
      status: {
        state,
        endedMs: end === null || state !== end.status ? null : end.timeMs,
        message,
        lastUpdateMs: this.lastUpdateMs,
      },
      info,
      config,
      progress: this.progress(rates, totalEpochs),
      steps: { epochs, loss, top1Error, top5Error, lr, imagesPerSec: ips },
      epochs: {
        epoch: e.map((r) => r.epoch),
        trainLoss: e.map((r) => r.train.loss),
        valLoss: e.map((r) => r.val?.loss ?? NaN),
        valTop1Error: e.map((r) => r.val?.top1Error ?? NaN),
        valTop5Error: e.map((r) => r.val?.top5Error ?? NaN),
        imagesPerSec: e.map((r) => r.imagesPerSec),
        skippedImages: e.map((r) => r.skippedImages),
      },
      test: this.metrics.test && { ...this.metrics.test.test, tta: this.metrics.test.tta },
      workers: [...this.health.values()]
        .sort((a, b) => a.rank - b.rank)
        .map(({ hellos, ...w }) => ({
          ...w,
          restarts: Math.max(0, hellos - 1),
          recent: recentBreakdown(breakdowns.filter((b) => b.rank === w.rank)),
        })),
      breakdown: [...this.health.keys()]
        .sort((a, b) => a - b)
        .map((rank) => rankBreakdown(rank, breakdowns, maxPoints)),
      restarts: this.metrics.events.flatMap((ev) =>
        ev.event === 'restart' ? [`restart ${ev.restart} of ${ev.maxRestarts}: ${ev.cause}`] : [],
      ),
      badFiles: { count: this.badCount, shown: this.badFiles },
      evals: [...this.evals.values()].sort((a, b) => a.name.localeCompare(b.name)),
    };
  }

  private progress(rates: number[], totalEpochs: number | null): RunSnapshot['progress'] {
    const last = this.steps[this.steps.length - 1];
    if (last === undefined) return null;
    const recent = rates.slice(-5).filter(Number.isFinite);
    return {
      globalStep: last.globalStep,
      epoch: last.epoch,
      step: last.step,
      stepsPerEpoch: last.stepsPerEpoch,
      epochs: last.epochs,
      totalEpochs,
      lr: last.lr,
      imagesPerSec: recent.length === 0 ? null : mean(recent),
      etaSec: totalEpochs === null ? null : etaSeconds(this.steps, totalEpochs),
    };
  }

  private addWorkerRecord(r: WorkerRecord): void {
    const w = this.health.get(r.rank) ?? {
      rank: r.rank,
      host: null,
      pid: null,
      lastSeenMs: 0,
      hellos: 0,
      epoch: null,
      step: null,
    };
    w.lastSeenMs = Math.max(w.lastSeenMs, r.timeMs);
    if (r.kind === 'hello') [w.host, w.pid, w.hellos] = [r.host, r.pid, w.hellos + 1];
    if (r.kind === 'step') {
      [w.epoch, w.step] = [r.epoch, r.step];
      this.samples.push(r);
    }
    this.health.set(r.rank, w);
  }

  /** True when `name` changed since the last look. */
  private changedFile(name: string): boolean {
    const file = path.join(this.dir, name);
    const now = stampOf(file);
    const before = this.stamps.get(file) ?? null;
    this.stamps.set(file, now);
    return now !== null && (before === null || before.size !== now.size || before.mtimeMs !== now.mtimeMs);
  }

  private readText(name: string): string | null {
    try {
      return fs.readFileSync(path.join(this.dir, name), 'utf8');
    } catch {
      return null;
    }
  }

  /** A run from before run.json: the config from its checkpoint's header. */
  private readCheckpointConfig(): boolean {
    for (const name of [LAST_CHECKPOINT, BEST_CHECKPOINT]) {
      if (!this.changedFile(name)) continue;
      try {
        this.checkpointConfig = { ...readCheckpointSummary(path.join(this.dir, name)).config };
        return true;
      } catch {
        // Being written, or not a checkpoint: tried again when it changes.
      }
    }
    return false;
  }

  private refreshEvals(): boolean {
    let names: string[];
    try {
      names = fs
        .readdirSync(this.dir, { withFileTypes: true })
        .filter((d) => d.isDirectory() && d.name.startsWith(EVAL_DIR_PREFIX))
        .map((d) => d.name);
    } catch {
      return false;
    }
    let changed = false;
    for (const name of names) {
      const confusion = path.join(name, CONFUSION_CSV);
      const perClass = path.join(name, PER_CLASS_CSV);
      // Both checked: || would skip noting the second file's stamp.
      const a = this.changedFile(confusion);
      const b = this.changedFile(perClass);
      if (!a && !b) continue;
      const view = evalView(name, this.readText(confusion), this.readText(perClass));
      if (view !== null) this.evals.set(name, view);
      changed = true;
    }
    return changed;
  }
}

/** An eval folder's two CSVs as a view; null while the confusion matrix is missing. */
export function evalView(name: string, confusionText: string | null, perClassText: string | null): EvalView | null {
  if (confusionText === null) return null;
  const [header = [], ...rows] = parseCsv(confusionText);
  return {
    name,
    classes: rows.map((r) => r[0]),
    predictedColumns: header.slice(1),
    matrix: rows.map((r) => r.slice(1).map(Number)),
    perClass: perClassText === null ? [] : parseCsv(perClassText),
  };
}

/** A rank's mean step breakdown over its last RECENT_SAMPLES logged steps (the worker table). */
function recentBreakdown(own: readonly StepBreakdown[]): Record<(typeof STEP_PARTS)[number], number> | null {
  const recent = own.slice(-RECENT_SAMPLES);
  if (recent.length === 0) return null;
  return Object.fromEntries(STEP_PARTS.map((p) => [p, mean(recent.map((b) => b[p]))])) as Record<
    (typeof STEP_PARTS)[number],
    number
  >;
}

function rankBreakdown(
  rank: number,
  all: readonly StepBreakdown[],
  maxPoints: number,
): RunSnapshot['breakdown'][number] {
  const own = all.filter((b) => b.rank === rank);
  const [timeSec, ...parts] = downsample(
    [own.map((b) => b.timeMs / 1000), ...STEP_PARTS.map((p) => own.map((b) => b[p]))],
    maxPoints,
  );
  return {
    rank,
    timeSec,
    parts: Object.fromEntries(STEP_PARTS.map((p, i) => [p, parts[i]])) as Record<(typeof STEP_PARTS)[number], number[]>,
  };
}
