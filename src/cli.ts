#!/usr/bin/env node
/**
 * alexnet: train, evaluate and run AlexNet-style classifiers on image folders.
 *
 *   node dist/src/cli.js train --data data/fashion-mnist --preset small
 *   node dist/src/cli.js eval runs/<run> --split test --tta 10
 *   node dist/src/cli.js report runs/<run>
 *   node dist/src/cli.js dashboard runs/                       (or train ... --dashboard)
 *   node dist/src/cli.js predict --model runs/<run>/final-model image.png
 *   node dist/src/cli.js export runs/<run> --format onnx         (writes runs/<run>/best.onnx)
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
  BACKEND_CHOICES,
  EVAL_OPTIONS,
  EXPORT_OPTIONS,
  PRESET_NAMES,
  TRAIN_OPTIONS,
  buildTrainConfig,
  type CliArgs,
} from './core/config';
import { cliOption, type OptionTable } from './core/field-reader';
import { CLUSTER_DEFAULTS } from './dist/control/cluster-config';
import { datasetOptions } from './data/cli-options';
import { dataCommand } from './data/commands/commands';
import { UserError } from './core/errors';
import { DASHBOARD_DEFAULTS } from './dashboard/options';

/**
 * What the commands do, loaded when one runs: it brings TensorFlow.js, sharp and ZeroMQ, half a
 * second of start-up that `--help` and a mistyped option should not pay.
 */
const handlers = (): Promise<typeof import('./command-handlers')> => import('./command-handlers');

/** A table's options (src/core/config.ts) in its order, but those that another builder declares. */
function tableOptions(y: Argv, table: OptionTable, declaredElsewhere: readonly string[] = []): Argv {
  return Object.entries(table)
    .filter(([field]) => !declaredElsewhere.includes(field))
    .reduce((options, [, spec]) => options.option(spec.flag, cliOption(spec)), y);
}

/**
 * Every `train` option of TRAIN_OPTIONS, but --layout: datasetOptions declares it for every
 * command that opens a dataset. --preset gets no parser default (buildTrainConfig fills it in),
 * so that `--init-from` can tell a preset the user chose from the default.
 */
export function trainOptions(y: Argv): Argv {
  // Declared again without its choices: yargs appends a repeated option's choices to the first list.
  return tableOptions(y, TRAIN_OPTIONS, ['dataLayout']).option('preset', {
    default: undefined,
    defaultDescription: String(cliOption(TRAIN_OPTIONS.preset).default),
  });
}

/** `train --dashboard [port]`: the live page of this run (README "Dashboard", docs/dashboard.md). */
function dashboardOptions(y: Argv): Argv {
  return y
    .option('dashboard', {
      type: 'string',
      describe: `serve a live page of this run at http://127.0.0.1:<port>/ (no value: port ${DASHBOARD_DEFAULTS.port}; 0: any free port), printed as 'dashboard: <url>'`,
    })
    .option('dashboard-host', {
      type: 'string',
      describe: `with --dashboard: listen at this address instead of ${DASHBOARD_DEFAULTS.host}; the printed URL then carries a random token that every request needs`,
    });
}

const FORCE_RUN_DIR = {
  type: 'boolean',
  default: false,
  describe:
    'train into a --run-dir that already holds files (they may be overwritten); without it such a directory is refused unless it is the one --resume continues',
} as const;

const KEY_FILE_HELP =
  "the cluster's CURVE key file from 'alexnet keygen', the same file on every host (required: runs across hosts are always encrypted and authenticated)";
const RING_PORT_HELP =
  "port of this host's first ring socket, +1 for each further worker; with L workers, their cross-ring sockets (hierarchical plane) take the next L ports (default 0: any free port; the other hosts must be able to reach them)";

