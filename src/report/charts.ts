/**
 * Line charts as plain SVG strings (data in, string out, no I/O), and the run's training
 * curves built from them: loss, top-1 and top-5 error (train and val) and the learning rate,
 * one panel each.
 */
import type { EpochRecord } from '../train/run/run-log';
import { coord, svgDocument, svgText } from './svg';

/** A missing value (null or NaN: no validation split, a diverged loss) breaks the line there. */
export interface Point {
  x: number;
  y: number | null;
}

export interface Series {
  name: string;
  color: string;
  points: readonly Point[];
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  /** 'log' for the learning rate: its drops are factors of 10. */
  yScale: 'linear' | 'log';
  /** Anchor the axis at 0 so a small change does not look like a large one. */
  includeZero?: boolean;
  /** Tick labels as percentages (error rates are stored as fractions). */
  percent?: boolean;
  /** Only whole-number x ticks (epochs). */
  integerX?: boolean;
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** 1, 2 or 5 times a power of ten, so that about `target` steps cover `range`. */
export function niceStep(range: number, target: number): number {
  const raw = range / Math.max(1, target);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / magnitude;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
}

export interface Axis {
  min: number;
  max: number;
  ticks: number[];
  /** Distance between ticks (linear axes; the decade factor 10 on log axes). */
  step: number;
}

/** Strips binary noise like 0.30000000000000004 from tick values. */
const clean = (v: number): number => Number(v.toPrecision(12));

/** A linear axis whose ends are ticks, widened when the data is a single value. */
export function linearAxis(
  values: readonly number[],
  o: { includeZero?: boolean; integer?: boolean; target?: number } = {},
): Axis {
  let lo = values.length > 0 ? Math.min(...values) : 0;
  let hi = values.length > 0 ? Math.max(...values) : 1;
  if (o.includeZero) {
    lo = Math.min(lo, 0);
    hi = Math.max(hi, 0);
  }
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.5;
    hi += pad;
    if (!(o.includeZero && lo === 0)) lo -= pad;
  }
  let step = niceStep(hi - lo, o.target ?? 5);
  if (o.integer) step = Math.max(1, Math.round(step));
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const ticks: number[] = [];
  for (let i = first; i <= last; i++) ticks.push(clean(i * step));
  return { min: ticks[0], max: ticks[ticks.length - 1], ticks, step };
}

/** A log axis from decade to decade; a single decade is widened to three so its line sits mid-chart. */
export function logAxis(values: readonly number[]): Axis {
  const positive = values.filter((v) => v > 0);
  let lo = positive.length > 0 ? Math.floor(Math.log10(Math.min(...positive))) : -3;
  let hi = positive.length > 0 ? Math.ceil(Math.log10(Math.max(...positive))) : 0;
  if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  const ticks: number[] = [];
  for (let e = lo; e <= hi; e++) ticks.push(clean(10 ** e));
  return { min: ticks[0], max: ticks[ticks.length - 1], ticks, step: 10 };
}

/** Tick label with as many decimals as the step needs. */
export function formatTick(v: number, axis: Axis, o: { percent?: boolean; log?: boolean } = {}): string {
  if (o.log) return v.toExponential(0);
  const scale = o.percent ? 100 : 1;
  const decimals = Math.max(0, Math.ceil(-Math.log10(axis.step * scale) - 1e-9));
  return `${(v * scale).toFixed(decimals)}${o.percent ? '%' : ''}`;
}

/** The runs of consecutive drawable points (finite, and positive on a log axis). */
export function segments(points: readonly Point[], logY: boolean): Point[][] {
  const runs: Point[][] = [];
  let current: Point[] = [];
  for (const p of points) {
    const ok = p.y !== null && Number.isFinite(p.y) && Number.isFinite(p.x) && (!logY || p.y > 0);
    if (ok) current.push(p);
    else if (current.length > 0) {
      runs.push(current);
      current = [];
    }
  }
  if (current.length > 0) runs.push(current);
  return runs;
}

const MARGIN = { left: 64, right: 16, top: 44, bottom: 46 };

