#!/usr/bin/env node
/**
 * alexnet: train, evaluate and run AlexNet-style classifiers on image folders.
 *
 *   node dist/src/cli.js train --data data/fashion-mnist --preset small
 *   node dist/src/cli.js eval runs/<run> --split test --tta 10
 *   node dist/src/cli.js report runs/<run>
 *   node dist/src/cli.js dashboard runs/                       (or train ... --dashboard)
 *   node dist/src/cli.js predict --model runs/<run>/final-model image.png
 *   node dist/src/cli.js data check <root>
 *   node dist/src/cli.js keygen --out cluster.key            (multi-host runs: README)
 *   node dist/src/cli.js join tcp://10.0.0.1:29500 --key-file cluster.key
 *
 * A bad option or input is one line on stderr and exit code 2 (1 for a failed run), never a
 * stack trace; a stack trace means a bug.
 */
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import {
  ACTIVATION_NAMES,
  BACKEND_CHOICES,
  EVAL_DEFAULTS,
  INIT_NAMES,
  LOG_LEVELS,
  OPTIMIZER_NAMES,
  PARALLEL_MODES,
  WIRE_DTYPES,
  PRESET_NAMES,
  SCHEDULE_NAMES,
  trainFlagDefault as d,
  type CliArgs,
} from './core/config';
import { CLUSTER_DEFAULTS } from './dist/control/cluster-config';
import { datasetOptions } from './data/cli-options';
import { dataCommand } from './data/commands/commands';
import { UserError } from './core/errors';
import { DASHBOARD_DEFAULTS } from './dashboard/options';
import { runDashboard, runEval, runJoin, runKeygen, runPredict, runReport, runSummary, runTrain } from './command-handlers';

