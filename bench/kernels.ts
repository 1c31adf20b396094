/**
 * Per-kernel speed inside a real training step on the native backend: every kernel call of one
 * step (forward, backward, update) from tf.profile, with its FLOPs where it is a convolution or
 * a matrix product, its GFLOP/s, the share of the core's fp32 peak, and oneDNN's own figure
 * for the same op: bench/onednn_probe.cc (standalone C++, no tfjs), compiled on demand and run
 * on the same layers after each profiled step; constants from another machine only where it
 * cannot be built. Where the step's time goes, so the next bottleneck is visible.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/kernels.js [--preset paper] [--batch 32] [--reps 3]
 *       [--out kernels.json]
 *
 * Timing: after two warm-up steps, `--reps` steps are profiled; each kernel's time is the fastest
 * over them, as the probe's figures are its best of `--reps` (on a shared machine the fastest run
 * is the least disturbed one, and the same statistic on both sides keeps the ratios fair); the
 * step's time is their median. One process, one oneDNN thread, synthetic images (the data
 * pipeline is not timed).
 */
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { LRN_MAX_POOL_GRAD_KERNEL, LRN_MAX_POOL_KERNEL } from '../src/backend/native/kernels';
import { initBackend } from '../src/backend/select';
import { PRESET_NAMES, type PresetName } from '../src/core/config';
import { createAlexNet, disposeModel, layerShapes } from '../src/model/alexnet';
import { buildSpec, type ModelSpec } from '../src/model/presets';
import { formatTable } from '../src/core/text-format';
import { Optimizer } from '../src/train/optimizer';
import { trainStep } from '../src/train/step';
import { flagValue, loadAverage, machineLine, median } from './harness';
import {
  convBwdLabel,
  convFwdLabel,
  fcLabel,
  fcLayersOf,
  mergeProbeResults,
  probeLines,
  runProbe,
  type ProbeResult,
  type ProbeRow,
  type FcLayer,
  type FcPass,
} from './onednn-probe';

/** A core's fp32 peak on the machine of docs/benchmarks.md: AVX-512, two FMA units, ~3.7 GHz. */
export const CORE_PEAK_GFLOPS = 235;

/**
 * The fallback when the probe (bench/onednn_probe.cc) cannot be built: oneDNN 2.6.3 alone
 * (standalone C++, 1 thread, batch 32, NHWC, best of 5) for the paper preset, measured
 * 2026-12-01 on ANOTHER machine (AVX-512; docs/benchmarks.md), the upper end of each range,
 * GFLOP/s. Keyed like kernelRows' labels.
 */
export const ONEDNN_ALONE_GFLOPS: Readonly<Record<string, number>> = {
  'conv1 fwd': 205,
  'conv1 bwd (weights)': 176,
  'conv2 fwd': 229,
  'conv2 bwd (data + weights)': 215,
  'conv3 fwd': 233,
  'conv3 bwd (data + weights)': 203,
  'conv4 fwd': 230,
  'conv4 bwd (data + weights)': 208,
  'conv5 fwd': 230,
  'conv5 bwd (data + weights)': 208,
  'fc6 fwd': 153,
  'fc6 dx': 105,
  'fc6 dW': 191,
  'fc7 fwd': 153,
  'fc7 dx': 105,
  'fc7 dW': 191,
};

/** One kernel call as tf.profile reports it. */
export interface KernelCall {
  name: string;
  inputShapes: number[][];
  outputShapes: number[][];
  ms: number;
}

export interface KernelRow {
  label: string;
  ms: number;
  /** 0 where the op is not counted in FLOPs (memory-bound ops). */
  gflop: number;
}

const size = (shape: number[] | undefined): number => (shape ?? []).reduce((a, b) => a * b, 1);

/** FLOPs of a matrix product from its shapes alone: a = MK, b = KN, out = MN, so MNK = sqrt(|a||b||out|). */
export function matMulFlops(call: Pick<KernelCall, 'inputShapes' | 'outputShapes'>): number {
  return 2 * Math.sqrt(size(call.inputShapes[0]) * size(call.inputShapes[1]) * size(call.outputShapes[0]));
}

