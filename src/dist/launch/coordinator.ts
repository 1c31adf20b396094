/**
 * The coordinator: control plane only, no model and no tensors. It starts one worker process
 * per device, does the rendezvous (hello -> config), watches health (exit codes, heartbeats,
 * malformed messages, replica checksums), relays Ctrl-C as a coordinated stop, and shuts every
 * worker down on the first failure: no orphans, no hang, a message naming rank, step and cause.
 *
 * In a multi-host run (`train --rendezvous`) the control plane listens on tcp with CURVE, and
 * the coordinator first gathers join agents of the other hosts (dist/control/host-rendezvous.ts), then
 * starts its own workers (local-workers.ts) and welcomes the agents, which start theirs.
 * Remote workers are watched like local ones; their exits are reported by their agent, and on
 * failure the agent kills them.
 *
 * The coordinator knows nothing of models or datasets: the caller passes what must happen
 * once before any worker starts (opening the dataset, writing its statistics) as a function.
 */
import * as path from 'node:path';
import type { TrainConfig } from '../../core/config';
import { WorkerExitedError, WorkerLostError } from '../../core/errors';
import type { Logger } from '../../core/log';
import { CoordinatorControl } from '../control/sockets';
import type { DeviceAssignment } from '../../devices/discover';
import { HostRendezvous, type ClusterPlan } from '../control/host-rendezvous';
import { describeRestart, runWithRestarts, type ResumePoint, type RestartEvent } from './restarts';
import { COORDINATED_STOP_MESSAGE, LocalWorkers, describeExit } from './local-workers';
import {
  MessageType,
  PROTOCOL_VERSION,
  type ControlMessage,
  type HelloMessage,
  type HostErrorMessage,
  type PlaneAssignment,
  type StepReportMessage,
  type WorkerExitMessage,
} from '../control/messages';
import { describeHost } from '../control/rank-blocks';
import { ReplicaChecksums, hungWorker, newWorkerState, type WorkerState } from './worker-health';
import { bindError, createIpcRingDir, ipcRingAddress, removeIpcRingDir, tcpRingAddress } from '../ring/ring-address';
import { newShmPrefix, sweepSegments } from '../shm/shm-group';
import { clusterPlanes } from '../control/cluster-plane';
import { chooseDataPlane } from '../comm-thread/data-plane';
import { shmUnavailableReason } from '../shm/addon';

const RENDEZVOUS_TIMEOUT_MS = 120_000;
const EXIT_GRACE_MS = 5000;

/** The first thing that went wrong, as the user will read it. */
class Failure {
  constructor(
    readonly rank: number | null,
    readonly message: string,
    /** Set when a worker died or hung (where it was): the group may be restarted. */
    readonly lost: WorkerState | null = null,
  ) {}
}

/** Where this host's control plane listens and its workers' ring sockets bind. */
interface LocalSockets {
  controlAddress: string;
  ringAddress(rank: number): string;
  keyFile: string | null;
  /** This host's shared-memory segments' prefix (fresh per attempt). */
  shmPrefix: string | null;
  /** Multi-host runs: where this host's i-th worker binds its cross-ring socket; null on one host. */
  crossRingAddress: ((localIndex: number) => string) | null;
  /** Removes what was made for the sockets (the private ipc folder) and any segment left behind. */
  cleanup(): void;
}

/**
 * One host: ipc in a fresh 0700 folder. Several: tcp on this host's interface, with CURVE; the
 * `localWorkers` ring sockets take ports P.., their cross-ring sockets the next ones (P+L..).
 * Either way a fresh shared-memory prefix for this host.
 */