/** Every `train` option, with its default (from TRAIN_DEFAULTS, src/core/config.ts) and unit in the help text. */
export function trainOptions(y: Argv): Argv {
  return y
    .option('data', { type: 'string', default: d('data'), describe: 'dataset root: {train,val|valid,test}/<class>/<image> folders or {train,val,test}.txt list files' })
    .option('preset', { choices: PRESET_NAMES, default: d('preset'), describe: 'network: paper (60,965,224 params at 1000 classes, 227 px), torchvision (61,100,840, 224 px), small (CPU-sized, 28 px)' })
    .option('epochs', { type: 'number', default: d('epochs'), describe: 'passes over the training split' })
    .option('batch-size', { type: 'number', default: d('batch-size'), describe: 'global batch in images, split across all workers' })
    .option('micro-batch', { type: 'number', default: d('micro-batch'), describe: "images per forward+backward in a worker; its share of the batch runs in micro-batches whose gradients add up (0: the largest that the backend's memory fits)" })
    .option('max-steps', { type: 'number', default: d('max-steps'), describe: 'cap on steps per epoch (0: the whole split)' })
    .option('train-limit', { type: 'number', default: d('train-limit'), describe: 'use a seeded subset of this many training images (0: all)' })
    .option('optimizer', { choices: OPTIMIZER_NAMES, default: d('optimizer'), describe: "sgd: the paper's momentum SGD with weight decay in the velocity; adam" })
    .option('lr', { type: 'number', default: d('lr'), describe: 'initial learning rate' })
    .option('momentum', { type: 'number', default: d('momentum'), describe: 'SGD momentum' })
    .option('weight-decay', { type: 'number', default: d('weight-decay'), describe: 'weight decay on weights (not biases)' })
    .option('schedule', { choices: SCHEDULE_NAMES, default: d('schedule'), describe: 'plateau: divide lr by --lr-factor when val top-1 stops improving (at most 3 times, as the paper); step: every --lr-step-epochs epochs' })
    .option('lr-factor', { type: 'number', default: d('lr-factor'), describe: 'divisor at each learning-rate drop' })
    .option('lr-step-epochs', { type: 'number', default: d('lr-step-epochs'), describe: 'epochs between drops (step schedule)' })
    .option('lr-patience', { type: 'number', default: d('lr-patience'), describe: 'epochs without val improvement before a drop (plateau schedule)' })
    .option('activation', { choices: ACTIVATION_NAMES, default: d('activation'), describe: 'ReLU (paper) or tanh (the paper\'s Figure 1 comparison)' })
    .option('lrn', { type: 'boolean', default: d('lrn'), describe: 'local response normalisation where the preset has it (--no-lrn to ablate)' })
    .option('overlapping-pool', { type: 'boolean', default: d('overlapping-pool'), describe: '3/2 overlapping max-pooling (--no-overlapping-pool: 2/2)' })
    .option('dropout', { type: 'number', describe: 'dropout rate in the hidden FC layers (default: the preset\'s, 0.5)' })
    .option('init', { choices: INIT_NAMES, default: d('init'), describe: 'weight init: paper N(0, 0.01), he N(0, sqrt(2/fan-in)), or the preset\'s (paper: N(0, 0.01); small and torchvision: he)' })
    .option('tta', { type: 'number', default: d('tta'), describe: "test-time crops: 1 (centre) or 10 (the paper's 4 corners + centre, and flips)" })
    .option('drop-last', { type: 'boolean', default: d('drop-last'), describe: 'drop the last incomplete global batch of each epoch' })
    .option('seed', { type: 'number', default: d('seed'), describe: 'seed of initialisation, shuffling, augmentation and dropout' })
    .option('run-dir', { type: 'string', default: d('run-dir'), describe: 'where checkpoints, metrics.jsonl and exported models go' })
    .option('resume', { type: 'string', describe: 'continue from a checkpoint file, or a run directory (its newest checkpoint that loads)' })
    .option('checkpoint-every', { type: 'number', default: d('checkpoint-every'), describe: 'also write a step checkpoint every N steps (0: off; last.ckpt is written at each epoch end and on Ctrl-C)' })
    .option('checkpoint-every-min', { type: 'number', default: d('checkpoint-every-min'), describe: 'also checkpoint when this many minutes passed since the last step checkpoint (0: off)' })
    .option('keep-checkpoints', { type: 'number', default: d('keep-checkpoints'), describe: 'step checkpoints kept in the run directory, the newest (last.ckpt and best.ckpt apart)' })
    .option('max-restarts', { type: 'number', default: d('max-restarts'), describe: 'restart the workers from the newest checkpoint when one dies or hangs, at most N times (0: a failure ends the run)' })
    .option('crop', { type: 'boolean', default: d('crop'), describe: 'random crops of the input size from the resized square (--no-crop: centre crop)' })
    .option('flip', { type: 'boolean', default: d('flip'), describe: 'random horizontal flips (--no-flip to turn off)' })
    .option('pca-lighting', { type: 'boolean', default: d('pca-lighting'), describe: "the paper's PCA colour augmentation, a ~ N(0, 0.1) (--no-pca-lighting to turn off)" })
    .option('log-every', { type: 'number', default: d('log-every'), describe: 'append the training loss/top-1/top-5 of every N steps to steps.jsonl in the run directory (0: off)' })
    .option('backend', { choices: BACKEND_CHOICES, default: d('backend'), describe: 'tfjs backend: auto tries node-gpu, webgpu (Vulkan, a hardware adapter only), node, native (oneDNN), wasm, cpu' })
    .option('allow-software-gpu', { type: 'boolean', default: d('allow-software-gpu'), describe: 'let webgpu run on a software Vulkan device (lavapipe, SwiftShader): slow, for tests' })
    .option('threads', { type: 'number', default: d('threads'), describe: 'oneDNN threads per worker process of the native backend (1: one worker per core)' })
    .option('parallel', { choices: PARALLEL_MODES, default: d('parallel'), describe: "data: every worker holds the whole model, all gradients all-reduced; hybrid: conv layers data-parallel, FC layers split across workers by output unit (Krizhevsky 2014), far fewer bytes per step" })
    .option('wire-dtype', { choices: WIRE_DTYPES, default: d('wire-dtype'), describe: 'number format of gradients and activations between workers; sums and weights stay fp32' })
    .option('overlap', { type: 'boolean', default: d('overlap'), describe: 'all-reduce gradients in buckets while the backward pass still runs' })
    .option('bucket-mb', { type: 'number', default: d('bucket-mb'), describe: 'bucket size of --overlap, in MB' })
    .option('devices', { type: 'string', default: d('devices'), describe: "workers: 'auto', a GPU count, 'cpu:N' CPU-simulated devices, or 'webgpu:N' workers on whatever WebGPU adapter exists (software too)" })
    .option('strict-devices', { type: 'boolean', default: d('strict-devices'), describe: 'fail instead of simulating when fewer GPUs than asked exist' })
    .option('checksum-every', { type: 'number', default: d('checksum-every'), describe: 'compare a checksum of the weights across workers every N steps (0: never)' })
    .option('hang-timeout', { type: 'number', default: d('hang-timeout'), describe: 'seconds of silence (or 3x the slowest step) before a worker counts as hung' })
    .option('log-level', { choices: LOG_LEVELS, default: d('log-level'), describe: 'how much to print' });
}

