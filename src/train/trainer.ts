/**
 * The training loop, top to bottom: epochs of steps, validation every epoch, the learning-rate
 * schedule, checkpoints, metrics, exports and the final test. The same loop runs in the single
 * process fallback (no collective) and in every data-parallel worker (a ring collective);
 * only the master (rank 0) prints progress and writes files.
 *
 * What happens around the loop comes in through TrainerDeps: the other ranks (a Collective),
 * where each step's report goes, the replica checksums, and the end-of-epoch hook (the run
 * report), so the loop depends on no process, socket or report code.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { currentBackend } from '../backend/select';
import { readFloats } from '../backend/readback';
import type { TrainConfig } from '../core/config';
import type { Sample } from '../data/index/dataset';
import { BatchLoader, type LoaderMode } from '../data/loader';
import type { DatasetStats } from '../data/stats';
import type { Logger } from '../core/log';
import { exportGraphModel } from '../model/export';
import type { SyncCollective } from '../dist/collective';
import { formatPercent } from '../core/text-format';
import { BadFileLog } from './run/bad-files';
import { BEST_CHECKPOINT, LAST_CHECKPOINT, type CheckpointContents } from './run/checkpoint';
import { CheckpointStore, CheckpointTimer, type WriteFile } from './run/checkpoint-store';
import { createGradientSync } from './sync/create-sync';
import type { GradientSync } from './sync/gradient-sync';
import type { OptimizerState } from './optimizer';
import {
  chooseMicroBatch,
  memoryBudget,
  stepMemory,
  type MachineMemory,
  type MemoryBackend,
  type MicroBatchChoice,
} from './memory';
import { addSums, emptySums, summarize, type MetricSummary, type MetricSums } from './metrics';
import { ProgressBar } from './progress';
import {
  appendEpochRecord,
  appendRunEvent,
  appendStepRecord,
  appendTestRecord,
  type EpochRecord,
  type TrainResult,
} from './run/run-log';
import { advanceSchedule } from './schedule';
import { buildRunState, type RunState } from './setup';
import { evalBatch, trainStep, type StepTimings } from './step';

export interface StepReport {
  epoch: number;
  step: number;
  stepsInEpoch: number;
  sums: MetricSums;
  timings: StepTimings & { dataWaitMs: number };
  /** Bytes this rank put on the ring during the step (0 in one process). */
  wireBytes: number;
}

export interface TrainerDeps {
  log: Logger;
  tty: boolean;
  collective: SyncCollective | null;
  /** Polled before each step: true once Ctrl-C (or the coordinator) asked to stop. All ranks stop after the same step. */
  shouldStop: () => boolean;
  /** Called after each step with its report (a worker sends it to the coordinator; benchmarks time steps). */
  onStep?: (report: StepReport) => void;
  /**
   * Every --checksum-every steps, with this rank's flat weights: a worker sends their checksum
   * to the coordinator, which stops the run when the replicas differ.
   */
  onChecksum?: (weights: Float32Array, globalStep: number) => Promise<void>;
  /** On rank 0 after each epoch's files are written (redraws the run report). */
  onEpochEnd?: (runDir: string) => Promise<void>;
  /** How checkpoint bytes reach the disk (default: atomic write); tests inject storage faults. */
  writeCheckpoint?: WriteFile;
  /**
   * What this machine's memory offers the run, read before the first step to choose the
   * micro-batch (default: os.totalmem(), os.freemem() plus this process's RSS, and the world
   * size as the local worker count, the cautious guess); tests give a small machine.
   */
  machineMemory?: () => MachineMemory;
}

/**
 * Seeds dropout per (run seed, global step): resume replays the same masks. Each image's masks
 * then come from this seed and its sample index (model/alexnet.ts), the same on any rank.
 */
export function dropoutSeedFor(seed: number, globalStep: number): number {
  return (seed * 1_000_003 + globalStep * 131) % 2_147_483_647;
}

