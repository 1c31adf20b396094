/**
 * What each CLI command does, once yargs has parsed its arguments. Kept out of cli.ts so the
 * option table stays readable and the commands can be called from tests.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { backendRequest, describeBackend, initBackend } from './backend/select';
import { loadAddon } from './backend/native/backend';
import { readFloats } from './backend/readback';
import {
  buildEvalConfig,
  buildExportConfig,
  buildTrainConfig,
  env,
  type BackendChoice,
  type CliArgs,
  type PresetName,
  type TrainConfig,
} from './core/config';
import { centerCropBox, channelAffine, cropElements, writeCrop } from './data/augment';
import { openDataset, problemWarnings, type SplitName } from './data/index/dataset';
import { assertMayReplace, recordWritten } from './data/commands/owned';
import { findStats, STATS_FILE } from './data/stats';
import { decodeFile } from './data/decode/decode';
import { CheckpointError, ConfigError, DataError } from './core/errors';
import { perClassAccuracy, type ClassAccuracy } from './eval/confusion';
import { evaluateWithConfusion } from './eval/evaluate';
import { defaultEvalDir, EVAL_FILE_NAMES } from './eval/file-names';
import { perClassTable, writeEvalOutputs, type EvalFiles } from './eval/outputs';
import { createAlexNet, forwardFlopsPerImage } from './model/alexnet';
import { exportGraphModel, loadExportedModel, MODEL_JSON, type ExportMetadata } from './model/export';
import { exportOnnx } from './model/onnx/write-onnx';
import { buildSpec, type ModelSpec } from './model/presets';
import { formatSummary } from './model/summary';
import { writeRunReport, writeRunReportSafely, type RunReportFiles } from './report/report';
import { BEST_CHECKPOINT, LAST_CHECKPOINT, checkCompatible, loadCheckpoint } from './train/run/checkpoint';
import { BatchLoader } from './data/loader';
import type { MetricSummary } from './train/metrics';
import { appendRunEvent, trainResultOf, writeRunInfo, type EndEvent, type TrainResult } from './train/run/run-log';
import { WorkerLog } from './train/run/worker-log';
import {
  buildDashboardConfig,
  DASHBOARD_COMMAND_FLAGS,
  TRAIN_DASHBOARD_FLAGS,
  type DashboardConfig,
} from './dashboard/options';
import { startDashboard, type DashboardServer } from './dashboard/server';
import { loadNewestCheckpoint } from './train/run/checkpoint-store';
import { assertFreshRunDir } from './train/run/run-dir';
import { chooseCpuLayout, layoutForThreads } from './train/cpu-layout';
import { chooseDataPlane } from './dist/comm-thread/data-plane';
import { shmUnavailableReason } from './dist/shm/addon';
import { wireBytesPerStep } from './train/wire-bytes';
import { openTrainingData, setWeights, statsPlaces } from './train/setup';
import { Trainer } from './train/trainer';
import { resolveInitFrom } from './train/init-from';
import { consoleLogger, type Logger } from './core/log';
import { formatPercent } from './core/text-format';
import { resolveDevices, describeDevices, type DeviceAssignment } from './devices/discover';
import { runJoinAgent } from './dist/launch/agent';
import { buildClusterConfig, buildJoinConfig, type ClusterConfig } from './dist/control/cluster-config';
import { runDataParallel } from './dist/launch/coordinator';
import {
  SCHEDULER_VARIABLES,
  coordinatorArgs,
  describeLaunch,
  joinArgs,
  resolveMasterHost,
  schedulerLaunch,
} from './dist/launch/scheduler-env';
import type { ClusterPlan } from './dist/control/host-rendezvous';
import { readKeyFile, writeKeyFile } from './dist/security/keyfile';
import { stepReportMessage, type StepReportMessage } from './dist/control/messages';
import { localAddressTowards, parseTcpEndpoint } from './dist/ring/ring-address';

function printFinal(log: Logger, result: TrainResult): void {
  if (result.stopped) return;
  const last = result.epochs[result.epochs.length - 1];
  if (last?.val)
    log.result(
      `final val: top-1 error ${formatPercent(last.val.top1Error)}, top-5 error ${formatPercent(last.val.top5Error)}`,
    );
  if (result.test) {
    log.result(
      `final test (${result.test.count} images): top-1 error ${formatPercent(result.test.top1Error)}, top-5 error ${formatPercent(result.test.top5Error)}`,
    );
  }
  log.result(`wall time ${(result.wallMs / 1000).toFixed(1)} s; run directory ${result.runDir}`);
}

/** Single process: this process trains (one device, or the single-GPU fallback). */
export async function trainInProcess(config: TrainConfig, log: Logger, gpuVisible: boolean): Promise<TrainResult> {
  const { choice, options } = backendRequest(config, gpuVisible ? 'gpu' : 'cpu', true);
  const backend = await initBackend(choice, gpuVisible, options);
  log.info(describeBackend(backend));
  // workers.jsonl as a data-parallel run writes it: this process is rank 0.
  const workers = new WorkerLog(config.runDir, config.logEverySteps);
  workers.seen({ kind: 'hello', rank: 0, host: os.hostname(), pid: process.pid, timeMs: Date.now() });
  let stopRequested = false;
  const onSigint = () => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
    log.info('Ctrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to quit now)');
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  try {
    return await new Trainer(config, {
      log,
      tty: env.isTTY(),
      collective: null,
      shouldStop: () => stopRequested,
      onStep: (report) => workers.step(stepReportMessage(0, report)),
      onEpochEnd: (runDir) => writeRunReportSafely(runDir, log),
    }).run();
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}

/** Several worker processes (and, with a cluster plan, other hosts' workers) train; this process coordinates. */
export async function trainDataParallel(
  config: TrainConfig,
  devices: DeviceAssignment,
  log: Logger,
  options: { cluster?: ClusterPlan; onStepReport?: (m: StepReportMessage) => void } = {},
): Promise<TrainResult> {
  const startedMs = Date.now();
  const workers = new WorkerLog(config.runDir, config.logEverySteps);
  const result = await runDataParallel(config, devices, log, {
    ...options,
    onStepReport: (m) => {
      workers.step(m);
      options.onStepReport?.(m);
    },
    onWorkerSeen: (seen) => workers.seen(seen),
    // Once, before any worker starts: the dataset is checked and its statistics written by one process.
    prepareData: async () => void (await openTrainingData(config, true, log)),
    // A restart continues from the newest checkpoint this run wrote that loads (else as it began).
    newestCheckpoint: () => {
      const newest = loadNewestCheckpoint(config.runDir, log, startedMs);
      return newest === null ? null : { file: newest.file, ...newest.contents.position };
    },
    onRestart: (event) => {
      fs.mkdirSync(config.runDir, { recursive: true });
      appendRunEvent(config.runDir, { event: 'restart', ...event });
    },
  });
  return trainResultOf(result);
}

/** The coordinator's view of a multi-host run: options checked against this host's devices, key read. */
function clusterPlan(cluster: ClusterConfig, devices: DeviceAssignment): ClusterPlan {
  if (devices.worldSize > cluster.worldSize) {
    throw new ConfigError(
      `--world-size ${cluster.worldSize} is less than this host's ${devices.worldSize} devices: count the workers of all hosts, or pass fewer --devices`,
    );
  }
  return { ...cluster, keys: readKeyFile(cluster.keyFile) };
}

/**
 * `alexnet train`. Without --rendezvous, inside a job of several hosts that a scheduler
 * launched (torchrun-style or Slurm variables), host 0 runs the coordinator and every other
 * host joins it: the same command line on every host. Explicit flags win over the environment.
 */
export async function runTrain(args: CliArgs, parsed = buildTrainConfig(args)): Promise<void> {
  const launch = args['rendezvous'] == null ? schedulerLaunch(env.variables(SCHEDULER_VARIABLES)) : null;
  const masterIp = launch === null ? null : await resolveMasterHost(launch);
  if (launch !== null && masterIp !== null) {
    consoleLogger({ level: String(args['log-level']) === 'quiet' ? 'quiet' : 'info' }).info(
      describeLaunch(launch, masterIp),
    );
    if (launch.hostRank > 0) return runJoin(joinArgs(launch, masterIp, args));
  }
  // Not given: --preset has no parser default, so that --init-from may take the file's.
  const asked = await resolveInitFrom(parsed, args['preset'] !== undefined, consoleLogger({ level: parsed.logLevel }));
  const dashboardConfig = buildDashboardConfig(args, TRAIN_DASHBOARD_FLAGS);
  const log = consoleLogger({ level: asked.logLevel });
  // GPU discovery runs nvidia-smi: once.
  const found = resolveDevices(asked);
  const cluster = buildClusterConfig(
    launch === null || masterIp === null ? args : coordinatorArgs(launch, masterIp, args, found.worldSize),
  );
  assertFreshRunDir(asked.runDir, asked.resume, Boolean(args['force']));
  const spec = buildSpec(asked.preset, asked.model);
  const ds = await openDataset(asked.data, { layout: asked.dataLayout, classNames: asked.classNames });
  const { config, devices } =
    cluster === null ? autoCpuLayout(asked, found, spec, ds.classes.length, log) : { config: asked, devices: found };
  const plan = cluster === null ? null : clusterPlan(cluster, devices);
  log.info(describeDevices(devices, plan?.worldSize ?? null));
  log.info(
    `dataset ${ds.root}: ${ds.classes.length} classes; ${Object.values(ds.splits)
      .map((s) => `${s.name} ${s.samples.length}`)
      .join(', ')}`,
  );
  for (const note of ds.notes) log.info(note);
  for (const warning of [...ds.warnings, ...problemWarnings(ds)]) log.warn(warning);
  log.info(formatSummary(spec, ds.classes.length));
  // The server first: a port it cannot have fails the run before it writes anything into its directory.
  const dashboard = dashboardConfig === null ? null : await serveRunDashboard(config.runDir, dashboardConfig, log);
  writeRunInfo(config.runDir, {
    config: { ...config },
    startedMs: Date.now(),
    pid: process.pid,
    host: os.hostname(),
    worldSize: plan?.worldSize ?? devices.worldSize,
  });
  try {
    const result =
      plan === null && devices.worldSize === 1
        ? await trainInProcess(config, log, devices.kind === 'gpu')
        : await trainDataParallel(config, devices, log, plan === null ? {} : { cluster: plan });
    recordRunEnd(config.runDir, result.stopped ? 'stopped' : 'finished');
    printFinal(log, result);
    // The epochs' reports were drawn during training; this one adds the final test line.
    if (!result.stopped && result.test) await writeRunReportSafely(result.runDir, log);
    if (result.stopped) process.exitCode = 130;
  } catch (err) {
    recordRunEnd(config.runDir, 'failed', err instanceof Error ? err.message : String(err));
    throw err;
  } finally {
    // Open pages get the end record before the server goes (alexnet dashboard shows the run after).
    await dashboard?.close();
  }
}

/**
 * For `--devices auto` on CPU with the native backend, the layout of the cores:
 * one worker per core, or one worker with a oneDNN thread per core, whichever train/cpu-layout.ts
 * predicts faster for this model (said in one line). An explicit --threads T gives as many
 * workers of T threads as the cores hold. An explicit --devices, and the wasm backend
 * (single-threaded), keep one worker per core.
 */
function autoCpuLayout(
  config: TrainConfig,
  devices: DeviceAssignment,
  spec: ModelSpec,
  classes: number,
  log: Logger,
): { config: TrainConfig; devices: DeviceAssignment } {
  const eligible =
    config.devices.trim() === 'auto' &&
    devices.kind === 'cpu' &&
    devices.worldSize > 1 &&
    (config.backend === 'auto' || config.backend === 'native');
  if (!eligible || !nativeLoads()) return { config, devices };
  const n = devices.worldSize;
  if (config.threads > 1) {
    const layout = layoutForThreads(n, config.threads);
    log.info(`--devices auto: ${layout.reason}`);
    return { config, devices: { ...devices, worldSize: layout.workers } };
  }
  const wire = wireBytesPerStep({
    spec,
    numClasses: classes,
    mode: config.parallel,
    dtype: config.wireDtype,
    worldSize: n,
    batchPerWorker: Math.ceil(config.batchSize / n),
  });
  // The workers would all run on this host: shared memory carries their bytes where it can.
  const plane = chooseDataPlane(config.transport, true, () => shmUnavailableReason()).kind;
  const layout = chooseCpuLayout({
    cores: n,
    globalBatch: config.batchSize,
    wireBytes: wire.total,
    forwardFlopsPerImage: forwardFlopsPerImage(spec, classes),
    plane,
  });
  log.info(`--devices auto: ${layout.reason}`);
  return {
    config: { ...config, threads: layout.threadsPerWorker },
    devices: { ...devices, worldSize: layout.workers },
  };
}

/** Whether the native backend's addon loads here (the workers would run it). */
function nativeLoads(): boolean {
  try {
    loadAddon();
    return true;
  } catch {
    return false;
  }
}

/** The run's last line in metrics.jsonl: how it ended, for readers that did not watch (the dashboard). */
function recordRunEnd(runDir: string, status: EndEvent['status'], message?: string): void {
  appendRunEvent(runDir, { event: 'end', status, timeMs: Date.now(), ...(message === undefined ? {} : { message }) });
}

/** `train --dashboard`: this run's page, served while it trains. */
async function serveRunDashboard(runDir: string, config: DashboardConfig, log: Logger): Promise<DashboardServer> {
  const { server, url } = await startDashboard(
    { runsRoot: path.dirname(runDir), onlyRun: path.basename(runDir), ...config },
    TRAIN_DASHBOARD_FLAGS,
  );
  log.result(`dashboard: ${url}`);
  return server;
}

/** `alexnet dashboard <runs>`: the runs of a folder, finished and running, until Ctrl-C. */
export async function runDashboard(args: CliArgs, log: Logger = consoleLogger({ level: 'info' })): Promise<void> {
  const runsRoot = path.resolve(String(args['runs']));
  if (!fs.existsSync(runsRoot) || !fs.statSync(runsRoot).isDirectory())
    throw new ConfigError(`runs folder '${runsRoot}' does not exist`);
  const config = buildDashboardConfig(args, DASHBOARD_COMMAND_FLAGS);
  if (config === null) throw new ConfigError('--port is required');
  const { server, url } = await startDashboard({ runsRoot, ...config }, DASHBOARD_COMMAND_FLAGS);
  log.result(`dashboard: ${url}`);
  log.info(`serving the ${server.runNames().length} run(s) of ${runsRoot} (read-only; Ctrl-C to stop)`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
}

/** `alexnet join`: this host's workers take part in a run whose coordinator is elsewhere. */
export async function runJoin(args: CliArgs): Promise<void> {
  const join = buildJoinConfig(args);
  const log = consoleLogger({ level: join.logLevel });
  const keys = readKeyFile(join.keyFile);
  const devices = resolveDevices({ devices: join.devices, strictDevices: join.strictDevices, backend: 'auto' });
  if (devices.note) log.info(devices.note);
  const coordinator = parseTcpEndpoint(join.rendezvous, 'the rendezvous address');
  const ringHost = join.ringHost ?? (await localAddressTowards(coordinator.host, coordinator.port));
  const plan = {
    rendezvous: join.rendezvous,
    keys,
    keyFile: join.keyFile,
    devices,
    ringHost,
    ringPort: join.ringPort,
    joinTimeoutMs: join.joinTimeoutSec * 1000,
    coordinatorTimeoutMs: join.coordinatorTimeoutSec * 1000,
    prepareData: async (config: TrainConfig) => void (await openTrainingData(config, true, log)),
  };
  await runJoinAgent(plan, log);
}

/** `alexnet keygen`: a new cluster key file, to copy to every host of a multi-host run. */
export function runKeygen(args: CliArgs): void {
  const file = String(args['out']);
  const { publicKey } = writeKeyFile(file, Boolean(args['force']));
  process.stdout.write(
    `wrote ${file} (mode 0600; public key ${publicKey}): copy it to every host of the run, and keep it private\n`,
  );
}

function checkpointFile(target: string): string {
  if (fs.existsSync(target) && fs.statSync(target).isDirectory()) {
    const best = path.join(target, BEST_CHECKPOINT);
    return fs.existsSync(best) ? best : path.join(target, LAST_CHECKPOINT);
  }
  return target;
}

export interface EvalResult {
  summary: MetricSummary;
  perClass: ClassAccuracy[];
  files: EvalFiles;
}

export async function runEval(args: CliArgs, log: Logger = consoleLogger({ level: 'info' })): Promise<EvalResult> {
  const evalConfig = buildEvalConfig(args);
  const { tta, batchSize } = evalConfig;
  const file = checkpointFile(evalConfig.checkpoint);
  const ckpt = loadCheckpoint(file);
  log.info(
    describeBackend(await initBackend(evalConfig.backend, false, { allowSoftwareGpu: evalConfig.allowSoftwareGpu })),
  );
  const dataRoot = evalConfig.data ?? ckpt.config.data;
  if (!fs.existsSync(dataRoot)) throw new ConfigError(`dataset '${dataRoot}' does not exist`);
  // The checkpoint's own layout and class names, unless this command gives its own.
  const ds = await openDataset(dataRoot, {
    layout: evalConfig.dataLayout === 'auto' ? ckpt.config.dataLayout : evalConfig.dataLayout,
    classNames: evalConfig.classNames ?? ckpt.config.classNames,
  });
  for (const note of ds.notes) log.info(note);
  const split: SplitName = evalConfig.split;
  const samples = ds.splits[split]?.samples;
  if (samples == null || samples.length === 0) throw new DataError(`${ds.root} has no '${split}' split`);
  checkCompatible(ckpt, ckpt.config.preset, ds.classes, file);
  // Labels index the dataset's classes, predictions the checkpoint's: say so when they differ.
  if (ckpt.classes.join('\n') !== ds.classes.join('\n'))
    log.warn(
      `the dataset's classes differ from the checkpoint's (${ckpt.classes.slice(0, 3).join(', ')}, ...): per-class results use the dataset's names`,
    );
  const spec = buildSpec(ckpt.config.preset, ckpt.config.model);
  const model = createAlexNet(spec, ckpt.classes.length, 0);
  setWeights(model, ckpt.weights, file);
  const stats = await findStats(
    statsPlaces(ds.root, ds.splits.train?.samples ?? [], spec.resizeSize, path.dirname(file)),
  );
  const loader = new BatchLoader({
    samples,
    resizeSize: spec.resizeSize,
    cropSize: spec.inputSize,
    globalBatchSize: batchSize,
    rank: 0,
    worldSize: 1,
    seed: 0,
    mode: tta === 10 ? 'tenCrop' : 'center',
    stats: stats?.stats ?? null,
    onSkip: (p, reason) => log.warn(`skipping ${p}: ${reason}`),
    reuseImageBuffers: true,
  });
  const { summary: s, confusion } = await evaluateWithConfusion(model, loader);
  const what = `${split} (${s.count} images, ${tta === 10 ? '10 patches' : 'centre crop'})`;
  const perClass = perClassAccuracy(confusion);
  log.result(perClassTable(perClass, ds.classes));
  const unscored = confusion.unscored.reduce((a, b) => a + b, 0);
  if (unscored > 0)
    log.warn(
      `${unscored} images had no finite score (a diverged model?): counted as errors, in the '(no score)' column`,
    );
  const outDir = evalConfig.out ?? defaultEvalDir(file, split, tta);
  assertMayReplace(outDir, EVAL_FILE_NAMES, evalConfig.force, 'choose another --out');
  const files = await writeEvalOutputs(
    outDir,
    confusion,
    ds.classes,
    `Confusion matrix: ${what}, top-1 error ${formatPercent(s.top1Error)}`,
  );
  recordWritten(outDir, EVAL_FILE_NAMES);
  log.result(
    `${what}: top-1 error ${formatPercent(s.top1Error)}, top-5 error ${formatPercent(s.top5Error)}, loss ${s.loss.toFixed(4)}`,
  );
  log.info(`wrote ${files.confusionCsv}, ${files.perClassCsv}, ${files.heatmapPng}`);
  return { summary: s, perClass, files };
}

/** Redraws a run's curves and `report.md` from its metrics.jsonl and checkpoint. */
export async function runReport(
  args: CliArgs,
  log: Logger = consoleLogger({ level: 'info' }),
): Promise<RunReportFiles> {
  const runDir = String(args['run-dir']);
  if (!fs.existsSync(runDir) || !fs.statSync(runDir).isDirectory())
    throw new ConfigError(`run directory '${runDir}' does not exist`);
  const files = await writeRunReport(runDir);
  log.result(`wrote ${files.markdown}, ${files.curvesPng}, ${files.curvesSvg}`);
  return files;
}

export interface Prediction {
  image: string;
  top: { label: string; probability: number }[];
}

export async function runPredict(args: CliArgs): Promise<Prediction[]> {
  const dir = String(args['model']);
  if (!fs.existsSync(path.join(dir, 'model.json')))
    throw new CheckpointError(`${dir} has no model.json: pass an exported model folder (run-dir/final-model)`);
  await initBackend(args['backend'] as BackendChoice, false, { allowSoftwareGpu: args['allow-software-gpu'] === true });
  const { model, meta } = await loadExportedModel(dir);
  const top = Math.max(1, Math.min(Number(args['top']) || 5, meta.classes.length));
  const affine = channelAffine({
    meanRgb: meta.meanRgb,
    stdRgb: meta.stdRgb,
    eigenvalues: [0, 0, 0],
    eigenvectors: [
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ],
  });
  const results: Prediction[] = [];
  let failures = 0;
  for (const image of args['images'] as string[]) {
    const decoded = await decodeFile(image, { sizePx: meta.resizeSize });
    if (!decoded.ok) {
      process.stderr.write(`${image}: cannot use this image: ${decoded.reason}\n`);
      failures++;
      continue;
    }
    const input = new Float32Array(cropElements(meta.inputSize));
    writeCrop(
      decoded.pixels,
      meta.resizeSize,
      meta.inputSize,
      centerCropBox(meta.resizeSize, meta.inputSize),
      false,
      affine,
      input,
      0,
    );
    const output = tf.tidy(
      () => model.execute(tf.tensor4d(input, [1, meta.inputSize, meta.inputSize, 3]), 'probabilities') as tf.Tensor,
    );
    const probs = await readFloats(output).finally(() => output.dispose());
    const ranked = Array.from(probs, (p, i) => ({ label: meta.classes[i], probability: p }))
      .sort((a, b) => b.probability - a.probability)
      .slice(0, top);
    results.push({ image, top: ranked });
    process.stdout.write(
      `${image}\n${ranked.map((r, k) => `  ${k + 1}. ${r.label.padEnd(20)} ${formatPercent(r.probability)}`).join('\n')}\n`,
    );
  }
  if (failures > 0) process.exitCode = 1;
  return results;
}

export function runSummary(args: CliArgs): void {
  const classes = Number(args['classes']);
  if (!Number.isInteger(classes) || classes < 1) throw new ConfigError('--classes must be a whole number >= 1');
  process.stdout.write(`${formatSummary(buildSpec(args['preset'] as PresetName), classes)}\n`);
}

/** Where `export` writes by default: beside the checkpoint, named after it. */
export function defaultExportPath(checkpoint: string, format: 'tfjs' | 'onnx'): string {
  const name = path.basename(checkpoint).replace(/\.ckpt$/, '');
  return path.join(path.dirname(checkpoint), format === 'onnx' ? `${name}.onnx` : `${name}-tfjs`);
}

/**
 * The colour statistics the checkpoint's run trained with (the input's mean and std): where
 * training looked for them, else the metadata of a model the run exported; null if none.
 */
async function runColourStats(
  file: string,
  config: TrainConfig,
): Promise<Pick<ExportMetadata, 'meanRgb' | 'stdRgb'> | null> {
  const runDir = path.dirname(file);
  const spec = buildSpec(config.preset, config.model);
  const places = fs.existsSync(config.data)
    ? statsPlaces(
        config.data,
        (await openDataset(config.data, { layout: config.dataLayout, classNames: config.classNames })).splits.train
          ?.samples ?? [],
        spec.resizeSize,
        runDir,
      )
    : [path.join(runDir, STATS_FILE)];
  const found = await findStats(places);
  if (found != null) return { meanRgb: found.stats.meanRgb, stdRgb: found.stats.stdRgb };
  for (const folder of ['final-model', 'best-model']) {
    const json = path.join(runDir, folder, MODEL_JSON);
    if (!fs.existsSync(json)) continue;
    const meta = (JSON.parse(fs.readFileSync(json, 'utf8')) as { userDefinedMetadata?: { alexnet?: ExportMetadata } })
      .userDefinedMetadata?.alexnet;
    if (meta != null) return { meanRgb: meta.meanRgb, stdRgb: meta.stdRgb };
  }
  return null;
}

/** `alexnet export <run>`: a checkpoint as a tfjs graph model folder or an ONNX file. Returns what it wrote. */
export async function runExport(args: CliArgs, log: Logger = consoleLogger({ level: 'info' })): Promise<string> {
  const { run, format, out, force } = buildExportConfig(args);
  const file = checkpointFile(run);
  const ckpt = loadCheckpoint(file);
  const target = out ?? defaultExportPath(file, format);
  if (fs.existsSync(target) && !force)
    throw new ConfigError(`${target} exists: pass --force to replace it, or --out to write elsewhere`);
  const stats = await runColourStats(file, ckpt.config);
  if (stats === null)
    throw new DataError(
      `no colour statistics for ${file}: its dataset ${ckpt.config.data} is gone and its run exported no model; put the dataset back at that path`,
    );
  await initBackend('cpu', false);
  const spec = buildSpec(ckpt.config.preset, ckpt.config.model);
  const model = createAlexNet(spec, ckpt.classes.length, 0);
  setWeights(model, ckpt.weights, file);
  const meta: ExportMetadata = {
    classes: ckpt.classes,
    inputSize: spec.inputSize,
    resizeSize: spec.resizeSize,
    ...stats,
    preset: ckpt.config.preset,
  };
  if (format === 'onnx') {
    const bytes = exportOnnx(model, meta, target);
    log.result(
      `wrote ${target} (${(bytes / 1e6).toFixed(1)} MB): ONNX opset 13, input 'input' [batch, 3, ${spec.inputSize}, ${spec.inputSize}] (NCHW, RGB), outputs 'logits' and 'probabilities'; classes and preprocessing in metadata_props`,
    );
  } else {
    await exportGraphModel(model, meta, target);
    log.result(
      `wrote ${target}/${MODEL_JSON}: a tfjs graph model (tf.loadGraphModel), outputs 'logits' and 'probabilities'`,
    );
  }
  for (const p of model.params) p.variable.dispose();
  return target;
}
