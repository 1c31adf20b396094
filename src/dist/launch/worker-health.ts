/**
 * What the coordinator knows of each worker's health, and the two judgements it makes from
 * it, as small pure pieces: is a worker hung (silent too long), and do the replicas still
 * agree (every rank's weights checksum at the same step).
 */
import type { LocalWorker } from './local-workers';
import type { JoinedHost } from '../control/rank-blocks';

export interface WorkerState {
  rank: number;
  /** Null for a worker on another host: its join agent started it. */
  local: LocalWorker | null;
  /** The joined host of a remote worker; null on this host. */
  host: JoinedHost | null;
  /** Its control socket's id, from its hello (null before). */
  routingId: Uint8Array | null;
  lastSeenMs: number;
  step: number;
  epoch: number;
  longestStepMs: number;
  done: boolean;
  exited: boolean;
}

export function newWorkerState(
  rank: number,
  local: LocalWorker | null,
  host: JoinedHost | null,
  nowMs = Date.now(),
): WorkerState {
  return {
    rank,
    local,
    host,
    routingId: null,
    lastSeenMs: nowMs,
    step: 0,
    epoch: 0,
    longestStepMs: 0,
    done: false,
    exited: false,
  };
}

/**
 * The first worker that has said hello, is still running, and has been silent longer than
 * `hangTimeoutMs` or 3x its slowest step (a slow step is not a hang). Before its hello a
 * worker is starting (on another host, checking its data): the rendezvous timeout covers that.
 */
export function hungWorker(
  workers: readonly WorkerState[],
  nowMs: number,
  hangTimeoutMs: number,
): WorkerState | undefined {
  return workers.find(
    (w) =>
      w.routingId !== null &&
      !w.done &&
      !w.exited &&
      nowMs - w.lastSeenMs > Math.max(hangTimeoutMs, 3 * w.longestStepMs),
  );
}

/** Collects every rank's weights checksum per global step; once all have reported, compares. */
export class ReplicaChecksums {
  private readonly byStep = new Map<number, Map<number, string>>();

  constructor(private readonly worldSize: number) {}

  /** Records one rank's checksum; returns the ranks whose checksum differs from rank 0's once all are in. */
  add(rank: number, step: number, checksum: string): number[] {
    const at = this.byStep.get(step) ?? new Map<number, string>();
    at.set(rank, checksum);
    this.byStep.set(step, at);
    if (at.size < this.worldSize) return [];
    this.byStep.delete(step);
    const reference = at.get(0);
    return [...at.entries()].filter(([, c]) => c !== reference).map(([r]) => r);
  }
}
