/**
 * The coordinator: control plane only, no model and no tensors. It starts one worker process
 * per device, does the rendezvous (hello -> config), watches health (exit codes, heartbeats,
 * malformed messages, replica checksums), relays Ctrl-C as a coordinated stop, and shuts every
 * worker down on the first failure: no orphans, no hang, a message naming rank, step and cause.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { env, type TrainConfig } from '../config';
import { WorkerExitedError } from '../errors';
import { openTrainingData } from '../train/setup';
import type { TrainResult } from '../train/trainer';
import type { Logger } from '../util/log';
import { CoordinatorControl } from './control';
import type { DeviceAssignment } from './devices';
import { MessageType, PROTOCOL_VERSION, type ControlMessage, type StepReportMessage } from './protocol';
import { bindError, createIpcRingDir, removeIpcRingDir } from './ring-address';

const RENDEZVOUS_TIMEOUT_MS = 120_000;
const EXIT_GRACE_MS = 5000;

/** The compiled worker entry (workers always run the built JS, also when tests run from .ts). */
export function workerScript(): string {
  const here = __filename.endsWith('.ts') ? path.resolve(__dirname, '../../dist/src/parallel') : __dirname;
  return path.join(here, 'worker.js');
}

interface WorkerState {
  rank: number;
  child: ChildProcess;
  routingId: Uint8Array | null;
  lastSeenMs: number;
  step: number;
  epoch: number;
  longestStepMs: number;
  done: boolean;
  exited: boolean;
}

/** The first thing that went wrong, as the user will read it. */
class Failure {
  constructor(
    readonly rank: number | null,
    readonly message: string,
  ) {}
}

export interface CoordinatorOptions {
  /** No message from a worker for this long (or 3x its slowest step, if longer) means it hangs. */
  hangTimeoutMs: number;
  /** Called with every worker's report of every step, as it arrives (benchmarks time steps with it). */
  onStepReport?: (report: StepReportMessage) => void;
}

export class Coordinator {
  private readonly control = new CoordinatorControl();
  private readonly workers: WorkerState[] = [];
  private failure: Failure | null = null;
  private result: Record<string, unknown> | null = null;
  private readonly checksums = new Map<number, Map<number, string>>();
  private stopRequested = false;
  /** Set once shutdown begins: exits after that are expected, not failures. */
  private stopped = false;
  /** Each rank's bound ring endpoint, from its hello. */
  private readonly endpoints = new Map<number, string>();
  private wake: () => void = () => undefined;

  constructor(
    private readonly config: TrainConfig,
    private readonly devices: DeviceAssignment,
    private readonly log: Logger,
    private readonly options: CoordinatorOptions,
  ) {}

