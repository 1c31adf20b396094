/**
 * Class names for numeric labels: `--classes a,b,c`, `--classes-file f` (one name a line, like
 * classes.txt), or root/classes.txt. Name i is label i: a user's label numbers are never
 * changed, only named (the PaddlePaddle notebook's order, rooster, tiger, dragon, ..., is not
 * alphabetical, and its list files index it). Read once where the options are parsed and
 * carried in the config, so workers and other hosts need no file.
 */
import * as fs from 'node:fs';
import { ConfigError } from './errors';
import { textLines } from './text-format';

export interface ClassNames {
  names: string[];
  /** Where they came from, for messages: "--classes", a file path. */
  source: string;
}

/** Names must be distinct and non-empty: two labels with one name could not be told apart in any report. */
export function checkedClassNames(names: readonly string[], source: string): ClassNames {
  if (names.length === 0) throw new ConfigError(`${source} names no class`);
  const seen = new Map<string, number>();
  names.forEach((n, i) => {
    if (typeof n !== 'string' || n === '') throw new ConfigError(`${source}: class ${i} has an empty name`);
    const first = seen.get(n);
    if (first !== undefined)
      throw new ConfigError(`${source}: '${n}' names both label ${first} and label ${i}; class names must be distinct`);
    seen.set(n, i);
  });
  return { names: [...names], source };
}

/** `--classes rooster,tiger,...`: comma-separated, trimmed. */
export function parseClassList(text: string): ClassNames {
  return checkedClassNames(
    text.split(',').map((s) => s.trim()),
    '--classes',
  );
}

/** A classes file's text: non-blank lines, trimmed (BOM and CRLF are fine). */
export function parseClassesText(text: string, source: string): ClassNames {
  return checkedClassNames(
    textLines(text)
      .map((l) => l.trim())
      .filter((l) => l !== ''),
    source,
  );
}

/** The names the command line gives, or null (then root/classes.txt, or the label numbers). */
export function classNamesFromArgs(args: Record<string, unknown>): ClassNames | null {
  const list = args['classes'];
  const file = args['classes-file'];
  if (list != null && file != null) throw new ConfigError('give --classes or --classes-file, not both');
  if (list != null) return parseClassList(String(list));
  if (file == null) return null;
  const p = String(file);
  let text: string;
  try {
    text = fs.readFileSync(p, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `--classes-file ${p}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
    );
  }
  return parseClassesText(text, p);
}