/** The `train` options of a multi-host run (README "Multi-host runs"). */
export function clusterOptions(y: Argv): Argv {
  return y
    .option('rendezvous', {
      type: 'string',
      describe:
        "run across hosts: listen for 'alexnet join' at tcp://<this host's IP>:<port> (port 0: any free port, printed) and start once --world-size workers are present",
    })
    .option('world-size', {
      type: 'number',
      describe: 'with --rendezvous: workers on all hosts together (this host runs its --devices as ranks 0..N-1)',
    })
    .option('key-file', { type: 'string', describe: KEY_FILE_HELP })
    .option('ring-host', {
      type: 'string',
      describe:
        "with --rendezvous: this host's interface address for the ring sockets (default: the --rendezvous address)",
    })
    .option('ring-port', { type: 'number', default: CLUSTER_DEFAULTS.ringPort, describe: RING_PORT_HELP })
    .option('join-timeout', {
      type: 'number',
      default: CLUSTER_DEFAULTS.joinTimeoutSec,
      describe: 'with --rendezvous: seconds to wait for the other hosts to join',
    })
    .option('rejoin-timeout', {
      type: 'number',
      describe: `with --rendezvous: after a restart (--max-restarts), seconds to wait for the hosts, or replacements, to join again (default ${CLUSTER_DEFAULTS.rejoinTimeoutSec})`,
    });
}

