/**
 * The fine-tuning experiment of docs/fine-tuning.md: does a network pretrained on one task
 * learn another from few labels better than one trained from scratch at the same budget?
 *
 *   make fine-tune                          # = node dist/scripts/fine-tune.js (after make build data)
 *   node dist/scripts/fine-tune.js [--per-class 100,500] [--val-per-class 100] [--pretrain-epochs 3] [--epochs 6] [--force]
 *
 * Tasks, both built from the bundled Fashion-MNIST tree (data/fashion-mnist) as list files:
 *   pretrain: classes 0-4 (t-shirt/top, trouser, pullover, dress, coat), every training image;
 *   target:   classes 5-9 (sandal, shirt, sneaker, bag, ankle boot), relabelled 0-4, a seeded
 *             N images per class for training and 100 for validation; scored on all of their
 *             held-out test images.
 * The target's images and classes are never seen in pretraining. Pretraining uses the default
 * run's recipe (Makefile DEFAULT_TRAIN_ARGS), fewer epochs. Then, for each N, the same budget
 * (epochs, batch, optimizer) for: scratch; fine-tune every layer; fine-tune with conv1-conv5
 * frozen; fine-tune at a tenth of the rate with fc8 at 10x (--lr-mult). fc8 always starts
 * fresh (--reinit fc8: the target has 5 classes too, but other ones).
 *
 * Runs go to runs/fine-tune/<name>/, each with command.json (its command and wall time); a
 * finished run of the same command is reused, --force reruns. The table goes into
 * docs/fine-tuning.md between its generated-block markers.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import yargs from 'yargs';
import { replaceGeneratedBlock, repoRoot } from '../bench/harness';
import { formatPercent, formatTable } from '../src/core/text-format';
import { FASHION_MNIST_CLASSES } from '../src/data/commands/fashion-mnist';
import { seededSubset } from '../src/data/rng';
import { METRICS_FILE, parseMetricsJsonl } from '../src/train/run/run-log';

const GENERATOR = 'scripts/fine-tune.ts';
const SOURCE = path.join('data', 'fashion-mnist');
const TASKS = path.join('data', 'fashion-mnist-tasks');
const RUNS = path.join('runs', 'fine-tune');
const DOC = path.join('docs', 'fine-tuning.md');
const COMMAND_FILE = 'command.json';

/** The default run's recipe (Makefile DEFAULT_TRAIN_ARGS) without its data, epochs and schedule. */
const RECIPE = [
  ...['--preset', 'small', '--init', 'he', '--optimizer', 'adam', '--lr', '0.001', '--dropout', '0.5'],
  ...['--no-crop', '--batch-size', '64', '--schedule', 'constant', '--seed', '0'],
];

interface Variant {
  name: string;
  what: string;
  args: (pretrained: string) => string[];
}

const VARIANTS: Variant[] = [
  { name: 'scratch', what: 'from scratch (He init)', args: () => [] },
  {
    name: 'finetune-all',
    what: 'fine-tune every layer',
    args: (p) => ['--init-from', p, '--reinit', 'fc8'],
  },
  {
    name: 'finetune-frozen',
    what: 'fine-tune, --freeze conv1-conv5',
    args: (p) => ['--init-from', p, '--reinit', 'fc8', '--freeze', 'conv1-conv5'],
  },
  {
    name: 'finetune-lrmult',
    what: 'fine-tune, --lr 0.0001 --lr-mult fc8=10',
    args: (p) => ['--init-from', p, '--reinit', 'fc8', '--lr', '0.0001', '--lr-mult', 'fc8=10'],
  },
];

/**
 * One task as list files (absolute paths): classes `from`..`from + 4` of the source, relabelled
 * 0-4; a seeded subset of each class's training and validation images where given (the test
 * split always whole).
 */
function writeTask(name: string, from: number, perClass: { train?: number; val?: number }, seed: number): string {
  const dir = path.resolve(TASKS, name);
  const classes = FASHION_MNIST_CLASSES.slice(from, from + 5);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'classes.txt'), `${classes.join('\n')}\n`);
  for (const split of ['train', 'val', 'test']) {
    const lines = classes.flatMap((cls, label) => {
      const folder = path.resolve(SOURCE, split, cls);
      const files = fs.readdirSync(folder).sort();
      const limit = split === 'train' ? perClass.train : split === 'val' ? perClass.val : undefined;
      const picked = limit === undefined ? files : seededSubset(files, limit, seed);
      return picked.map((f) => `${path.join(folder, f)}\t${label}`);
    });
    fs.writeFileSync(path.join(dir, `${split}.txt`), `${lines.join('\n')}\n`);
  }
  return dir;
}

function run(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repoRoot(), 'dist', 'src', 'cli.js'), ...args], {
      stdio: 'inherit',
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => (signal ? reject(new Error(`stopped by ${signal}`)) : resolve(code ?? 1)));
  });
}

interface Finished {
  testTop1: number;
  bestValTop1: number;
  wallSec: number;
  command: string[];
}