/** The memory estimate's name for the running backend (tfjs' own name when initBackend was not called). */
function memoryBackend(): MemoryBackend {
  const active = currentBackend()?.active;
  if (active != null) return active;
  const name = tf.getBackend();
  return name === 'native' || name === 'wasm' ? name : name === 'tensorflow' ? 'node' : 'cpu';
}

/**
 * This rank's micro-batch: its largest share of the global batch against the backend's memory
 * (memory.ts). Throws a ConfigError before the first step when not even one image fits.
 */
export function microBatchFor(
  config: TrainConfig,
  state: RunState,
  worldSize: number,
  machine: MachineMemory,
): MicroBatchChoice {
  const backend = memoryBackend();
  const memory = stepMemory(state.model.spec, state.model.numClasses, backend, config.optimizer === 'adam' ? 2 : 1);
  return chooseMicroBatch(
    Math.ceil(config.batchSize / worldSize),
    config.microBatch,
    memory,
    memoryBudget(backend, machine),
  );
}

/** This machine's memory as the OS reports it; our own RSS counts as available to us. */
function osMachineMemory(localWorkers: number): MachineMemory {
  return { totalBytes: os.totalmem(), freeBytes: os.freemem() + process.memoryUsage().rss, localWorkers };
}

async function checkpointOf(
  config: TrainConfig,
  state: RunState,
  optimizer: OptimizerState,
): Promise<CheckpointContents> {
  const weights = await Promise.all(
    state.model.params.map(async (p) => ({ name: p.name, shape: p.shape, data: await readFloats(p.variable) })),
  );
  return {
    config,
    classes: state.dataset.classes,
    position: state.position,
    schedule: state.schedule,
    bestValTop1Error: state.bestValTop1Error,
    rng: { seed: config.seed },
    epochSoFar: state.epochSoFar,
    weights,
    optimizer,
  };
}

export class Trainer {
  private readonly isMaster: boolean;
  private readonly rank: number;
  private readonly worldSize: number;
  private readonly badFiles: BadFileLog;
  private readonly checkpoints: CheckpointStore;
  private readonly checkpointTimer: CheckpointTimer;
  /** The step checkpoint being written in the background (one at a time, in order). */
  private stepWrite: Promise<void> = Promise.resolve();
  /** The ring's byte counter at the end of the previous step. */
  private wireBytesBefore = 0;
  /** How gradients are summed over ranks: chosen once at the start of run(). */
  private sync: GradientSync | null = null;
  /** Hybrid mode: the full optimizer state gathered by the last syncFullModel, for checkpoints. */
  private gatheredOptimizer: OptimizerState | null = null;

  constructor(
    private readonly config: TrainConfig,
    private readonly deps: TrainerDeps,
  ) {
    this.rank = deps.collective?.rank ?? 0;
    this.worldSize = deps.collective?.worldSize ?? 1;
    this.isMaster = this.rank === 0;
    this.badFiles = new BadFileLog(config.runDir, deps.log);
    this.checkpoints = new CheckpointStore(config.runDir, config.keepCheckpoints, deps.writeCheckpoint);
    this.checkpointTimer = new CheckpointTimer(
      config.checkpointEverySteps,
      config.checkpointEveryMin,
      performance.now(),
    );
  }

  private loader(samples: Sample[], stats: DatasetStats | null, mode: LoaderMode, state: RunState): BatchLoader {
    const { spec } = state.model;
    return new BatchLoader({
      samples,
      resizeSize: spec.resizeSize,
      cropSize: spec.inputSize,
      globalBatchSize: this.config.batchSize,
      rank: this.rank,
      worldSize: this.worldSize,
      seed: this.config.seed,
      mode,
      stats,
      dropLast: mode === 'train' ? this.config.dropLast : false,
      augment: this.config.augment,
      cacheDecoded: this.config.decodeCacheMb > 0,
      cacheMaxBytes: this.config.decodeCacheMb * 2 ** 20,
      onSkip: (file, reason) => this.badFiles.report(file, reason),
      // The loop is done with a batch when it asks for the next (each step disposes its tensors).
      reuseImageBuffers: true,
    });
  }

