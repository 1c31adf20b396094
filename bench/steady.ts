/**
 * A training step over a long run: the mean step time of each window of steps and the garbage
 * collections in it. bench/train.ts times a few steps after a warm-up; a slowdown that builds up
 * over hundreds of steps does not show there. Two did on 2026-12-07 (docs/measurements.md):
 * subnormal floats once the weights settle (the small preset's step went from 55 to 78 ms and
 * back), and megabytes of fresh buffers per step that V8 answered with a full collection every
 * few steps.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/steady.js [--preset small] [--classes 10]
 *       [--batch 64] [--threads 2] [--steps 400] [--window 20] [--out steady.json]
 *
 * The step is bench/kernels.ts's synthetic one (native backend, SGD at lr 0.01 on random images:
 * it drives values subnormal within ~50 steps). Another build of the addon is compared by
 * running again with ALEXNET_NATIVE_ADDON=/path/to/it.node.
 */
import * as fs from 'node:fs';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { initBackend } from '../src/backend/select';
import { PRESET_NAMES, type PresetName } from '../src/core/config';
import { formatTable } from '../src/core/text-format';
import { buildSpec } from '../src/model/presets';
import { flagValue, loadAverage, machineLine } from './harness';
import { syntheticStep } from './kernels';

export interface WindowRow {
  /** First and last step of the window, 1-based. */
  first: number;
  last: number;
  meanMs: number;
  majorGcs: number;
  minorGcs: number;
}

/** Per window of `window` steps: the mean step time and the collections that began in it. */
export function windowRows(
  stepEndsMs: readonly number[],
  startMs: number,
  gcs: readonly { startMs: number; major: boolean }[],
  window: number,
): WindowRow[] {
  const rows: WindowRow[] = [];
  for (let first = 0; first < stepEndsMs.length; first += window) {
    const last = Math.min(stepEndsMs.length, first + window) - 1;
    const from = first === 0 ? startMs : stepEndsMs[first - 1];
    const to = stepEndsMs[last];
    const inWindow = gcs.filter((g) => g.startMs >= from && g.startMs < to);
    rows.push({
      first: first + 1,
      last: last + 1,
      meanMs: (to - from) / (last - first + 1),
      majorGcs: inWindow.filter((g) => g.major).length,
      minorGcs: inWindow.filter((g) => !g.major).length,
    });
  }
  return rows;
}

/**
 * The slowest window against the fastest, the first window (warm-up: primitives compiled,
 * buffers faulted in) left out: 1 for a step that holds its speed.
 */
export function slowestOverFastest(rows: readonly WindowRow[]): number {
  const settled = rows.slice(1).map((r) => r.meanMs);
  if (settled.length === 0) return NaN;
  return Math.max(...settled) / Math.min(...settled);
}

async function main(argv: string[]): Promise<void> {
  const preset = (flagValue(argv, '--preset') ?? 'small') as PresetName;
  if (!(PRESET_NAMES as readonly string[]).includes(preset)) throw new Error(`unknown preset ${preset}`);
  const classes = Number(flagValue(argv, '--classes') ?? 10);
  const batch = Number(flagValue(argv, '--batch') ?? 64);
  const threads = Number(flagValue(argv, '--threads') ?? 2);
  const steps = Number(flagValue(argv, '--steps') ?? 400);
  const window = Number(flagValue(argv, '--window') ?? 20);
  const outPath = flagValue(argv, '--out') ?? null;
  await initBackend('native', false, { threads });
  const { step, dispose } = syntheticStep(buildSpec(preset), classes, batch);
  const gcs: { startMs: number; major: boolean }[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      gcs.push({ startMs: e.startTime, major: kind === constants.NODE_PERFORMANCE_GC_MAJOR });
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  const loadBefore = loadAverage();
  const startMs = performance.now();
  const stepEndsMs: number[] = [];
  for (let i = 0; i < steps; i++) {
    await step();
    stepEndsMs.push(performance.now());
  }
  // Node delivers the entries on a later turn of the event loop (the steps only await
  // microtasks): a short timer lets them all in, with the times they began.
  await new Promise((resolve) => setTimeout(resolve, 200));
  observer.disconnect();
  const rows = windowRows(stepEndsMs, startMs, gcs, window);
  const ratio = slowestOverFastest(rows);
  const addon = process.env.ALEXNET_NATIVE_ADDON ?? 'dist/native/alexnet_native.node';
  const lines = [
    `# steady state: ${preset}, batch ${batch}, ${threads} oneDNN thread(s), ${steps} steps (${machineLine()}; ${new Date().toISOString()})`,
    '',
    `\`node dist/bench/steady.js ${argv.join(' ')}\`, addon ${addon}; 1-minute load average ${loadBefore.toFixed(1)}-${loadAverage().toFixed(1)}.`,
    `Slowest window ${ratio.toFixed(2)}x the fastest (the first window left out); ${gcs.filter((g) => g.major).length} major collections in all.`,
    '',
    formatTable(
      ['steps', 'mean ms', 'img/s', 'major GCs', 'minor GCs'],
      rows.map((r) => [
        `${r.first}-${r.last}`,
        r.meanMs.toFixed(1),
        ((batch / r.meanMs) * 1000).toFixed(0),
        String(r.majorGcs),
        String(r.minorGcs),
      ]),
    ),
  ];
  console.log(lines.join('\n'));
  if (outPath !== null)
    fs.writeFileSync(outPath, `${JSON.stringify({ preset, batch, threads, addon, rows, ratio }, null, 2)}\n`);
  dispose();
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
