/**
 * The pure half of scripts/reproduce.ts: the recipes, reading what the runs wrote, the tables
 * and charts of docs/reproduction.md. No processes, no files: tested in test/scripts/.
 */
import { lineChart, type ChartSpec, type Series } from '../src/report/charts';
import type { RunMetrics, StepRecord } from '../src/train/run/run-log';
import { svgDocument, svgText } from '../src/report/svg';
import { formatPercent, formatTable } from '../src/core/text-format';

/** The paper's recipe scaled to this machine (issue #6), as `alexnet train` options. */
export const REPRODUCTION_RECIPE = {
  preset: 'small',
  init: 'he',
  optimizer: 'sgd',
  lr: 0.01,
  momentum: 0.9,
  weightDecay: 0.0005,
  schedule: 'plateau',
  batchSize: 128,
  workers: 2,
  seed: 0,
} as const;

/** The recipe's network and optimiser options, with the rate, schedule and batch a run chooses. */
function recipeArgs(data: string, lr: number, schedule: string, batchSize: number): string[] {
  const r = REPRODUCTION_RECIPE;
  return [
    '--data',
    data,
    '--preset',
    r.preset,
    '--init',
    r.init,
    '--optimizer',
    r.optimizer,
    '--lr',
    String(lr),
    '--momentum',
    String(r.momentum),
    '--weight-decay',
    String(r.weightDecay),
    '--schedule',
    schedule,
    '--batch-size',
    String(batchSize),
  ];
}

/** Our run of the recipe; `backend` is named so that the run's command says what computed it. */
export function oursTrainArgs(
  data: string,
  runDir: string,
  epochs: number,
  seed: number = REPRODUCTION_RECIPE.seed,
  backend: 'native' | 'wasm' = 'wasm',
): string[] {
  const r = REPRODUCTION_RECIPE;
  return [
    ...recipeArgs(data, r.lr, r.schedule, r.batchSize),
    '--devices',
    `cpu:${r.workers}`,
    '--backend',
    backend,
    '--seed',
    String(seed),
    '--epochs',
    String(epochs),
    '--run-dir',
    runDir,
  ];
}

export function referenceArgs(
  data: string,
  specFile: string,
  metricsFile: string,
  epochs: number,
  seed: number = REPRODUCTION_RECIPE.seed,
): string[] {
  const r = REPRODUCTION_RECIPE;
  return [
    '--data',
    data,
    '--spec',
    specFile,
    '--out',
    metricsFile,
    '--world',
    String(r.workers),
    '--batch',
    String(r.batchSize),
    '--epochs',
    String(epochs),
    '--optimizer',
    r.optimizer,
    '--lr',
    String(r.lr),
    '--momentum',
    String(r.momentum),
    '--weight-decay',
    String(r.weightDecay),
    '--schedule',
    r.schedule,
    '--seed',
    String(seed),
  ];
}

/** One ablation: the paper's claim it tests, and the `alexnet train` options that make it. */
export interface Ablation {
  id: string;
  label: string;
  args: readonly string[];
}

export const ABLATIONS: readonly Ablation[] = [
  { id: 'baseline', label: 'baseline (ReLU, LRN, 3/2 pool, dropout 0.5)', args: [] },
  { id: 'tanh', label: 'tanh instead of ReLU', args: ['--activation', 'tanh'] },
  { id: 'no-lrn', label: 'no LRN', args: ['--no-lrn'] },
  { id: 'pool-2x2', label: 'plain 2/2 pooling', args: ['--no-overlapping-pool'] },
  { id: 'no-dropout', label: 'no dropout', args: ['--dropout', '0'] },
];

/** The shared short budget of every ablation run (constant lr: a drop would blur "epochs to X%"). */
export interface AblationBudget {
  epochs: number;
  trainLimit: number;
  batchSize: number;
  lr: number;
  logEvery: number;
}

export function ablationTrainArgs(a: Ablation, data: string, runDir: string, b: AblationBudget): string[] {
  const r = REPRODUCTION_RECIPE;
  return [
    ...recipeArgs(data, b.lr, 'constant', b.batchSize),
    '--epochs',
    String(b.epochs),
    '--train-limit',
    String(b.trainLimit),
    '--log-every',
    String(b.logEvery),
    '--devices',
    `cpu:${r.workers}`,
    '--seed',
    String(r.seed),
    '--run-dir',
    runDir,
    ...a.args,
  ];
}