function localSockets(cluster: ClusterPlan | undefined, localWorkers: number): LocalSockets {
  // Segments are unlinked once every rank attached; the sweep removes what a rank killed in
  // between left (docs/shm.md, "Segments").
  const shmPrefix = newShmPrefix();
  if (cluster) {
    const { rendezvous, ringHost, ringPort, keyFile } = cluster;
    return {
      controlAddress: rendezvous,
      ringAddress: (rank) => tcpRingAddress(ringHost, ringPort, rank),
      crossRingAddress: (i) => tcpRingAddress(ringHost, ringPort, localWorkers + i),
      keyFile,
      shmPrefix,
      cleanup: () => void sweepSegments(shmPrefix),
    };
  }
  const dir = createIpcRingDir();
  return {
    controlAddress: `ipc://${path.join(dir, 'control.sock')}`,
    ringAddress: (rank) => ipcRingAddress(dir, rank),
    crossRingAddress: null,
    keyFile: null,
    shmPrefix,
    cleanup: () => {
      removeIpcRingDir(dir);
      sweepSegments(shmPrefix);
    },
  };
}

/** How long a wait may last, and the error it ends with then. */
interface Deadline {
  ms: number;
  error: () => Error;
}

export interface CoordinatorOptions {
  /** No message from a worker for this long (or 3x its slowest step, if longer) means it hangs. */
  hangTimeoutMs: number;
  /** Called with every worker's report of every step, as it arrives (benchmarks time steps with it). */
  onStepReport?: (report: StepReportMessage) => void;
  /** Called with each worker's hello and heartbeat once accepted (the run's workers.jsonl, the dashboard). */
  onWorkerSeen?: (seen: WorkerSeen) => void;
  /** Run across hosts: listen at the rendezvous with CURVE and wait for join agents. */
  cluster?: ClusterPlan;
  /** A lost worker will be restarted: the other hosts' agents are told to join again. */
  restartOnLost?: boolean;
  /** Called with the control plane's bound address (a restart listens at the same one). */
  onBound?: (address: string) => void;
}

/** A worker said hello (who and where it is) or sent a heartbeat; timeMs: when the coordinator heard it. */
export type WorkerSeen =
  | { kind: 'hello'; rank: number; host: string; pid: number; timeMs: number }
  | { kind: 'heartbeat'; rank: number; timeMs: number };

/** Rank 0's result, as plain data: the caller knows its shape (src/train's TrainResult). */
export type RunResult = Record<string, unknown>;

export class Coordinator {
  private readonly control: CoordinatorControl;
  private readonly workers: WorkerState[] = [];
  private readonly localWorkers = new LocalWorkers((w) =>
    this.onWorkerExit(this.workers[w.rank], w.exitCode, w.signal),
  );
  /** Multi-host runs only: the other hosts and their rank blocks. */
  private readonly hosts: HostRendezvous | null;
  private readonly worldSize: number;
  private failure: Failure | null = null;
  private result: RunResult | null = null;
  private checksums: ReplicaChecksums | null = null;
  private stopRequested = false;
  /** Set once shutdown begins: exits after that are expected, not failures. */
  private stopped = false;
  /** Each rank's bound ring endpoint, from its hello. */
  private readonly endpoints = new Map<number, string>();
  /** Each rank's hello, for the plane of a multi-host run (its cross-ring endpoint, whether shm runs there). */
  private readonly hellos = new Map<number, HelloMessage>();
  private wake: () => void = () => undefined;

  constructor(
    private readonly config: TrainConfig,
    private readonly devices: DeviceAssignment,
    private readonly log: Logger,
    private readonly options: CoordinatorOptions,
  ) {
    const cluster = options.cluster;
    this.control = new CoordinatorControl(cluster?.keys ?? null);
    this.hosts = cluster ? new HostRendezvous(cluster, devices.worldSize, this.control, log) : null;
    this.worldSize = cluster ? cluster.worldSize : devices.worldSize;
  }

