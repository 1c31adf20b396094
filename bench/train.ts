/**
 * Training throughput: images per second of `alexnet train` for the small, paper and
 * torchvision presets with 1 and 2 workers (CPU-simulated devices: one wasm worker process
 * each) at the same per-worker batch, with a per-step breakdown (data wait, forward+backward,
 * gradient copy-out, all-reduce, update) and the scaling efficiency, 2-worker img/s / (2 x
 * 1-worker img/s). Next to each row, the same network and batch in PyTorch
 * (bench/torch_train.py, Debian's python3-torch, one thread per process, DDP over gloo).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/train.js [--quick] [--out train.json]
 *       [--presets small,paper,torchvision] [--workers 1,2] [--batch 32] [--reps 5] [--no-torch]
 *       [--backend wasm|native|webgpu] [--threads N] [--gpus] [--transport auto|shm|zmq]
 *
 * --backend webgpu runs `webgpu:N` workers on whatever adapter exists (here: Mesa's software
 * Vulkan device, lavapipe); with --gpus, one worker per hardware GPU, each pinned to its own
 * (scripts/gpu-check.sh). The grad copy-out column is then the GPU readback of the gradients.
 *
 * Each run is a fresh process training a synthetic image folder (noisy JPEGs at the preset's
 * resize size, 10 classes, made once in the temp folder) for warm-up steps, then `--reps`
 * repetitions of a few steps; a repetition's img/s counts everything between its first and last
 * step end, and the tables show the median. Ours and PyTorch run one after the other for each
 * row, so their ratio is measured under the same load; compare absolute figures across runs
 * only next to their load average (the machine is shared).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { countParams } from '../src/model/alexnet';
import { PRESET_NAMES, TRANSPORTS, type BackendChoice, type PresetName, type Transport } from '../src/core/config';
import { buildSpec } from '../src/model/presets';
import { forkScript, nextMessage } from '../src/dist/launch/fork-script';
import {
  benchScript,
  flagValue,
  loadAverage,
  machineLine,
  pythonUnavailable,
  runPythonJson,
  writeNoisyJpegs,
} from './harness';
import { trainArgs, type RunReply, type RunSpec } from './train-run';
import {
  peakRssPerWorkerMb,
  repImagesPerSec,
  stepBreakdown,
  throughputOf,
  totalSteps,
  trainMarkdown,
  type OursResult,
  type RepPlan,
  type TorchResult,
  type TrainBenchJson,
  type TrainRow,
} from './train-stats';

const CLASSES = 10;
/** Steps per repetition, and PyTorch's warm-up (it trains on random tensors in memory: nothing to decode). */
export interface BasePlan {
  stepsPerRep: number;
  torchWarmupSteps: number;
}
/** A paper/torchvision step takes 1-18 s here (native to wasm): one step per repetition. */
const BIG_PLAN: BasePlan = { torchWarmupSteps: 1, stepsPerRep: 1 };
export const PLANS: Record<PresetName, BasePlan> = {
  small: { torchWarmupSteps: 3, stepsPerRep: 10 },
  paper: BIG_PLAN,
  torchvision: BIG_PLAN,
};
const QUICK_SMALL_PLAN: BasePlan = { torchWarmupSteps: 3, stepsPerRep: 3 };
const RUN_TIMEOUT_MS = 30 * 60_000;

interface Options {
  presets: PresetName[];
  workers: number[];
  batchPerWorker: number;
  reps: number;
  quick: boolean;
  torch: boolean;
  outPath: string | null;
  backend: BackendChoice;
  /** oneDNN threads per worker process (native): 1 worker x 2 threads against 2 x 1 (--devices auto). */
  threads: number;
  /** webgpu on hardware GPUs, one pinned worker each (else `webgpu:N`, software adapters too). */
  gpus: boolean;
  /** --transport of our runs: the data plane between the workers (auto: shared memory where it runs). */
  transport: Transport;
}