  async run(): Promise<TrainResult> {
    const started = performance.now();
    const { config, deps } = this;
    const state = await buildRunState(config, this.isMaster, deps.log);
    const { model } = state;
    const micro = microBatchFor(
      config,
      state,
      this.worldSize,
      deps.machineMemory?.() ?? osMachineMemory(this.worldSize),
    );
    if (this.isMaster) deps.log.info(micro.reason);
    const sync = await createGradientSync({
      config,
      collective: deps.collective,
      model,
      optimizer: state.optimizer,
      microBatch: micro.size,
      log: deps.log,
    });
    this.sync = sync;
    state.optimizer = sync.optimizer;
    if (this.isMaster) fs.mkdirSync(config.runDir, { recursive: true });
    const trainLoader = this.loader(state.train, state.stats, 'train', state);
    const valSamples = state.dataset.splits.val?.samples ?? [];
    const valLoader = valSamples.length > 0 ? this.loader(valSamples, state.stats, 'center', state) : null;
    this.wireBytesSince(); // the initial broadcast is not a step's
    const stepsPerEpoch = Math.min(trainLoader.batchCount, config.maxStepsPerEpoch || Infinity);
    const epochs: EpochRecord[] = [];
    let stopped = false;

    for (let epoch = state.position.epoch; epoch < config.epochs && !stopped; epoch++) {
      const lr = state.schedule.lr;
      const bar = new ProgressBar(`Epoch ${epoch + 1}/${config.epochs}`, deps.log, deps.tty && this.isMaster);
      const epochStart = performance.now();
      // A resumed epoch starts from the sums of its steps before the checkpoint.
      let { sums, skipped } = state.epochSoFar;
      const resumedImages = sums.count; // not trained by this process: left out of images/s
      let windowSums = emptySums(); // the steps since the last steps.jsonl line
      let step = 0;
      let waitStart = performance.now();
      for await (const batch of trainLoader.epoch(epoch)) {
        if (step >= stepsPerEpoch) break;
        if (step < state.position.stepInEpoch) {
          step++; // resuming mid-epoch: these batches were trained before the checkpoint
          waitStart = performance.now();
          continue;
        }
        const dataWaitMs = performance.now() - waitStart;
        const result = await trainStep(model, state.optimizer, batch, {
          lr,
          dropoutSeed: dropoutSeedFor(config.seed, state.position.globalStep),
          sync,
          stopVote: deps.shouldStop(),
          checkpointVote: this.isMaster && this.checkpointTimer.due(state.position.globalStep + 1, performance.now()),
          microBatch: micro.size,
        });
        step++;
        skipped += result.skipped;
        sums = addSums(sums, result.sums);
        windowSums = addSums(windowSums, result.sums);
        state.position = { epoch, stepInEpoch: step, globalStep: state.position.globalStep + 1 };
        state.epochSoFar = { sums, skipped };
        const report: StepReport = {
          epoch,
          step,
          stepsInEpoch: stepsPerEpoch,
          sums: result.sums,
          timings: { ...result.timings, dataWaitMs },
          wireBytes: this.wireBytesSince(),
        };
        deps.onStep?.(report);
        if (this.isMaster) {
          const elapsedMs = performance.now() - epochStart;
          const s = summarize(sums);
          bar.update({
            step,
            totalSteps: stepsPerEpoch,
            loss: s.loss,
            top1Error: s.top1Error,
            imagesPerSec: ((sums.count - resumedImages) / elapsedMs) * 1000,
            elapsedMs,
          });
        }
        if (
          this.isMaster &&
          config.logEverySteps > 0 &&
          (step % config.logEverySteps === 0 || step === stepsPerEpoch)
        ) {
          appendStepRecord(config.runDir, {
            epoch: epoch + 1,
            step,
            globalStep: state.position.globalStep,
            epochs: epoch + step / stepsPerEpoch,
            lr,
            train: summarize(windowSums),
            stepsPerEpoch,
            timeMs: Date.now(),
          });
          windowSums = emptySums();
        }
        await this.maybeChecksum(state, sync);
        if (result.checkpoint) await this.saveStep(state);
        if (result.stop) {
          stopped = true;
          break;
        }
        waitStart = performance.now();
      }
      bar.finish();
      if (stopped) break;
      const epochMs = performance.now() - epochStart;
      await this.syncFullModel();
      const val = valLoader ? await this.evaluate(state, valLoader, epoch) : null;
      state.schedule = advanceSchedule(state.scheduleOptions, state.schedule, epoch, val?.top1Error ?? NaN);
      state.position = { epoch: epoch + 1, stepInEpoch: 0, globalStep: state.position.globalStep };
      state.epochSoFar = { sums: emptySums(), skipped: 0 };
      const record: EpochRecord = {
        epoch: epoch + 1,
        globalStep: state.position.globalStep,
        lr,
        train: summarize(sums),
        val,
        imagesPerSec: ((sums.count - resumedImages) / epochMs) * 1000,
        epochMs,
        skippedImages: skipped,
      };
      epochs.push(record);
      await this.endEpoch(state, record);
    }
    if (stopped) {
      await this.syncFullModel();
      await this.save(state, LAST_CHECKPOINT);
      if (this.isMaster)
        deps.log.info(
          `stopped at epoch ${state.position.epoch + 1}, step ${state.position.stepInEpoch}: checkpoint saved; continue with --resume ${config.runDir}`,
        );
      return { epochs, test: null, stopped, runDir: config.runDir, wallMs: performance.now() - started };
    }
    const test = await this.finalTest(state);
    return { epochs, test, stopped, runDir: config.runDir, wallMs: performance.now() - started };
  }

