/**
 * Two or more builds of the native addon compared inside one process: the native backend's
 * kernels are re-registered over each build in turn between profiled training steps, so every
 * build sees the same stretch of load. On a shared machine this is the comparison to trust when
 * a change to the addon is measured (separate runs of bench/kernels.ts differ by 10-30% with the
 * neighbours' load alone). Each kernel's time is its fastest over the rounds.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/kernels-ab.js OLD.node NEW.node [--preset paper]
 *       [--batch 32] [--rounds 3]
 *
 * A build from before MaxPool kept its workspace lacks maxPoolWorkspaceBytes: it gets a stub
 * (its maxPool ignores the buffer, its maxPoolGrad recomputes). A build from before the LRN +
 * max pool op runs without it: its rounds take the model's LRN and MaxPool, so an A/B against
 * one measures the op.
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend/select';
import {
  LRN_MAX_POOL_GRAD_KERNEL,
  LRN_MAX_POOL_KERNEL,
  nativeKernelConfigs,
  type DnnlAddon,
} from '../src/backend/native/kernels';
import { PRESET_NAMES, type PresetName } from '../src/core/config';
import { formatTable } from '../src/core/text-format';
import { layerShapes } from '../src/model/alexnet';
import { buildSpec } from '../src/model/presets';
import { flagValue } from './harness';
import { kernelRows, mergeRows, profiledStep, syntheticStep } from './kernels';
import { fcLayersOf } from './onednn-probe';

/** Kernels of ours that a build from before them does not have: the model then runs tfjs's ops. */
const NEWER_KERNELS = [LRN_MAX_POOL_KERNEL, LRN_MAX_POOL_GRAD_KERNEL];

/** An addon build's kernels for the 'native' backend (older builds: those they have). */
function buildKernels(file: string): tf.KernelConfig[] {
  // A computed require: the builds are files named on the command line.
  const addon = require(file) as Partial<DnnlAddon> &
    Omit<DnnlAddon, 'maxPoolWorkspaceBytes' | 'lrnMaxPool' | 'lrnMaxPoolGrad'>;
  const absent = (): never => {
    throw new Error(`${file} has no LRN + max pool kernel`);
  };
  const complete: DnnlAddon = { maxPoolWorkspaceBytes: () => 1, lrnMaxPool: absent, lrnMaxPoolGrad: absent, ...addon };
  complete.setThreads(1);
  const fused = typeof addon.lrnMaxPool === 'function';
  return nativeKernelConfigs(complete, 'native').filter((k) => fused || !NEWER_KERNELS.includes(k.kernelName));
}

function use(kernels: readonly tf.KernelConfig[]): void {
  for (const name of NEWER_KERNELS)
    if (tf.getKernel(name, 'native') != null && !kernels.some((k) => k.kernelName === name))
      tf.unregisterKernel(name, 'native');
  for (const k of kernels) {
    if (tf.getKernel(k.kernelName, k.backendName) != null) tf.unregisterKernel(k.kernelName, k.backendName);
    tf.registerKernel(k);
  }
}

async function main(argv: string[]): Promise<void> {
  const files = argv.filter((a, i) => a.endsWith('.node') && !argv[i - 1]?.startsWith('--'));
  if (files.length < 2)
    throw new Error('usage: kernels-ab.js A.node B.node [...] [--preset P] [--batch N] [--rounds R]');
  const preset = (flagValue(argv, '--preset') ?? 'paper') as PresetName;
  if (!(PRESET_NAMES as readonly string[]).includes(preset)) throw new Error(`unknown preset ${preset}`);
  const batch = Number(flagValue(argv, '--batch') ?? 32);
  const rounds = Number(flagValue(argv, '--rounds') ?? 3);
  await initBackend('native', false, { threads: 1 });
  const builds = files.map(buildKernels);
  const classes = 1000;
  const spec = buildSpec(preset);
  const fcs = fcLayersOf(layerShapes(spec, classes));
  const { step, dispose } = syntheticStep(spec, classes, batch);
  for (const b of builds) {
    use(b);
    await step();
    await step();
  }
  const fastest = builds.map(() => new Map<string, number>());
  const stepMs = builds.map(() => Infinity);
  for (let r = 0; r < rounds; r++)
    for (const [i, b] of builds.entries()) {
      use(b);
      const t0 = performance.now();
      const calls = await profiledStep(step);
      stepMs[i] = Math.min(stepMs[i], performance.now() - t0);
      for (const row of mergeRows(kernelRows(calls, spec.convs.length, fcs)))
        fastest[i].set(row.label, Math.min(fastest[i].get(row.label) ?? Infinity, row.ms));
    }
  // Every build's kernels, in the order each first appears (builds may run different kernels).
  const seen = [...new Set(fastest.flatMap((m) => [...m.keys()]))];
  const labels = seen.filter((l) => fastest.some((m) => (m.get(l) ?? 0) >= 1));
  const total = (m: Map<string, number>, pick: (label: string) => boolean): number =>
    [...m].filter(([l]) => pick(l)).reduce((a, [, ms]) => a + ms, 0);
  const cells = (values: number[]): string[] => values.map((v) => v.toFixed(1));
  const rows = [
    ...labels.map((l) => [l, ...cells(fastest.map((m) => m.get(l) ?? 0))]),
    ['conv + FC kernels', ...cells(fastest.map((m) => total(m, (l) => /^(conv|fc)\d/.test(l))))],
    ['all kernels', ...cells(fastest.map((m) => total(m, () => true)))],
    ['step (under the profiler)', ...cells(stepMs)],
  ];
  console.log(
    `# ${preset}, batch ${batch}, 1 thread: fastest of ${rounds} profiled steps per build, builds alternating\n`,
  );
  console.log(formatTable(['kernel (ms)', ...files], rows, ['left', ...files.map((): 'right' => 'right')]));
  dispose();
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
