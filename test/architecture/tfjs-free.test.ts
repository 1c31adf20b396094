// src/dist is the framework-free core (as horovod's common/): loading every one of its
// modules, in a fresh process, loads no TensorFlow.js package; nor does src/devices. The worker's
// entry (src/worker-main.ts) is the one place that joins tfjs to the ring.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { BUILT as BUILT_ROOT, SRC } from '../helpers/repo';

const BUILT = path.join(BUILT_ROOT, 'src');

/** The compiled twin of every .ts module under src/<folder> (subfolders included), named from the sources. */
function builtModules(folder: string): string[] {
  const walk = (dir: string): string[] =>
    fs
      .readdirSync(dir, { withFileTypes: true })
      .flatMap((e) =>
        e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : [],
      );
  return walk(path.join(SRC, folder)).map((f) => path.join(BUILT, path.relative(SRC, f)).replace(/\.ts$/, '.js'));
}

/** Requires each module in a fresh node and returns every loaded file whose path names a package. */
function packagesLoadedBy(modules: string[]): string[] {
  const script = `
    for (const m of ${JSON.stringify(modules)}) require(m);
    const loaded = Object.keys(require.cache).filter((f) => f.includes('node_modules'));
    process.stdout.write(JSON.stringify(loaded));`;
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as string[];
}

t.test('every module of src/dist and src/devices loads without TensorFlow.js', async (t) => {
  // Named from the sources (a stale .js left in dist/ by a renamed module does not count).
  const modules = [...builtModules('dist'), ...builtModules('devices')];
  t.ok(modules.length >= 25, `${modules.length} modules of dist/src/dist and dist/src/devices`);
  const loaded = packagesLoadedBy(modules);
  t.ok(
    loaded.some((f) => f.includes(`${path.sep}zeromq${path.sep}`)),
    'the check sees packages: zeromq was loaded',
  );
  t.same(
    loaded.filter((f) => f.includes('@tensorflow')),
    [],
    'no @tensorflow/* module was loaded',
  );
});

t.test('every module of src/dashboard loads without TensorFlow.js (the page server stays light)', async (t) => {
  const modules = builtModules('dashboard');
  t.ok(modules.length >= 4, `${modules.length} modules of dist/src/dashboard`);
  const loaded = packagesLoadedBy(modules);
  t.same(
    loaded.filter((f) => f.includes('@tensorflow')),
    [],
    'no @tensorflow/* module was loaded',
  );
});

t.test('the check would see tfjs if a module loaded it', async (t) => {
  const loaded = packagesLoadedBy([path.join(BUILT, 'worker-main.js')]);
  t.ok(
    loaded.some((f) => f.includes('@tensorflow')),
    'the worker entry loads tfjs, and the check notices',
  );
});
