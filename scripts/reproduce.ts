/**
 * The scripted reproduction of docs/reproduction.md (issue #6):
 *
 *   node dist/scripts/reproduce.js reproduction [--epochs 6] [--seeds 0,1]   # ours vs the PyTorch reference
 *   node dist/scripts/reproduce.js ablations [--epochs 3 --train-limit 20000]
 *   node dist/scripts/reproduce.js report                      # only redraw the doc's tables/charts
 *   (make reproduce, make ablations)
 *
 * Data: the official Fashion-MNIST split from Debian's dataset-fashion-mnist IDX files (60,000
 * train, of which a seeded 5,000 are held out for validation; 10,000 test), imported once into
 * data/fashion-mnist-official by scripts/import-idx.ts.
 *
 * Each run goes to runs/reproduction/<name>/ with a command.json holding its command and wall
 * time (beside the trainer's own run.json). A run whose command.json shows the same command and
 * whose metrics have a test line is reused, so
 * the script can be stopped and started again; --force reruns everything.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import yargs from 'yargs';
import { benchScript, pythonUnavailable, replaceGeneratedBlock, repoRoot, SYSTEM_PYTHON } from '../bench/harness';
import { addonPath } from '../src/backend/native/backend';
import { openDataset } from '../src/data/index/dataset';
import { findStats, statsPath } from '../src/data/stats';
import { UserError } from '../src/core/errors';
import { buildSpec } from '../src/model/presets';
import { METRICS_FILE, STEPS_FILE, parseMetricsJsonl, parseStepsJsonl } from '../src/train/run/run-log';
import { writeSvgAndPng } from '../src/report/svg';
import { statsPlaces } from '../src/train/setup';
import {
  ABLATIONS,
  ablationChartSvg,
  ablationTable,
  ablationTrainArgs,
  oursTrainArgs,
  referenceArgs,
  REPRODUCTION_RECIPE,
  reproductionChartSvg,
  reproductionTable,
  seedGapLines,
  smoothedTrainError,
  type AblationBudget,
  type AblationResult,
  type RunResult,
} from './reproduction-lib';

const GENERATOR = 'scripts/reproduce.ts';
/** This script's record of a run: not run.json, which the trainer writes into its run directory. */
const COMMAND_FILE = 'command.json';
const IDX_DIR = '/usr/share/datasets/fashion-mnist';
const DATA_DIR = 'data/fashion-mnist-official';
const RUNS_DIR = 'runs/reproduction';
const DOC = 'docs/reproduction.md';
const IMG_DIR = 'docs/img';
/** The paper's Figure 1 threshold. */
const TRAIN_ERROR_THRESHOLD = 0.25;
/** steps.jsonl lines per smoothing window (x --log-every steps). */
const SMOOTHING_LINES = 3;

interface RunInfo {
  command: string[];
  wallMs: number;
  finishedAt: string;
  /** Anything a reader of the figures must know (a run started by hand, a shared machine). */
  note?: string;
}

function run(command: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      signal ? reject(new Error(`${command} stopped by ${signal}`)) : resolve(code ?? 1),
    );
  });
}

function readRunInfo(runDir: string): RunInfo | null {
  const file = path.join(runDir, COMMAND_FILE);
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as RunInfo) : null;
}

function finishedMetrics(runDir: string) {
  const file = path.join(runDir, METRICS_FILE);
  if (!fs.existsSync(file)) return null;
  const m = parseMetricsJsonl(fs.readFileSync(file, 'utf8'));
  return m.test ? m : null;
}

/** Runs `command args` for `runDir` unless a finished run of the same command is there. */
async function ensureRun(runDir: string, command: string, args: string[], force: boolean): Promise<void> {
  const info = readRunInfo(runDir);
  const same = info !== null && JSON.stringify(info.command) === JSON.stringify([command, ...args]);
  if (!force && same && finishedMetrics(runDir)) {
    console.log(`reusing ${runDir} (finished ${info.finishedAt})`);
    return;
  }
  fs.rmSync(runDir, { recursive: true, force: true });
  fs.mkdirSync(runDir, { recursive: true });
  console.log(`\n$ ${[command, ...args].join(' ')}`);
  const started = Date.now();
  const code = await run(command, args);
  if (code !== 0) throw new Error(`${runDir}: exit code ${code}`);
  const done: RunInfo = {
    command: [command, ...args],
    wallMs: Date.now() - started,
    finishedAt: new Date().toISOString(),
  };
  fs.writeFileSync(path.join(runDir, COMMAND_FILE), `${JSON.stringify(done, null, 2)}\n`);
}

function resultOf(name: string, shortName: string, runDir: string): RunResult | null {
  const metrics = finishedMetrics(runDir);
  const info = readRunInfo(runDir);
  return metrics && info ? { name, shortName, metrics, wallMs: info.wallMs } : null;
}