  /** Bytes sent on the wire since the last call (0 in one process). */
  private wireBytesSince(): number {
    const now = this.sync?.bytesSent() ?? 0;
    const bytes = now - this.wireBytesBefore;
    this.wireBytesBefore = now;
    return bytes;
  }

  /**
   * Hybrid mode: gathers the FC slices into the full model on every rank (evaluation, checkpoints
   * and export then work as in data mode) and the optimizer's full state for checkpoints. Every
   * rank calls this at the same points. Nothing to do in the other modes.
   */
  private async syncFullModel(): Promise<void> {
    this.gatheredOptimizer = (await this.sync?.materialize(true)) ?? null;
  }

  /** The optimizer state a checkpoint holds: the full model's, in every mode. */
  private async checkpointOptimizer(state: RunState): Promise<OptimizerState> {
    if (this.config.parallel !== 'hybrid' || this.worldSize === 1) return state.optimizer.getState();
    if (this.gatheredOptimizer === null)
      throw new Error('hybrid mode: a checkpoint before the FC slices were gathered');
    return this.gatheredOptimizer;
  }

  private async maybeChecksum(state: RunState, sync: GradientSync): Promise<void> {
    const every = this.config.checksumEverySteps;
    if (this.deps.onChecksum == null || every <= 0 || state.position.globalStep % every !== 0) return;
    await this.deps.onChecksum(await sync.replicatedWeights(state.model), state.position.globalStep);
  }

  async evaluate(state: RunState, loader: BatchLoader, epoch: number): Promise<MetricSummary> {
    let sums = emptySums();
    for await (const batch of loader.epoch(epoch)) sums = addSums(sums, await evalBatch(state.model, batch));
    if (this.sync) sums = (await this.sync.sumTail({ sums, skipped: 0, stopVotes: 0 })).sums;
    return summarize(sums);
  }

  /** A checkpoint training waits for (epoch ends, Ctrl-C); a storage error ends the run. */
  private async save(state: RunState, name: string): Promise<void> {
    if (!this.isMaster) return;
    await this.stepWrite;
    await this.checkpoints.save(name, await checkpointOf(this.config, state, await this.checkpointOptimizer(state)));
    this.checkpointTimer.saved(performance.now());
  }

