/**
 * `alexnet join`: the agent of one more host in a multi-host run (like torchrun's agent, but
 * started by hand on each host: no ssh). It
 *
 *   1. connects to the coordinator's rendezvous as a CURVE client with the cluster key and
 *      offers this host's workers (Join); a wrong key is refused by the coordinator's
 *      allow-list, which the agent reports after a few failed handshakes;
 *   2. waits until the coordinator has a worker for every rank and welcomes it with its rank
 *      block and the frozen config (Welcome), or refuses it (Dismiss);
 *   3. checks this host's copy of the dataset (and of the --resume checkpoint), computing the
 *      dataset statistics once for its workers, and reports a problem as a HostError;
 *   4. starts one worker per device; they connect to the coordinator and bind their ring
 *      sockets on this host's interface with CURVE, like the coordinator host's workers;
 *   5. reports every worker exit (WorkerExit) and stops its workers when the coordinator
 *      dismisses it (at once if the run failed: they may be stuck in a collective), when the
 *      coordinator is gone, or on a second Ctrl-C (the first one asks for a coordinated stop);
 *   6. when the coordinator restarts the run (a lost worker, --max-restarts), joins it again
 *      (runJoinAgent): a fresh agent, socket and workers, which load the newest checkpoint.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { validateTrainConfig, type TrainConfig } from '../../core/config';
import { CommTimeoutError, ConfigError, WorkerExitedError } from '../../core/errors';
import type { Logger } from '../../core/log';
import { WorkerControl } from '../control/sockets';
import type { CurveKeys } from '../security/curve-auth';
import { describeDeviceList, type DeviceAssignment } from '../../devices/discover';
import { COORDINATED_STOP_MESSAGE, LocalWorkers, describeExit, type LocalWorker } from './local-workers';
import {
  MessageType,
  PROTOCOL_VERSION,
  type ControlMessage,
  type DismissMessage,
  type WelcomeMessage,
} from '../control/messages';
import { describeRanks } from '../control/rank-blocks';
import { tcpRingAddress } from '../ring/ring-address';
import { newShmPrefix, sweepSegments } from '../shm/shm-group';

/** Consecutive failed CURVE handshakes after which the key is taken to be wrong. */
const HANDSHAKE_FAILURES_TO_GIVE_UP = 3;
const HEARTBEAT_MS = 2000;
const EXIT_GRACE_MS = 5000;

export interface JoinPlan {
  /** tcp://<coordinator>:<port>. */
  rendezvous: string;
  keys: CurveKeys;
  /** Absolute path of the key file, for the workers. */
  keyFile: string;
  devices: DeviceAssignment;
  /** This host's interface address for the ring sockets. */
  ringHost: string;
  ringPort: number;
  joinTimeoutMs: number;
  /** A coordinator that stays disconnected this long is gone (ZeroMQ reconnects blips by itself). */
  coordinatorTimeoutMs: number;
  /**
   * Once welcomed, before this host's workers start: opens this host's copy of the dataset
   * (and computes its statistics once for the workers). A failure is reported as a HostError.
   */
  prepareData: (config: TrainConfig) => Promise<void>;
}

/** Checks the welcome's config and that this host has the run's files at the coordinator's paths, then prepares the data. */
async function checkHostFiles(welcome: WelcomeMessage, plan: JoinPlan): Promise<void> {
  const config = validateTrainConfig(welcome.config, `the config from the coordinator at ${plan.rendezvous}`);
  if (!fs.existsSync(config.data)) {
    throw new ConfigError(
      `dataset ${config.data} does not exist on ${os.hostname()}: every host needs the dataset at the coordinator's path`,
    );
  }
  if (config.resume !== null && !fs.existsSync(config.resume)) {
    throw new ConfigError(
      `--resume checkpoint ${config.resume} does not exist on ${os.hostname()}: copy it to the same path on every host`,
    );
  }
  await plan.prepareData(config);
}

/** The coordinator restarts the run: this host joins it again. */
class RejoinRequested extends WorkerExitedError {}

/** A pause before joining again: the coordinator's next attempt binds once the last one has closed. */
const REJOIN_PAUSE_MS = 1000;

/** `alexnet join`: one agent per attempt of the run, as long as the coordinator restarts it. */
export async function runJoinAgent(plan: JoinPlan, log: Logger): Promise<void> {
  for (;;) {
    try {
      return await new JoinAgent(plan, log).run();
    } catch (err) {
      if (!(err instanceof RejoinRequested)) throw err;
      log.warn(`${err.message}; this host's workers are stopped, joining the restarted run at ${plan.rendezvous}`);
      await new Promise((r) => setTimeout(r, REJOIN_PAUSE_MS));
    }
  }
}

