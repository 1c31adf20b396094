/**
 * A worker process's side of the control plane and the ring, without any model: it binds its
 * ring socket, says hello, receives its rank's config (validated here, on receipt), connects
 * the ring to the next rank, sends heartbeats, and reports steps, checksums, the result or an
 * error. The worker's entry (src/worker-main.ts) joins this session to the training loop.
 *
 *   hello (ring endpoint) -> config -> ring connected -> ready -> steps ... -> done | error
 */
import * as os from 'node:os';
import { validateTrainConfig, type TrainConfig } from '../../core/config';
import { CommTimeoutError, ConfigError } from '../../core/errors';
import { CommThread } from '../comm-thread/comm-thread';
import { chooseDataPlane, type DataPlane } from '../comm-thread/data-plane';
import { shmUnavailableReason } from '../shm/addon';
import { ShmGroup } from '../shm/shm-group';
import { WorkerControl } from './sockets';
import { planeOf } from './cluster-plane';
import type { CurveKeys } from '../security/curve-auth';
import { readKeyFile } from '../security/keyfile';
import {
  MessageType,
  PROTOCOL_VERSION,
  stepReportMessage,
  weightsChecksum,
  type ConfigMessage,
  type PlaneAssignment,
  type ControlMessage,
  type StepFacts,
} from './messages';
import { parseRingAddress } from '../ring/ring-address';
import type { WorkerBootstrap } from './worker-env';

/** A peer that sends nothing for this long inside a collective is reported as dead. */
const COLLECTIVE_TIMEOUT_MS = 120_000;
const HEARTBEAT_MS = 1000;
const CONFIG_TIMEOUT_MS = 120_000;
/** How long a finished worker waits for the coordinator's shutdown before it exits anyway. */
const DONE_ACK_TIMEOUT_MS = 10_000;

/**
 * The cluster keys of a multi-host run, or null on one host. A tcp ring without keys is
 * refused here too, so no code path can open an unauthenticated network socket.
 */
export function workerKeys(boot: WorkerBootstrap): CurveKeys | null {
  if (boot.keyFile !== null) return readKeyFile(boot.keyFile);
  if (parseRingAddress(boot.ringAddress).kind === 'tcp')
    throw new ConfigError(`rank ${boot.rank}: a tcp ring (${boot.ringAddress}) needs the cluster key file`);
  return null;
}

