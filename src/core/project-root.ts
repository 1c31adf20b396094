/**
 * The project's folder: the nearest one above a module with a package.json. Modules run from
 * src/ (tests) and from dist/src/ (the CLI), so files the project ships beside its code (the
 * native addon's build output, the dashboard's page) are found from here, not from __dirname.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Answers found so far, by `from`. A process asks with the same few folders again and again (the
 * decode threads look their addon up once per image: the walk up was 16% of the CPU of decoding
 * a 28x28 PNG), and the answer does not change while it runs.
 */
const roots = new Map<string, string>();

/** `from` itself when no folder above it has a package.json. */
export function projectRoot(from: string): string {
  const known = roots.get(from);
  if (known !== undefined) return known;
  let dir = from;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) {
      dir = from;
      break;
    }
    dir = parent;
  }
  roots.set(from, dir);
  return dir;
}
