/**
 * One data-parallel worker process: a full AlexNet replica on its own device. Started by the
 * coordinator, or on another host by its join agent (never by hand), with its rank and
 * addresses in the environment:
 *
 *   hello (ring endpoint) -> config -> ring connected -> the shared training loop, with the
 *   ring all-reduce as its collective -> done (or error) -> exit.
 *
 * Rank 0 prints progress and writes checkpoints; every rank reports each step to the
 * coordinator, which watches health.
 */
import * as os from 'node:os';
import { describeBackend, initBackend } from '../backend';
import { deepFreeze, env, type TrainConfig, type WorkerBootstrap } from '../config';
import { CommTimeoutError, ConfigError } from '../errors';
import { Trainer, type Collective, type StepReport, type TrainResult } from '../train/trainer';
import { consoleLogger, type Logger } from '../util/log';
import { broadcast, ringAllReduce } from './allreduce';
import { WorkerControl } from './control';
import type { CurveKeys } from './curve';
import { readKeyFile } from './keyfile';
import { MessageType, PROTOCOL_VERSION, stepReportMessage, weightsChecksum, type ConfigMessage, type ControlMessage } from './protocol';
import { parseRingAddress } from './ring-address';
import { ZmqRingTransport } from './zmq-ring';

/** A peer that sends nothing for this long inside a collective is reported as dead. */
const COLLECTIVE_TIMEOUT_MS = 120_000;
const HEARTBEAT_MS = 1000;
const CONFIG_TIMEOUT_MS = 120_000;

function waitForConfig(control: WorkerControl, rank: number, onOther: (m: ControlMessage) => void): Promise<ConfigMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new CommTimeoutError(`rank ${rank}: no config from the coordinator within ${CONFIG_TIMEOUT_MS / 1000} s`)), CONFIG_TIMEOUT_MS);
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

function injectFault(control: WorkerControl, kind: 'crash' | 'hang' | 'garbage'): void {
  if (kind === 'crash') process.exit(3);
  if (kind === 'garbage') void control.sendRaw(Buffer.from('this is not a control message'));
  if (kind === 'hang') for (;;); // blocks the event loop: no heartbeats, no ring traffic
}

function makeCollective(boot: WorkerBootstrap, ring: ZmqRingTransport, control: WorkerControl): Collective {
  const { rank, worldSize } = boot;
  const fault = env.fault();
  const options = { timeoutMs: COLLECTIVE_TIMEOUT_MS };
  return {
    rank,
    worldSize,
    allReduce: (buffer) => ringAllReduce(buffer, ring, rank, worldSize, options),
    broadcast: (buffer, root) => broadcast(buffer, ring, root, options),
    onStep: (r: StepReport) => {
      void control.send(stepReportMessage(rank, r));
      if (fault && fault.rank === rank && fault.step === r.step) injectFault(control, fault.kind);
    },
    verifyReplicas: async (weights, globalStep) => {
      await control.send({ type: MessageType.Checksum, rank, step: globalStep, checksum: weightsChecksum(weights) });
    },
  };
}

/** A TrainResult as plain data for the Done message (NaN and Infinity become null in msgpack-safe JSON). */
function plainResult(result: TrainResult): Record<string, unknown> {
  return JSON.parse(JSON.stringify(result)) as Record<string, unknown>;
}

/**
 * The cluster keys of a multi-host run, or null on one host. A tcp ring without keys is
 * refused here too, so no code path can open an unauthenticated network socket.
 */
function workerKeys(boot: WorkerBootstrap): CurveKeys | null {
  if (boot.keyFile !== null) return readKeyFile(boot.keyFile);
  if (parseRingAddress(boot.ringAddress).kind === 'tcp') throw new ConfigError(`rank ${boot.rank}: a tcp ring (${boot.ringAddress}) needs the cluster key file`);
  return null;
}