function finished(runDir: string, command: string[]): Finished | null {
  const infoFile = path.join(runDir, COMMAND_FILE);
  const metricsFile = path.join(runDir, METRICS_FILE);
  if (!fs.existsSync(infoFile) || !fs.existsSync(metricsFile)) return null;
  const info = JSON.parse(fs.readFileSync(infoFile, 'utf8')) as { command: string[]; wallSec: number };
  const metrics = parseMetricsJsonl(fs.readFileSync(metricsFile, 'utf8'));
  if (JSON.stringify(info.command) !== JSON.stringify(command) || metrics.test === null) return null;
  const vals = metrics.epochs.map((e) => e.val?.top1Error ?? NaN).filter((v) => !Number.isNaN(v));
  return {
    testTop1: metrics.test.test.top1Error,
    bestValTop1: Math.min(...vals),
    wallSec: info.wallSec,
    command: info.command,
  };
}

/** Trains `args` into runDir unless a finished run of the same command is there. */
async function ensureTrain(runDir: string, args: string[], force: boolean): Promise<Finished> {
  const command = ['train', ...args, '--run-dir', runDir, '--force'];
  const done = force ? null : finished(runDir, command);
  if (done) {
    console.log(`reusing ${runDir}`);
    return done;
  }
  fs.rmSync(runDir, { recursive: true, force: true });
  console.log(`\n$ alexnet ${command.join(' ')}`);
  const started = performance.now();
  const code = await run(command);
  if (code !== 0) throw new Error(`alexnet train for ${runDir} exited with ${code}`);
  const wallSec = (performance.now() - started) / 1000;
  fs.writeFileSync(path.join(runDir, COMMAND_FILE), `${JSON.stringify({ command, wallSec }, null, 2)}\n`);
  return finished(runDir, command) as Finished;
}

/** Export, eval and predict on a fine-tuned run: they work as on any other run. */
async function checkTools(runDir: string, task: string): Promise<void> {
  const image = fs.readFileSync(path.join(task, 'test.txt'), 'utf8').split('\n')[0].split('\t')[0];
  for (const args of [
    ['eval', runDir, '--split', 'test'],
    ['export', runDir, '--format', 'onnx', '--force'],
    ['predict', image, '--model', path.join(runDir, 'final-model')],
  ]) {
    console.log(`\n$ alexnet ${args.join(' ')}`);
    const code = await run(args);
    if (code !== 0) throw new Error(`alexnet ${args.join(' ')} exited with ${code}`);
  }
}

const seconds = (s: number) => (s < 60 ? `${s.toFixed(0)} s` : `${Math.floor(s / 60)} min ${(s % 60).toFixed(0)} s`);

async function main(): Promise<void> {
  const opts = await yargs(process.argv.slice(2))
    .option('per-class', { type: 'string', default: '100,500', describe: 'target training images per class' })
    .option('val-per-class', { type: 'number', default: 100, describe: 'target validation images per class' })
    .option('pretrain-epochs', { type: 'number', default: 3 })
    .option('epochs', { type: 'number', default: 6, describe: 'epochs of every target run' })
    .option('force', { type: 'boolean', default: false })
    .strict()
    .parseAsync();
  process.chdir(repoRoot());
  if (!fs.existsSync(path.join(SOURCE, '.complete.json')))
    throw new Error(`${SOURCE} is not there: run make data first`);
  const pretrainTask = writeTask('pretrain-0-4', 0, {}, 0);
  const pretrainDir = path.resolve(RUNS, 'pretrain');
  const pretrain = await ensureTrain(
    pretrainDir,
    ['--data', pretrainTask, ...RECIPE, '--epochs', String(opts['pretrain-epochs'])],
    opts.force,
  );
  const rows: string[][] = [];
  const commands: string[] = [`alexnet ${pretrain.command.join(' ')}`];
  for (const perClass of opts['per-class'].split(',').map(Number)) {
    const task = writeTask(`target-5-9-${perClass}`, 5, { train: perClass, val: opts['val-per-class'] }, 0);
    for (const v of VARIANTS) {
      const args = ['--data', task, ...RECIPE, '--epochs', String(opts.epochs), ...v.args(pretrainDir)];
      // A later flag wins (lastFlagWins), so a variant's --lr replaces the recipe's.
      const r = await ensureTrain(path.resolve(RUNS, `${v.name}-${perClass}`), args, opts.force);
      rows.push([
        String(perClass * 5),
        v.what,
        formatPercent(r.bestValTop1),
        `**${formatPercent(r.testTop1)}**`,
        seconds(r.wallSec),
      ]);
      commands.push(`alexnet ${r.command.join(' ')}`);
    }
    if (perClass === Number(opts['per-class'].split(',')[0]))
      await checkTools(path.resolve(RUNS, `finetune-frozen-${perClass}`), task);
  }
  const table = formatTable(['target train images', 'run', 'best val top-1 error', 'test top-1 error', 'wall'], rows, [
    'right',
    'left',
    'right',
    'right',
    'right',
  ]);
  const block = [
    `Pretraining (classes 0-4, ${opts['pretrain-epochs']} epochs): test top-1 error ${formatPercent(pretrain.testTop1)} on its own 5 classes, ${seconds(pretrain.wallSec)}.`,
    '',
    table,
    '',
    'Commands (paths relative to the repository; the script writes the list files):',
    '',
    '```',
    ...commands.map((c) => c.replaceAll(`${repoRoot()}/`, '')),
    '```',
  ].join('\n');
  const doc = fs.existsSync(DOC) ? fs.readFileSync(DOC, 'utf8') : '# Fine-tuning\n';
  fs.writeFileSync(DOC, replaceGeneratedBlock(doc, 'fine-tune-table', block, GENERATOR));
  console.log(`\n${table}\n\nwrote ${DOC}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
