/**
 * The checkpoints of a run directory: when rank 0 writes a step checkpoint (every N steps, or
 * when M minutes passed since the last one), how it writes one (atomically, keeping the newest
 * K step checkpoints, timing the stall it adds to training), and which one a restart or
 * `--resume <run dir>` continues from (the newest that loads; a damaged one is refused by name
 * and the one before it is used).
 *
 *   last.ckpt            each epoch end and on Ctrl-C (as before)
 *   best.ckpt            the best validation top-1 so far
 *   step-00000120.ckpt   step checkpoints, named by global step; the newest K are kept
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeAtomicAsync } from '../../core/atomic-write';
import { CheckpointError } from '../../core/errors';
import type { Logger } from '../../core/log';
import {
  LAST_CHECKPOINT,
  encodeSnapshot,
  loadCheckpoint,
  snapshotCheckpoint,
  readCheckpointSummary,
  type CheckpointContents,
  type TrainingPosition,
} from './checkpoint';

const STEP_CHECKPOINT = /^step-(\d+)\.ckpt$/;

export function stepCheckpointName(globalStep: number): string {
  return `step-${String(globalStep).padStart(8, '0')}.ckpt`;
}

/** The step checkpoints among `names` beyond the newest `keep`, oldest first: to delete. */
export function checkpointsToPrune(names: readonly string[], keep: number): string[] {
  const steps = names.filter((n) => STEP_CHECKPOINT.test(n)).sort((a, b) => stepOf(a) - stepOf(b));
  return steps.slice(0, Math.max(0, steps.length - keep));
}

const stepOf = (name: string): number => Number(STEP_CHECKPOINT.exec(name)?.[1] ?? NaN);

/**
 * When a step checkpoint is due: every `everySteps` global steps, or once `everyMin` minutes
 * have passed since the last checkpoint (or the start). Zero turns either off.
 */
export class CheckpointTimer {
  private lastMs: number;

  constructor(
    private readonly everySteps: number,
    private readonly everyMin: number,
    nowMs: number,
  ) {
    this.lastMs = nowMs;
  }

  due(globalStep: number, nowMs: number): boolean {
    const bySteps = this.everySteps > 0 && globalStep % this.everySteps === 0;
    const byTime = this.everyMin > 0 && nowMs - this.lastMs >= this.everyMin * 60_000;
    return bySteps || byTime;
  }

  /** A checkpoint was written (of any kind): the time interval starts again. */
  saved(nowMs: number): void {
    this.lastMs = nowMs;
  }
}

/** A written checkpoint. */
export interface SavedCheckpoint {
  file: string;
  bytes: number;
  globalStep: number;
  /** Copying the tensors out: the part training waited for. */
  snapshotMs: number;
  /** Hashing and the atomic write (write, fsync, rename), while training went on. */
  writeMs: number;
}

/** How a checkpoint's bytes (header, tensors) reach the disk, atomically; tests inject storage faults here. */
export type WriteFile = (file: string, chunks: readonly Buffer[]) => Promise<void> | void;

/** Writes a run's checkpoints (rank 0 only), one at a time. */
export class CheckpointStore {
  constructor(
    readonly runDir: string,
    private readonly keep: number,
    private readonly write: WriteFile = writeAtomicAsync,
  ) {}

  /**
   * Copies the tensors of `contents` now (training may change them next), then hashes and
   * writes `name` atomically in the background. On a storage error (ENOSPC, EIO...) the temporary file is
   * gone and the file it would have replaced is untouched: the error says so. The promise
   * settles once the file is in place (or rejects with a CheckpointError that says what was kept).
   */
  begin(name: string, contents: CheckpointContents): Promise<SavedCheckpoint> {
    const now = () => performance.now();
    const started = now();
    const file = path.join(this.runDir, name);
    const snapshot = snapshotCheckpoint(contents);
    const snapshotMs = now() - started;
    const { globalStep } = contents.position;
    return (async (): Promise<SavedCheckpoint> => {
      const writeStart = now();
      let bytes = 0;
      try {
        const chunks = await encodeSnapshot(snapshot);
        bytes = chunks.reduce((n, c) => n + c.length, 0);
        fs.mkdirSync(this.runDir, { recursive: true });
        await this.write(file, chunks);
      } catch (err) {
        const previous = newestCheckpointFile(this.runDir);
        const kept =
          previous === null ? 'no earlier checkpoint exists' : `the previous checkpoint ${previous} is intact`;
        throw new CheckpointError(
          `could not write checkpoint ${file} at global step ${globalStep}: ${err instanceof Error ? err.message : String(err)}; ${kept}`,
        );
      }
      return { file, bytes, globalStep, snapshotMs, writeMs: now() - writeStart };
    })();
  }