async function runWorker(boot: WorkerBootstrap, control: WorkerControl, keys: CurveKeys | null, log: Logger): Promise<void> {
  const { rank, worldSize } = boot;
  const ring = await ZmqRingTransport.bind({ rank, worldSize, bindAddress: boot.ringAddress, ...(keys ? { curve: keys } : {}) });
  let stopRequested = false;
  const requestStop = () => {
    stopRequested = true; // the coordinator also asks; all ranks stop after the same step
  };
  process.on('SIGINT', requestStop);
  process.on('SIGTERM', requestStop);
  try {
    let released: () => void = () => undefined;
    const shutdownReceived = new Promise<void>((resolve) => (released = resolve));
    const configPromise = waitForConfig(control, rank, (m) => {
      if (m.type === MessageType.Shutdown) {
        stopRequested = true;
        released();
      }
    });
    await control.send({ type: MessageType.Hello, rank, protocolVersion: PROTOCOL_VERSION, pid: process.pid, host: os.hostname(), dataEndpoint: ring.endpoint });
    const message = await configPromise;
    if (message.rank !== rank || message.worldSize !== worldSize) {
      throw new ConfigError(`rank ${rank}/${worldSize} was sent the config of rank ${message.rank}/${message.worldSize}`);
    }
    const config = deepFreeze(message.config as unknown as TrainConfig);
    await ring.connect(message.nextEndpoint);
    const heartbeat = setInterval(() => void control.send({ type: MessageType.Heartbeat, rank, timeMs: Date.now() }), HEARTBEAT_MS);
    heartbeat.unref();
    // CPU-simulated devices are wasm workers, one thread each (or cpu if asked for).
    const backendChoice = boot.deviceKind === 'cpu' && config.backend !== 'cpu' ? 'wasm' : config.backend;
    const backend = await initBackend(backendChoice, boot.deviceKind === 'gpu');
    if (rank === 0) log.info(describeBackend(backend));
    await control.send({ type: MessageType.Ready, rank });
    const trainer = new Trainer(config, { log, tty: rank === 0 && env.isTTY(), collective: makeCollective(boot, ring, control), shouldStop: () => stopRequested });
    const result = await trainer.run();
    clearInterval(heartbeat);
    await control.send({ type: MessageType.Done, rank, steps: result.epochs.length, result: rank === 0 ? plainResult(result) : null });
    // Exit only once the coordinator has our Done: a message still queued in the socket would
    // be lost by process.exit.
    await Promise.race([shutdownReceived, new Promise((r) => setTimeout(r, 10_000).unref())]);
  } finally {
    await ring.close();
  }
}

async function main(): Promise<number> {
  const boot = env.workerBootstrap();
  // If the coordinator (or join agent) dies (kill -9, a crash) this process is re-parented: it
  // must not live on as an orphan. Polling the parent pid works whatever the parent's stdio
  // or wrappers. The expected parent comes from the spawner, not from process.ppid here: this
  // line runs only after tfjs and zeromq have loaded (seconds), and a spawner that died in the
  // meantime would otherwise be replaced by its re-parent (init, or a subreaper like tap) and
  // never missed.
  const parentPid = env.workerParentPid() ?? process.ppid;
  const exitIfOrphaned = (): void => {
    if (process.ppid !== parentPid) {
      process.stderr.write(`[rank ${boot.rank}] the process that started this worker (pid ${parentPid}) is gone: exiting\n`);
      process.exit(1);
    }
  };
  exitIfOrphaned();
  setInterval(exitIfOrphaned, 500).unref();
  const log = consoleLogger({ level: boot.rank === 0 ? 'info' : 'quiet', prefix: boot.rank === 0 ? '' : `[rank ${boot.rank}]` });
  const keys = workerKeys(boot);
  const control = new WorkerControl(boot.controlAddress, { curve: keys });
  try {
    await runWorker(boot, control, keys, log);
    return 0;
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    await control.send({ type: MessageType.Error, rank: boot.rank, name: e.name, message: e.message, stack: e.stack ?? null }).catch(() => undefined);
    return 1;
  } finally {
    control.close();
  }
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`worker failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
