// The dependency rule of docs/architecture.md, checked on the real import graph of src/: each
// unit (a folder, or a top-level file) may import only the units listed for it, so the layers
// stay acyclic and the parallel layer stays free of models and datasets.
import * as path from 'node:path';
import t from 'tap';
import { importGraph, importSpecifiers, unitOf } from './import-graph';

/** Imported by everything, importing (almost) nothing: the vocabulary and the tools of output. */
const FOUNDATION = ['config', 'errors', 'log', 'atomic-write', 'text-format', 'class-names', 'field-reader', 'project-root', 'gpu'];

/** unit -> the other units it may import. Entry points may import anything. */
export const ALLOWED: Record<string, readonly string[] | 'any'> = {
  cli: 'any',
  'command-handlers': 'any',
  'worker-main': 'any',
  dashboard: ['eval', 'train', ...FOUNDATION],
  eval: ['report', 'train', 'model', 'data', 'backend', ...FOUNDATION],
  report: ['train', ...FOUNDATION],
  train: ['model', 'data', 'backend', 'parallel', ...FOUNDATION],
  model: ['backend', ...FOUNDATION],
  data: FOUNDATION,
  parallel: FOUNDATION,
  // The distributed layer's new home (src/parallel moves here); dist/shm uses today's parallel/.
  dist: ['parallel', ...FOUNDATION],
  backend: FOUNDATION,
  config: ['errors', 'class-names', 'field-reader'],
  'field-reader': ['errors'],
  'class-names': ['errors', 'text-format'],
  log: ['config'],
  errors: [],
  'atomic-write': [],
  'project-root': [],
  gpu: [],
  'text-format': [],
};

const SRC = path.resolve(__dirname, '../../src');

t.test('import specifiers are found in every form the sources use', async (t) => {
  const text = `import * as a from './a';\nimport type { B } from "../b";\nexport { c } from './c';\nconst d = await import('./d');\nrequire('./e');\nimport './f';`;
  t.same(importSpecifiers(text), ['./a', '../b', './c', './d', './e', './f']);
});

t.test('every unit of src/ has a rule, and every import between units follows it', async (t) => {
  const edges = importGraph(SRC);
  t.ok(edges.length > 100, `${edges.length} imports read`);
  const units = new Set(edges.flatMap((e) => [unitOf(e.from), unitOf(e.to)]));
  const unruled = [...units].filter((u) => !(u in ALLOWED));
  t.same(unruled, [], 'a new folder or top-level file needs its line in ALLOWED (and in docs/architecture.md)');
  const violations = edges
    .filter((e) => {
      const from = unitOf(e.from);
      const to = unitOf(e.to);
      const allowed = ALLOWED[from];
      return from !== to && allowed !== undefined && allowed !== 'any' && !allowed.includes(to);
    })
    .map((e) => `${e.from} -> ${e.to}`);
  t.same(violations, [], 'imports that break the layering');
});

t.test('the units form no cycle', async (t) => {
  const deps = new Map<string, Set<string>>();
  for (const e of importGraph(SRC)) {
    const [from, to] = [unitOf(e.from), unitOf(e.to)];
    if (from !== to) deps.set(from, (deps.get(from) ?? new Set()).add(to));
  }
  const cycles: string[] = [];
  const visit = (unit: string, trail: string[]): void => {
    if (trail.includes(unit)) {
      cycles.push([...trail.slice(trail.indexOf(unit)), unit].join(' -> '));
      return;
    }
    for (const next of deps.get(unit) ?? []) visit(next, [...trail, unit]);
  };
  for (const unit of deps.keys()) visit(unit, []);
  t.same([...new Set(cycles)], [], 'import cycles between units');
});
