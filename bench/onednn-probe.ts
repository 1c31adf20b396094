/**
 * oneDNN alone for a preset's conv and FC layers: bench/onednn_probe.cc, compiled on demand into
 * dist/bench and run on this machine with the layers' shapes, so bench/kernels.ts compares our
 * kernels with oneDNN on the same CPU in the same run (not with figures from another machine).
 * Also the row labels both sides use.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { convInfo, convParams } from '../src/backend/native/kernels';
import { layerShapes, tfPad, type LayerShape } from '../src/model/alexnet';
import type { ModelSpec } from '../src/model/presets';
import { repoRoot } from './harness';

export type FcPass = 'fwd' | 'dx' | 'dW';

export const convFwdLabel = (layer: number): string => `conv${layer} fwd`;
export const convBwdLabel = (layer: number, withData: boolean): string =>
  `conv${layer} bwd (${withData ? 'data + weights' : 'weights'})`;
export const fcLabel = (name: string, pass: FcPass): string => `${name} ${pass}`;

const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** An FC layer: its name and weight shape [inputs, outputs]. */
export interface FcLayer {
  name: string;
  weight: [number, number];
}

/** The FC layers of a model, from its layer table (an FC row's input is the previous row's output). */
export function fcLayersOf(rows: readonly LayerShape[]): FcLayer[] {
  const layers: FcLayer[] = [];
  rows.forEach((row, i) => {
    if (row.outputShape.length === 1 && i > 0)
      layers.push({ name: row.layer, weight: [size(rows[i - 1].outputShape), row.outputShape[0]] });
  });
  return layers;
}

/**
 * The probe's input, one tab-separated line per layer: a conv layer's labels, the addon's conv
 * parameters (convParams) and whether its input gradient is computed (not for the images); an
 * FC layer's labels and M K N RELU. Conv inputs come from the layer table: a conv row's input is
 * the row before it (its LRN or pool), the first one's the images.
 */
export function probeLines(spec: ModelSpec, classes: number, batch: number): string[] {
  const rows = layerShapes(spec, classes);
  const activation = spec.activation === 'relu' ? 'relu' : 'linear';
  const convs = spec.convs.map((c, i) => {
    const at = rows.findIndex((r) => r.layer.split(' ')[0] === c.name);
    const input = at > 0 ? rows[at - 1].outputShape : [spec.inputSize, spec.inputSize, 3];
    const filter = [c.kernel, c.kernel, input[2] / c.groups, c.filters];
    const info = convInfo(
      c.name,
      [batch, ...input],
      filter,
      { strides: c.stride, pad: tfPad(c.pad), dataFormat: 'NHWC' },
      c.groups,
    );
    const params = [...convParams(info, c.groups, activation), i > 0 ? 1 : 0];
    return ['conv', convFwdLabel(i + 1), convBwdLabel(i + 1, i > 0), params.join(' ')].join('\t');
  });
  const fcs = fcLayersOf(rows).map((f, i, all) => {
    // Hidden layers have the net's activation (fused when relu); the classifier is linear.
    const relu = activation === 'relu' && i < all.length - 1 ? 1 : 0;
    const labels = (['fwd', 'dx', 'dW'] as const).map((pass) => fcLabel(f.name, pass));
    return ['fc', ...labels, [batch, ...f.weight, relu].join(' ')].join('\t');
  });
  return [...convs, ...fcs];
}

/** One way oneDNN computes a row (`nhwc`, `any`, `sgemm`, `inner_product(any)`, ...). */
export interface ProbeWay {
  how: string;
  ms: number;
  gflops: number;
}

export interface ProbeRow {
  gflop: number;
  /** The fastest way, whatever layouts it needs. */
  best: ProbeWay;
  /** The fastest way on the layouts the addon has (NHWC, tfjs's row-major FC weights). */
  ours: ProbeWay;
  /** Milliseconds of every way tried. */
  ways: Record<string, number>;
}

export interface ProbeResult {
  oneDNN: string;
  isa: string;
  threads: number;
  reps: number;
  rows: Record<string, ProbeRow>;
}

const SOURCE = path.join(repoRoot(), 'bench', 'onednn_probe.cc');
const BINARY = path.join(repoRoot(), 'dist', 'bench', 'onednn_probe');
/** Where src/backend/native/addon/build.sh finds oneDNN (Debian's libdnnl-dev). */
const DNNL_HEADER = '/usr/include/oneapi/dnnl/dnnl.hpp';

const lastLine = (text: string | null): string => (text ?? '').trim().split('\n').pop() ?? '';

/** Compiles the probe when it is missing or older than its source: null, or why it cannot be built. */
export function buildProbe(): string | null {
  if (!fs.existsSync(DNNL_HEADER)) return `no ${DNNL_HEADER} (libdnnl-dev)`;
  if (fs.existsSync(BINARY) && fs.statSync(BINARY).mtimeMs > fs.statSync(SOURCE).mtimeMs) return null;
  fs.mkdirSync(path.dirname(BINARY), { recursive: true });
  // The addon's flags (build.sh): -O3, OpenMP for oneDNN's threads.
  const args = ['-O3', '-std=c++17', '-fopenmp', '-o', `${BINARY}.tmp`, SOURCE, '-ldnnl'];
  const run = spawnSync('g++', args, { encoding: 'utf8' });
  if (run.status !== 0) return `g++ failed: ${lastLine(run.stderr) || run.error?.message || `exit ${run.status}`}`;
  fs.renameSync(`${BINARY}.tmp`, BINARY);
  return null;
}

/** Runs the probe on `lines` (probeLines) with `threads` oneDNN threads: its figures, or why there are none. */
export function runProbe(lines: readonly string[], threads: number, reps: number): ProbeResult | string {
  const failed = buildProbe();
  if (failed !== null) return failed;
  const run = spawnSync(BINARY, [String(threads), String(reps)], {
    input: `${lines.join('\n')}\n`,
    encoding: 'utf8',
    maxBuffer: 16 << 20,
  });
  if (run.status !== 0) return `probe failed: ${lastLine(run.stderr) || run.error?.message || `exit ${run.status}`}`;
  return JSON.parse(lastLine(run.stdout)) as ProbeResult;
}

/**
 * Several probe runs as one: per row the fastest `best` and the fastest `ours` of any run (the
 * minimum over runs of a minimum over ways is the minimum over ways of their minima), and every
 * way's fastest time; `reps` counts the timed calls of all runs.
 */
export function mergeProbeResults(results: readonly ProbeResult[]): ProbeResult {
  const [first, ...rest] = results;
  const faster = (a: ProbeWay, b: ProbeWay): ProbeWay => (b.ms < a.ms ? b : a);
  const rows: Record<string, ProbeRow> = {};
  for (const [label, row] of Object.entries(first.rows)) {
    const others = rest.map((r) => r.rows[label]).filter((r): r is ProbeRow => r !== undefined);
    const ways = { ...row.ways };
    for (const o of others)
      for (const [how, ms] of Object.entries(o.ways)) ways[how] = Math.min(ways[how] ?? Infinity, ms);
    rows[label] = {
      gflop: row.gflop,
      best: others.reduce((w, o) => faster(w, o.best), row.best),
      ours: others.reduce((w, o) => faster(w, o.ours), row.ours),
      ways,
    };
  }
  return { ...first, reps: results.reduce((n, r) => n + r.reps, 0), rows };
}