  async run(): Promise<TrainResult> {
    const ipcDir = createIpcRingDir();
    const controlAddress = `ipc://${path.join(ipcDir, 'control.sock')}`;
    const onSigint = () => this.interrupt();
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigint);
    try {
      await this.control.bind(controlAddress).catch((err: unknown) => {
        throw bindError(controlAddress, err);
      });
      void this.control.listen(
        (id, m) => this.onMessage(id, m),
        (id, err) => this.fail(this.rankOf(id), `sent a malformed control message: ${err.message}`),
      );
      this.spawnWorkers(controlAddress, ipcDir);
      await this.until(() => this.workers.every((w) => w.routingId !== null), RENDEZVOUS_TIMEOUT_MS, 'rendezvous: not every worker said hello');
      await this.sendConfigs();
      await this.until(() => this.workers.every((w) => w.done), Infinity, '');
    } finally {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigint);
      await this.shutdown(this.failure ? `rank ${this.failure.rank ?? '?'} failed` : 'finished');
      this.control.close();
      removeIpcRingDir(ipcDir);
    }
    if (this.failure) throw new WorkerExitedError(this.failure.message);
    if (this.result == null) throw new WorkerExitedError('rank 0 finished without reporting its result');
    return this.result as unknown as TrainResult;
  }

  private spawnWorkers(controlAddress: string, ipcDir: string): void {
    const n = this.devices.worldSize;
    for (let rank = 0; rank < n; rank++) {
      const gpuId = this.devices.kind === 'gpu' ? this.devices.gpuIds[rank] : null;
      const child = spawn(process.execPath, [workerScript()], {
        env: env.forWorker({ controlAddress, rank, worldSize: n, deviceKind: this.devices.kind, ipcDir }, gpuId),
        stdio: ['ignore', 'inherit', 'inherit'],
      });
      const w: WorkerState = { rank, child, routingId: null, lastSeenMs: Date.now(), step: 0, epoch: 0, longestStepMs: 0, done: false, exited: false };
      child.on('exit', (code, signal) => {
        w.exited = true;
        if (!w.done || code !== 0) {
          const cause = signal ? `was killed by ${signal}` : `exited with code ${code}`;
          // A moment's grace: a worker that reported its error before exiting is named by it.
          setTimeout(() => this.fail(rank, `${cause} at epoch ${w.epoch + 1}, step ${w.step}`), 300);
        }
        this.wake();
      });
      this.workers.push(w);
    }
    this.log.info(`started ${n} workers (pids ${this.workers.map((w) => w.child.pid).join(', ')})`);
  }

  private async sendConfigs(): Promise<void> {
    const n = this.workers.length;
    const endpoints = this.workers.map((w) => this.endpoints.get(w.rank) as string);
    await Promise.all(
      this.workers.map((w) =>
        this.control.send(w.routingId as Uint8Array, {
          type: MessageType.Config,
          rank: w.rank,
          worldSize: n,
          nextEndpoint: endpoints[(w.rank + 1) % n],
          config: this.config as unknown as Record<string, unknown>,
          curve: null,
        }),
      ),
    );
  }


  private rankOf(id: Uint8Array): number | null {
    const w = this.workers.find((x) => x.routingId !== null && Buffer.compare(Buffer.from(x.routingId), Buffer.from(id)) === 0);
    return w ? w.rank : null;
  }

  private onMessage(id: Uint8Array, m: ControlMessage): void {
    if (m.type === MessageType.Hello) {
      const w = this.workers[m.rank];
      if (w == null || w.child.pid !== m.pid) return this.fail(m.rank, `hello from an unknown process (pid ${m.pid})`);
      if (m.protocolVersion !== PROTOCOL_VERSION) return this.fail(m.rank, `speaks protocol ${m.protocolVersion}, the coordinator ${PROTOCOL_VERSION}`);
      w.routingId = id;
      this.endpoints.set(m.rank, m.dataEndpoint);
      w.lastSeenMs = Date.now();
      return this.wake();
    }
    const rank = this.rankOf(id);
    if (rank === null || !('rank' in m) || m.rank !== rank) return this.fail(rank, `sent a message for another rank (${m.type})`);
    const w = this.workers[rank];
    w.lastSeenMs = Date.now();
    switch (m.type) {
      case MessageType.StepReport:
        w.step = m.step;
        w.epoch = m.epoch;
        w.longestStepMs = Math.max(w.longestStepMs, m.stepMs);
        this.options.onStepReport?.(m);
        break;
      case MessageType.Checksum:
        this.compareChecksum(rank, m.step, m.checksum);
        break;
      case MessageType.Error:
        this.fail(rank, `failed at epoch ${w.epoch + 1}, step ${w.step}: ${m.name}: ${m.message}`);
        break;
      case MessageType.Done:
        w.done = true;
        if (rank === 0) this.result = m.result;
        void this.control.send(id, { type: MessageType.Shutdown, reason: 'done' });
        break;
      default:
        break;
    }
    this.wake();
  }

  /** Every rank reports a checksum at the same global steps; they must all be equal. */
  private compareChecksum(rank: number, step: number, checksum: string): void {
    const at = this.checksums.get(step) ?? new Map<number, string>();
    at.set(rank, checksum);
    this.checksums.set(step, at);
    if (at.size < this.workers.length) return;
    this.checksums.delete(step);
    const reference = at.get(0);
    const diverged = [...at.entries()].filter(([, c]) => c !== reference).map(([r]) => r);
    if (diverged.length > 0) {
      this.fail(diverged[0], `replicas diverged at global step ${step}: the weights of rank(s) ${diverged.join(', ')} differ from rank 0's`);
    }
  }

  private fail(rank: number | null, message: string): void {
    if (this.failure != null || this.stopped) return;
    this.failure = new Failure(rank, `worker ${rank === null ? '(unknown rank)' : `rank ${rank}`} ${message}`);
    this.log.warn(this.failure.message);
    this.wake();
  }


  private interrupt(): void {
    if (this.stopRequested) {
      this.log.warn('second Ctrl-C: killing the workers');
      for (const w of this.workers) if (!w.exited) w.child.kill('SIGKILL');
      return;
    }
    this.stopRequested = true;
    this.log.info('Ctrl-C: all workers stop after the same step; rank 0 saves a checkpoint (Ctrl-C again to kill)');
    for (const w of this.workers) if (w.routingId) void this.control.send(w.routingId, { type: MessageType.Shutdown, reason: 'interrupt' });
  }

  /** Waits until `done()` holds, a failure happens, or a worker goes quiet for too long. */
  private until(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const started = Date.now();
    return new Promise<void>((resolve, reject) => {
      const check = () => {
        if (this.failure) return finish(() => reject(new WorkerExitedError(this.failure?.message ?? 'failed')));
        if (done()) return finish(() => resolve());
        if (Date.now() - started > timeoutMs) return finish(() => reject(new WorkerExitedError(`${what} within ${timeoutMs / 1000} s`)));
        const now = Date.now();
        for (const w of this.workers) {
          const limitMs = Math.max(this.options.hangTimeoutMs, 3 * w.longestStepMs);
          if (!w.done && !w.exited && now - w.lastSeenMs > limitMs) {
            this.fail(w.rank, `stopped responding (no message for ${Math.round((now - w.lastSeenMs) / 1000)} s) at epoch ${w.epoch + 1}, step ${w.step}: hung`);
            return check();
          }
        }
      };
      const timer = setInterval(check, 500);
      const finish = (then: () => void) => {
        clearInterval(timer);
        this.wake = () => undefined;
        then();
      };
      this.wake = check;
      check();
    }).then(
      () => undefined,
      (err: unknown) => {
        if (this.failure) return; // reported by run() after shutdown
        throw err;
      },
    );
  }

  /** Asks every worker to stop, then kills whatever is still running after a grace period. */
  private async shutdown(reason: string): Promise<void> {
    this.stopped = true;
    const alive = this.workers.filter((w) => !w.exited);
    for (const w of alive) if (w.routingId && !w.done) void this.control.send(w.routingId, { type: MessageType.Shutdown, reason }).catch(() => undefined);
    // A failed run kills at once: the survivors are blocked in a collective with a dead peer.
    if (this.failure) for (const w of alive) w.child.kill('SIGKILL');
    const deadline = Date.now() + EXIT_GRACE_MS;
    while (this.workers.some((w) => !w.exited) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const w of this.workers) if (!w.exited) w.child.kill('SIGKILL');
    while (this.workers.some((w) => !w.exited)) await new Promise((r) => setTimeout(r, 20));
  }
}

export async function runDataParallel(
  config: TrainConfig,
  devices: DeviceAssignment,
  log: Logger,
  hooks: Pick<CoordinatorOptions, 'onStepReport'> = {},
): Promise<TrainResult> {
  // Once, here: an unusable dataset fails before any worker starts, and the dataset
  // statistics are written by one process, not raced by N.
  await openTrainingData(config, true, log);
  return new Coordinator(config, devices, log, { hangTimeoutMs: config.hangTimeoutSec * 1000, ...hooks }).run();
}