/** `train --dashboard [port]`: the live page of this run (README "Dashboard", docs/dashboard.md). */
function dashboardOptions(y: Argv): Argv {
  return y
    .option('dashboard', { type: 'string', describe: `serve a live page of this run at http://127.0.0.1:<port>/ (no value: port ${DASHBOARD_DEFAULTS.port}; 0: any free port), printed as 'dashboard: <url>'` })
    .option('dashboard-host', { type: 'string', describe: `with --dashboard: listen at this address instead of ${DASHBOARD_DEFAULTS.host}; the printed URL then carries a random token that every request needs` });
}

const FORCE_RUN_DIR = { type: 'boolean', default: false, describe: 'train into a --run-dir that already holds files (they may be overwritten); without it such a directory is refused unless it is the one --resume continues' } as const;

const KEY_FILE_HELP = "the cluster's CURVE key file from 'alexnet keygen', the same file on every host (required: runs across hosts are always encrypted and authenticated)";
const RING_PORT_HELP = "port of this host's first ring socket, +1 for each further worker (default 0: any free port; the other hosts must be able to reach it)";

/** The `train` options of a multi-host run (README "Multi-host runs"). */
export function clusterOptions(y: Argv): Argv {
  return y
    .option('rendezvous', { type: 'string', describe: "run across hosts: listen for 'alexnet join' at tcp://<this host's IP>:<port> (port 0: any free port, printed) and start once --world-size workers are present" })
    .option('world-size', { type: 'number', describe: 'with --rendezvous: workers on all hosts together (this host runs its --devices as ranks 0..N-1)' })
    .option('key-file', { type: 'string', describe: KEY_FILE_HELP })
    .option('ring-host', { type: 'string', describe: "with --rendezvous: this host's interface address for the ring sockets (default: the --rendezvous address)" })
    .option('ring-port', { type: 'number', default: CLUSTER_DEFAULTS.ringPort, describe: RING_PORT_HELP })
    .option('join-timeout', { type: 'number', default: CLUSTER_DEFAULTS.joinTimeoutSec, describe: 'with --rendezvous: seconds to wait for the other hosts to join' })
    .option('rejoin-timeout', { type: 'number', describe: `with --rendezvous: after a restart (--max-restarts), seconds to wait for the hosts, or replacements, to join again (default ${CLUSTER_DEFAULTS.rejoinTimeoutSec})` });
}

/** `alexnet join <rendezvous>`: this host's options in another host's run. */
function joinOptions(y: Argv): Argv {
  return y
    .positional('rendezvous', { type: 'string', demandOption: true, describe: "the coordinator's address, tcp://<host>:<port>, as its 'train --rendezvous' printed it" })
    .option('key-file', { type: 'string', describe: KEY_FILE_HELP })
    .option('devices', { type: 'string', default: CLUSTER_DEFAULTS.devices, describe: "this host's workers: 'auto', a GPU count, or 'cpu:N' CPU-simulated devices" })
    .option('strict-devices', { type: 'boolean', default: CLUSTER_DEFAULTS.strictDevices, describe: 'fail instead of simulating when fewer GPUs than asked exist' })
    .option('ring-host', { type: 'string', describe: "this host's interface address for the ring sockets (default: the one that routes to the coordinator)" })
    .option('ring-port', { type: 'number', default: CLUSTER_DEFAULTS.ringPort, describe: RING_PORT_HELP })
    .option('join-timeout', { type: 'number', default: CLUSTER_DEFAULTS.joinTimeoutSec, describe: 'seconds to wait for the coordinator to answer and the run to start' })
    .option('log-level', { choices: LOG_LEVELS, default: CLUSTER_DEFAULTS.logLevel, describe: 'how much to print' });
}

