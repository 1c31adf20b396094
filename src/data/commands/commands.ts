/**
 * `alexnet data <index|split|prepare|stats|check>`: dataset tools. Each subcommand is a thin
 * layer over a function of src/data/ that returns data; printing happens here only.
 *
 *   alexnet data split ./photos --val 0.1 --test 0.1 --seed 1   # list files beside the class folders
 *   alexnet data index ./ds --out ./ds-index                      # list files for ./ds/{train,val,test}/<class>
 *   alexnet data prepare ./ds ./ds-256 --size 256                 # resized copy, decoded once
 *   alexnet data stats ./ds-256                                   # mean/std/PCA of train -> the cache folder
 *   alexnet data check ./ds-256                                   # bad files + class balance
 *
 * check, prepare and stats decode with sharp: each handler loads its module when it runs, so the
 * CLI's other commands, --help and a mistyped flag start without sharp (~60 ms of CPU).
 */
import * as path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { env } from '../../core/config';
import { DataError } from '../../core/errors';
import { classNamesFromArgs } from '../../core/class-names';
import { classOptions, datasetOptions, openOptionsFromArgs } from '../cli-options';
import { type Dataset, openDataset, SPLIT_NAMES, SplitName } from '../index/dataset';
import { FATAL_PROBLEMS } from '../index/listfile';
import { assertMayReplace, recordWritten } from './owned';
import { DEFAULT_MIN_SIDE_PX } from '../decode/header';
import { indexDataset, IndexResult, Materialize, splitFolder } from './organize';
import { DEFAULT_DECODE_CONCURRENCY } from '../pool';
import type { PreparedFormat } from './prepare';

export type Print = (line: string) => void;

/** Progress on stderr, at most every 5% (and never when stderr is not a terminal). */
export function progressPrinter(
  label: string,
  stream: NodeJS.WriteStream = process.stderr,
): (done: number, total: number) => void {
  let lastPct = -1;
  return (done, total) => {
    if (!stream.isTTY) return;
    const pct = Math.floor((100 * done) / Math.max(total, 1));
    if (pct >= lastPct + 5 || done === total) {
      lastPct = pct;
      stream.write(`\r${label}: ${done}/${total} (${pct}%)${done === total ? '\n' : ''}`);
    }
  };
}

function printIndexResult(r: IndexResult, print: Print): void {
  const counts = SPLIT_NAMES.filter((s) => r.counts[s] !== undefined).map((s) => `${s} ${r.counts[s]}`);
  print(`${r.classes.length} classes; ${counts.join(', ')}`);
  for (const f of r.files) print(`wrote ${f}`);
}

const skipPrinter =
  (print: Print) =>
  (path: string, reason: string): void =>
    print(`skip ${path}: ${reason}`);

interface RootArgs {
  root: string;
  layout?: string;
  classes?: string;
  'classes-file'?: string;
}
interface IndexArgs extends RootArgs {
  out?: string;
  force: boolean;
}
interface SplitArgs {
  src: string;
  val: number;
  test: number;
  seed: number;
  out?: string;
  materialize: Materialize;
  force: boolean;
}
interface PrepareArgs extends Omit<RootArgs, 'root'> {
  src: string;
  dst: string;
  size: number;
  format: PreparedFormat;
  quality: number;
  overwrite: boolean;
  force: boolean;
  concurrency: number;
}
interface StatsArgs extends RootArgs {
  split: SplitName;
  size: number;
  'max-images'?: number;
  seed: number;
  concurrency: number;
  out?: string;
}
interface CheckArgs extends RootArgs {
  size: number;
  concurrency: number;
  'min-side': number;
}

const forceOption = { type: 'boolean', default: false, describe: 'replace files alexnet did not write' } as const;

/** How the dataset was read (layout chosen, list-file path base): one line each. */
function printNotes(ds: Dataset, print: Print): void {
  for (const note of ds.notes) print(note);
}