export class JoinAgent {
  private readonly control: WorkerControl;
  private readonly local = new LocalWorkers((w) => this.onWorkerExit(w));
  /** This host's shared-memory prefix for this attempt (an agent serves one attempt), swept when it ends. */
  private readonly shmPrefix = newShmPrefix();
  private dismissal: DismissMessage | null = null;
  private lost = false;
  private interrupted = false;
  private handshakeFailures = 0;
  private lostTimer: NodeJS.Timeout | null = null;
  /** Set once the workers have all exited and the wait for the coordinator's verdict is over. */
  private verdictTimer: NodeJS.Timeout | null = null;
  private verdictWaited = false;
  /** Settles the phase in progress: waiting for the welcome, or for the workers to exit. */
  private settle: { resolve: (m: WelcomeMessage | null) => void; reject: (err: Error) => void } | null = null;
  /** A failure that happened between phases (while checking files): the next phase fails with it. */
  private pendingError: Error | null = null;

  constructor(
    private readonly plan: JoinPlan,
    private readonly log: Logger,
  ) {
    this.control = new WorkerControl(plan.rendezvous, { curve: plan.keys, heartbeatMs: HEARTBEAT_MS });
  }

  async run(): Promise<void> {
    const onSignal = () => this.interrupt();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      this.watchCoordinator();
      void this.control.listen(
        (m) => this.onMessage(m),
        (err) =>
          this.fail(
            new WorkerExitedError(
              `the coordinator at ${this.plan.rendezvous} sent a malformed message: ${err.message}`,
            ),
          ),
      );
      const welcome = await this.join();
      await checkHostFiles(welcome, this.plan).catch(async (err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        await this.control
          .send({ type: MessageType.HostError, name: e.name, message: e.message })
          .catch(() => undefined);
        throw e;
      });
      if (this.pendingError) throw this.pendingError;
      this.startWorkers(welcome);
      await this.phase(() => this.checkFinished());
      this.log.info('the run finished; this host is done');
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (this.lostTimer) clearTimeout(this.lostTimer);
      if (this.verdictTimer) clearTimeout(this.verdictTimer);
      this.killWorkers();
      this.control.close();
      // Killed workers may leave segments behind (docs/shm.md, "Segments").
      await this.local.killAll();
      sweepSegments(this.shmPrefix);
    }
  }

  /** Offers this host's workers and waits for the welcome (or a refusal, or a timeout). */
  private async join(): Promise<WelcomeMessage> {
    const { rendezvous, devices, ringHost, joinTimeoutMs } = this.plan;
    const welcomed = this.phase(() => undefined);
    const timer = setTimeout(() => {
      const why =
        this.handshakeFailures > 0
          ? 'the CURVE handshake keeps failing'
          : 'is it running, and is its port reachable from here?';
      this.fail(
        new CommTimeoutError(
          `no answer from the coordinator at ${rendezvous} within ${joinTimeoutMs / 1000} s (${why})`,
        ),
      );
    }, joinTimeoutMs);
    try {
      await this.control.send({
        type: MessageType.Join,
        protocolVersion: PROTOCOL_VERSION,
        host: os.hostname(),
        address: ringHost,
        pid: process.pid,
        workers: devices.worldSize,
      });
      this.log.info(
        `offering ${describeDeviceList(devices)} to the coordinator at ${rendezvous}; ring sockets on ${ringHost}`,
      );
      return (await welcomed) as WelcomeMessage;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves with the welcome (join phase) or null (workers phase); `check` may settle at once. */
  private phase(check: () => void): Promise<WelcomeMessage | null> {
    return new Promise((resolve, reject) => {
      if (this.pendingError) return reject(this.pendingError);
      this.settle = { resolve, reject };
      check();
    });
  }

  private fail(err: Error): void {
    const settle = this.settle;
    this.settle = null;
    if (settle) settle.reject(err);
    else this.pendingError ??= err;
  }

  private watchCoordinator(): void {
    const { rendezvous } = this.plan;
    this.control.watchConnection({
      onConnected: () => {
        if (this.lostTimer) clearTimeout(this.lostTimer);
        this.lostTimer = null;
        if (this.handshakeFailures > 0 || this.workers.length === 0)
          this.log.info(`connected to the coordinator at ${rendezvous} (CURVE); waiting for the run to start`);
        this.handshakeFailures = 0;
      },
      onRefused: (why) => {
        if (++this.handshakeFailures < HANDSHAKE_FAILURES_TO_GIVE_UP) return;
        this.fail(
          new ConfigError(
            `the coordinator at ${rendezvous} refused this host's CURVE handshake (${why}): every host needs a copy of the coordinator's key file, not a key of its own`,
          ),
        );
      },
      onDisconnected: () => {
        if (this.dismissal !== null || this.lostTimer !== null) return;
        this.lostTimer = setTimeout(() => this.coordinatorLost(), this.plan.coordinatorTimeoutMs);
      },
    });
  }

  private coordinatorLost(): void {
    this.lost = true;
    this.log.warn(
      `lost the coordinator at ${this.plan.rendezvous} for ${this.plan.coordinatorTimeoutMs / 1000} s: stopping this host's workers`,
    );
    this.killWorkers();
    if (this.workers.length === 0) this.fail(new WorkerExitedError(`lost the coordinator at ${this.plan.rendezvous}`));
  }

  private onMessage(m: ControlMessage): void {
    if (m.type === MessageType.Welcome) {
      const settle = this.settle;
      this.settle = null;
      settle?.resolve(m);
    } else if (m.type === MessageType.Dismiss) {
      this.onDismiss(m);
    }
  }

  private onDismiss(m: DismissMessage): void {
    this.dismissal = m;
    if (this.workers.length === 0)
      return this.fail(
        m.rejoin ? new RejoinRequested(`the run restarts: ${m.reason}`) : new WorkerExitedError(m.reason),
      );
    if (m.failed) {
      this.log.warn(`the run failed: ${m.reason}`);
      this.killWorkers();
    } else {
      setTimeout(() => this.killWorkers(), EXIT_GRACE_MS).unref();
    }
    this.checkFinished();
  }

  private get workers(): readonly LocalWorker[] {
    return this.local.workers;
  }

  private startWorkers(welcome: WelcomeMessage): void {
    const { devices, rendezvous, ringHost, ringPort, keyFile } = this.plan;
    this.local.start({
      devices,
      firstRank: welcome.firstRank,
      worldSize: welcome.worldSize,
      controlAddress: rendezvous,
      ringAddress: (i) => tcpRingAddress(ringHost, ringPort, i),
      // The cross-ring sockets take the ports after the ring sockets' (docs/allreduce.md).
      crossRingAddress: (i) => tcpRingAddress(ringHost, ringPort, devices.worldSize + i),
      keyFile,
      shmPrefix: this.shmPrefix,
    });
    const ranks = describeRanks(welcome.firstRank, devices.worldSize);
    this.log.info(
      `started ${devices.worldSize} workers as ${ranks} of ${welcome.worldSize} (${this.local.describePids()})`,
    );
  }

  private onWorkerExit(w: LocalWorker): void {
    void this.control
      .send({ type: MessageType.WorkerExit, rank: w.rank, code: w.exitCode, signal: w.signal })
      .catch(() => undefined);
    this.checkFinished();
  }

  /** Once every worker has exited: done, or the reason this host's part failed. */
  private checkFinished(): void {
    if (this.workers.length === 0 || !this.workers.every((w) => w.exited)) return;
    // The coordinator's dismissal says how the run ended (and why, if it failed, which this
    // host may not know): wait a moment for it.
    if (this.dismissal === null && !this.lost && !this.verdictWaited) {
      this.verdictTimer ??= setTimeout(() => {
        this.verdictWaited = true;
        this.checkFinished();
      }, EXIT_GRACE_MS);
      return;
    }
    const settle = this.settle;
    this.settle = null;
    const failed = this.workers.find((w) => w.exitCode !== 0);
    if (this.lost)
      settle?.reject(
        new WorkerExitedError(`lost the coordinator at ${this.plan.rendezvous}; this host's workers were stopped`),
      );
    else if (this.dismissal?.rejoin) settle?.reject(new RejoinRequested(`the run restarts: ${this.dismissal.reason}`));
    else if (this.dismissal?.failed) settle?.reject(new WorkerExitedError(`the run failed: ${this.dismissal.reason}`));
    else if (failed)
      settle?.reject(
        new WorkerExitedError(
          `rank ${failed.rank} ${describeExit(failed.exitCode, failed.signal)}; the coordinator's output says why`,
        ),
      );
    else settle?.resolve(null);
  }

  private interrupt(): void {
    if (this.workers.length === 0) {
      void this.control
        .send({ type: MessageType.HostError, name: 'Interrupted', message: 'stopped by Ctrl-C before the run started' })
        .catch(() => undefined);
      this.fail(new WorkerExitedError('interrupted (Ctrl-C) before the run started'));
      return;
    }
    if (this.interrupted) {
      this.log.warn("second Ctrl-C: killing this host's workers");
      this.killWorkers();
      return;
    }
    this.interrupted = true;
    this.log.info(COORDINATED_STOP_MESSAGE);
    // A terminal signals the workers itself; a `kill` of this process alone does not.
    this.local.signalAll('SIGINT');
  }

  private killWorkers(): void {
    this.local.signalAll('SIGKILL');
  }
}
