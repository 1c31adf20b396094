// src/parallel is the framework-free core (as horovod's common/): loading every one of its
// modules, in a fresh process, loads no TensorFlow.js package. The worker's entry
// (src/worker-main.ts) is the one place that joins tfjs to the ring.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

const SRC_PARALLEL = path.resolve(__dirname, '../../src/parallel');
const DIST_PARALLEL = path.resolve(__dirname, '../../dist/src/parallel');

/** Requires each module in a fresh node and returns every loaded file whose path names a package. */
function packagesLoadedBy(modules: string[]): string[] {
  const script = `
    for (const m of ${JSON.stringify(modules)}) require(m);
    const loaded = Object.keys(require.cache).filter((f) => f.includes('node_modules'));
    process.stdout.write(JSON.stringify(loaded));`;
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as string[];
}

t.test('every module of src/parallel loads without TensorFlow.js', async (t) => {
  // Named from the sources (a stale .js left in dist/ by a renamed module does not count).
  const modules = fs.readdirSync(SRC_PARALLEL).filter((f) => f.endsWith('.ts')).map((f) => path.join(DIST_PARALLEL, f.replace(/\.ts$/, '.js')));
  t.ok(modules.length >= 15, `${modules.length} modules of dist/src/parallel`);
  const loaded = packagesLoadedBy(modules);
  t.ok(loaded.some((f) => f.includes(`${path.sep}zeromq${path.sep}`)), 'the check sees packages: zeromq was loaded');
  t.same(loaded.filter((f) => f.includes('@tensorflow')), [], 'no @tensorflow/* module was loaded');
});

t.test('every module of src/dashboard loads without TensorFlow.js (the page server stays light)', async (t) => {
  const srcDir = path.resolve(__dirname, '../../src/dashboard');
  const modules = fs.readdirSync(srcDir).filter((f) => f.endsWith('.ts')).map((f) => path.resolve(__dirname, '../../dist/src/dashboard', f.replace(/\.ts$/, '.js')));
  t.ok(modules.length >= 4, `${modules.length} modules of dist/src/dashboard`);
  const loaded = packagesLoadedBy(modules);
  t.same(loaded.filter((f) => f.includes('@tensorflow')), [], 'no @tensorflow/* module was loaded');
});

t.test('the check would see tfjs if a module loaded it', async (t) => {
  const loaded = packagesLoadedBy([path.resolve(__dirname, '../../dist/src/worker-main.js')]);
  t.ok(loaded.some((f) => f.includes('@tensorflow')), 'the worker entry loads tfjs, and the check notices');
});
