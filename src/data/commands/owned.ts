/**
 * No command replaces a file it did not write without --force. A folder a command writes
 * into gets a small record (.alexnet-written.json: name -> sha256 of what was written); an
 * existing file is ours to replace only when it is recorded there with the same content, so
 * a user's own train.txt, or ours edited by hand since, is never lost.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataError } from '../../core/errors';
import { writeAtomic } from '../../core/atomic-write';

/** Dotfile: the dataset scanner ignores it. */
export const WRITTEN_RECORD = '.alexnet-written.json';

type Record_ = Record<string, string>;

function readRecord(dir: string): Record_ {
  try {
    const json = JSON.parse(fs.readFileSync(path.join(dir, WRITTEN_RECORD), 'utf8')) as unknown;
    return json !== null && typeof json === 'object' ? (json as Record_) : {};
  } catch {
    return {};
  }
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Those of `names` (in `dir`) that exist and were not written, as they are now, by this tool. */
export function foreignFiles(dir: string, names: readonly string[]): string[] {
  const record = readRecord(dir);
  return names.filter((n) => {
    const p = path.join(dir, n);
    if (!fs.existsSync(p)) return false;
    return record[n] === undefined || !fs.statSync(p).isFile() || record[n] !== sha256(p);
  });
}

/**
 * Throw unless every existing one of `names` in `dir` is ours (or `force`). `how` says what
 * to do instead, e.g. "pass --out <another folder>".
 */
export function assertMayReplace(dir: string, names: readonly string[], force: boolean, how: string): void {
  if (force) return;
  const foreign = foreignFiles(dir, names);
  if (foreign.length === 0) return;
  const list = foreign.map((n) => path.join(dir, n)).join(', ');
  throw new DataError(
    `${list} already exist${foreign.length === 1 ? 's' : ''} and ${foreign.length === 1 ? 'was' : 'were'} not written by alexnet: ${how}, or pass --force to replace ${foreign.length === 1 ? 'it' : 'them'}`,
  );
}

/** Record `names` in `dir` as written by this tool, with their current content. */
export function recordWritten(dir: string, names: readonly string[]): void {
  const record = readRecord(dir);
  for (const n of names) record[n] = sha256(path.join(dir, n));
  writeAtomic(path.join(dir, WRITTEN_RECORD), `${JSON.stringify(record, null, 2)}\n`);
}

/** A folder that exists and holds anything (hidden files included). */
export function isNonEmptyDir(dir: string): boolean {
  try {
    return fs.readdirSync(dir).length > 0;
  } catch {
    return false;
  }
}