async function ensureData(): Promise<void> {
  if (fs.existsSync(path.join(DATA_DIR, '.complete.json'))) return;
  if (!fs.existsSync(IDX_DIR))
    throw new UserError(
      `${IDX_DIR} is missing: apt-get install dataset-fashion-mnist (Debian ships the official IDX files)`,
    );
  const code = await run(process.execPath, [
    path.join(__dirname, 'import-idx.js'),
    IDX_DIR,
    '--out',
    DATA_DIR,
    '--val',
    '5000',
  ]);
  if (code !== 0) throw new Error(`importing ${IDX_DIR} failed`);
}

const cli = (): string => path.join(repoRoot(), 'dist', 'src', 'cli.js');

const oursDirOf = (seed: number): string => path.join(RUNS_DIR, `ours-seed${seed}`);
const referenceDirOf = (seed: number): string => path.join(RUNS_DIR, `reference-seed${seed}`);

/** Ours on the native backend where its addon is built (make native), else on wasm. */
const oursBackend = (): 'native' | 'wasm' => (fs.existsSync(addonPath()) ? 'native' : 'wasm');

async function reproduction(epochs: number, seeds: readonly number[], force: boolean): Promise<void> {
  await ensureData();
  for (const seed of seeds) {
    const dir = oursDirOf(seed);
    await ensureRun(
      dir,
      process.execPath,
      [cli(), 'train', ...oursTrainArgs(DATA_DIR, dir, epochs, seed, oursBackend())],
      force,
    );
  }
  const missing = pythonUnavailable('import torch, PIL');
  if (missing) {
    console.log(`skipping the PyTorch reference: ${missing} (apt-get install python3-torch python3-pil)`);
    return;
  }
  await shareStats(oursDirOf(seeds[0]));
  const specFile = path.join(RUNS_DIR, 'spec-small-he.json');
  fs.writeFileSync(specFile, JSON.stringify(buildSpec('small', { init: 'he' })));
  for (const seed of seeds) {
    const dir = referenceDirOf(seed);
    await ensureRun(
      dir,
      SYSTEM_PYTHON,
      [
        benchScript('torch_reference.py'),
        ...referenceArgs(DATA_DIR, specFile, path.join(dir, METRICS_FILE), epochs, seed),
      ],
      force,
    );
  }
}

/** The seeds that have a finished run on both sides, in order. */
function finishedSeeds(): number[] {
  if (!fs.existsSync(RUNS_DIR)) return [];
  const seeds = fs.readdirSync(RUNS_DIR).flatMap((name) => {
    const m = /^ours-seed(\d+)$/.exec(name);
    return m ? [Number(m[1])] : [];
  });
  return seeds.filter((s) => finishedMetrics(oursDirOf(s)) && finishedMetrics(referenceDirOf(s))).sort((a, b) => a - b);
}

/** "native" or "wasm", from the command a run of ours recorded. */
function backendOf(info: RunInfo | null): string {
  const args = info?.command ?? [];
  const at = args.indexOf('--backend');
  return at >= 0 ? args[at + 1] : 'wasm';
}

/**
 * The reference reads <data>/stats.json. Ours keeps its statistics out of the dataset (in the
 * cache folder, or its run directory), so copy the very file ours used there; the imported
 * tree is this script's own folder, and a stats.json already there is what ours read first.
 */
async function shareStats(oursDir: string): Promise<void> {
  const target = statsPath(DATA_DIR);
  if (fs.existsSync(target)) return;
  const ds = await openDataset(DATA_DIR);
  const found = await findStats(
    statsPlaces(ds.root, ds.splits.train?.samples ?? [], buildSpec(REPRODUCTION_RECIPE.preset).resizeSize, oursDir),
  );
  if (found === null) throw new Error(`no dataset statistics from the run in ${oursDir}`);
  fs.copyFileSync(found.file, target);
}

async function ablations(budget: AblationBudget, force: boolean): Promise<void> {
  await ensureData();
  for (const a of ABLATIONS) {
    const dir = path.join(RUNS_DIR, 'ablations', a.id);
    await ensureRun(dir, process.execPath, [cli(), 'train', ...ablationTrainArgs(a, DATA_DIR, dir, budget)], force);
  }
}

/** A run's command as a reader would type it: `node dist/...`, paths relative to the repository. */
function shownCommand(info: RunInfo | null): string {
  if (!info) return '';
  const [command, ...args] = info.command;
  const program = command === process.execPath ? 'node' : command;
  const inRepo = (a: string): string =>
    path.isAbsolute(a) && a.startsWith(repoRoot()) ? path.relative(repoRoot(), a) : a;
  return [program, ...args.map(inRepo)].join(' ');
}