/** A conv layer's forward FLOPs: each output element is a dot product of kh kw (ic / groups) terms; w is [kh, kw, ic / g, oc]. */
export function convFlops(yShape: number[], wShape: number[]): number {
  return (2 * size(yShape) * size(wShape)) / wShape[wShape.length - 1];
}

/** Our fused kernels' rows, named by the tfjs ops they do at once. */
const FUSED_LABELS: Readonly<Record<string, string>> = {
  [LRN_MAX_POOL_KERNEL]: 'LRN + MaxPool',
  [LRN_MAX_POOL_GRAD_KERNEL]: 'LRN + MaxPool grad',
};

/**
 * Labels and FLOPs for one step's calls, in order: conv layers are numbered as they come
 * (forward in order, backward in reverse); a matrix product is an FC layer's by its weight
 * shape [in, out], as an input (forward, then dx) or as the output (dW).
 */
export function kernelRows(calls: readonly KernelCall[], convCount: number, fcs: readonly FcLayer[]): KernelRow[] {
  let convFwd = 0;
  // tf.profile also records scopes that contain kernels: an op's (`fusedMatMul__op`) and a
  // customGrad's body (`forward`, our conv layer op). Counting them would count their kernels twice.
  const kernels = calls.filter((c) => !c.name.endsWith('__op') && c.name !== 'forward');
  let convBwd = convCount;
  const forwardSeen = new Set<number>();
  const dims = (s: number[] | undefined): string => (s ?? []).filter((d) => d !== 1).join('x');
  return kernels.map((c): KernelRow => {
    if (c.name === 'AlexnetConvLayer') {
      convFwd++;
      return { label: convFwdLabel(convFwd), ms: c.ms, gflop: convFlops(c.outputShapes[0], c.inputShapes[1]) / 1e9 };
    }
    if (c.name === 'AlexnetConvLayerGrad') {
      const n = convBwd--;
      // The first layer's input is the images: its data gradient is not computed.
      const withData = n > 1;
      const one = convFlops(c.inputShapes[2], c.inputShapes[1]);
      return {
        label: convBwdLabel(n, withData),
        ms: c.ms,
        gflop: (withData ? 2 * one : one) / 1e9,
      };
    }
    if (c.name === 'BatchMatMul' || c.name === '_FusedMatMul') {
      const gflop = matMulFlops(c) / 1e9;
      const layer = fcs.findIndex((f) =>
        [dims(c.inputShapes[1]), dims(c.outputShapes[0])].includes(f.weight.join('x')),
      );
      if (layer < 0) return { label: 'other matmul', ms: c.ms, gflop };
      const role: FcPass =
        dims(c.outputShapes[0]) === fcs[layer].weight.join('x') ? 'dW' : forwardSeen.has(layer) ? 'dx' : 'fwd';
      forwardSeen.add(layer);
      return { label: fcLabel(fcs[layer].name, role), ms: c.ms, gflop };
    }
    return { label: FUSED_LABELS[c.name] ?? c.name, ms: c.ms, gflop: 0 };
  });
}

/** Same-label rows summed (the element-wise ops of a step, several calls each). */
export function mergeRows(rows: readonly KernelRow[]): KernelRow[] {
  const byLabel = new Map<string, KernelRow>();
  for (const r of rows) {
    const seen = byLabel.get(r.label);
    byLabel.set(r.label, seen ? { label: r.label, ms: seen.ms + r.ms, gflop: seen.gflop + r.gflop } : { ...r });
  }
  return [...byLabel.values()];
}

