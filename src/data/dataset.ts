/**
 * Dataset index: which files belong to which split and class. Two layouts:
 *  - folder tree  root/{train,val|valid|validation,test}/<class>/<image> (classes are the
 *    sorted union of class folder names that hold at least one image; sub-folders inside a
 *    class folder belong to that class);
 *  - list files   root/{train,val,test}.txt of `path<TAB>label` lines, plus an optional
 *    root/classes.txt naming the labels. List files win when both exist: they are the explicit
 *    index, and opening them needs no walk over a million-file tree.
 * Nothing here decodes an image: bad image files are the loader's and `data check`'s business.
 */
import * as path from 'node:path';
import { DataError } from '../errors';
import { formatProblems, ListProblem, readClassesFile, readListFile } from './listfile';
import { compareCodePoints, IgnoredFile, isDirectory, isFile, scanImages, subfolders } from './scan';

export type SplitName = 'train' | 'val' | 'test';
export const SPLIT_NAMES: readonly SplitName[] = ['train', 'val', 'test'];

export interface Sample {
  /** Absolute path. */
  path: string;
  label: number;
}

export interface DatasetSplit {
  name: SplitName;
  classes: string[];
  samples: Sample[];
}

export interface Dataset {
  root: string;
  classes: string[];
  splits: Partial<Record<SplitName, DatasetSplit>>;
  /** Which layout was found. */
  source: 'folders' | 'lists';
  /** Files present but not used (wrong extension, not a regular file, missing from a list). */
  ignored: IgnoredFile[];
  /** Things the user should know that do not stop training (empty class folders, missing files). */
  warnings: string[];
}

/** Accepted folder / list-file base names per split, in order of preference. */
export const SPLIT_ALIASES: Readonly<Record<SplitName, readonly string[]>> = {
  train: ['train'],
  val: ['val', 'valid', 'validation'],
  test: ['test'],
};

/** The one existing entry among `candidates` for each split; two aliases of one split is ambiguous. */
async function findSplitPaths(
  root: string,
  suffix: string,
  exists: (p: string) => Promise<boolean>,
): Promise<Partial<Record<SplitName, string>>> {
  const found: Partial<Record<SplitName, string>> = {};
  for (const split of SPLIT_NAMES) {
    const hits: string[] = [];
    for (const alias of SPLIT_ALIASES[split]) {
      const p = path.join(root, alias + suffix);
      if (await exists(p)) hits.push(p);
    }
    if (hits.length > 1) {
      throw new DataError(`${root}: both ${hits.map((h) => path.basename(h)).join(' and ')} exist; keep one of them for the '${split}' split`);
    }
    if (hits.length === 1) found[split] = hits[0];
  }
  return found;
}

/** Normalise a class folder name to NFC so the same name from macOS (NFD) and Linux gets one label. */
function className(folder: string): string {
  return folder.normalize('NFC');
}

export interface ClassFolders {
  /** Class name (NFC) -> sorted image paths. */
  byClass: Map<string, string[]>;
  ignored: IgnoredFile[];
  warnings: string[];
}

/** Scan `dir`/<class>/... : the images of each class folder. */
export async function scanClassFolders(dir: string): Promise<ClassFolders> {
  const ignored: IgnoredFile[] = [];
  const warnings: string[] = [];
  const { dirs, files } = await subfolders(dir);
  for (const f of files) ignored.push({ path: f, reason: 'not inside a class folder' });
  const byClass = new Map<string, string[]>();
  for (const d of dirs) {
    const scan = await scanImages(path.join(dir, d));
    ignored.push(...scan.ignored);
    const name = className(d);
    byClass.set(name, (byClass.get(name) ?? []).concat(scan.images));
    if (scan.images.length === 0) warnings.push(`${path.join(dir, d)}: empty class folder (no image files)`);
  }
  return { byClass, ignored, warnings };
}

/** Sorted names of the classes that have at least one image in any of `folders`. */
export function nonEmptyClasses(folders: readonly ClassFolders[]): string[] {
  const names = folders.flatMap((f) => [...f.byClass].filter(([, imgs]) => imgs.length > 0).map(([c]) => c));
  return [...new Set(names)].sort(compareCodePoints);
}

/** Samples of one scanned folder, labelled by position in `classes`. */
export function samplesOf(folders: ClassFolders, classes: readonly string[]): Sample[] {
  const samples: Sample[] = [];
  classes.forEach((c, label) => {
    for (const p of folders.byClass.get(c) ?? []) samples.push({ path: p, label });
  });
  return samples;
}

