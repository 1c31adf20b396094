/**
 * One data-parallel worker process: a full AlexNet replica on its own device, and the one
 * place that joins TensorFlow.js (the training loop) to the ring (src/parallel). Started by
 * the coordinator, or on another host by its join agent, never by hand: its rank and
 * addresses come in the environment (dist/control/worker-env.ts).
 *
 *   session (hello -> config -> ring) -> backend -> ready -> the shared training loop, with
 *   the ring all-reduce as its collective -> done (or error) -> exit
 *
 * Rank 0 prints progress and writes checkpoints; every rank reports each step to the
 * coordinator, which watches health.
 */
import { backendRequest, describeBackend, initBackend } from './backend/select';
import { env } from './core/config';
import { consoleLogger } from './core/log';
import { describeDataPlane } from './dist/comm-thread/data-plane';
import { WorkerControl, type WorkerControlOptions } from './dist/control/sockets';
import { readSpawnerPid, readWorkerBootstrap } from './dist/control/worker-env';
import { WorkerSession, exitWhenOrphaned, reportWorkerError, workerKeys } from './dist/control/worker-session';
import { writeRunReportSafely } from './report/report';
import { plainTrainResult } from './train/run/run-log';
import { Trainer, type StepReport } from './train/trainer';

/** For the tests' fixture worker only (test/dist/fixtures/faulty-worker.ts). */
export interface WorkerHooks {
  /** Makes the control socket (a fixture's can send bytes that are not a message). */
  control?: (address: string, options: WorkerControlOptions) => WorkerControl;
  /** Called after each step has been reported. */
  afterStep?: (report: StepReport, session: WorkerSession) => void;
}

async function train(session: WorkerSession, hooks: WorkerHooks): Promise<void> {
  const { boot, config } = session;
  const { rank } = boot;
  const log = consoleLogger({ level: rank === 0 ? 'info' : 'quiet', prefix: rank === 0 ? '' : `[rank ${rank}]` });
  const requestStop = () => {
    session.stopRequested = true; // the coordinator asks too; all ranks stop after the same step
  };
  process.on('SIGINT', requestStop);
  process.on('SIGTERM', requestStop);
  // CPU-simulated devices run a single-threaded backend each: native (oneDNN, 1 thread), wasm or cpu.
  const { choice, options } = backendRequest(config, boot.deviceKind);
  const backend = await initBackend(choice, boot.deviceKind === 'gpu', options);
  if (rank === 0) log.info(describeBackend(backend));
  if (rank === 0 && session.dataPlane) log.info(describeDataPlane(session.dataPlane, boot.worldSize));
  if (rank === 0 && config.wireDtype !== 'fp32')
    log.info(
      `wire: ${config.wireDtype}, converted by ${session.collective.codec === 'native' ? "the native addon's vectorised loops" : `scalar ${session.collective.codec}`}`,
    );
  await session.ready();
  const trainer = new Trainer(config, {
    log,
    tty: rank === 0 && env.isTTY(),
    collective: session.collective,
    shouldStop: () => session.stopRequested,
    onStep: (report) => {
      void session.reportStep(report);
      hooks.afterStep?.(report, session);
    },
    onChecksum: (weights, globalStep) => session.reportWeights(weights, globalStep),
    onEpochEnd: rank === 0 ? (runDir) => writeRunReportSafely(runDir, log) : undefined,
  });
  const result = await trainer.run();
  await session.done(result.epochs.length, rank === 0 ? plainTrainResult(result) : null);
}

export async function workerMain(hooks: WorkerHooks = {}): Promise<number> {
  const boot = readWorkerBootstrap();
  exitWhenOrphaned(boot.rank, readSpawnerPid());
  const keys = workerKeys(boot);
  const options = { curve: keys };
  const control = hooks.control
    ? hooks.control(boot.controlAddress, options)
    : new WorkerControl(boot.controlAddress, options);
  let session: WorkerSession | null = null;
  try {
    session = await WorkerSession.open(boot, control, keys);
    await train(session, hooks);
    return 0;
  } catch (err) {
    await reportWorkerError(control, boot.rank, err);
    return 1;
  } finally {
    await session?.close();
    control.close();
  }
}

if (require.main === module) {
  workerMain().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`worker failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