/** A training step on synthetic images (SGD with momentum), and what frees its model. */
export function syntheticStep(
  spec: ModelSpec,
  classes: number,
  batch: number,
): { step: () => Promise<void>; dispose: () => void } {
  const model = createAlexNet(spec, classes, 1);
  const optimizer = new Optimizer(
    { name: 'sgd', momentum: 0.9, weightDecay: 5e-4, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
    model.params,
  );
  const s = spec.inputSize;
  let seed = 1;
  const images = Float32Array.from(
    { length: batch * s * s * 3 },
    () => (seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5,
  );
  const batchData = {
    images,
    labels: Int32Array.from({ length: batch }, (_, i) => i % classes),
    sampleIndices: Int32Array.from({ length: batch }, (_, i) => i),
    count: batch,
    skipped: 0,
    index: 0,
    globalPlanned: batch,
    cropsPerImage: 1,
  };
  return {
    step: async () => {
      await trainStep(model, optimizer, batchData, { lr: 0.01, dropoutSeed: 1, stopVote: false });
    },
    dispose: () => {
      disposeModel(model);
      optimizer.dispose();
    },
  };
}

export async function profiledStep(step: () => Promise<void>): Promise<KernelCall[]> {
  const info = await tf.profile(step);
  return Promise.all(
    info.kernels.map(async (k) => ({
      name: k.name,
      inputShapes: k.inputShapes,
      outputShapes: k.outputShapes,
      ms: Number(await k.kernelTimeMs) || 0,
    })),
  );
}

/** What a row is compared with: oneDNN alone's GFLOP/s, the way it got them, and its figure in our layouts. */
export interface AloneFigure {
  gflops: number;
  how: string;
  /** null where unknown (the constants). */
  oursGflops: number | null;
}

export interface AloneFigures {
  /** Where the figures come from, for the report. */
  source: string;
  byLabel: ReadonlyMap<string, AloneFigure>;
}

/** The probe's runs as one result, or why there is none. */
function mergedProbe(runs: ReadonlyArray<ProbeResult | string>): ProbeResult | string {
  const failed = runs.find((r): r is string => typeof r === 'string');
  return failed ?? (runs.length > 0 ? mergeProbeResults(runs as ProbeResult[]) : 'no probe runs');
}

/** The probe's figures (`runs` runs merged), or the constants (paper, batch 32 only) saying why there are none. */
function aloneFigures(spec: ModelSpec, batch: number, probe: ProbeResult | string, runs: number): AloneFigures {
  if (typeof probe !== 'string') {
    const byLabel = Object.entries(probe.rows).map(([label, r]): [string, AloneFigure] => [
      label,
      { gflops: r.best.gflops, how: r.best.how, oursGflops: r.ours.gflops },
    ]);
    return {
      source: `oneDNN ${probe.oneDNN} alone on this machine (bench/onednn_probe.cc: ${probe.isa}, ${probe.threads} thread, best of ${probe.reps} calls over ${runs} runs, one after each profiled step)`,
      byLabel: new Map(byLabel),
    };
  }
  const constants = spec.preset === 'paper' && batch === 32 ? Object.entries(ONEDNN_ALONE_GFLOPS) : [];
  return {
    source: `the probe did not run (${probe}); oneDNN alone from constants measured on ANOTHER machine (AVX-512)${constants.length > 0 ? '' : ', none for this preset and batch'}`,
    byLabel: new Map(
      constants.map(([label, gflops]): [string, AloneFigure] => [label, { gflops, how: 'constant', oursGflops: null }]),
    ),
  };
}

/** The step's conv and FC kernel time against oneDNN alone's for the same rows (those with a figure). */
export function stepVersusAlone(
  rows: readonly KernelRow[],
  alone: ReadonlyMap<string, AloneFigure>,
): { oursMs: number; aloneMs: number; aloneOursMs: number | null } {
  let oursMs = 0;
  let aloneMs = 0;
  let aloneOursMs: number | null = 0;
  for (const r of rows) {
    const f = alone.get(r.label);
    if (f === undefined || r.gflop <= 0) continue;
    oursMs += r.ms;
    aloneMs += (1000 * r.gflop) / f.gflops;
    aloneOursMs = f.oursGflops === null || aloneOursMs === null ? null : aloneOursMs + (1000 * r.gflop) / f.oursGflops;
  }
  return { oursMs, aloneMs, aloneOursMs };
}

/** An FC layer's three products (forward, dx, dW) in the step against oneDNN alone, in ms. */
export interface FcLayerVersusAlone {
  name: string;
  oursMs: number;
  /** oneDNN alone's fastest way for each product on tfjs's row-major [in, out] weights, summed. */
  plainMs: number;
  /** inner_product with weights in oneDNN's own blocked layout, for all three products. */
  blockedMs: number;
}

const BLOCKED_FC_WAY = 'inner_product(any)';

/**
 * Each FC layer as a whole: its weights live in one layout for all three products, so the fair
 * figure for oneDNN alone is the faster of two whole layers, not the best way of each product
 * (that mixes layouts: the blocked forward with the plain dx and dW). Layers without all three
 * probe rows are left out.
 */
export function fcLayersVersusAlone(
  rows: readonly KernelRow[],
  probe: ProbeResult,
  fcs: readonly FcLayer[],
): FcLayerVersusAlone[] {
  const passes = ['fwd', 'dx', 'dW'] as const;
  return fcs.flatMap((fc) => {
    const found = passes.flatMap((pass) => {
      const label = fcLabel(fc.name, pass);
      const alone = probe.rows[label] as ProbeRow | undefined;
      const ours = rows.find((r) => r.label === label);
      return alone !== undefined && ours !== undefined ? [{ alone, ours }] : [];
    });
    if (found.length < passes.length) return [];
    const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);
    return [
      {
        name: fc.name,
        oursMs: sum(found.map((f) => f.ours.ms)),
        plainMs: sum(found.map((f) => f.alone.ours.ms)),
        blockedMs: sum(found.map((f) => f.alone.ways[BLOCKED_FC_WAY] ?? Infinity)),
      },
    ];
  });
}

/** The FC layers' line of the report: each layer as a whole against oneDNN alone's faster layout. */
function fcLayersLine(layers: readonly FcLayerVersusAlone[]): string {
  if (layers.length === 0) return 'FC layers as a whole: no probe figures to compare with.';
  const parts = layers.map((l) => {
    const alone = Math.min(l.plainMs, l.blockedMs);
    return `${l.name} ${l.oursMs.toFixed(1)} ms against ${l.plainMs.toFixed(1)} (${l.blockedMs.toFixed(1)} blocked), ${(alone / l.oursMs).toFixed(2)}`;
  });
  return (
    'FC layers as a whole (forward + dx + dW, the weights in one layout; oneDNN alone on our [in, out] weights, ' +
    `and in brackets with its blocked weights throughout): ${parts.join('; ')}.`
  );
}

/** The per-kernel table: ours, and oneDNN alone's figure where there is one. */
function kernelTable(rows: readonly KernelRow[], stepMs: number, alone: AloneFigures['byLabel']): string {
  return formatTable(
    [
      'kernel',
      'ms',
      'share of step',
      'GFLOP',
      'GFLOP/s',
      '% of core peak',
      'oneDNN alone GFLOP/s',
      'its way',
      'alone, our layouts',
      'ours / oneDNN alone',
    ],
    rows.map((r) => {
      const gflops = r.gflop > 0 ? r.gflop / (r.ms / 1000) : NaN;
      const f = alone.get(r.label);
      return [
        r.label,
        r.ms.toFixed(1),
        `${((100 * r.ms) / stepMs).toFixed(1)}%`,
        r.gflop > 0 ? r.gflop.toFixed(2) : '-',
        Number.isFinite(gflops) ? gflops.toFixed(0) : '-',
        Number.isFinite(gflops) ? `${((100 * gflops) / CORE_PEAK_GFLOPS).toFixed(0)}%` : '-',
        f !== undefined ? f.gflops.toFixed(0) : '-',
        f?.how ?? '-',
        f?.oursGflops != null ? f.oursGflops.toFixed(0) : '-',
        f !== undefined && Number.isFinite(gflops) ? `${(gflops / f.gflops).toFixed(2)}` : '-',
      ];
    }),
    ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'left', 'right', 'right'],
  );
}