  /**
   * A step checkpoint (rank 0): the snapshot now, the write in the background. The stall
   * (waiting for the previous write, plus the snapshot) is logged and recorded in
   * metrics.jsonl. A storage error (a full disk) is a warning: the previous checkpoint is
   * intact and training goes on.
   */
  private async saveStep(state: RunState): Promise<void> {
    await this.syncFullModel();
    if (!this.isMaster) return;
    const started = performance.now();
    await this.stepWrite;
    const written = this.checkpoints.beginStep(
      await checkpointOf(this.config, state, await this.checkpointOptimizer(state)),
    );
    const stallMs = performance.now() - started;
    this.checkpointTimer.saved(performance.now());
    const { log } = this.deps;
    this.stepWrite = written.then(
      ({ file, bytes, globalStep, writeMs }) => {
        log.info(
          `checkpoint ${path.basename(file)} (${(bytes / 1e6).toFixed(1)} MB) at global step ${globalStep}: training stalled ${stallMs.toFixed(0)} ms, written in the background in ${writeMs.toFixed(0)} ms`,
        );
        appendRunEvent(this.config.runDir, {
          event: 'checkpoint',
          file: path.basename(file),
          globalStep,
          bytes,
          stallMs,
          writeMs,
        });
      },
      (err: unknown) => log.warn(err instanceof Error ? err.message : String(err)),
    );
  }

  private async exportModel(state: RunState, folder: string): Promise<void> {
    const stats = state.stats;
    await exportGraphModel(
      state.model,
      {
        classes: state.dataset.classes,
        inputSize: state.model.spec.inputSize,
        resizeSize: state.model.spec.resizeSize,
        meanRgb: stats?.meanRgb ?? [0.5, 0.5, 0.5],
        stdRgb: stats?.stdRgb ?? [1, 1, 1],
        preset: this.config.preset,
      },
      path.join(this.config.runDir, folder),
    );
  }

  private async endEpoch(state: RunState, record: EpochRecord): Promise<void> {
    if (!this.isMaster) return;
    const { log } = this.deps;
    const pct = (x: number | undefined) => formatPercent(x ?? NaN);
    log.info(
      `epoch ${record.epoch}: train loss ${record.train.loss.toFixed(4)} top-1 ${pct(record.train.top1Error)} | ` +
        `val loss ${record.val ? record.val.loss.toFixed(4) : 'n/a'} top-1 ${pct(record.val?.top1Error)} top-5 ${pct(record.val?.top5Error)} | ` +
        `lr ${record.lr.toPrecision(3)} | ${record.imagesPerSec.toFixed(1)} img/s | ${(record.epochMs / 1000).toFixed(1)} s` +
        (record.skippedImages > 0 ? ` | ${record.skippedImages} bad images skipped` : ''),
    );
    appendEpochRecord(this.config.runDir, record);
    const valError = record.val?.top1Error ?? NaN;
    if (!Number.isNaN(valError) && valError < state.bestValTop1Error) {
      state.bestValTop1Error = valError;
      await this.save(state, BEST_CHECKPOINT);
      await this.exportModel(state, 'best-model');
    }
    await this.save(state, LAST_CHECKPOINT);
    await this.deps.onEpochEnd?.(this.config.runDir);
  }

  private async finalTest(state: RunState): Promise<MetricSummary | null> {
    if (this.gatheredOptimizer === null) await this.syncFullModel();
    if (this.isMaster) await this.exportModel(state, 'final-model');
    const testSamples = state.dataset.splits.test?.samples ?? [];
    if (testSamples.length === 0) return null;
    const mode: LoaderMode = this.config.tta === 10 ? 'tenCrop' : 'center';
    const test = await this.evaluate(state, this.loader(testSamples, state.stats, mode, state), 0);
    if (this.isMaster) {
      appendTestRecord(this.config.runDir, { test, tta: this.config.tta });
    }
    return test;
  }
}
