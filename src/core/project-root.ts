/**
 * The project's folder: the nearest one above a module with a package.json. Modules run from
 * src/ (tests) and from dist/src/ (the CLI), so files the project ships beside its code (the
 * native addon's build output, the dashboard's page) are found from here, not from __dirname.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** `from` itself when no folder above it has a package.json. */
export function projectRoot(from: string): string {
  let dir = from;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) return from;
    dir = parent;
  }
  return dir;
}