/** Every `train` option, as the train command builds them. */
function allTrainOptions(y: Argv): Argv {
  return dashboardOptions(datasetOptions(clusterOptions(trainOptions(y)))).option('force', FORCE_RUN_DIR);
}

/**
 * Keeps only the last occurrence of each flag (`--name value`, `--name=value`, and for boolean
 * flags `--name` or `--no-name`), so a flag given twice takes its last value:
 * `make train ARGS="--epochs 3"` comes after the defaults' `--epochs 8`. yargs alone cannot be
 * trusted with it: asked to keep the last value, it adds a repeated number flag whose last value
 * is 1 to the previous one (`--epochs 8 --epochs 1` parsed as 9).
 */
export function lastFlagWins(argv: readonly string[], booleans: ReadonlySet<string>): string[] {
  const items: { name: string | null; tokens: string[] }[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i];
    const m = /^--([^=]+)(=.*)?$/.exec(token);
    if (m === null) {
      items.push({ name: null, tokens: [token] });
      continue;
    }
    const name = m[1].startsWith('no-') && booleans.has(m[1].slice(3)) ? m[1].slice(3) : m[1];
    const takesValue = m[2] === undefined && !booleans.has(name) && m[1] === name && i + 1 < argv.length && !argv[i + 1].startsWith('--');
    items.push({ name, tokens: takesValue ? [token, argv[++i]] : [token] });
  }
  const last = new Map<string, number>();
  items.forEach((item, k) => item.name !== null && last.set(item.name, k));
  return items.filter((item, k) => item.name === null || last.get(item.name) === k).flatMap((item) => item.tokens);
}