  /** Writes `name` and waits for it (epoch ends, Ctrl-C). */
  save(name: string, contents: CheckpointContents): Promise<SavedCheckpoint> {
    return this.begin(name, contents);
  }

  /**
   * A step checkpoint: the snapshot now, the write in the background; once written, the step
   * checkpoints beyond the newest `keep` are deleted.
   */
  beginStep(contents: CheckpointContents): Promise<SavedCheckpoint> {
    return this.begin(stepCheckpointName(contents.position.globalStep), contents).then((saved) => {
      for (const old of checkpointsToPrune(fs.readdirSync(this.runDir), this.keep))
        fs.rmSync(path.join(this.runDir, old), { force: true });
      return saved;
    });
  }
}

/** The newest checkpoint file of a run directory by its header's position, unchecked; null if none. */
function newestCheckpointFile(runDir: string): string | null {
  return checkpointCandidates(runDir)[0]?.file ?? null;
}

interface Candidate {
  file: string;
  position: TrainingPosition | null;
}

/** Later is newer: more optimizer steps, then (at the same step) past the epoch end. */
function newer(a: TrainingPosition, b: TrainingPosition): number {
  return b.globalStep - a.globalStep || b.epoch - a.epoch;
}

/**
 * last.ckpt and the step checkpoints of `runDir`, newest first by the position in their header;
 * a file whose header cannot be read sorts by its step number (0 for last.ckpt) and is then
 * refused when loaded.
 */
function checkpointCandidates(runDir: string): Candidate[] {
  if (!fs.existsSync(runDir)) return [];
  const names = fs.readdirSync(runDir).filter((n) => n === LAST_CHECKPOINT || STEP_CHECKPOINT.test(n));
  const candidates = names.map((name): Candidate => {
    const file = path.join(runDir, name);
    try {
      return { file, position: readCheckpointSummary(file).position };
    } catch {
      return { file, position: null };
    }
  });
  const guess = (c: Candidate): TrainingPosition =>
    c.position ?? {
      epoch: 0,
      stepInEpoch: 0,
      globalStep: STEP_CHECKPOINT.test(path.basename(c.file)) ? stepOf(path.basename(c.file)) : 0,
    };
  return candidates.sort((a, b) => newer(guess(a), guess(b)));
}

/** A checkpoint that loads completely (header, sizes, checksum), and the file it came from. */
export interface LoadedCheckpoint {
  file: string;
  contents: CheckpointContents;
}

/**
 * The newest checkpoint of `runDir` that loads completely. Each one refused on the way is
 * named in a warning, and the one before it is tried; null when none loads. `writtenSinceMs`
 * leaves out files older than that (a restart must not pick up an earlier run's checkpoint
 * from a reused run directory).
 */
export function loadNewestCheckpoint(runDir: string, log: Logger, writtenSinceMs = 0): LoadedCheckpoint | null {
  for (const c of checkpointCandidates(runDir)) {
    if (fs.statSync(c.file).mtimeMs < writtenSinceMs) continue;
    try {
      return { file: c.file, contents: loadCheckpoint(c.file) };
    } catch (err) {
      if (!(err instanceof CheckpointError)) throw err;
      log.warn(`refusing checkpoint ${c.file}: ${err.message}; trying the previous one`);
    }
  }
  return null;
}

/**
 * What `--resume` names: a checkpoint file as given (a damaged one is an error naming it), or
 * in a run directory its newest checkpoint that loads.
 */
export function loadResume(resume: string, log: Logger): LoadedCheckpoint {
  if (!(fs.existsSync(resume) && fs.statSync(resume).isDirectory()))
    return { file: resume, contents: loadCheckpoint(resume) };
  const newest = loadNewestCheckpoint(resume, log);
  if (newest === null) throw new CheckpointError(`no usable checkpoint in ${resume} (last.ckpt or step-*.ckpt)`);
  return newest;
}
