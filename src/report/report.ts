/**
 * The run report: `curves.svg`, `curves.png` and `report.md` in the run directory, rebuilt from
 * what the run already writes (metrics.jsonl and the checkpoint's config), so `alexnet report`
 * can redraw any run, finished, stopped or still training.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TrainConfig } from '../core/config';
import { writeAtomic } from '../core/atomic-write';
import { ConfigError } from '../core/errors';
import type { Logger } from '../core/log';
import { formatPercent as pct, formatTable } from '../core/text-format';
import {
  BEST_CHECKPOINT,
  LAST_CHECKPOINT,
  readCheckpointSummary,
  type CheckpointSummary,
} from '../train/run/checkpoint';
import type { MetricSummary } from '../train/metrics';
import { METRICS_FILE, parseMetricsJsonl, type EpochRecord, type RunMetrics } from '../train/run/run-log';
import { curvesSvg } from './charts';
import { writeSvgAndPng } from './svg';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const fixed = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');

/** Nested config objects become dotted keys, one table row each. */
export function flattenConfig(value: unknown, prefix = ''): [string, string][] {
  if (!isObject(value)) return [[prefix, value === null ? '-' : String(value)]];
  return Object.entries(value).flatMap(([k, v]) => flattenConfig(v, prefix ? `${prefix}.${k}` : k));
}

/** The count and the names (labels in order; the first 20 at 1000 classes). */
function classesText(classes: readonly string[]): string {
  return `${classes.length}: ${classes.slice(0, 20).join(', ')}${classes.length > 20 ? ', ...' : ''}`;
}

function finalTable(m: RunMetrics): string {
  const rows: (string | number)[][] = [];
  const add = (name: string, s: MetricSummary) =>
    rows.push([name, fixed(s.loss, 4), pct(s.top1Error), pct(s.top5Error), s.count]);
  const last = m.epochs[m.epochs.length - 1];
  if (last) add(`train (epoch ${last.epoch})`, last.train);
  if (last?.val) add(`val (epoch ${last.epoch})`, last.val);
  const best = m.epochs
    .filter((e) => e.val && Number.isFinite(e.val.top1Error))
    .sort((a, b) => (a.val?.top1Error ?? 0) - (b.val?.top1Error ?? 0))[0];
  if (best?.val && best !== last) add(`best val (epoch ${best.epoch})`, best.val);
  if (m.test) add(`test (${m.test.tta === 10 ? '10 patches' : 'centre crop'})`, m.test.test);
  return formatTable(['', 'loss', 'top-1 error', 'top-5 error', 'images'], rows, [
    'left',
    'right',
    'right',
    'right',
    'right',
  ]);
}

function epochTable(epochs: readonly EpochRecord[]): string {
  const rows = epochs.map((e) => [
    e.epoch,
    e.lr.toPrecision(3),
    fixed(e.train.loss, 4),
    pct(e.train.top1Error),
    e.val ? fixed(e.val.loss, 4) : 'n/a',
    pct(e.val?.top1Error ?? NaN),
    pct(e.val?.top5Error ?? NaN),
    fixed(e.imagesPerSec, 1),
    fixed(e.epochMs / 1000, 1),
    e.skippedImages,
  ]);
  const headers = [
    'epoch',
    'lr',
    'train loss',
    'train top-1',
    'val loss',
    'val top-1',
    'val top-5',
    'img/s',
    'time (s)',
    'skipped',
  ];
  return formatTable(headers, rows, [
    'right',
    'right',
    'right',
    'right',
    'right',
    'right',
    'right',
    'right',
    'right',
    'right',
  ]);
}

export function reportMarkdown(runName: string, m: RunMetrics, ckpt: CheckpointSummary | null): string {
  const planned = ckpt ? ` of ${ckpt.config.epochs}` : '';
  const parts = [
    `# Run report: ${runName}`,
    '',
    `${m.epochs.length}${planned} epochs recorded${m.test ? ', test evaluated' : ''}.` +
      (m.badLines > 0 ? ` ${m.badLines} unreadable line(s) in ${METRICS_FILE} were skipped.` : ''),
    '',
    '![training curves](curves.png)',
    '',
    '## Final metrics',
    '',
    m.epochs.length > 0 || m.test ? finalTable(m) : 'No epoch has finished yet.',
    '',
    '## Per epoch',
    '',
    epochTable(m.epochs),
    '',
    '## Config',
    '',
    ckpt
      ? formatTable(['setting', 'value'], [['classes', classesText(ckpt.classes)], ...flattenConfig(ckpt.config)])
      : `No checkpoint (${LAST_CHECKPOINT}) in the run directory yet.`,
    '',
  ];
  return parts.join('\n');
}

function chartTitle(runName: string, config: TrainConfig | undefined): string {
  return config
    ? `${runName}: preset ${config.preset}, ${config.optimizer}, batch ${config.batchSize}, lr ${config.lr}`
    : runName;
}

/** The run's config from its last (else best) checkpoint header, or null before the first save. */
function runCheckpoint(runDir: string): CheckpointSummary | null {
  for (const name of [LAST_CHECKPOINT, BEST_CHECKPOINT]) {
    const file = path.join(runDir, name);
    if (fs.existsSync(file)) return readCheckpointSummary(file);
  }
  return null;
}

export interface RunReportFiles {
  curvesSvg: string;
  curvesPng: string;
  markdown: string;
}

export async function writeRunReport(runDir: string): Promise<RunReportFiles> {
  const metricsFile = path.join(runDir, METRICS_FILE);
  if (!fs.existsSync(metricsFile))
    throw new ConfigError(`${runDir} has no ${METRICS_FILE}: not a run directory, or no epoch has finished yet`);
  const metrics = parseMetricsJsonl(fs.readFileSync(metricsFile, 'utf8'));
  const ckpt = runCheckpoint(runDir);
  const runName = path.basename(path.resolve(runDir));
  const files: RunReportFiles = {
    curvesSvg: path.join(runDir, 'curves.svg'),
    curvesPng: path.join(runDir, 'curves.png'),
    markdown: path.join(runDir, 'report.md'),
  };
  await writeSvgAndPng(curvesSvg(metrics.epochs, chartTitle(runName, ckpt?.config)), files.curvesSvg, files.curvesPng);
  writeAtomic(files.markdown, reportMarkdown(runName, metrics, ckpt));
  return files;
}

/** For the training loop: a report that cannot be drawn is a warning, never the end of a run. */
export async function writeRunReportSafely(runDir: string, log: Logger): Promise<void> {
  try {
    await writeRunReport(runDir);
  } catch (err) {
    log.warn(`could not write the run report in ${runDir}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
