// The dependency rule of docs/architecture.md, checked on the real import graph of src/: each
// unit (a folder, or a top-level file) may import only the units listed for it, so the layers
// stay acyclic and the parallel layer stays free of models and datasets.
import t from 'tap';
import { SRC } from '../helpers/repo';
import { importGraph, importSpecifiers, importsTypeOnly, unitOf } from './import-graph';

/** Imported by everything, importing (almost) nothing: the vocabulary and the tools of output. */
const CORE = [
  'config',
  'errors',
  'log',
  'atomic-write',
  'text-format',
  'class-names',
  'field-reader',
  'project-root',
  'cores',
  'sharp',
].map((f) => `core/${f}`);

/** unit -> the other units it may import. Entry points may import anything. */
export const ALLOWED: Record<string, readonly string[] | 'any'> = {
  cli: 'any',
  'command-handlers': 'any',
  'worker-main': 'any',
  dashboard: ['eval', 'train', ...CORE],
  eval: ['report', 'train', 'model', 'data', 'backend', ...CORE],
  report: ['train', ...CORE],
  // dist/collective.ts (interfaces); from control and launch only the types of what workers
  // report (checked below): never a transport.
  train: ['model', 'data', 'backend', 'dist', 'dist/control', 'dist/launch', ...CORE],
  model: ['backend', ...CORE],
  data: CORE,
  backend: ['devices', ...CORE],
  devices: CORE,
  // The distributed layer, framework-free: no tfjs, no model, no dataset.
  dist: ['dist/ring', ...CORE],
  'dist/security': CORE,
  'dist/ring': ['dist/security', ...CORE],
  'dist/shm': ['dist/ring', ...CORE],
  'dist/comm-thread': ['dist', 'dist/ring', 'dist/shm', 'dist/security', ...CORE],
  'dist/launch': ['dist/control', 'dist/comm-thread', 'dist/ring', 'dist/shm', 'dist/security', 'devices', ...CORE],
  'dist/control': ['dist/comm-thread', 'dist/ring', 'dist/shm', 'dist/security', 'devices', ...CORE],
  'core/config': ['core/errors', 'core/class-names', 'core/field-reader'],
  'core/field-reader': ['core/errors'],
  'core/class-names': ['core/errors', 'core/text-format'],
  'core/log': ['core/config'],
  'core/errors': [],
  'core/atomic-write': [],
  'core/project-root': [],
  'core/cores': [],
  'core/sharp': [],
  'core/text-format': [],
};

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

t.test('train/ reaches the distributed layer through its interfaces only', async (t) => {
  // Values only from dist/collective.ts; from anywhere else in dist/, types of reported records.
  const valueImports = importGraph(SRC)
    .filter((e) => unitOf(e.from) === 'train' && unitOf(e.to).startsWith('dist/'))
    .filter((e) => !importsTypeOnly(SRC, e.from, e.to))
    .map((e) => `${e.from} -> ${e.to}`);
  t.same(valueImports, [], 'train/ imports a value from a dist/ implementation');
});
