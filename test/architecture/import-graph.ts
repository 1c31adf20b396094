/**
 * The project's own import graph, read from the TypeScript sources: which module imports
 * which (relative imports only, `import type` included: a type couples layers too).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface ImportEdge {
  /** Importing file, relative to the source root, e.g. 'dist/launch/coordinator.ts'. */
  from: string;
  /** Imported file, likewise. */
  to: string;
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** `from '...'`, `import '...'`, `import('...')` and `require('...')` specifiers of one file. */
export function importSpecifiers(text: string): string[] {
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s+|\bimport\s+|\bimport\s*\(\s*|\brequire\s*\(\s*)['"]([^'"]+)['"]/g))
    specs.push(m[1]);
  return specs;
}

function resolveRelative(fromFile: string, spec: string): string | null {
  const base = path.resolve(path.dirname(fromFile), spec);
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts'), base]) {
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) return candidate;
  }
  return null;
}

/** Every relative import between the .ts files under `root`; throws on one that resolves to nothing. */
export function importGraph(root: string): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const file of sourceFiles(root)) {
    for (const spec of importSpecifiers(fs.readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const target = resolveRelative(file, spec);
      if (target === null) throw new Error(`${path.relative(root, file)}: cannot resolve '${spec}'`);
      edges.push({ from: path.relative(root, file), to: path.relative(root, target) });
    }
  }
  return edges;
}

/**
 * The unit a file belongs to: its top folder under the root, or its own name for a top-level
 * file. Two folders are finer: each file of core/ is a unit (the foundation has an order of its
 * own), and each subfolder of dist/ is one (security < ring < comm-thread < control < launch).
 */
export function unitOf(file: string): string {
  const parts = file.replace(/\.ts$/, '').split(path.sep);
  if (parts.length === 1) return parts[0];
  if (parts[0] === 'core') return `core/${parts[1]}`;
  if (parts[0] === 'dist') return parts.length > 2 ? `dist/${parts[1]}` : 'dist';
  return parts[0];
}

/**
 * Whether every import of `to` in `from` (both relative to `root`) is an `import type`: a
 * type couples two units less than a value does (no code of one runs in the other).
 */
export function importsTypeOnly(root: string, from: string, to: string): boolean {
  const file = path.join(root, from);
  const target = path.join(root, to).replace(/\.ts$/, '');
  const statements = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => {
      const spec = /^\s*(?:import|export)\b.*\bfrom\s+['"](\.[^'"]*)['"]/.exec(line)?.[1];
      return spec !== undefined && path.resolve(path.dirname(file), spec) === target;
    });
  return statements.length > 0 && statements.every((line) => /^\s*import\s+type\b/.test(line));
}