function parseArgs(argv: string[]): Options {
  const quick = argv.includes('--quick');
  const list = (name: string, fallback: string): string[] => (flagValue(argv, name) ?? fallback).split(',');
  const options: Options = {
    presets: list('--presets', quick ? 'small' : 'small,paper,torchvision') as PresetName[],
    workers: list('--workers', '1,2').map(Number),
    batchPerWorker: Number(flagValue(argv, '--batch') ?? 32),
    reps: Number(flagValue(argv, '--reps') ?? 5),
    quick,
    torch: !argv.includes('--no-torch'),
    outPath: flagValue(argv, '--out') ?? null,
    backend: (flagValue(argv, '--backend') ?? 'wasm') as BackendChoice,
    threads: Number(flagValue(argv, '--threads') ?? 1),
    gpus: argv.includes('--gpus'),
    transport: (flagValue(argv, '--transport') ?? 'auto') as Transport,
  };
  const bad =
    options.presets.some((p) => !(PRESET_NAMES as readonly string[]).includes(p)) ||
    options.workers.some((n) => !Number.isInteger(n) || n < 1) ||
    !Number.isInteger(options.batchPerWorker) ||
    options.batchPerWorker < 1 ||
    !Number.isInteger(options.reps) ||
    options.reps < 1 ||
    !Number.isInteger(options.threads) ||
    options.threads < 1 ||
    !['wasm', 'native', 'webgpu'].includes(options.backend) ||
    (options.gpus && options.backend !== 'webgpu') ||
    !(TRANSPORTS as readonly string[]).includes(options.transport);
  if (bad) throw new Error(`bad arguments: ${argv.join(' ')} (see the header of bench/train.ts)`);
  return options;
}

function basePlan(preset: PresetName, options: Options): BasePlan {
  return options.quick && preset === 'small' ? QUICK_SMALL_PLAN : PLANS[preset];
}

/**
 * Our runs last two epochs of one more step than the measured ones. The first epoch decodes
 * every image (the loader keeps them decoded, as in every epoch after the first of a real run)
 * and ends with a checkpoint: it is warm-up, with the first step of the second epoch. The rest
 * of the second epoch is measured: the trainer's throughput with the data in memory, as
 * PyTorch's is. The data pipeline's own speed is bench/data.ts's subject.
 */
export function oursPlan(base: BasePlan, reps: number): RepPlan & { epochSteps: number } {
  const epochSteps = base.stepsPerRep * reps + 1;
  return { warmupSteps: epochSteps + 1, stepsPerRep: base.stepsPerRep, reps, epochSteps };
}

/** A synthetic `train/<class>/<image>.jpg` folder of `count` `sizePx` squares. */
export async function ensureDataset(sizePx: number, count: number): Promise<string> {
  const root = path.join(os.tmpdir(), `alexnet-bench-train-${sizePx}px-${count}`);
  const files = Array.from({ length: count }, (_, i) =>
    path.join(root, 'train', `class${i % CLASSES}`, `${String(i).padStart(5, '0')}.jpg`),
  );
  await writeNoisyJpegs(files, sizePx, sizePx);
  return root;
}

const isReply = (m: unknown): m is RunReply => typeof m === 'object' && m !== null && 'kind' in m;

export async function runOurs(spec: RunSpec, plan: RepPlan): Promise<OursResult> {
  const child = forkScript(path.join(__dirname, `train-run${path.extname(__filename)}`), [JSON.stringify(spec)]);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const reply = await nextMessage(child, isReply, RUN_TIMEOUT_MS);
    if (reply.kind === 'failed')
      throw new Error(`${spec.preset} with ${spec.workers} worker(s) failed: ${reply.message}`);
    return {
      ...throughputOf(repImagesPerSec(reply.samples, plan)),
      breakdown: stepBreakdown(reply.samples, plan),
      samples: reply.samples,
      backend: reply.backend,
      maxRssMb: reply.maxRssMb,
      workerPeakRssMb: peakRssPerWorkerMb(reply.samples),
      command: `alexnet train ${trainArgs(spec).join(' ')}`,
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  }
}