/** Redraws the generated blocks of docs/reproduction.md from whatever runs have finished. */
async function report(): Promise<void> {
  let doc = fs.existsSync(DOC) ? fs.readFileSync(DOC, 'utf8') : '# Reproduction\n';
  fs.mkdirSync(IMG_DIR, { recursive: true });
  const seeds = finishedSeeds();
  if (seeds.length > 0) {
    const dirs = seeds.flatMap((s) => [oursDirOf(s), referenceDirOf(s)]);
    const infos = dirs.map(readRunInfo);
    const runs = seeds
      .flatMap((s, i) => [
        resultOf(`ours (tfjs ${backendOf(infos[2 * i])}, 2 workers), seed ${s}`, `ours s${s}`, oursDirOf(s)),
        resultOf(`PyTorch reference (2 processes, gloo), seed ${s}`, `PyTorch s${s}`, referenceDirOf(s)),
      ])
      .filter((r): r is RunResult => r !== null);
    const ours = runs.filter((_, i) => i % 2 === 0);
    const refs = runs.filter((_, i) => i % 2 === 1);
    await writeSvgAndPng(
      reproductionChartSvg(runs),
      path.join(IMG_DIR, 'reproduction.svg'),
      path.join(IMG_DIR, 'reproduction.png'),
    );
    const notes = infos.flatMap((info, i) => (info?.note ? [`- ${runs[i]?.name}: ${info.note}`] : []));
    const block = [
      reproductionTable(runs),
      '',
      ...seedGapLines(
        seeds,
        ours.map((r) => r.metrics),
        refs.map((r) => r.metrics),
      ),
      ...(notes.length > 0 ? ['', ...notes] : []),
      '',
      `Commands (seed ${seeds[0]}; the others differ only in \`--seed\` and the run folder): \`${shownCommand(infos[0])}\``,
      `and \`${shownCommand(infos[1])}\`.`,
      '',
      '![ours vs reference](img/reproduction.png)',
    ].join('\n');
    doc = replaceGeneratedBlock(doc, 'reproduction', block, GENERATOR);
  }
  const results: AblationResult[] = [];
  for (const a of ABLATIONS) {
    const dir = path.join(RUNS_DIR, 'ablations', a.id);
    const r = resultOf(a.id, a.id, dir);
    const stepsFile = path.join(dir, STEPS_FILE);
    if (!r || !fs.existsSync(stepsFile)) continue;
    results.push({
      ablation: a,
      run: r,
      curve: smoothedTrainError(parseStepsJsonl(fs.readFileSync(stepsFile, 'utf8')), SMOOTHING_LINES),
    });
  }
  if (results.length > 0) {
    await writeSvgAndPng(
      ablationChartSvg(results, TRAIN_ERROR_THRESHOLD),
      path.join(IMG_DIR, 'ablations.svg'),
      path.join(IMG_DIR, 'ablations.png'),
    );
    const block = [
      ablationTable(results, TRAIN_ERROR_THRESHOLD),
      '',
      '![training error per variant](img/ablations.png)',
    ].join('\n');
    doc = replaceGeneratedBlock(doc, 'ablations', block, GENERATOR);
  }
  fs.writeFileSync(DOC, doc);
  console.log(`wrote ${DOC}`);
}

async function main(): Promise<void> {
  const args = await yargs(process.argv.slice(2))
    .command('$0 <part>', 'run the reproduction or the ablations, then redraw docs/reproduction.md')
    .positional('part', { choices: ['reproduction', 'ablations', 'report'] as const, demandOption: true })
    .option('epochs', { type: 'number', describe: 'epochs per run (reproduction: 6, ablations: 3)' })
    .option('seeds', { type: 'string', default: '0,1', describe: 'reproduction: the seeds each side runs' })
    .option('train-limit', { type: 'number', default: 20_000, describe: 'ablations: seeded training subset' })
    .option('batch-size', { type: 'number', default: 64, describe: 'ablations: global batch' })
    .option('force', { type: 'boolean', default: false, describe: 'rerun finished runs' })
    .strict()
    .parseAsync();
  process.chdir(repoRoot());
  const seeds = args.seeds.split(',').map(Number);
  if (seeds.some((s) => !Number.isInteger(s) || s < 0))
    throw new UserError(`--seeds must be non-negative integers separated by commas, got '${args.seeds}'`);
  if (args.part === 'reproduction') await reproduction(args.epochs ?? 6, seeds, args.force);
  if (args.part === 'ablations') {
    await ablations(
      {
        epochs: args.epochs ?? 3,
        trainLimit: args['train-limit'],
        batchSize: args['batch-size'],
        lr: 0.01,
        logEvery: 10,
      },
      args.force,
    );
  }
  await report();
}

main().catch((err: unknown) => {
  if (err instanceof UserError) {
    console.error(`error: ${err.message}`);
    process.exit(err.exitCode);
  }
  throw err;
});
