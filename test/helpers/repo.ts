/**
 * Paths the tests use, the same whether a test runs from test/ (TypeScript) or from its compiled
 * twin under dist/test/ (what `make test` runs): the repository, its sources, and the compiled
 * twin of a source file.
 */
import * as path from 'node:path';
import { projectRoot } from '../../src/core/project-root';

/** The repository's folder (the one with package.json). */
export const REPO = projectRoot(__dirname);

/** The TypeScript sources of the project. */
export const SRC = path.join(REPO, 'src');

/** Where `tsc` writes the compiled project (dist/src, dist/test, ...). */
export const BUILT = path.join(REPO, 'dist');

/** The compiled twin of a repository-relative .ts file, e.g. 'test/dist/fixtures/comm-exit.ts'. */
export function builtFile(relativeTs: string): string {
  return path.join(BUILT, relativeTs.replace(/\.ts$/, '.js'));
}