export function buildCli(rawArgv: string[]): Argv {
  // yargs' getOptions() is public API its typings leave out.
  const parser = allTrainOptions(yargs()) as unknown as { getOptions(): { boolean: string[] } };
  const trainBooleans = new Set(parser.getOptions().boolean);
  const argv = rawArgv[0] === 'train' ? lastFlagWins(rawArgv, trainBooleans) : rawArgv;
  return yargs(argv)
    // A flag given twice takes its last value (`make train ARGS="--epochs 3"` after the defaults).
    .parserConfiguration({ 'duplicate-arguments-array': false })
    .scriptName('alexnet')
    .usage('$0 <command> [options]')
    .command('train', 'train AlexNet on an image dataset', allTrainOptions, (a) => runTrain(a as CliArgs))
    .command(
      'join <rendezvous>',
      "bring this host's devices into a multi-host run started elsewhere with 'train --rendezvous'",
      joinOptions,
      async (a) => {
        await runJoin(a as CliArgs);
      },
    )
    .command(
      'keygen',
      'write a new CURVE key file for multi-host runs (mode 0600), to copy to every host',
      (y: Argv): Argv =>
        y
          .option('out', { type: 'string', default: 'cluster.key', describe: 'where to write the key file' })
          .option('force', { type: 'boolean', default: false, describe: 'replace an existing key file (every host then needs the new one)' }),
      (a) => runKeygen(a as CliArgs),
    )
    .command(
      'eval <checkpoint>',
      'top-1/top-5 error, per-class accuracy and confusion matrix of a checkpoint (file or run directory) on a split',
      (y: Argv): Argv =>
        datasetOptions(y)
          .positional('checkpoint', { type: 'string', demandOption: true, describe: 'checkpoint file, or a run directory (uses best.ckpt, else last.ckpt)' })
          .option('data', { type: 'string', describe: 'dataset root (default: the one the checkpoint was trained on)' })
          .option('split', { choices: ['train', 'val', 'test'] as const, default: EVAL_DEFAULTS.split, describe: 'split to evaluate' })
          .option('tta', { type: 'number', default: EVAL_DEFAULTS.tta, describe: "1 (centre crop) or 10 (the paper's 10 patches)" })
          .option('batch-size', { type: 'number', default: EVAL_DEFAULTS.batchSize, describe: 'images per batch' })
          .option('out', { type: 'string', describe: 'folder for confusion.csv, per-class.csv and confusion.png (default: <run dir>/eval-<split>[-tta10])' })
          .option('force', { type: 'boolean', default: false, describe: 'replace those files in --out even when eval did not write them' })
          .option('backend', { choices: BACKEND_CHOICES, default: EVAL_DEFAULTS.backend, describe: 'tfjs backend' })
          .option('allow-software-gpu', { type: 'boolean', default: EVAL_DEFAULTS.allowSoftwareGpu, describe: 'let webgpu run on a software Vulkan device' }),
      async (a) => {
        await runEval(a as CliArgs);
      },
    )
    .command(
      'report <run-dir>',
      'redraw a run\'s curves.svg, curves.png and report.md from its metrics.jsonl and checkpoint',
      (y: Argv): Argv => y.positional('run-dir', { type: 'string', demandOption: true, describe: 'run directory (holds metrics.jsonl)' }),
      async (a) => {
        await runReport(a as CliArgs);
      },
    )
    .command(
      'dashboard <runs>',
      'serve a read-only page of the runs in a folder, finished and running, live (Ctrl-C to stop)',
      (y: Argv): Argv =>
        y
          .positional('runs', { type: 'string', demandOption: true, describe: 'folder whose subfolders are run directories (e.g. runs/)' })
          .option('port', { type: 'string', default: String(DASHBOARD_DEFAULTS.port), describe: 'port (0: any free port); the URL is printed as \'dashboard: <url>\'' })
          .option('host', { type: 'string', describe: `listen at this address instead of ${DASHBOARD_DEFAULTS.host}; the printed URL then carries a random token that every request needs` }),
      async (a) => {
        await runDashboard(a as CliArgs);
      },
    )
    .command(
      'predict <images..>',
      'top-5 classes with probabilities for each image',
      (y: Argv): Argv =>
        y
          .positional('images', { type: 'string', array: true, demandOption: true, describe: 'image files' })
          .option('model', { type: 'string', demandOption: true, describe: 'exported model folder (run-dir/final-model or best-model)' })
          .option('top', { type: 'number', default: 5, describe: 'classes to show per image' })
          .option('backend', { choices: BACKEND_CHOICES, default: 'auto', describe: 'tfjs backend' })
          .option('allow-software-gpu', { type: 'boolean', default: false, describe: 'let webgpu run on a software Vulkan device' }),
      async (a) => {
        await runPredict(a as CliArgs);
      },
    )
    .command(
      'summary',
      'print the layer table and parameter count of a preset',
      (y: Argv): Argv =>
        y
          .option('preset', { choices: PRESET_NAMES, default: 'paper', describe: 'network' })
          .option('classes', { type: 'number', default: 1000, describe: 'output classes' }),
      (a) => runSummary(a as CliArgs),
    )
    .command(dataCommand)
    .demandCommand(1, 'name a command: train, join, keygen, eval, report, dashboard, predict, summary or data')
    .strict()
    .recommendCommands()
    .help()
    .wrap(Math.min(110, process.stdout.columns || 110))
    .fail((msg, err) => {
      if (err) throw err;
      throw new UsageError(msg);
    });
}

class UsageError extends Error {}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildCli(argv).parseAsync();
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`alexnet: ${err.message} (see --help)\n`);
      return 2;
    }
    if (err instanceof UserError) {
      process.stderr.write(`alexnet: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
}

if (require.main === module) {
  main(hideBin(process.argv)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`alexnet: internal error (a bug; please report it):\n${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
