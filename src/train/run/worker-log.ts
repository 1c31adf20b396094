/**
 * workers.jsonl: what the coordinator hears from its workers, kept in the run directory so the
 * dashboard can show worker health and each rank's step breakdown, live or after the run.
 * Kept cheap: every hello, at most one heartbeat per rank every HEARTBEAT_RECORD_MS (workers
 * send one a second), and a rank's step timings only at the steps that steps.jsonl logs
 * (every --log-every steps), so the file grows with the run's log, not with its step count.
 */
import * as fs from 'node:fs';
import type { WorkerSeen } from '../../dist/launch/coordinator';
import type { StepReportMessage } from '../../dist/control/messages';
import { appendWorkerRecord, type WorkerRecord } from './run-log';

export const HEARTBEAT_RECORD_MS = 5000;

/** The coordinator's (or the single process's) hooks, writing workers.jsonl. */
export class WorkerLog {
  private readonly lastHeartbeat = new Map<number, number>();
  /** The run directory exists (workers say hello before rank 0 makes it). */
  private dirMade = false;

  constructor(
    private readonly runDir: string,
    /** --log-every: 0 writes no step timings. */
    private readonly logEverySteps: number,
    private readonly append: (runDir: string, r: WorkerRecord) => void = appendWorkerRecord,
  ) {}

  /** A hello is always written (and counts as a heartbeat); a heartbeat only when the rank's last written one is old enough. */
  seen(record: WorkerSeen): void {
    if (
      record.kind === 'heartbeat' &&
      record.timeMs - (this.lastHeartbeat.get(record.rank) ?? -Infinity) < HEARTBEAT_RECORD_MS
    )
      return;
    this.lastHeartbeat.set(record.rank, record.timeMs);
    this.write(record);
  }

  /** A rank's step report: written at the steps that steps.jsonl logs. */
  step(m: StepReportMessage, timeMs = Date.now()): void {
    if (this.logEverySteps <= 0 || m.step % this.logEverySteps !== 0) return;
    this.write({ kind: 'step', rank: m.rank, epoch: m.epoch + 1, step: m.step, timingsMs: m.timingsMs, timeMs });
  }

  private write(record: WorkerRecord): void {
    if (!this.dirMade) fs.mkdirSync(this.runDir, { recursive: true });
    this.dirMade = true;
    this.append(this.runDir, record);
  }
}