/** The whole-step line: conv + FC kernel time against oneDNN alone's, and the step's speed. */
function stepLine(rows: readonly KernelRow[], alone: AloneFigures['byLabel'], batch: number, stepMs: number): string {
  const s = stepVersusAlone(rows, alone);
  if (s.oursMs === 0) return 'Conv + FC kernels: no oneDNN-alone figures to compare with.';
  const inOurs = s.aloneOursMs !== null ? ` (${s.aloneOursMs.toFixed(0)} ms in our layouts)` : '';
  return (
    `Conv + FC kernels: ${s.oursMs.toFixed(0)} ms in the step, ${s.aloneMs.toFixed(0)} ms for oneDNN alone${inOurs}: ` +
    `${(s.aloneMs / s.oursMs).toFixed(2)} of oneDNN alone's speed; the step ${((batch / stepMs) * 1000).toFixed(1)} img/s.`
  );
}

async function main(argv: string[]): Promise<void> {
  const preset = (flagValue(argv, '--preset') ?? 'paper') as PresetName;
  if (!(PRESET_NAMES as readonly string[]).includes(preset)) throw new Error(`unknown preset ${preset}`);
  const batch = Number(flagValue(argv, '--batch') ?? 32);
  const reps = Number(flagValue(argv, '--reps') ?? 3);
  const outPath = flagValue(argv, '--out') ?? null;
  await initBackend('native', false, { threads: 1 });
  const classes = 1000;
  const spec = buildSpec(preset);
  const { step, dispose } = syntheticStep(spec, classes, batch);
  const loadBefore = loadAverage();
  for (let i = 0; i < 2; i++) await step();
  const stepMs: number[] = [];
  const perRep: KernelRow[][] = [];
  const fcs = fcLayersOf(layerShapes(spec, classes));
  // oneDNN alone runs between the profiled steps, one timed call per way each time: on a shared
  // machine both sides then see the same stretch of load, and both take their fastest.
  const layerLines = probeLines(spec, classes, batch);
  const probeRuns: (ProbeResult | string)[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    const calls = await profiledStep(step);
    stepMs.push(performance.now() - t0);
    perRep.push(mergeRows(kernelRows(calls, spec.convs.length, fcs)));
    if (typeof probeRuns[0] !== 'string') probeRuns.push(runProbe(layerLines, 1, 1));
  }
  const load = [loadBefore, loadAverage()];
  const labels = perRep[0].map((r) => r.label);
  const rows = labels.map((label) => {
    const times = perRep.map((rep) => rep.find((r) => r.label === label)?.ms ?? 0);
    const gflop = perRep[0].find((r) => r.label === label)?.gflop ?? 0;
    return { label, ms: Math.min(...times), gflop };
  });
  const kernelMs = rows.reduce((a, r) => a + r.ms, 0);
  const step1 = median(stepMs);
  const shown = rows.filter((r) => r.gflop > 0 || r.ms >= 0.5);
  const probe = mergedProbe(probeRuns);
  const alone = aloneFigures(spec, batch, probe, probeRuns.length);
  const totalGflop = rows.reduce((a, r) => a + r.gflop, 0);
  const lines = [
    `# per-kernel time in one ${preset} training step (${machineLine()}; ${new Date().toISOString()})`,
    '',
    `\`node dist/bench/kernels.js ${argv.join(' ')}\`: native backend, 1 thread, batch ${batch}, ${classes} classes, ${reps} profiled steps (step: median; kernels: fastest); 1-minute load average ${load[0].toFixed(1)}-${load[1].toFixed(1)}.`,
    `Step ${step1.toFixed(0)} ms (${((batch / step1) * 1000).toFixed(1)} img/s) under the profiler, of which ${kernelMs.toFixed(0)} ms in kernels; ${totalGflop.toFixed(1)} GFLOP in convolutions and products, ${(totalGflop / (step1 / 1000)).toFixed(0)} GFLOP/s over the whole step (core peak ~${CORE_PEAK_GFLOPS} on the AVX-512 machine of docs/benchmarks.md). Kernels under 0.5 ms are left out.`,
    `Compared with ${alone.source}; "its way": how oneDNN alone got its best figure (conv: nhwc, or any = its own blocked layouts; FC: inner_product, matmul or sgemm), "alone, our layouts": its best without a reorder of our buffers.`,
    stepLine(rows, alone.byLabel, batch, step1),
    fcLayersLine(typeof probe === 'string' ? [] : fcLayersVersusAlone(rows, probe, fcs)),
    '',
    kernelTable(shown, step1, alone.byLabel),
  ];
  console.log(lines.join('\n'));
  if (outPath !== null)
    fs.writeFileSync(
      outPath,
      `${JSON.stringify({ preset, batch, reps, stepMs: step1, rows, load, alone: { source: alone.source, rows: Object.fromEntries(alone.byLabel) }, markdown: lines.join('\n') }, null, 2)}\n`,
    );
  dispose();
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
