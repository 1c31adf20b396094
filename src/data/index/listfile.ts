/**
 * List files: one sample per line, `path<TAB>label`, paths absolute or relative (to which
 * folder is decided once per file by list-bases.ts). Caffe-style `path label` (last space) is accepted when a line has no tab, so
 * existing train.txt files work. Blank lines, CRLF and a UTF-8 BOM are fine. `classes.txt`
 * (one class name per line, line i = label i) names the labels and bounds their range.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { textLines } from '../../core/text-format';

export interface ListEntry {
  /** Absolute path, resolved against the list file's folder (list-bases.ts may choose another base). */
  path: string;
  /** The path as written in the file. */
  written: string;
  label: number;
  /** 1-based line number in the list file, for messages. */
  line: number;
}

/**
 * What is wrong with a dataset's index. `syntax`, `label`, `range` and `bases` make the
 * dataset unusable for training; the others are warnings (`data check` lists them all).
 */
export type ProblemKind = 'syntax' | 'label' | 'range' | 'bases' | 'missing' | 'gap' | 'not-in-train' | 'duplicate';

export const FATAL_PROBLEMS: ReadonlySet<ProblemKind> = new Set<ProblemKind>(['syntax', 'label', 'range', 'bases']);

export interface ListProblem {
  file: string;
  /** 1-based line, or null when the problem is not on one line (a class folder). */
  line: number | null;
  kind: ProblemKind;
  message: string;
}

export interface ParsedList {
  entries: ListEntry[];
  problems: ListProblem[];
}

/** Split `path<TAB>label` (last tab), or `path label` (last run of spaces) when there is no tab. */
function splitLine(line: string): [string, string] | null {
  const tab = line.lastIndexOf('\t');
  if (tab >= 0) return [line.slice(0, tab), line.slice(tab + 1)];
  const m = /^(.*\S)\s+(\S+)$/.exec(line);
  return m ? [m[1], m[2]] : null;
}

/**
 * Parse a list file's text. `classCount` (from classes.txt) bounds the labels; without it only
 * negative labels are out of range. Never throws: problems are returned with their line.
 */
export function parseListText(
  text: string,
  listFile: string,
  classCount: number | null,
  classSource = 'classes.txt',
): ParsedList {
  const dir = path.dirname(path.resolve(listFile));
  const entries: ListEntry[] = [];
  const problems: ListProblem[] = [];
  textLines(text).forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    const parts = splitLine(raw.trim());
    if (!parts) {
      problems.push({
        file: listFile,
        line,
        kind: 'syntax',
        message: `expected "path<TAB>label", got ${JSON.stringify(raw)}`,
      });
      return;
    }
    const [rel, labelText] = parts;
    if (!/^[+-]?\d+$/.test(labelText)) {
      problems.push({
        file: listFile,
        line,
        kind: 'label',
        message: `label ${JSON.stringify(labelText)} is not an integer`,
      });
      return;
    }
    const label = Number(labelText);
    if (label < 0 || (classCount !== null && label >= classCount)) {
      const range = classCount !== null ? `0..${classCount - 1} (${classSource} has ${classCount} classes)` : '>= 0';
      problems.push({ file: listFile, line, kind: 'range', message: `label ${label} is out of range ${range}` });
      return;
    }
    entries.push({ path: path.resolve(dir, rel.trim()), written: rel.trim(), label, line });
  });
  return { entries, problems };
}

/** Read and parse a list file. */
export async function readListFile(
  listFile: string,
  classCount: number | null,
  classSource?: string,
): Promise<ParsedList> {
  return parseListText(await fsp.readFile(listFile, 'utf8'), listFile, classCount, classSource);
}

/** `file:line` (or just the file when there is no line). */
export function problemWhere(p: Pick<ListProblem, 'file' | 'line'>): string {
  return p.line === null ? p.file : `${p.file}:${p.line}`;
}

/** Format problems as `file:line: message`, at most `limit` of them plus a count of the rest. */
export function formatProblems(problems: readonly ListProblem[], limit = 10): string {
  const shown = problems.slice(0, limit).map((p) => `  ${problemWhere(p)}: ${p.message}`);
  if (problems.length > limit) shown.push(`  ... and ${problems.length - limit} more`);
  return shown.join('\n');
}

/** Text of a list file for `samples`, with paths relative to `listDir` (forward slashes). */
export function formatListText(samples: { path: string; label: number }[], listDir: string): string {
  return samples.map((s) => `${path.relative(listDir, s.path).split(path.sep).join('/')}\t${s.label}\n`).join('');
}
