/**
 * Restarts of a worker group (--max-restarts N): when a worker dies or hangs, the coordinator
 * has already stopped every worker (they were blocked in a collective with the lost peer); the
 * group then starts again, every worker loading the newest checkpoint, and training continues.
 * Every random choice is keyed by (seed, epoch, sample) or (seed, global step, rank), so the
 * restarted run computes exactly what the lost one would have.
 *
 * This layer knows no checkpoint format: the caller says where the newest usable checkpoint is
 * (a file path and its position) and records each restart in the run's files.
 */
import { WorkerLostError } from '../../core/errors';

/** A checkpoint to continue from, as far as the coordinator needs to know it. */
export interface ResumePoint {
  file: string;
  /** The checkpoint's position: the next epoch (0-based), steps done in it, optimizer steps done. */
  epoch: number;
  stepInEpoch: number;
  globalStep: number;
}

/** One restart, as logged and appended to the run's metrics. */
export interface RestartEvent {
  /** 1 for the first restart. */
  restart: number;
  maxRestarts: number;
  /** The failure, as the user reads it ("worker rank 1 was killed by SIGKILL at epoch 1, step 3"). */
  cause: string;
  rank: number;
  /** Where the lost rank was: 1-based epoch and the last step it reported in it. */
  epoch: number;
  step: number;
  /** The previous attempt failed at the same epoch and step: the restart did not get past it. */
  sameStepAgain: boolean;
  /** The checkpoint the workers load; null: none yet, the run starts again from its beginning. */
  resumeFrom: ResumePoint | null;
  /** Wall-clock time of the restart (ms since the epoch). */
  timeMs: number;
}

export interface RestartOptions {
  maxRestarts: number;
  /**
   * Runs one attempt of the worker group, continuing from `resume` (null: the run's own start);
   * `restartsLeft`: a lost worker in this attempt will be restarted (other hosts are told to rejoin).
   */
  attempt: (resume: ResumePoint | null, restartsLeft: boolean) => Promise<Record<string, unknown>>;
  /** The newest checkpoint that can be loaded, or null when none is written yet. */
  newestCheckpoint: () => ResumePoint | null;
  onRestart: (event: RestartEvent) => void;
  now?: () => number;
}

/** "restart 2 of 3: <cause>; continuing from <file> (epoch 1, step 4, global step 4)". */
export function describeRestart(e: RestartEvent): string {
  const from =
    e.resumeFrom === null
      ? 'the start (no checkpoint yet)'
      : `${e.resumeFrom.file} (epoch ${e.resumeFrom.epoch + 1}, step ${e.resumeFrom.stepInEpoch}, global step ${e.resumeFrom.globalStep})`;
  return `restart ${e.restart} of ${e.maxRestarts}: ${e.cause}${e.sameStepAgain ? ' (again at the same step)' : ''}; continuing from ${from}`;
}

/**
 * Runs attempts until one finishes. A lost worker (WorkerLostError) restarts the group while
 * restarts are left; every restart counts, also one that fails again at the same step, so a
 * fault that recurs deterministically ends the run after N tries. Any other error (a worker's
 * own error report, diverged replicas, a bad config, Ctrl-C) ends the run at once: a restart
 * would meet it again. After the last restart the run fails with the lost worker's message.
 */
export async function runWithRestarts(options: RestartOptions): Promise<Record<string, unknown>> {
  const now = options.now ?? Date.now;
  let resume: ResumePoint | null = null;
  let previous: WorkerLostError | null = null;
  for (let restart = 1; ; restart++) {
    try {
      return await options.attempt(resume, restart <= options.maxRestarts);
    } catch (err) {
      if (!(err instanceof WorkerLostError) || options.maxRestarts === 0) throw err;
      if (restart > options.maxRestarts) {
        throw new WorkerLostError(
          `${err.message} (gave up after ${options.maxRestarts} restart(s), --max-restarts ${options.maxRestarts})`,
          err.rank,
          err.epoch,
          err.step,
        );
      }
      resume = options.newestCheckpoint();
      const event: RestartEvent = {
        restart,
        maxRestarts: options.maxRestarts,
        cause: err.message,
        rank: err.rank,
        epoch: err.epoch,
        step: err.step,
        sameStepAgain: previous !== null && previous.epoch === err.epoch && previous.step === err.step,
        resumeFrom: resume,
        timeMs: now(),
      };
      previous = err;
      options.onRestart(event);
    }
  }
}
