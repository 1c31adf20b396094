/**
 * Problems of a dataset's labels that do not stop training but are almost always mistakes:
 * label values with no image (0-2 plus a stray 7 makes an 8-class model), classes in val/test
 * that train never shows, and a file listed twice or under two labels. Pure: works on the
 * entries a list file or a folder scan produced.
 */
import type { SplitName } from '../index/dataset';
import { type ListProblem, problemWhere } from '../index/listfile';

export interface LabelledEntry {
  split: SplitName;
  /** Absolute path. */
  path: string;
  label: number;
  /** Where the entry comes from: a list file and line, or a class folder (line null). */
  file: string;
  line: number | null;
  /** False for a listed file that does not exist: it counts for duplicates, not as an image. */
  exists: boolean;
}

export interface ClassNaming {
  classCount: number;
  /** Names of the labels, or null when they are the label numbers. */
  names: readonly string[] | null;
  /** Where named classes come from (a file or --classes), for the line of a class with no image. */
  source: string | null;
}

function labelText(label: number, naming: ClassNaming): string {
  const name = naming.names?.[label];
  return name === undefined ? `label ${label}` : `label ${label} (${name})`;
}

/** The same file twice, with the same or another label. */
function duplicates(entries: readonly LabelledEntry[], naming: ClassNaming): ListProblem[] {
  const first = new Map<string, LabelledEntry>();
  const out: ListProblem[] = [];
  for (const e of entries) {
    const prev = first.get(e.path);
    if (prev === undefined) {
      first.set(e.path, e);
      continue;
    }
    const message =
      prev.label === e.label
        ? `${e.path} is listed twice (also at ${problemWhere(prev)})`
        : `${e.path} is listed under ${labelText(e.label, naming)} here and under ${labelText(prev.label, naming)} at ${problemWhere(prev)}`;
    out.push({ file: e.file, line: e.line, kind: 'duplicate', message });
  }
  return out;
}

/** Runs of consecutive integers: [3,4,5,9] -> [[3,5],[9,9]]. */
function runs(xs: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const x of xs) {
    const last = out[out.length - 1];
    if (last && last[1] === x - 1) last[1] = x;
    else out.push([x, x]);
  }
  return out;
}

/** Labels with no existing image in any split. */
function gaps(entries: readonly LabelledEntry[], naming: ClassNaming): ListProblem[] {
  const seen = new Set(entries.filter((e) => e.exists).map((e) => e.label));
  const empty = Array.from({ length: naming.classCount }, (_, i) => i).filter((i) => !seen.has(i));
  if (naming.names !== null) {
    return empty.map((i) => ({
      file: naming.source ?? '--classes',
      line: naming.source === '--classes' ? null : i + 1,
      kind: 'gap' as const,
      message: `class '${naming.names?.[i]}' (label ${i}) has no image in any split`,
    }));
  }
  // Unnamed labels run 0..highest: a gap below the highest is where the typo shows.
  return runs(empty).map(([a, b]) => {
    const above = entries.find((e) => e.exists && e.label === b + 1);
    const span = a === b ? `label ${a} has` : `labels ${a}-${b} have`;
    return {
      file: above?.file ?? '',
      line: above?.line ?? null,
      kind: 'gap' as const,
      message: `label ${b + 1}: ${span} no image, yet the classes run 0..${naming.classCount - 1} up to the highest label; a gap like this is usually a typo (or name the classes with --classes)`,
    };
  });
}

/** Classes that val or test hold and train never shows: the model cannot learn them. */
function notInTrain(entries: readonly LabelledEntry[], naming: ClassNaming): ListProblem[] {
  const present = entries.filter((e) => e.exists);
  if (!present.some((e) => e.split === 'train')) return [];
  const trained = new Set(present.filter((e) => e.split === 'train').map((e) => e.label));
  const reported = new Set<string>();
  const out: ListProblem[] = [];
  for (const e of present) {
    const key = `${e.split}:${e.label}`;
    if (e.split === 'train' || trained.has(e.label) || reported.has(key)) continue;
    reported.add(key);
    out.push({
      file: e.file,
      line: e.line,
      kind: 'not-in-train',
      message: `${labelText(e.label, naming)} is in the ${e.split} split but has no image in train`,
    });
  }
  return out;
}

export function auditLabels(entries: readonly LabelledEntry[], naming: ClassNaming): ListProblem[] {
  return [...gaps(entries, naming), ...notInTrain(entries, naming), ...duplicates(entries, naming)];
}
