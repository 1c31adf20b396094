/**
 * Dataset index: which files belong to which split and class. Two layouts:
 *  - folder tree  root/{train,val|valid|validation,test}/<class>/<image> (classes are the
 *    sorted union of class folder names that hold at least one image; sub-folders inside a
 *    class folder belong to that class);
 *  - list files   root/{train,val,test}.txt of `path<TAB>label` lines, plus an optional
 *    root/classes.txt (or --classes) naming the labels; relative paths resolve as
 *    list-bases.ts decides. Which of the two is used when both exist: layout.ts.
 * Nothing here decodes an image: bad image files are the loader's and `data check`'s business.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { DataError } from '../../core/errors';
import { auditLabels, type LabelledEntry } from '../commands/audit';
import { type ClassNames, parseClassesText } from '../../core/class-names';
import { suggestNames } from './classes';
import type { Layout } from '../../core/config';
import { chooseLayout, listsOverFoldersNote } from './layout';
import { describeBases, type PathBase, resolveListPaths } from './list-bases';
import { FATAL_PROBLEMS, formatProblems, type ListProblem, problemWhere, readListFile } from './listfile';
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
  /** One-line facts about how the dataset was read (layout chosen, list-file path base). */
  notes: string[];
  /** Every problem of the index with file:line (list files) or folder; `data check` prints them all. */
  problems: ListProblem[];
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
  strict: boolean,
): Promise<Partial<Record<SplitName, string>>> {
  const found: Partial<Record<SplitName, string>> = {};
  for (const split of SPLIT_NAMES) {
    const hits: string[] = [];
    for (const alias of SPLIT_ALIASES[split]) {
      const p = path.join(root, alias + suffix);
      if (await exists(p)) hits.push(p);
    }
    if (hits.length > 1 && strict) {
      throw new DataError(
        `${root}: both ${hits.map((h) => path.basename(h)).join(' and ')} exist; keep one of them for the '${split}' split`,
      );
    }
    if (hits.length >= 1) found[split] = hits[0];
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

/** Options of openDataset: the `--layout`, `--classes`/`--classes-file` of every command that opens a dataset. */
export interface OpenOptions {
  layout?: Layout;
  /** Names of labels 0..n-1; default root/classes.txt, else the label numbers (lists) or sorted folder names. */
  classNames?: ClassNames | null;
  /** The working directory, the last base tried for relative list-file paths (default process.cwd()). */
  cwd?: string;
  /** false: report list-file problems in `problems` instead of throwing (`data check`). Default true. */
  strict?: boolean;
}

/**
 * The problems that leave training possible, as one warning line per kind (training prints
 * these; `data check` prints every problem instead).
 */
export function problemWarnings(ds: Pick<Dataset, 'problems' | 'root'>): string[] {
  const what: Record<string, string> = {
    gap: 'label value(s) with no image',
    'not-in-train': 'class(es) in val/test with no training image',
    duplicate: 'file(s) listed twice',
  };
  const out: string[] = [];
  for (const kind of Object.keys(what)) {
    const of = ds.problems.filter((p) => p.kind === kind);
    if (of.length > 0)
      out.push(
        `${of.length} ${what[kind]} (first: ${problemWhere(of[0])}: ${of[0].message}); \`alexnet data check ${ds.root}\` lists them all`,
      );
  }
  return out;
}

async function openFolderTree(
  root: string,
  splitDirs: Partial<Record<SplitName, string>>,
  named: ClassNames | null,
): Promise<Dataset> {
  const perSplit: { split: SplitName; dir: string; folders: ClassFolders }[] = [];
  for (const split of SPLIT_NAMES) {
    const dir = splitDirs[split];
    if (dir) perSplit.push({ split, dir, folders: await scanClassFolders(dir) });
  }
  const ignored = perSplit.flatMap((s) => s.folders.ignored);
  const warnings = perSplit.flatMap((s) => s.folders.warnings);
  const found = nonEmptyClasses(perSplit.map((s) => s.folders));
  if (named) {
    // Named classes fix the label numbers; a folder outside the names would need a new number.
    const unnamed = found.filter((c) => !named.names.includes(c));
    if (unnamed.length > 0)
      throw new DataError(
        `${root}: class folder(s) ${unnamed.join(', ')} are not among the ${named.names.length} names of ${named.source}; add them there (labels follow its order) or remove the folders`,
      );
  }
  const classes = named ? named.names : found;
  const splits: Partial<Record<SplitName, DatasetSplit>> = {};
  const entries: LabelledEntry[] = [];
  for (const { split, dir, folders } of perSplit) {
    const samples = samplesOf(folders, classes);
    splits[split] = { name: split, classes, samples };
    for (const s of samples)
      entries.push({
        split,
        path: s.path,
        label: s.label,
        file: path.join(dir, classes[s.label]),
        line: null,
        exists: true,
      });
  }
  const problems = auditLabels(entries, {
    classCount: classes.length,
    names: classes,
    source: named?.source ?? null,
  }).filter((p) => named !== null || p.kind !== 'gap');
  return { root, classes, splits, source: 'folders', ignored, warnings, notes: [], problems };
}

/** root/classes.txt as class names, or null. */
async function classesTxt(root: string): Promise<ClassNames | null> {
  const file = path.join(root, 'classes.txt');
  if (!(await isFile(file))) return null;
  return parseClassesText(await fsp.readFile(file, 'utf8'), file);
}

async function openListFiles(
  root: string,
  listFiles: Partial<Record<SplitName, string>>,
  opts: OpenOptions,
): Promise<Dataset> {
  const named = opts.classNames ?? (await classesTxt(root));
  const classSource =
    named === null ? undefined : named.source === '--classes' ? '--classes' : path.basename(named.source);
  const problems: ListProblem[] = [];
  const ignored: IgnoredFile[] = [];
  const warnings: string[] = [];
  const entries: LabelledEntry[] = [];
  const bases: { file: string; base: PathBase | null }[] = [];
  const parsed: { split: SplitName; samples: Sample[] }[] = [];
  let maxLabel = -1;
  for (const split of SPLIT_NAMES) {
    const file = listFiles[split];
    if (!file) continue;
    const list = await readListFile(file, named ? named.names.length : null, classSource);
    problems.push(...list.problems);
    const resolved = await resolveListPaths(file, list.entries, root, opts.cwd ?? process.cwd(), isFile);
    problems.push(...resolved.problems);
    bases.push({ file, base: resolved.base });
    const samples: Sample[] = [];
    for (const e of resolved.entries) {
      entries.push({ split, path: e.path, label: e.label, file, line: e.line, exists: e.exists });
      if (e.exists) {
        samples.push({ path: e.path, label: e.label });
        maxLabel = Math.max(maxLabel, e.label);
      } else {
        ignored.push({ path: e.path, reason: `listed at ${file}:${e.line} but missing` });
        problems.push({
          file,
          line: e.line,
          kind: 'missing',
          message: `${e.written} does not exist (looked for ${e.path})`,
        });
      }
    }
    parsed.push({ split, samples });
  }
  const classes = named ? named.names : Array.from({ length: maxLabel + 1 }, (_, i) => String(i));
  problems.push(
    ...auditLabels(entries, {
      classCount: classes.length,
      names: named ? named.names : null,
      source: named?.source ?? null,
    }),
  );
  const fatal = problems.filter((p) => FATAL_PROBLEMS.has(p.kind));
  if (fatal.length > 0 && opts.strict !== false) {
    throw new DataError(
      `${fatal.length} problem(s) in the list files of ${root}:\n${formatProblems(fatal)}\nFix these lines (labels are integers 0..classes-1, every path relative to one folder); \`alexnet data check ${root}\` lists every problem.`,
    );
  }
  const missing = ignored.length;
  if (missing > 0)
    warnings.push(
      `${missing} listed file(s) do not exist and are left out (first: ${ignored[0].reason}: ${ignored[0].path})`,
    );
  const splits: Partial<Record<SplitName, DatasetSplit>> = {};
  for (const { split, samples } of parsed) splits[split] = { name: split, classes, samples };
  const notes = describeBases(bases);
  const suggested = named
    ? null
    : suggestNames(
        parsed.flatMap((p) => p.samples),
        classes.length,
      );
  if (suggested)
    notes.push(
      `labels 0-${classes.length - 1} have no names (no classes.txt, --classes or --classes-file); their image folders name them one to one: --classes ${suggested.join(',')}`,
    );
  return { root, classes, splits, source: 'lists', ignored, warnings, notes, problems };
}

/** Throw unless some split has at least one sample. */
function assertUsable(ds: Dataset): void {
  const total = Object.values(ds.splits).reduce((n, s) => n + (s ? s.samples.length : 0), 0);
  if (total === 0) {
    const hint =
      ds.ignored.length > 0
        ? ` (${ds.ignored.length} file(s) ignored, first: ${ds.ignored[0].path}: ${ds.ignored[0].reason})`
        : '';
    throw new DataError(
      `${ds.root}: no image files found${hint}. Expected ${ds.source === 'lists' ? 'list files that name existing images' : 'root/train/<class>/<image>'}.`,
    );
  }
}

/** The note of `auto` choosing list files beside folders: do the two hold the same images? */
async function compareWithFolders(
  ds: Dataset,
  lists: Partial<Record<SplitName, string>>,
  folders: Partial<Record<SplitName, string>>,
): Promise<string> {
  const listed = new Set(Object.values(ds.splits).flatMap((s) => (s ? s.samples.map((x) => x.path) : [])));
  let inFolders = 0;
  let notListed = 0;
  for (const dir of Object.values(folders)) {
    for (const images of (await scanClassFolders(dir)).byClass.values()) {
      inFolders += images.length;
      notListed += images.filter((p) => !listed.has(p)).length;
    }
  }
  return listsOverFoldersNote(lists, listed.size, inFolders, notListed);
}

/**
 * Open a dataset root. `layout` picks folders or list files (auto: layout.ts). Throws
 * DataError when the root is missing, has no recognised layout, has bad list-file lines
 * (reported as file:line; with strict false they are returned in `problems`) or holds no
 * image file at all.
 */
export async function openDataset(root: string, opts: OpenOptions = {}): Promise<Dataset> {
  const abs = path.resolve(root);
  if (!(await isDirectory(abs))) throw new DataError(`dataset root ${abs} is not a directory`);
  const layout = opts.layout ?? 'auto';
  // Two aliases of one split only matter in the layout that is used: checked again below.
  const lists = await findSplitPaths(abs, '.txt', isFile, layout === 'lists');
  const folders = await findSplitPaths(abs, '', isDirectory, layout === 'folders');
  const choice = chooseLayout(layout, lists, folders);
  const ds =
    choice.use === 'lists'
      ? await openListFiles(abs, await findSplitPaths(abs, '.txt', isFile, true), opts)
      : await openFolderTree(abs, await findSplitPaths(abs, '', isDirectory, true), opts.classNames ?? null);
  if (Object.keys(ds.splits).length === 0) {
    const { dirs } = await subfolders(abs);
    const hint =
      dirs.length > 0
        ? ` It has folders (${dirs.slice(0, 3).join(', ')}${dirs.length > 3 ? ', ...' : ''}): if these are classes, run \`alexnet data split ${root}\` to make train/val/test.`
        : '';
    throw new DataError(`${abs}: no train/val/test folders and no train.txt/val.txt/test.txt list files.${hint}`);
  }
  assertUsable(ds);
  const note = choice.compareWithFolders ? await compareWithFolders(ds, lists, folders) : choice.note;
  if (note !== null) ds.notes.unshift(note);
  ds.warnings.push(...choice.warnings);
  return ds;
}

/** Number of samples per class label. */
export function classCounts(samples: readonly Sample[], classCount: number): number[] {
  const counts = new Array<number>(classCount).fill(0);
  for (const s of samples) counts[s.label] += 1;
  return counts;
}