/** `alexnet join <rendezvous>`: this host's options in another host's run. */
function joinOptions(y: Argv): Argv {
  return y
    .positional('rendezvous', {
      type: 'string',
      demandOption: true,
      describe: "the coordinator's address, tcp://<host>:<port>, as its 'train --rendezvous' printed it",
    })
    .option('key-file', { type: 'string', describe: KEY_FILE_HELP })
    .option('devices', {
      ...cliOption(TRAIN_OPTIONS.devices),
      describe: "this host's workers: 'auto', a GPU count, or 'cpu:N' CPU-simulated devices",
    })
    .option('strict-devices', cliOption(TRAIN_OPTIONS.strictDevices))
    .option('ring-host', {
      type: 'string',
      describe: "this host's interface address for the ring sockets (default: the one that routes to the coordinator)",
    })
    .option('ring-port', { type: 'number', default: CLUSTER_DEFAULTS.ringPort, describe: RING_PORT_HELP })
    .option('join-timeout', {
      type: 'number',
      default: CLUSTER_DEFAULTS.joinTimeoutSec,
      describe: 'seconds to wait for the coordinator to answer and the run to start',
    })
    .option('coordinator-timeout', {
      type: 'number',
      default: CLUSTER_DEFAULTS.coordinatorTimeoutSec,
      describe:
        'once the run started, seconds the coordinator may stay unreachable before this host stops its workers and exits',
    })
    .option('log-level', cliOption(TRAIN_OPTIONS.logLevel));
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
    const takesValue =
      m[2] === undefined &&
      !booleans.has(name) &&
      m[1] === name &&
      i + 1 < argv.length &&
      !argv[i + 1].startsWith('--');
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
  return (
    yargs(argv)
      // A flag given twice takes its last value (`make train ARGS="--epochs 3"` after the defaults).
      .parserConfiguration({ 'duplicate-arguments-array': false })
      .scriptName('alexnet')
      .usage('$0 <command> [options]')
      // The flags are checked before the handlers load tfjs and sharp: a mistyped flag is
      // answered in half the time (0.3 s instead of 0.65 here).
      .command('train', 'train AlexNet on an image dataset', allTrainOptions, async (a) => {
        const parsed = buildTrainConfig(a as CliArgs);
        return (await handlers()).runTrain(a as CliArgs, parsed);
      })
      .command(
        'join <rendezvous>',
        "bring this host's devices into a multi-host run started elsewhere with 'train --rendezvous'",
        joinOptions,
        async (a) => {
          await (await handlers()).runJoin(a as CliArgs);
        },
      )
      .command(
        'keygen',
        'write a new CURVE key file for multi-host runs (mode 0600), to copy to every host',
        (y: Argv): Argv =>
          y
            .option('out', { type: 'string', default: 'cluster.key', describe: 'where to write the key file' })
            .option('force', {
              type: 'boolean',
              default: false,
              describe: 'replace an existing key file (every host then needs the new one)',
            }),
        async (a) => (await handlers()).runKeygen(a as CliArgs),
      )
      .command(
        'eval <checkpoint>',
        'top-1/top-5 error, per-class accuracy and confusion matrix of a checkpoint (file or run directory) on a split',
        (y: Argv): Argv =>
          tableOptions(
            datasetOptions(y).positional('checkpoint', {
              type: 'string',
              demandOption: true,
              describe: 'checkpoint file, or a run directory (uses best.ckpt, else last.ckpt)',
            }),
            EVAL_OPTIONS,
            ['dataLayout'],
          ),
        async (a) => {
          await (await handlers()).runEval(a as CliArgs);
        },
      )
      .command(
        'export <run>',
        'write a checkpoint (file or run directory) as a model other programs run: a tfjs graph model folder, or an ONNX file',
        (y: Argv): Argv =>
          tableOptions(
            y.positional('run', {
              type: 'string',
              demandOption: true,
              describe: 'checkpoint file, or a run directory (uses best.ckpt, else last.ckpt)',
            }),
            EXPORT_OPTIONS,
          ),
        async (a) => {
          await (await handlers()).runExport(a as CliArgs);
        },
      )
      .command(
        'report <run-dir>',
        "redraw a run's curves.svg, curves.png and report.md from its metrics.jsonl and checkpoint",
        (y: Argv): Argv =>
          y.positional('run-dir', {
            type: 'string',
            demandOption: true,
            describe: 'run directory (holds metrics.jsonl)',
          }),
        async (a) => {
          await (await handlers()).runReport(a as CliArgs);
        },
      )
      .command(
        'dashboard <runs>',
        'serve a read-only page of the runs in a folder, finished and running, live (Ctrl-C to stop)',
        (y: Argv): Argv =>
          y
            .positional('runs', {
              type: 'string',
              demandOption: true,
              describe: 'folder whose subfolders are run directories (e.g. runs/)',
            })
            .option('port', {
              type: 'string',
              default: String(DASHBOARD_DEFAULTS.port),
              describe: "port (0: any free port); the URL is printed as 'dashboard: <url>'",
            })
            .option('host', {
              type: 'string',
              describe: `listen at this address instead of ${DASHBOARD_DEFAULTS.host}; the printed URL then carries a random token that every request needs`,
            }),
        async (a) => {
          await (await handlers()).runDashboard(a as CliArgs);
        },
      )
      .command(
        'predict <images..>',
        'top-5 classes with probabilities for each image',
        (y: Argv): Argv =>
          y
            .positional('images', { type: 'string', array: true, demandOption: true, describe: 'image files' })
            .option('model', {
              type: 'string',
              demandOption: true,
              describe: 'exported model folder (run-dir/final-model or best-model)',
            })
            .option('top', { type: 'number', default: 5, describe: 'classes to show per image' })
            .option('backend', { choices: BACKEND_CHOICES, default: 'auto', describe: 'tfjs backend' })
            .option('allow-software-gpu', {
              type: 'boolean',
              default: false,
              describe: 'let webgpu run on a software Vulkan device',
            }),
        async (a) => {
          await (await handlers()).runPredict(a as CliArgs);
        },
      )
      .command(
        'summary',
        'print the layer table and parameter count of a preset',
        (y: Argv): Argv =>
          y
            .option('preset', { choices: PRESET_NAMES, default: 'paper', describe: 'network' })
            .option('classes', { type: 'number', default: 1000, describe: 'output classes' }),
        async (a) => (await handlers()).runSummary(a as CliArgs),
      )
      .command(dataCommand)
      .demandCommand(
        1,
        'name a command: train, join, keygen, eval, export, report, dashboard, predict, summary or data',
      )
      .strict()
      .recommendCommands()
      .help()
      .wrap(Math.min(110, process.stdout.columns || 110))
      .fail((msg, err) => {
        if (err) throw err;
        throw new UsageError(msg);
      })
  );
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
      process.stderr.write(
        `alexnet: internal error (a bug; please report it):\n${err instanceof Error ? err.stack : String(err)}\n`,
      );
      process.exit(1);
    },
  );
}