interface TorchJson {
  params: number;
  rep_img_per_sec: number[];
  blas: string[];
  torch: string;
}

function runTorch(
  preset: PresetName,
  workers: number,
  batch: number,
  base: BasePlan,
  reps: number,
  specFile: string,
): TorchResult | string {
  const args = [
    benchScript('torch_train.py'),
    '--spec',
    specFile,
    '--classes',
    String(CLASSES),
    '--world',
    String(workers),
    '--batch',
    String(batch),
    '--warmup',
    String(base.torchWarmupSteps),
    '--steps-per-rep',
    String(base.stepsPerRep),
    '--reps',
    String(reps),
  ];
  const r = runPythonJson<TorchJson>(args);
  if (typeof r === 'string') return `PyTorch ${preset} x${workers} ${r}`;
  return { ...throughputOf(r.rep_img_per_sec), params: r.params, torch: r.torch, blas: r.blas };
}

async function benchPreset(preset: PresetName, options: Options, torchNote: string | null): Promise<TrainRow[]> {
  const spec = buildSpec(preset);
  const base = basePlan(preset, options);
  const plan = oursPlan(base, options.reps);
  const params = countParams(spec, CLASSES);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-bench-train-'));
  const specFile = path.join(scratch, 'spec.json');
  fs.writeFileSync(specFile, JSON.stringify(spec));
  const rows: TrainRow[] = [];
  try {
    for (const workers of options.workers) {
      const loadBefore = loadAverage();
      const runDir = path.join(scratch, `run-${workers}`);
      const data = await ensureDataset(spec.resizeSize, workers * options.batchPerWorker * plan.epochSteps);
      const ours = await runOurs(
        {
          data,
          preset,
          workers,
          batchPerWorker: options.batchPerWorker,
          steps: totalSteps(plan),
          epochs: 2,
          runDir,
          backend: options.backend,
          threads: options.threads,
          gpus: options.gpus,
          extraArgs: ['--transport', options.transport],
        },
        plan,
      );
      fs.rmSync(runDir, { recursive: true, force: true });
      const torch = torchNote ?? runTorch(preset, workers, options.batchPerWorker, base, options.reps, specFile);
      if (typeof torch !== 'string' && torch.params !== params) {
        throw new Error(`PyTorch's ${preset} has ${torch.params} parameters, ours ${params}: the networks differ`);
      }
      rows.push({
        preset,
        backend: options.backend,
        workers,
        batchPerWorker: options.batchPerWorker,
        params,
        plan,
        loadAverage: [loadBefore, loadAverage()],
        ours,
        torch,
      });
      process.stderr.write(
        `${preset} x${workers}: ${ours.imagesPerSec.toFixed(2)} img/s (PyTorch ${typeof torch === 'string' ? torch : torch.imagesPerSec.toFixed(2)})\n`,
      );
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  return rows;
}

async function main(argv: string[]): Promise<void> {
  const options = parseArgs(argv);
  const unavailable = options.torch
    ? pythonUnavailable('import torch.distributed as d; assert d.is_gloo_available()')
    : 'skipped (--no-torch)';
  const torchNote = unavailable === null ? null : `not run: ${unavailable}`;
  if (torchNote !== null) console.log(`note: PyTorch reference ${torchNote}`);
  const rows: TrainRow[] = [];
  for (const preset of options.presets) rows.push(...(await benchPreset(preset, options, torchNote)));
  const result: TrainBenchJson = {
    date: new Date().toISOString(),
    machine: machineLine(),
    command: `node dist/bench/train.js ${argv.join(' ')}`.trim(),
    classes: CLASSES,
    torchNote,
    rows,
  };
  console.log(trainMarkdown(result));
  if (options.outPath !== null) {
    fs.writeFileSync(options.outPath, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`\nwrote ${options.outPath}`);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
