/**
 * Which folder a list file's relative paths are relative to. People write them three ways:
 * relative to the list file (what `data index` writes), relative to the folder above the
 * dataset (the PaddlePaddle notebook ran from there: `signs/train/monkey/1.jpg` in
 * signs/train.txt), or relative to wherever they ran their script. The base is decided once
 * per file, from its first line that exists under some base, so one stray line can never
 * send the other lines to another folder; a line that exists only under a different base
 * than the file's is a problem (`bases`), not a silent per-line choice.
 */
import * as path from 'node:path';
import type { ListEntry, ListProblem } from './listfile';
import { mapLimit } from '../pool';

export interface PathBase {
  kind: 'list' | 'above' | 'cwd';
  dir: string;
  /** Why this base, for the one-line note: "the list file's folder", ... */
  why: string;
}

/** stat calls in flight: cheap syscalls, but a million-line list should not wait for each in turn. */
const STAT_CONCURRENCY = 32;

/** First segment of a relative path written with / or \. */
function firstSegment(written: string): string {
  return written.split(/[\\/]/)[0];
}

/**
 * The bases to try, in order: the list file's folder; the folder above the dataset, for lines
 * that start with the dataset folder's own name; the working directory. A base equal to an
 * earlier unconstrained one is dropped (the folder-above base only takes some paths, so the
 * working directory stays after it even when it is the same folder: the notebook's case).
 */
export function candidateBases(listFile: string, root: string, cwd: string): PathBase[] {
  const name = path.basename(root);
  const all: PathBase[] = [
    { kind: 'list', dir: path.dirname(path.resolve(listFile)), why: "the list file's folder" },
    { kind: 'above', dir: path.dirname(root), why: `the folder above ${name}/: the paths start with "${name}/"` },
    { kind: 'cwd', dir: path.resolve(cwd), why: 'the working directory' },
  ];
  return all.filter((b, i) => !all.slice(0, i).some((o) => o.dir === b.dir && o.kind !== 'above'));
}

export interface ResolvedList {
  /** The base used (null when every path is absolute). */
  base: PathBase | null;
  /** Entries with `path` resolved against the base, and whether the file exists there. */
  entries: (ListEntry & { exists: boolean })[];
  /** `bases` problems: lines that exist only relative to another base. */
  problems: ListProblem[];
}

/**
 * Resolve the relative paths of one list file. `exists` is injected so the rule is testable
 * without files. Lines missing under every base resolve against the chosen base (or the list
 * file's folder when no line exists anywhere) and come back with exists = false.
 */
export async function resolveListPaths(
  listFile: string,
  entries: readonly ListEntry[],
  root: string,
  cwd: string,
  exists: (p: string) => Promise<boolean>,
): Promise<ResolvedList> {
  const rootName = path.basename(root);
  const bases = candidateBases(listFile, root, cwd);
  const usable = (b: PathBase, written: string): boolean => b.kind !== 'above' || firstSegment(written) === rootName;
  const relative = entries.filter((e) => !path.isAbsolute(e.written));
  let base: PathBase | null = null;
  for (const e of relative) {
    for (const b of bases) {
      if (usable(b, e.written) && (await exists(path.resolve(b.dir, e.written)))) {
        base = b;
        break;
      }
    }
    if (base) break;
  }
  if (base === null && relative.length > 0) base = bases[0];
  const chosen = base;
  const problems: ListProblem[] = [];
  const out = await mapLimit(entries, STAT_CONCURRENCY, async (e) => {
    if (path.isAbsolute(e.written) || chosen === null)
      return { ...e, path: path.resolve(e.written), exists: await exists(path.resolve(e.written)) };
    const p = path.resolve(chosen.dir, e.written);
    if (await exists(p)) return { ...e, path: p, exists: true };
    for (const other of bases) {
      if (other === chosen || !usable(other, e.written)) continue;
      const q = path.resolve(other.dir, e.written);
      if (await exists(q)) {
        problems.push({
          file: listFile,
          line: e.line,
          kind: 'bases',
          message: `${e.written} exists relative to ${other.dir} (${other.why}), but this file's paths are relative to ${chosen.dir} (${chosen.why}); write every line relative to one folder`,
        });
        break;
      }
    }
    return { ...e, path: p, exists: false };
  });
  problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
  return { base: chosen, entries: out, problems };
}

/** One line per base: which list files resolve against which folder, and why. */
export function describeBases(resolved: readonly { file: string; base: PathBase | null }[]): string[] {
  const byDir = new Map<string, { base: PathBase; files: string[] }>();
  for (const r of resolved) {
    if (r.base === null) continue;
    const group = byDir.get(r.base.dir) ?? { base: r.base, files: [] };
    group.files.push(path.basename(r.file));
    byDir.set(r.base.dir, group);
  }
  return [...byDir.values()].map(
    (g) => `list files ${g.files.join(', ')}: paths are relative to ${g.base.dir} (${g.base.why})`,
  );
}