const concurrencyOption = {
  type: 'number',
  default: DEFAULT_DECODE_CONCURRENCY,
  describe: 'decodes in flight (raise UV_THREADPOOL_SIZE to match above 4)',
} as const;

export function makeDataCommand(print: Print = console.log): CommandModule {
  const index: CommandModule<object, IndexArgs> = {
    command: 'index <root>',
    describe: 'write train/val/test.txt list files (and classes.txt) for root/{train,val,test}/<class>/<image>',
    builder: (y: Argv) =>
      classOptions(y.positional('root', { type: 'string', demandOption: true }))
        .option('out', {
          type: 'string',
          describe: 'folder for the list files (required: the dataset folder is never written)',
        })
        .option('force', forceOption),
    handler: async (a) => {
      if (a.out == null) {
        throw new DataError(
          `data index writes train.txt, val.txt, test.txt and classes.txt, and never into the dataset (its own list files would be lost): pass --out <folder>, e.g. --out ${a.root.replace(/[\\/]+$/, '')}-index, then train with --data <that folder>`,
        );
      }
      printIndexResult(await indexDataset(a.root, a.out, { classNames: classNamesFromArgs(a), force: a.force }), print);
    },
  };
  const split: CommandModule<object, SplitArgs> = {
    command: 'split <src>',
    describe: 'split src/<class>/<image> into train/val/test, stratified by class (fractions < 1 or counts)',
    builder: (y: Argv) =>
      y
        .positional('src', { type: 'string', demandOption: true })
        .option('val', { type: 'number', default: 0.1 })
        .option('test', { type: 'number', default: 0.1 })
        .option('seed', { type: 'number', default: 0 })
        .option('out', { type: 'string', describe: 'output folder (default: src, for list files)' })
        .option('materialize', {
          choices: ['lists', 'link', 'copy'] as const,
          default: 'lists' as Materialize,
          describe: 'list files, or a train/val/test tree of hard links or copies in --out',
        })
        .option('force', forceOption),
    handler: async (a) =>
      printIndexResult(
        await splitFolder(a.src, {
          spec: { val: a.val, test: a.test },
          seed: a.seed,
          outDir: a.out,
          materialize: a.materialize,
          force: a.force,
        }),
        print,
      ),
  };
  const prepare: CommandModule<object, PrepareArgs> = {
    command: 'prepare <src> <dst>',
    describe: 'write a resized copy (shorter side --size, centre square) of a dataset, leaving bad files out',
    builder: (y: Argv) =>
      datasetOptions(y)
        .positional('src', { type: 'string', demandOption: true })
        .positional('dst', { type: 'string', demandOption: true })
        .option('size', { type: 'number', default: 256 })
        .option('format', { choices: ['jpeg', 'png', 'webp'] as const, default: 'jpeg' as PreparedFormat })
        .option('quality', { type: 'number', default: 90 })
        .option('overwrite', {
          type: 'boolean',
          default: false,
          describe: 're-encode images already in dst (a dst data prepare made)',
        })
        .option('force', {
          type: 'boolean',
          default: false,
          describe: 'write into a non-empty dst that data prepare did not make',
        })
        .option('concurrency', concurrencyOption),
    handler: async (a) => {
      const { prepareDataset } = await import('./prepare');
      const r = await prepareDataset(a.src, a.dst, {
        sizePx: a.size,
        format: a.format,
        quality: a.quality,
        overwrite: a.overwrite,
        force: a.force,
        concurrency: a.concurrency,
        open: openOptionsFromArgs(a),
        onSkip: skipPrinter(print),
        onProgress: progressPrinter('prepare'),
      });
      print(`wrote ${r.written}, kept ${r.reused} existing, skipped ${r.skipped.length} bad file(s) -> ${a.dst}`);
    },
  };
  const stats: CommandModule<object, StatsArgs> = {
    command: 'stats <root>',
    describe:
      'compute RGB mean/std and the PCA eigens of a split; writes them to the cache folder that train reads (never into the dataset)',
    builder: (y: Argv) =>
      datasetOptions(y)
        .positional('root', { type: 'string', demandOption: true })
        .option('out', {
          type: 'string',
          describe: 'write the statistics to this file instead (refused if it exists and alexnet did not write it)',
        })
        .option('split', { choices: SPLIT_NAMES, default: 'train' as SplitName })
        .option('size', { type: 'number', default: 256, describe: 'resize size used by training' })
        .option('max-images', { type: 'number', describe: 'seeded random subset of at most this many images' })
        .option('seed', { type: 'number', default: 0 })
        .option('concurrency', concurrencyOption),
    handler: async (a) => {
      const { cachedStatsPath, computeStats, saveStatsFile } = await import('../stats');
      const ds = await openDataset(a.root, openOptionsFromArgs(a));
      printNotes(ds, print);
      const samples = ds.splits[a.split]?.samples;
      if (!samples || samples.length === 0) throw new DataError(`${ds.root} has no '${a.split}' split`);
      const s = await computeStats(samples, {
        sizePx: a.size,
        maxImages: a.maxImages,
        seed: a.seed,
        concurrency: a.concurrency,
        onSkip: skipPrinter(print),
        onProgress: progressPrinter('stats'),
      });
      const fmt = (v: readonly number[]): string => v.map((x) => x.toFixed(4)).join(', ');
      print(
        `images ${s.imageCount}\nmean [${fmt(s.meanRgb)}]\nstd [${fmt(s.stdRgb)}]\neigenvalues [${fmt(s.eigenvalues)}]`,
      );
      if (a.out != null) {
        assertMayReplace(path.dirname(path.resolve(a.out)), [path.basename(a.out)], false, 'choose another --out');
        print(`wrote ${await saveStatsFile(a.out, s)}`);
        recordWritten(path.dirname(path.resolve(a.out)), [path.basename(a.out)]);
      } else {
        print(`wrote ${await saveStatsFile(cachedStatsPath(env.cacheDir(), ds.root, samples, a.size), s)}`);
      }
    },
  };
  const check: CommandModule<object, CheckArgs> = {
    command: 'check <root>',
    describe: 'decode every image; print bad files with the reason, and the class balance',
    builder: (y: Argv) =>
      datasetOptions(y)
        .positional('root', { type: 'string', demandOption: true })
        .option('size', { type: 'number', default: 32, describe: 'decode size (small is enough to find bad files)' })
        .option('min-side', {
          type: 'number',
          default: DEFAULT_MIN_SIDE_PX,
          describe: 'images with a shorter side below this are bad',
        })
        .option('concurrency', concurrencyOption),
    handler: async (a) => {
      const { checkDataset, formatCheckReport, isUnusable } = await import('./check');
      // Not strict: every problem of the list files is reported, not just the first kind that stops training.
      const ds = await openDataset(a.root, { ...openOptionsFromArgs(a), strict: false });
      printNotes(ds, print);
      const report = await checkDataset(ds, {
        sizePx: a.size,
        minSidePx: a.minSide,
        concurrency: a.concurrency,
        onProgress: progressPrinter('check'),
      });
      print(formatCheckReport(report));
      const fatal = report.problems.filter((p) => FATAL_PROBLEMS.has(p.kind));
      if (fatal.length > 0)
        throw new DataError(
          `${report.root}: ${fatal.length} of the problems above stop training (labels that are not integers or out of range, unreadable lines, paths relative to another folder)`,
        );
      if (isUnusable(report)) throw new DataError(`${report.root}: no image could be decoded`);
    },
  };
  return {
    command: 'data <command>',
    describe: 'dataset tools: index, split, prepare, stats, check',
    builder: (y: Argv) =>
      y
        .command(index as unknown as CommandModule)
        .command(split as unknown as CommandModule)
        .command(prepare as unknown as CommandModule)
        .command(stats as unknown as CommandModule)
        .command(check as unknown as CommandModule)
        .demandCommand(1),
    handler: () => undefined,
  };
}

/** The `data` command as mounted by src/cli.ts. */
export const dataCommand: CommandModule = makeDataCommand();
