/**
 * `data index` and `data split`: turning image folders into a dataset the trainer opens.
 * index: folder tree -> list files (a snapshot that opens without walking the tree).
 * split: one folder of class folders -> train/val/test, as list files (default, nothing is
 * copied) or as a tree of hard links / copies.
 */
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { DataError } from '../../core/errors';
import type { ClassNames } from '../../core/class-names';
import {
  nonEmptyClasses,
  openDataset,
  Sample,
  samplesOf,
  scanClassFolders,
  SPLIT_ALIASES,
  SPLIT_NAMES,
  SplitName,
} from '../index/dataset';
import { writeAtomic } from '../../core/atomic-write';
import { formatListText } from '../index/listfile';
import { assertMayReplace, recordWritten } from './owned';
import { SplitSpec, stratifiedSplit } from './split';

export type SplitSamples = Partial<Record<SplitName, Sample[]>>;

/**
 * Write {split}.txt (paths relative to outDir) and classes.txt; returns the files written.
 * Refuses to replace a file alexnet did not write (owned.ts) unless `force`, and always
 * refuses to write val.txt beside another alias of it (valid.txt): the folder would then be
 * ambiguous to every command.
 */
export async function writeListFiles(
  outDir: string,
  splits: SplitSamples,
  classes: readonly string[],
  force = false,
): Promise<string[]> {
  const names = [...SPLIT_NAMES.filter((s) => splits[s]).map((s) => `${s}.txt`), 'classes.txt'];
  const clashes = SPLIT_NAMES.filter((s) => splits[s]).flatMap((s) =>
    SPLIT_ALIASES[s]
      .filter((a) => a !== s && existsSync(path.join(outDir, `${a}.txt`)))
      .map((a) => `${a}.txt (beside it, ${s}.txt would be a second list of the ${s} split)`),
  );
  if (clashes.length > 0)
    throw new DataError(
      `${outDir} has ${clashes.join(', ')}: that would make the folder ambiguous; choose another --out`,
    );
  assertMayReplace(outDir, names, force, `choose another --out`);
  await fsp.mkdir(outDir, { recursive: true });
  const written: string[] = [];
  for (const split of SPLIT_NAMES) {
    const samples = splits[split];
    if (!samples) continue;
    const file = path.join(outDir, `${split}.txt`);
    writeAtomic(file, formatListText(samples, outDir));
    written.push(file);
  }
  const classesFile = path.join(outDir, 'classes.txt');
  writeAtomic(classesFile, classes.map((c) => `${c}\n`).join(''));
  written.push(classesFile);
  recordWritten(outDir, names);
  return written;
}

export interface IndexResult {
  files: string[];
  counts: Partial<Record<SplitName, number>>;
  classes: string[];
}

function countsOf(splits: SplitSamples): Partial<Record<SplitName, number>> {
  const counts: Partial<Record<SplitName, number>> = {};
  for (const split of SPLIT_NAMES) if (splits[split]) counts[split] = (splits[split] as Sample[]).length;
  return counts;
}

export interface IndexOptions {
  /** Names that fix the label order (the notebook's), else sorted folder names. */
  classNames?: ClassNames | null;
  /** Replace list files alexnet did not write. */
  force?: boolean;
}

/**
 * List files for the folder tree under `root`, written to `outDir`: never into the dataset
 * by default, since its own list files (the notebook's, with its label numbers) would be lost.
 */
export async function indexDataset(root: string, outDir: string, opts: IndexOptions = {}): Promise<IndexResult> {
  const ds = await openDataset(root, { layout: 'folders', classNames: opts.classNames ?? null });
  const splits: SplitSamples = {};
  for (const split of SPLIT_NAMES) if (ds.splits[split]) splits[split] = ds.splits[split]?.samples;
  const files = await writeListFiles(path.resolve(outDir), splits, ds.classes, opts.force ?? false);
  return { files, counts: countsOf(splits), classes: ds.classes };
}

export type Materialize = 'lists' | 'link' | 'copy';

export interface SplitFolderOptions {
  spec: SplitSpec;
  seed: number;
  /** Where list files (or the train/val/test tree) go; default: the source folder for lists. */
  outDir?: string;
  materialize?: Materialize;
  /** Replace files alexnet did not write (list files; files in a link/copy tree). */
  force?: boolean;
}

/** Hard-link `src` to `dst`, copying when links are impossible (another file system, no permission). */
async function linkOrCopy(src: string, dst: string, mode: 'link' | 'copy', force: boolean): Promise<void> {
  await fsp.mkdir(path.dirname(dst), { recursive: true });
  if (force) await fsp.rm(dst, { force: true });
  if (mode === 'link') {
    try {
      await fsp.link(src, dst);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP') throw err;
    }
  }
  await fsp.copyFile(src, dst);
}

/** Split `src`/<class>/<image> into train/val/test, stratified by class and seeded. */
export async function splitFolder(src: string, opts: SplitFolderOptions): Promise<IndexResult> {
  const root = path.resolve(src);
  const folders = await scanClassFolders(root);
  const classes = nonEmptyClasses([folders]);
  if (classes.length === 0)
    throw new DataError(`${root}: no class folders with images (expected ${root}/<class>/<image>)`);
  const samples = samplesOf(folders, classes);
  const assignment = stratifiedSplit(
    samples.map((s) => s.label),
    opts.spec,
    opts.seed,
  );
  const splits: SplitSamples = { train: [], val: [], test: [] };
  samples.forEach((s, i) => (splits[assignment[i]] as Sample[]).push(s));
  const mode = opts.materialize ?? 'lists';
  if (mode === 'lists') {
    const files = await writeListFiles(path.resolve(opts.outDir ?? root), splits, classes, opts.force ?? false);
    return { files, counts: countsOf(splits), classes };
  }
  if (!opts.outDir) throw new DataError(`--out is required to ${mode} files into a train/val/test tree`);
  const out = path.resolve(opts.outDir);
  const jobs = SPLIT_NAMES.flatMap((split) =>
    (splits[split] as Sample[]).map((s) => ({ src: s.path, dst: path.join(out, split, path.relative(root, s.path)) })),
  );
  const taken = jobs.filter((j) => existsSync(j.dst));
  if (!opts.force && taken.length > 0) {
    throw new DataError(
      `${taken.length} file(s) of the ${mode} tree already exist in ${out} (first: ${taken[0].dst}): choose another --out, or pass --force to replace them`,
    );
  }
  for (const j of jobs) await linkOrCopy(j.src, j.dst, mode, opts.force ?? false);
  return { files: [out], counts: countsOf(splits), classes };
}