async function openFolderTree(root: string, splitDirs: Partial<Record<SplitName, string>>): Promise<Dataset> {
  const perSplit: { split: SplitName; folders: ClassFolders }[] = [];
  for (const split of SPLIT_NAMES) {
    const dir = splitDirs[split];
    if (dir) perSplit.push({ split, folders: await scanClassFolders(dir) });
  }
  const ignored = perSplit.flatMap((s) => s.folders.ignored);
  const warnings = perSplit.flatMap((s) => s.folders.warnings);
  const classes = nonEmptyClasses(perSplit.map((s) => s.folders));
  const splits: Partial<Record<SplitName, DatasetSplit>> = {};
  for (const { split, folders } of perSplit) {
    splits[split] = { name: split, classes, samples: samplesOf(folders, classes) };
    const missing = classes.filter((c) => (folders.byClass.get(c) ?? []).length === 0);
    if (missing.length > 0 && split === 'train') warnings.push(`train split has no images for class(es) ${missing.join(', ')}`);
  }
  return { root, classes, splits, source: 'folders', ignored, warnings };
}

async function openListFiles(root: string, listFiles: Partial<Record<SplitName, string>>): Promise<Dataset> {
  const classesFile = path.join(root, 'classes.txt');
  const named = (await isFile(classesFile)) ? await readClassesFile(classesFile) : null;
  const problems: ListProblem[] = [];
  const ignored: IgnoredFile[] = [];
  const warnings: string[] = [];
  const parsed: { split: SplitName; samples: Sample[] }[] = [];
  let maxLabel = -1;
  for (const split of SPLIT_NAMES) {
    const file = listFiles[split];
    if (!file) continue;
    const list = await readListFile(file, named ? named.length : null);
    problems.push(...list.problems);
    const samples: Sample[] = [];
    for (const e of list.entries) {
      if (await isFile(e.path)) {
        samples.push({ path: e.path, label: e.label });
        maxLabel = Math.max(maxLabel, e.label);
      } else {
        ignored.push({ path: e.path, reason: `listed at ${file}:${e.line} but missing` });
      }
    }
    parsed.push({ split, samples });
  }
  if (problems.length > 0) {
    throw new DataError(`${problems.length} problem(s) in the list files of ${root}:\n${formatProblems(problems)}\nFix these lines (labels are integers 0..classes-1).`);
  }
  const missing = ignored.length;
  if (missing > 0) warnings.push(`${missing} listed file(s) do not exist and are left out (first: ${ignored[0].reason}: ${ignored[0].path})`);
  const classes = named ?? Array.from({ length: maxLabel + 1 }, (_, i) => String(i));
  const splits: Partial<Record<SplitName, DatasetSplit>> = {};
  for (const { split, samples } of parsed) splits[split] = { name: split, classes, samples };
  return { root, classes, splits, source: 'lists', ignored, warnings };
}

/** Throw unless some split has at least one sample. */
function assertUsable(ds: Dataset): void {
  const total = Object.values(ds.splits).reduce((n, s) => n + (s ? s.samples.length : 0), 0);
  if (total === 0) {
    const hint = ds.ignored.length > 0 ? ` (${ds.ignored.length} file(s) ignored, first: ${ds.ignored[0].path}: ${ds.ignored[0].reason})` : '';
    throw new DataError(`${ds.root}: no image files found${hint}. Expected ${ds.source === 'lists' ? 'list files that name existing images' : 'root/train/<class>/<image>'}.`);
  }
}

/**
 * Open a dataset root (`layout` forces one of the two layouts). Throws DataError when the root is missing, has no recognised layout,
 * has bad list-file lines (reported as file:line) or holds no image file at all.
 */
export async function openDataset(root: string, opts: { layout?: 'auto' | 'folders' | 'lists' } = {}): Promise<Dataset> {
  const abs = path.resolve(root);
  if (!(await isDirectory(abs))) throw new DataError(`dataset root ${abs} is not a directory`);
  const layout = opts.layout ?? 'auto';
  const lists = layout === 'folders' ? {} : await findSplitPaths(abs, '.txt', isFile);
  const ds = Object.keys(lists).length > 0 || layout === 'lists'
    ? await openListFiles(abs, lists)
    : await openFolderTree(abs, await findSplitPaths(abs, '', isDirectory));
  if (Object.keys(ds.splits).length === 0) {
    const { dirs } = await subfolders(abs);
    const hint = dirs.length > 0
      ? ` It has folders (${dirs.slice(0, 3).join(', ')}${dirs.length > 3 ? ', ...' : ''}): if these are classes, run \`alexnet data split ${root}\` to make train/val/test.`
      : '';
    throw new DataError(`${abs}: no train/val/test folders and no train.txt/val.txt/test.txt list files.${hint}`);
  }
  assertUsable(ds);
  return ds;
}

/** Number of samples per class label. */
export function classCounts(samples: readonly Sample[], classCount: number): number[] {
  const counts = new Array<number>(classCount).fill(0);
  for (const s of samples) counts[s.label] += 1;
  return counts;
}