/**
 * Training top-1 error over a moving window of `windowLines` consecutive steps.jsonl lines
 * (count-weighted), at the fractional epoch where each window ends: one line holds only a few
 * hundred images, too few to read a threshold crossing from.
 */
export function smoothedTrainError(
  records: readonly StepRecord[],
  windowLines: number,
): { epochs: number; error: number }[] {
  const out: { epochs: number; error: number }[] = [];
  for (let i = windowLines - 1; i < records.length; i++) {
    const window = records.slice(i - windowLines + 1, i + 1);
    const count = window.reduce((a, r) => a + r.train.count, 0);
    const wrong = window.reduce((a, r) => a + r.train.top1Error * r.train.count, 0);
    out.push({ epochs: records[i].epochs, error: wrong / count });
  }
  return out;
}

/** The first fractional epoch at which the smoothed training error is at or below `threshold`, or null. */
export function epochsToTrainError(
  curve: readonly { epochs: number; error: number }[],
  threshold: number,
): number | null {
  return curve.find((p) => p.error <= threshold)?.epochs ?? null;
}

const pct = (x: number | undefined | null): string => formatPercent(x ?? NaN);
const minutes = (ms: number): string => (Number.isFinite(ms) ? `${(ms / 60_000).toFixed(1)} min` : 'n/a');

/** What a finished run contributes to the tables. */
export interface RunResult {
  name: string;
  /** The name in chart legends, which have room for a word or two. */
  shortName: string;
  metrics: RunMetrics;
  /** Wall time of the whole command (start-up, data, training, evaluation). */
  wallMs: number;
}

/** Epochs (1-based) after which the learning rate was lower than before. */
export function lrDropEpochs(m: RunMetrics): number[] {
  const drops: number[] = [];
  for (let i = 1; i < m.epochs.length; i++) if (m.epochs[i].lr < m.epochs[i - 1].lr) drops.push(m.epochs[i - 1].epoch);
  return drops;
}

function bestVal(m: RunMetrics): number {
  return Math.min(...m.epochs.map((e) => e.val?.top1Error ?? Infinity));
}

function meanImagesPerSec(m: RunMetrics): number {
  const images = m.epochs.reduce((a, e) => a + e.train.count, 0);
  const ms = m.epochs.reduce((a, e) => a + e.epochMs, 0);
  return (images / ms) * 1000;
}

/** Test top-1 error of ours minus the reference's, in percentage points. */
export function gapPoints(ours: RunMetrics, reference: RunMetrics): number {
  return 100 * ((ours.test?.test.top1Error ?? NaN) - (reference.test?.test.top1Error ?? NaN));
}

/** Test top-1 errors of runs, as the mean and the range over seeds, in percent. */
function spread(runs: readonly RunMetrics[]): { mean: number; min: number; max: number } {
  const errors = runs.map((m) => 100 * (m.test?.test.top1Error ?? NaN));
  return {
    mean: errors.reduce((a, e) => a + e, 0) / errors.length,
    min: Math.min(...errors),
    max: Math.max(...errors),
  };
}

/**
 * The gap over seeds: each side's mean test top-1 error and its range, the gap of the means, and
 * each seed's own gap (runs paired by seed; the random streams differ between the two sides, so
 * a pair shares only its seed number).
 */
export function seedGapLines(
  seeds: readonly number[],
  ours: readonly RunMetrics[],
  reference: readonly RunMetrics[],
): string[] {
  const o = spread(ours);
  const r = spread(reference);
  const gap = o.mean - r.mean;
  const signed = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;
  const range = (s: { min: number; max: number }): string => `${s.min.toFixed(2)}-${s.max.toFixed(2)}%`;
  return [
    `Test top-1 over seeds ${seeds.join(', ')}: ours ${o.mean.toFixed(2)}% (${range(o)}), reference ${r.mean.toFixed(2)}% (${range(r)}).`,
    `Gap of the means, ours minus reference: **${signed(gap)} percentage points** (target: within 1); per seed: ${seeds.map((s, i) => `${s}: ${signed(gapPoints(ours[i], reference[i]))}`).join(', ')}.`,
  ];
}