function waitForConfig(
  control: WorkerControl,
  rank: number,
  onOther: (m: ControlMessage) => void,
): Promise<ConfigMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new CommTimeoutError(`rank ${rank}: no config from the coordinator within ${CONFIG_TIMEOUT_MS / 1000} s`),
        ),
      CONFIG_TIMEOUT_MS,
    );
    let configured = false;
    void control.listen(
      (m) => {
        if (!configured && m.type === MessageType.Config) {
          configured = true;
          clearTimeout(timer);
          resolve(m);
        } else {
          onOther(m);
        }
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/**
 * Puts the comm thread on its data plane: the coordinator's choice in a multi-host run
 * (`assigned`), else this rank's own (the same on every rank of one host). Null: a world of one.
 */
async function useDataPlane(
  boot: WorkerBootstrap,
  ring: CommThread,
  config: Readonly<TrainConfig>,
  assigned: PlaneAssignment | null,
): Promise<DataPlane | null> {
  const { rank, worldSize, shmPrefix } = boot;
  if (worldSize === 1) return null;
  const plane =
    assigned !== null
      ? planeOf(assigned)
      : chooseDataPlane(config.transport, shmPrefix !== null, () => shmUnavailableReason());
  if (plane.kind === 'zmq') return plane;
  if (shmPrefix === null) throw new ConfigError(`rank ${rank}: a shared-memory plane without a segment prefix`);
  if (plane.kind === 'shm') {
    // Blocks until every rank of the host mapped the group's control segment.
    await ring.useSharedMemory(
      ShmGroup.create({ rank, worldSize, prefix: shmPrefix, timeoutMs: COLLECTIVE_TIMEOUT_MS }),
    );
    return plane;
  }
  if (assigned?.kind !== 'hierarchical') throw new Error(`rank ${rank}: a hierarchical plane without an assignment`);
  const { localRank, localSize, hostIndex, hosts, crossNextEndpoint } = assigned;
  // Blocks until every rank of this host mapped the group's control segment.
  const host = ShmGroup.create({
    rank: localRank,
    worldSize: localSize,
    prefix: shmPrefix,
    timeoutMs: COLLECTIVE_TIMEOUT_MS,
  });
  await ring.useHierarchical(host, { localRank, localSize, hostIndex, hosts }, crossNextEndpoint);
  return plane;
}

export class WorkerSession {
  /** Set by the coordinator's shutdown (Ctrl-C) or a signal: every rank stops after the same step. */
  stopRequested = false;
  private heartbeat: NodeJS.Timeout | null = null;
  private shutdownReceived: Promise<void> = Promise.resolve();

  private constructor(
    readonly boot: WorkerBootstrap,
    readonly control: WorkerControl,
    /** The ring, on its own thread: the training loop's collective. */
    readonly collective: CommThread,
    /** This rank's frozen config, as the coordinator sent it and validated on receipt. */
    readonly config: Readonly<TrainConfig>,
    /** What carries the collectives (null: a world of one, nothing to carry). */
    readonly dataPlane: DataPlane | null,
  ) {}

  /** Binds the ring, says hello, waits for the config and connects the ring to rank + 1. */
  static async open(boot: WorkerBootstrap, control: WorkerControl, keys: CurveKeys | null): Promise<WorkerSession> {
    const { rank, worldSize } = boot;
    const ring = await CommThread.start({
      rank,
      worldSize,
      bindAddress: boot.ringAddress,
      crossBindAddress: boot.crossRingAddress,
      curve: keys,
      timeoutMs: COLLECTIVE_TIMEOUT_MS,
    });
    try {
      let released: () => void = () => undefined;
      let session: WorkerSession | null = null;
      let stopEarly = false;
      const shutdownReceived = new Promise<void>((resolve) => (released = resolve));
      const configPromise = waitForConfig(control, rank, (m) => {
        if (m.type !== MessageType.Shutdown) return;
        if (session) session.stopRequested = true;
        else stopEarly = true;
        released();
      });
      await control.send({
        type: MessageType.Hello,
        rank,
        protocolVersion: PROTOCOL_VERSION,
        pid: process.pid,
        host: os.hostname(),
        dataEndpoint: ring.endpoint,
        crossEndpoint: ring.crossEndpoint,
        shmUnavailable: shmUnavailableReason(),
      });
      const message = await configPromise;
      if (message.rank !== rank || message.worldSize !== worldSize) {
        throw new ConfigError(
          `rank ${rank}/${worldSize} was sent the config of rank ${message.rank}/${message.worldSize}`,
        );
      }
      const config = validateTrainConfig(message.config, `rank ${rank}: the config from the coordinator`);
      await ring.connect(message.nextEndpoint, config.wireDtype);
      const plane = await useDataPlane(boot, ring, config, message.plane);
      session = new WorkerSession(boot, control, ring, config, plane);
      session.stopRequested = stopEarly;
      session.shutdownReceived = shutdownReceived;
      session.heartbeat = setInterval(
        () => void control.send({ type: MessageType.Heartbeat, rank, timeMs: Date.now() }),
        HEARTBEAT_MS,
      );
      session.heartbeat.unref();
      return session;
    } catch (err) {
      await ring.close();
      throw err;
    }
  }

  /** The backend is up: the training loop starts (with the initial weights broadcast). */
  ready(): Promise<void> {
    return this.control.send({ type: MessageType.Ready, rank: this.boot.rank });
  }

  reportStep(step: StepFacts): Promise<void> {
    return this.control.send(stepReportMessage(this.boot.rank, step));
  }

  /** This rank's weights at a global step, for the coordinator to compare across ranks. */
  reportWeights(weights: Float32Array, globalStep: number): Promise<void> {
    return this.control.send({
      type: MessageType.Checksum,
      rank: this.boot.rank,
      step: globalStep,
      checksum: weightsChecksum(weights),
    });
  }

  /**
   * Finished: sends the result (rank 0's, as plain data) and waits for the coordinator's
   * shutdown, since a message still queued in the socket would be lost by process.exit.
   */
  async done(epochs: number, result: Record<string, unknown> | null): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.control.send({ type: MessageType.Done, rank: this.boot.rank, steps: epochs, result });
    await Promise.race([this.shutdownReceived, new Promise((r) => setTimeout(r, DONE_ACK_TIMEOUT_MS).unref())]);
  }

  async close(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.collective.close();
  }
}

/** Tells the coordinator why this worker failed (best effort: the coordinator may be gone). */
export async function reportWorkerError(control: WorkerControl, rank: number, err: unknown): Promise<void> {
  const e = err instanceof Error ? err : new Error(String(err));
  await control
    .send({ type: MessageType.Error, rank, name: e.name, message: e.message, stack: e.stack ?? null })
    .catch(() => undefined);
}

/**
 * If the process that started this worker dies (kill -9, a crash), the worker is re-parented:
 * it must not live on as an orphan. The expected parent comes from the spawner, not from
 * process.ppid here: a spawner that died while this process loaded its modules (seconds) would
 * already be replaced by its re-parent (init, or a subreaper like tap) and never be missed.
 */
export function exitWhenOrphaned(rank: number, spawnerPid: number | null): void {
  const parentPid = spawnerPid ?? process.ppid;
  const check = (): void => {
    if (process.ppid !== parentPid) {
      process.stderr.write(`[rank ${rank}] the process that started this worker (pid ${parentPid}) is gone: exiting\n`);
      process.exit(1);
    }
  };
  check();
  setInterval(check, 500).unref();
}