/** One chart as an SVG group inside `box`: axes, grid, ticks, a line and markers per series, legend. */
export function lineChart(spec: ChartSpec, box: Box): string {
  const logY = spec.yScale === 'log';
  const drawn = spec.series.map((s) => ({ ...s, runs: segments(s.points, logY) })).filter((s) => s.runs.length > 0);
  const xs = drawn.flatMap((s) => s.runs.flat().map((p) => p.x));
  const ys = drawn.flatMap((s) => s.runs.flat().map((p) => p.y as number));
  const xAxis = linearAxis(xs, { integer: spec.integerX });
  const yAxis = logY ? logAxis(ys) : linearAxis(ys, { includeZero: spec.includeZero });
  const plot = {
    x: box.x + MARGIN.left,
    y: box.y + MARGIN.top,
    width: box.width - MARGIN.left - MARGIN.right,
    height: box.height - MARGIN.top - MARGIN.bottom,
  };
  const px = (x: number) => plot.x + ((x - xAxis.min) / (xAxis.max - xAxis.min)) * plot.width;
  const fy = (y: number) =>
    logY
      ? (Math.log10(y) - Math.log10(yAxis.min)) / (Math.log10(yAxis.max) - Math.log10(yAxis.min))
      : (y - yAxis.min) / (yAxis.max - yAxis.min);
  const py = (y: number) => plot.y + plot.height - fy(y) * plot.height;

  const out: string[] = [
    `<g class="chart">`,
    svgText(box.x + MARGIN.left, box.y + 20, spec.title, { sizePx: 15, weight: 'bold' }),
  ];
  for (const t of yAxis.ticks) {
    out.push(
      `<line x1="${coord(plot.x)}" y1="${coord(py(t))}" x2="${coord(plot.x + plot.width)}" y2="${coord(py(t))}" stroke="#e3e3e3"/>`,
    );
    out.push(
      svgText(plot.x - 6, py(t) + 4, formatTick(t, yAxis, { percent: spec.percent, log: logY }), {
        sizePx: 11,
        anchor: 'end',
      }),
    );
  }
  for (const t of xAxis.ticks) {
    out.push(
      `<line x1="${coord(px(t))}" y1="${coord(plot.y + plot.height)}" x2="${coord(px(t))}" y2="${coord(plot.y + plot.height + 4)}" stroke="#444"/>`,
    );
    out.push(svgText(px(t), plot.y + plot.height + 17, formatTick(t, xAxis), { sizePx: 11, anchor: 'middle' }));
  }
  out.push(
    `<rect x="${coord(plot.x)}" y="${coord(plot.y)}" width="${coord(plot.width)}" height="${coord(plot.height)}" fill="none" stroke="#444"/>`,
  );
  out.push(svgText(plot.x + plot.width / 2, box.y + box.height - 6, spec.xLabel, { sizePx: 12, anchor: 'middle' }));
  out.push(svgText(box.x + 14, plot.y + plot.height / 2, spec.yLabel, { sizePx: 12, anchor: 'middle', rotate: -90 }));
  if (drawn.length === 0)
    out.push(
      svgText(plot.x + plot.width / 2, plot.y + plot.height / 2, 'no data yet', {
        sizePx: 13,
        anchor: 'middle',
        fill: '#888',
      }),
    );
  for (const s of drawn) {
    for (const run of s.runs) {
      // A one-point run has no line; its marker below still shows the value.
      if (run.length > 1)
        out.push(
          `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${run.map((p) => `${coord(px(p.x))},${coord(py(p.y as number))}`).join(' ')}"/>`,
        );
      for (const p of run)
        out.push(`<circle cx="${coord(px(p.x))}" cy="${coord(py(p.y as number))}" r="2.5" fill="${s.color}"/>`);
    }
  }
  drawn.forEach((s, i) => {
    const lx = plot.x + plot.width - 90 * (drawn.length - i);
    out.push(
      `<line x1="${coord(lx)}" y1="${coord(box.y + 32)}" x2="${coord(lx + 18)}" y2="${coord(box.y + 32)}" stroke="${s.color}" stroke-width="2"/>`,
    );
    out.push(svgText(lx + 22, box.y + 36, s.name, { sizePx: 11 }));
  });
  out.push('</g>');
  return out.join('\n');
}

const TRAIN_COLOR = '#1f77b4';
const VAL_COLOR = '#d62728';
const LR_COLOR = '#2ca02c';

/** The four panels of a run, in a 2x2 grid: the spec of each, from the epoch records. */
export function curveSpecs(records: readonly EpochRecord[]): ChartSpec[] {
  const both = (pick: (m: NonNullable<EpochRecord['val']>) => number): Series[] => [
    { name: 'train', color: TRAIN_COLOR, points: records.map((r) => ({ x: r.epoch, y: pick(r.train) })) },
    { name: 'val', color: VAL_COLOR, points: records.map((r) => ({ x: r.epoch, y: r.val ? pick(r.val) : null })) },
  ];
  const common = { xLabel: 'epoch', yScale: 'linear' as const, integerX: true, includeZero: true };
  return [
    { ...common, title: 'Loss', yLabel: 'cross-entropy', series: both((m) => m.loss) },
    { ...common, title: 'Top-1 error', yLabel: 'top-1 error', percent: true, series: both((m) => m.top1Error) },
    { ...common, title: 'Top-5 error', yLabel: 'top-5 error', percent: true, series: both((m) => m.top5Error) },
    {
      ...common,
      includeZero: false,
      yScale: 'log',
      title: 'Learning rate',
      yLabel: 'learning rate',
      series: [{ name: 'lr', color: LR_COLOR, points: records.map((r) => ({ x: r.epoch, y: r.lr })) }],
    },
  ];
}

const PANEL = { width: 520, height: 340 };
const TITLE_PX = 36;

/** The size `curvesSvg` draws at (and its PNG has). */
export const CURVES_SIZE_PX = { width: 2 * PANEL.width, height: TITLE_PX + 2 * PANEL.height };

/** The whole curves image: a title line and the four panels. */
export function curvesSvg(records: readonly EpochRecord[], title: string): string {
  const { width, height } = PANEL;
  const panels = curveSpecs(records).map((spec, i) =>
    lineChart(spec, { x: (i % 2) * width, y: TITLE_PX + Math.floor(i / 2) * height, width, height }),
  );
  return svgDocument(CURVES_SIZE_PX.width, CURVES_SIZE_PX.height, [
    svgText(16, 24, title, { sizePx: 16, weight: 'bold' }),
    ...panels,
  ]);
}
