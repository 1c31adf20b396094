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
 *       [--backend wasm|native]
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
import { PRESET_NAMES, type BackendChoice, type PresetName } from '../src/config';
import { buildSpec } from '../src/model/presets';
import { forkScript, nextMessage } from '../src/parallel/fork-script';
import { benchScript, flagValue, loadAverage, machineLine, pythonUnavailable, runPythonJson, writeNoisyJpegs } from './harness';
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
/** A paper/torchvision step takes 13-18 s here: one step per repetition keeps 5 repetitions affordable. */
const BIG_PLAN = { warmupSteps: 1, stepsPerRep: 1 };
const PLANS: Record<PresetName, Omit<RepPlan, 'reps'>> = {
  small: { warmupSteps: 3, stepsPerRep: 10 },
  paper: BIG_PLAN,
  torchvision: BIG_PLAN,
};
const QUICK_SMALL_PLAN = { warmupSteps: 3, stepsPerRep: 3 };
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
  };
  const bad =
    options.presets.some((p) => !(PRESET_NAMES as readonly string[]).includes(p)) ||
    options.workers.some((n) => !Number.isInteger(n) || n < 1) ||
    !Number.isInteger(options.batchPerWorker) || options.batchPerWorker < 1 ||
    !Number.isInteger(options.reps) || options.reps < 1 ||
    !['wasm', 'native'].includes(options.backend);
  if (bad) throw new Error(`bad arguments: ${argv.join(' ')} (see the header of bench/train.ts)`);
  return options;
}

function planOf(preset: PresetName, options: Options): RepPlan {
  const base = options.quick && preset === 'small' ? QUICK_SMALL_PLAN : PLANS[preset];
  return { ...base, reps: options.reps };
}

/** A synthetic `train/<class>/<image>.jpg` folder of `sizePx` squares, grown to `count` images. */
async function ensureDataset(sizePx: number, count: number): Promise<string> {
  const root = path.join(os.tmpdir(), `alexnet-bench-train-${sizePx}px`);
  const files = Array.from({ length: count }, (_, i) => path.join(root, 'train', `class${i % CLASSES}`, `${String(i).padStart(5, '0')}.jpg`));
  await writeNoisyJpegs(files, sizePx, sizePx);
  return root;
}

const isReply = (m: unknown): m is RunReply => typeof m === 'object' && m !== null && 'kind' in m;

async function runOurs(spec: RunSpec, plan: RepPlan): Promise<OursResult> {
  const child = forkScript(path.join(__dirname, `train-run${path.extname(__filename)}`), [JSON.stringify(spec)]);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const reply = await nextMessage(child, isReply, RUN_TIMEOUT_MS);
    if (reply.kind === 'failed') throw new Error(`${spec.preset} with ${spec.workers} worker(s) failed: ${reply.message}`);
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

function runTorch(preset: PresetName, workers: number, batch: number, plan: RepPlan, specFile: string): TorchResult | string {
  const args = [
    benchScript('torch_train.py'), '--spec', specFile, '--classes', String(CLASSES), '--world', String(workers), '--batch', String(batch),
    '--warmup', String(plan.warmupSteps), '--steps-per-rep', String(plan.stepsPerRep), '--reps', String(plan.reps),
  ];
  const r = runPythonJson<TorchJson>(args);
  if (typeof r === 'string') return `PyTorch ${preset} x${workers} ${r}`;
  return { ...throughputOf(r.rep_img_per_sec), params: r.params, torch: r.torch, blas: r.blas };
}

async function benchPreset(preset: PresetName, options: Options, torchNote: string | null): Promise<TrainRow[]> {
  const spec = buildSpec(preset);
  const plan = planOf(preset, options);
  const params = countParams(spec, CLASSES);
  const data = await ensureDataset(spec.resizeSize, Math.max(...options.workers) * options.batchPerWorker * totalSteps(plan));
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-bench-train-'));
  const specFile = path.join(scratch, 'spec.json');
  fs.writeFileSync(specFile, JSON.stringify(spec));
  const rows: TrainRow[] = [];
  try {
    for (const workers of options.workers) {
      const loadBefore = loadAverage();
      const runDir = path.join(scratch, `run-${workers}`);
      const ours = await runOurs({ data, preset, workers, batchPerWorker: options.batchPerWorker, steps: totalSteps(plan), runDir, backend: options.backend }, plan);
      fs.rmSync(runDir, { recursive: true, force: true });
      const torch = torchNote ?? runTorch(preset, workers, options.batchPerWorker, plan, specFile);
      if (typeof torch !== 'string' && torch.params !== params) {
        throw new Error(`PyTorch's ${preset} has ${torch.params} parameters, ours ${params}: the networks differ`);
      }
      rows.push({ preset, workers, batchPerWorker: options.batchPerWorker, params, plan, loadAverage: [loadBefore, loadAverage()], ours, torch });
      process.stderr.write(`${preset} x${workers}: ${ours.imagesPerSec.toFixed(2)} img/s (PyTorch ${typeof torch === 'string' ? torch : torch.imagesPerSec.toFixed(2)})\n`);
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  return rows;
}

async function main(argv: string[]): Promise<void> {
  const options = parseArgs(argv);
  const unavailable = options.torch ? pythonUnavailable('import torch.distributed as d; assert d.is_gloo_available()') : 'skipped (--no-torch)';
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