export function reproductionTable(runs: readonly RunResult[]): string {
  const rows = runs.map((r) => [
    r.name,
    pct(r.metrics.test?.test.top1Error),
    pct(r.metrics.test?.test.top5Error),
    pct(bestVal(r.metrics)),
    String(r.metrics.epochs.length),
    lrDropEpochs(r.metrics).join(', ') || 'none',
    minutes(r.wallMs),
    meanImagesPerSec(r.metrics).toFixed(0),
  ]);
  return formatTable(
    ['run', 'test top-1', 'test top-5', 'best val top-1', 'epochs', 'lr /10 after epoch', 'wall time', 'train img/s'],
    rows,
    ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
}

export interface AblationResult {
  ablation: Ablation;
  run: RunResult;
  curve: { epochs: number; error: number }[];
}

export function ablationTable(results: readonly AblationResult[], threshold: number): string {
  const baseline = results.find((r) => r.ablation.id === 'baseline');
  const baseEpochs = baseline ? epochsToTrainError(baseline.curve, threshold) : null;
  const rows = results.map(({ ablation, run, curve }) => {
    const reached = epochsToTrainError(curve, threshold);
    const last = curve[curve.length - 1]?.epochs ?? 0;
    const ratio = reached !== null && baseEpochs !== null ? `${(reached / baseEpochs).toFixed(2)}x` : 'n/a';
    return [
      ablation.label,
      `\`${ablation.args.join(' ') || '(defaults)'}\``,
      reached === null ? `not in ${last.toFixed(1)}` : reached.toFixed(2),
      ratio,
      pct(curve[curve.length - 1]?.error),
      pct(run.metrics.test?.test.top1Error),
      pct(run.metrics.test?.test.top5Error),
    ];
  });
  return formatTable(
    [
      'variant',
      'options',
      `epochs to ${(100 * threshold).toFixed(0)}% train error`,
      'vs baseline',
      'final train error',
      'test top-1',
      'test top-5',
    ],
    rows,
    ['left', 'left', 'right', 'right', 'right', 'right', 'right'],
  );
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
const PANEL = { width: 480, height: 340 };
const TITLE_PX = 36;

function panels(title: string, specs: readonly ChartSpec[], width = PANEL.width): string {
  const drawn = specs.map((spec, i) => lineChart(spec, { x: i * width, y: TITLE_PX, width, height: PANEL.height }));
  return svgDocument(specs.length * width, TITLE_PX + PANEL.height, [
    svgText(16, 24, title, { sizePx: 16, weight: 'bold' }),
    ...drawn,
  ]);
}

/** Ours against the reference per epoch: training loss, validation top-1 error, learning rate. */
export function reproductionChartSvg(runs: readonly RunResult[]): string {
  const series = (pick: (e: RunMetrics['epochs'][number]) => number | null): Series[] =>
    runs.map((r, i) => ({
      name: r.shortName,
      color: COLORS[i],
      points: r.metrics.epochs.map((e) => ({ x: e.epoch, y: pick(e) })),
    }));
  const common = { xLabel: 'epoch', yScale: 'linear' as const, integerX: true, includeZero: true };
  return panels('Reproduction: ours vs the PyTorch reference', [
    { ...common, title: 'Training loss', yLabel: 'cross-entropy', series: series((e) => e.train.loss) },
    {
      ...common,
      title: 'Validation top-1 error',
      yLabel: 'top-1 error',
      percent: true,
      series: series((e) => e.val?.top1Error ?? null),
    },
    {
      ...common,
      includeZero: false,
      yScale: 'log',
      title: 'Learning rate',
      yLabel: 'learning rate',
      series: series((e) => e.lr),
    },
  ]);
}

/** The paper's Figure 1 at our scale: smoothed training error against epochs, one line per variant. */
export function ablationChartSvg(results: readonly AblationResult[], threshold: number): string {
  const series: Series[] = results.map((r, i) => ({
    name: r.ablation.id,
    color: COLORS[i % COLORS.length],
    points: r.curve.map((p) => ({ x: p.epochs, y: p.error })),
  }));
  const xs = results.flatMap((r) => r.curve.map((p) => p.epochs));
  series.push({
    name: `${(100 * threshold).toFixed(0)}%`,
    color: '#aaaaaa',
    points: [
      { x: Math.min(...xs), y: threshold },
      { x: Math.max(...xs), y: threshold },
    ],
  });
  return panels(
    'Ablations: training top-1 error on the augmented training batches (dropout as each variant has it)',
    [
      {
        title: 'Training top-1 error',
        xLabel: 'epoch',
        yLabel: 'top-1 error',
        percent: true,
        includeZero: true,
        yScale: 'linear',
        series,
      },
    ],
    2 * PANEL.width,
  );
}