  async run(): Promise<RunResult> {
    const sockets = localSockets(this.options.cluster, this.devices.worldSize);
    const onSigint = () => this.interrupt();
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigint);
    let error: unknown = null;
    try {
      const controlAddress = await this.openControlPlane(sockets.controlAddress);
      this.options.onBound?.(controlAddress);
      await this.hosts?.gather(controlAddress, (done, deadline) => this.until(done, deadline));
      this.startLocalWorkers(controlAddress, sockets);
      await this.welcomeHosts();
      await this.until(() => this.workers.every((w) => w.routingId !== null), {
        ms: RENDEZVOUS_TIMEOUT_MS,
        error: () =>
          new WorkerExitedError(
            `rendezvous: ${this.silentWorkers()} did not say hello within ${RENDEZVOUS_TIMEOUT_MS / 1000} s`,
          ),
      });
      if (this.hosts)
        this.log.info(
          `ring: ${this.workers.map((w) => `rank ${w.rank} ${this.endpoints.get(w.rank) ?? '?'}`).join(' -> ')} -> rank 0`,
        );
      await this.sendConfigs();
      await this.until(() => this.workers.every((w) => w.done));
    } catch (err) {
      error = err;
      throw err;
    } finally {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigint);
      const reason = this.failure?.message ?? (error instanceof Error ? error.message : 'finished');
      await this.shutdown(reason, this.failure !== null || error !== null);
      this.control.close();
      sockets.cleanup();
    }
    if (this.failure) throw this.failureError(this.failure);
    if (this.result == null) throw new WorkerExitedError('rank 0 finished without reporting its result');
    return this.result;
  }

  /** Binds the control plane (private ipc, or the rendezvous with CURVE); returns the bound address. */
  private async openControlPlane(address: string): Promise<string> {
    const bound = await this.control.bind(address).catch((err: unknown) => {
      throw bindError(address, err);
    });
    void this.control.listen(
      (id, m) => this.onMessage(id, m),
      (id, err) => this.fail(this.rankOf(id), `sent a malformed control message: ${err.message}`),
    );
    this.hosts?.watchRefusals(bound);
    return bound;
  }

  private startLocalWorkers(controlAddress: string, sockets: LocalSockets): void {
    const { devices } = this;
    this.localWorkers.start({
      devices,
      firstRank: 0,
      worldSize: this.worldSize,
      controlAddress,
      ringAddress: (i) => sockets.ringAddress(i),
      keyFile: sockets.keyFile,
      shmPrefix: sockets.shmPrefix,
      crossRingAddress: sockets.crossRingAddress,
    });
    for (const w of this.localWorkers.workers) this.workers.push(newWorkerState(w.rank, w, null));
    this.log.info(`started ${devices.worldSize} workers (${this.localWorkers.describePids()})`);
  }

  /** Multi-host runs: every rank has a host now; each agent learns its ranks and starts them. */
  private async welcomeHosts(): Promise<void> {
    if (this.hosts === null) return;
    for (const host of this.hosts.hosts) {
      for (let rank = host.firstRank; rank < host.firstRank + host.workers; rank++) {
        if (this.workers.length !== rank) throw new Error(`rank table out of order at rank ${rank}`);
        this.workers.push(newWorkerState(rank, null, host));
      }
    }
    await this.hosts.welcome(this.config);
  }

  /**
   * Multi-host runs: each rank's data plane, chosen here once so that every host agrees
   * (ConfigError for --transport shm where the hierarchical plane cannot run). Null on one host.
   */
  private planes(): PlaneAssignment[] | null {
    if (this.hosts === null) return null;
    const hostSizes = [this.devices.worldSize, ...this.hosts.hosts.map((h) => h.workers)];
    const hellos = this.workers.map((w) => this.hellos.get(w.rank) ?? { crossEndpoint: null, shmUnavailable: null });
    return clusterPlanes(this.config.transport, hostSizes, hellos);
  }

  private async sendConfigs(): Promise<void> {
    const n = this.workers.length;
    const endpoints = this.workers.map((w) => this.endpoints.get(w.rank) as string);
    const planes = this.planes();
    await Promise.all(
      this.workers.map((w) =>
        this.control.send(w.routingId as Uint8Array, {
          type: MessageType.Config,
          rank: w.rank,
          worldSize: n,
          nextEndpoint: endpoints[(w.rank + 1) % n],
          config: this.config as unknown as Record<string, unknown>,
          plane: planes?.[w.rank] ?? null,
        }),
      ),
    );
  }

  /** "ranks 2, 3 (on gpu-2)" for the workers that have not said hello. */
  private silentWorkers(): string {
    const silent = this.workers.filter((w) => w.routingId === null);
    const hosts = [...new Set(silent.map((w) => w.host?.host ?? 'this host'))];
    return `rank(s) ${silent.map((w) => w.rank).join(', ')} (on ${hosts.join(', ')})`;
  }

  private rankOf(id: Uint8Array): number | null {
    const w = this.workers.find(
      (x) => x.routingId !== null && Buffer.compare(Buffer.from(x.routingId), Buffer.from(id)) === 0,
    );
    return w ? w.rank : null;
  }

  private onMessage(id: Uint8Array, m: ControlMessage): void {
    switch (m.type) {
      case MessageType.Hello:
        return this.onHello(id, m);
      case MessageType.Join:
        if (this.stopped) {
          // This attempt is ending: an agent that hurried to rejoin tries again, at the next one.
          const rejoin = this.restarting;
          void this.control.send(id, {
            type: MessageType.Dismiss,
            reason: rejoin ? 'the run is restarting' : 'the run is over',
            failed: true,
            rejoin,
          });
        } else if (this.hosts === null) {
          void this.control.send(id, {
            type: MessageType.Dismiss,
            reason: 'the coordinator refused this host: this run takes no other hosts',
            failed: true,
            rejoin: false,
          });
        } else {
          this.hosts.onJoin(id, m);
        }
        return this.wake();
      case MessageType.WorkerExit:
        return this.onRemoteExit(id, m);
      case MessageType.HostError:
        return this.onHostError(id, m);
      default:
        break;
    }
    const rank = this.rankOf(id);
    if (rank === null || !('rank' in m) || m.rank !== rank)
      return this.fail(rank, `sent a message for another rank (${m.type})`);
    const w = this.workers[rank];
    w.lastSeenMs = Date.now();
    switch (m.type) {
      case MessageType.StepReport:
        w.step = m.step;
        w.epoch = m.epoch;
        w.longestStepMs = Math.max(w.longestStepMs, m.stepMs);
        this.options.onStepReport?.(m);
        break;
      case MessageType.Heartbeat:
        this.options.onWorkerSeen?.({ kind: 'heartbeat', rank, timeMs: w.lastSeenMs });
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

  private onHello(id: Uint8Array, m: HelloMessage): void {
    const w = this.workers[m.rank];
    // A local worker is known by its pid; a remote one by the host its agent joined from.
    const known = w != null && (w.local !== null ? w.local.child.pid === m.pid : w.host?.host === m.host);
    if (!known) return this.fail(m.rank, `hello from an unknown process (pid ${m.pid} on ${m.host})`);
    if (w.routingId !== null) return this.fail(m.rank, `said hello twice (pid ${m.pid} on ${m.host})`);
    if (m.protocolVersion !== PROTOCOL_VERSION)
      return this.fail(m.rank, `speaks protocol ${m.protocolVersion}, the coordinator ${PROTOCOL_VERSION}`);
    w.routingId = id;
    this.endpoints.set(m.rank, m.dataEndpoint);
    this.hellos.set(m.rank, m);
    w.lastSeenMs = Date.now();
    this.options.onWorkerSeen?.({ kind: 'hello', rank: m.rank, host: m.host, pid: m.pid, timeMs: w.lastSeenMs });
    this.wake();
  }

  /** A join agent reports that one of its workers exited. */
  private onRemoteExit(id: Uint8Array, m: WorkerExitMessage): void {
    const host = this.hosts?.hostOf(id);
    const w = this.workers[m.rank];
    if (host === undefined || w === undefined || w.host !== host) {
      this.log.warn(`ignored an exit report for rank ${m.rank} from a host that does not hold it`);
      return;
    }
    this.onWorkerExit(w, m.code, m.signal);
  }

  private onHostError(id: Uint8Array, m: HostErrorMessage): void {
    const host = this.hosts?.hostOf(id);
    if (host === undefined)
      return this.log.warn(`ignored an error report from a host that has not joined: ${m.name}: ${m.message}`);
    this.failWith(host.firstRank, `host ${describeHost(host)} cannot take part: ${m.name}: ${m.message}`);
  }

  private onWorkerExit(w: WorkerState, code: number | null, signal: string | null): void {
    w.exited = true;
    if (!w.done || code !== 0) {
      // A moment's grace: a worker that reported its error before exiting is named by it.
      setTimeout(
        () => this.fail(w.rank, `${describeExit(code, signal)} at epoch ${w.epoch + 1}, step ${w.step}`, w),
        300,
      );
    }
    this.wake();
  }

  /** Every rank reports a checksum at the same global steps; they must all be equal. */
  private compareChecksum(rank: number, step: number, checksum: string): void {
    this.checksums ??= new ReplicaChecksums(this.workers.length);
    const diverged = this.checksums.add(rank, step, checksum);
    if (diverged.length > 0) {
      this.fail(
        diverged[0],
        `replicas diverged at global step ${step}: the weights of rank(s) ${diverged.join(', ')} differ from rank 0's`,
      );
    }
  }

  /** A failure of one worker: "worker rank 1 (on gpu-2) exited with code 3 ...". */
  private fail(rank: number | null, message: string, lost: WorkerState | null = null): void {
    const host = rank === null ? null : this.workers[rank]?.host;
    const who = rank === null ? '(unknown rank)' : `rank ${rank}${host ? ` (on ${host.host})` : ''}`;
    // After Ctrl-C a worker that dies (a second Ctrl-C kills them) is no reason to restart.
    this.failWith(rank, `worker ${who} ${message}`, this.stopRequested ? null : lost);
  }

  private failWith(rank: number | null, message: string, lost: WorkerState | null = null): void {
    if (this.failure != null || this.stopped) return;
    this.failure = new Failure(rank, message, lost);
    this.log.warn(this.failure.message);
    this.wake();
  }

  /** A worker was lost and will be restarted: the other hosts join the next attempt. */
  private get restarting(): boolean {
    return this.failure?.lost != null && this.options.restartOnLost === true;
  }

  /** The error a failure ends the run with: a lost worker's says where, for a restart. */
  private failureError(failure: Failure): WorkerExitedError {
    const { lost, message } = failure;
    return lost ? new WorkerLostError(message, lost.rank, lost.epoch + 1, lost.step) : new WorkerExitedError(message);
  }

  private interrupt(): void {
    if (this.workers.length === 0) {
      this.failWith(null, 'interrupted (Ctrl-C) while waiting for other hosts to join');
      return;
    }
    if (this.stopRequested) {
      this.log.warn('second Ctrl-C: killing the workers');
      this.localWorkers.signalAll('SIGKILL');
      return;
    }
    this.stopRequested = true;
    this.log.info(COORDINATED_STOP_MESSAGE);
    for (const w of this.workers)
      if (w.routingId) void this.control.send(w.routingId, { type: MessageType.Shutdown, reason: 'interrupt' });
  }

  /**
   * Waits until `done()` holds. Rejects on the first failure (with its message), when a worker
   * goes quiet for too long, or when the deadline passes: run() then shuts everything down.
   */
  private until(done: () => boolean, deadline: Deadline | null = null): Promise<void> {
    const started = Date.now();
    return new Promise<void>((resolve, reject) => {
      const check = () => {
        const failure = this.failure;
        if (failure) return finish(() => reject(this.failureError(failure)));
        if (done()) return finish(() => resolve());
        if (deadline !== null && Date.now() - started > deadline.ms) return finish(() => reject(deadline.error()));
        const now = Date.now();
        const hung = hungWorker(this.workers, now, this.options.hangTimeoutMs);
        if (hung !== undefined) {
          this.fail(
            hung.rank,
            `stopped responding (no message for ${Math.round((now - hung.lastSeenMs) / 1000)} s) at epoch ${hung.epoch + 1}, step ${hung.step}: hung`,
            hung,
          );
          return check();
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
    });
  }

  /**
   * Asks every worker to stop, then kills whatever is still running after a grace period.
   * Join agents are dismissed; on failure they kill their workers at once (those are blocked
   * in a collective with a dead peer), as this host's are killed here.
   */
  private async shutdown(reason: string, failed: boolean): Promise<void> {
    this.stopped = true;
    this.hosts?.dismissAll(reason, failed, failed && this.restarting);
    for (const w of this.workers)
      if (!w.exited && w.routingId && !w.done)
        void this.control.send(w.routingId, { type: MessageType.Shutdown, reason }).catch(() => undefined);
    if (failed) this.localWorkers.signalAll('SIGKILL');
    // Remote exits arrive as agent reports: waited for only while a remote worker may still be
    // running (not done), within the grace.
    const running = (w: WorkerState) => !w.exited && (w.local !== null || !w.done);
    const deadline = Date.now() + EXIT_GRACE_MS;
    while (this.workers.some(running) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await this.localWorkers.killAll();
  }
}

export interface DataParallelOptions extends Pick<CoordinatorOptions, 'onStepReport' | 'onWorkerSeen' | 'cluster'> {
  /** Runs once before any worker starts (opens the dataset, writes its statistics). */
  prepareData: () => Promise<void>;
  /** The newest checkpoint that loads (restarts continue from it); without it, restarts start over. */
  newestCheckpoint?: () => ResumePoint | null;
  /** Records a restart in the run's files (after it is logged here). */
  onRestart?: (event: RestartEvent) => void;
}

/**
 * Runs training on `devices` worker processes (and, with a cluster plan, on other hosts'
 * workers too). `prepareData` runs once before any worker starts: an unusable dataset fails
 * there, and the dataset statistics are written by one process, not raced by N.
 *
 * A worker that dies or hangs restarts the whole group, each time with a fresh control plane,
 * ring and worker processes, continuing from the newest checkpoint (the workers load it as the
 * config's `resume`), at most --max-restarts times. In a run across hosts the coordinator
 * listens again at the same address, and the other hosts (those that are left, and a host that
 * dropped, or its replacement, running `alexnet join` again) join within --rejoin-timeout; the
 * world size stays the same. The run directory must then be on storage every host sees.
 */
export async function runDataParallel(
  config: TrainConfig,
  devices: DeviceAssignment,
  log: Logger,
  options: DataParallelOptions,
): Promise<RunResult> {
  // On one host every rank makes this choice from the same inputs: --transport shm where shared
  // memory cannot run is refused here, before any worker starts, with the error they would give.
  if (options.cluster === undefined && devices.worldSize > 1 && config.transport === 'shm')
    chooseDataPlane(config.transport, true, () => shmUnavailableReason());
  await options.prepareData();
  let cluster = options.cluster;
  // A restart listens where the first attempt did (its real port, if it was 0) and gives the
  // other hosts --rejoin-timeout to join again.
  const onBound = (address: string) => {
    if (cluster) cluster = { ...cluster, rendezvous: address, joinTimeoutSec: cluster.rejoinTimeoutSec };
  };
  return runWithRestarts({
    maxRestarts: config.maxRestarts,
    attempt: (resume, restartOnLost) =>
      new Coordinator(resume === null ? config : { ...config, resume: resume.file }, devices, log, {
        hangTimeoutMs: config.hangTimeoutSec * 1000,
        onStepReport: options.onStepReport,
        onWorkerSeen: options.onWorkerSeen,
        cluster,
        restartOnLost,
        onBound,
      }).run(),
    newestCheckpoint: options.newestCheckpoint ?? (() => null),
    onRestart: (event) => {
      log.warn(describeRestart(event));
      options.onRestart?.(event);
    },
  });
}
