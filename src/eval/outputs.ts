/**
 * What `alexnet eval` leaves behind besides its summary line: the confusion matrix and the
 * per-class accuracy as CSV (for spreadsheets and pandas), the matrix as a heat map, and the
 * per-class table it prints.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatPercent as pct, formatTable } from '../core/text-format';
import { confusionHeatmap } from './heatmap';
import { writeSvgAndPng } from '../report/svg';
import { writeAtomic } from '../core/atomic-write';
import { EVAL_FILE_NAMES } from './file-names';
import { confusionCount, perClassAccuracy, type ClassAccuracy, type ConfusionMatrix } from './confusion';

/** RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled. */
export function csvField(value: string | number): string {
  const text = typeof value === 'number' ? (Number.isNaN(value) ? '' : String(value)) : value;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function csvLines(rows: readonly (readonly (string | number)[])[]): string {
  return `${rows.map((r) => r.map(csvField).join(',')).join('\n')}\n`;
}

/** Column only present when some image had no finite score, so the rows still sum to the images evaluated. */
const UNSCORED_COLUMN = '(no score)';

/** Header row: the corner cell, then the predicted classes; each row starts with its true class. */
export function confusionCsv(m: ConfusionMatrix, classNames: readonly string[]): string {
  const withUnscored = m.unscored.some((u) => u > 0);
  const header = ['true \\ predicted', ...classNames, ...(withUnscored ? [UNSCORED_COLUMN] : [])];
  const rows = classNames.map((name, i) => [
    name,
    ...classNames.map((_, j) => confusionCount(m, i, j)),
    ...(withUnscored ? [m.unscored[i]] : []),
  ]);
  return csvLines([header, ...rows]);
}

const round6 = (x: number): number => Math.round(x * 1e6) / 1e6;

export function perClassCsv(perClass: readonly ClassAccuracy[], classNames: readonly string[]): string {
  const header = ['class', 'images', 'correct', 'accuracy', 'predicted', 'precision', 'most_confused_with'];
  const rows = perClass.map((c, i) => [
    classNames[i],
    c.images,
    c.correct,
    round6(c.accuracy),
    c.predicted,
    round6(c.precision),
    c.mostConfusedWith < 0 ? '' : classNames[c.mostConfusedWith],
  ]);
  return csvLines([header, ...rows]);
}

export function perClassTable(perClass: readonly ClassAccuracy[], classNames: readonly string[]): string {
  const rows = perClass.map((c, i) => [
    classNames[i],
    c.images,
    c.correct,
    pct(c.accuracy),
    pct(c.precision),
    c.mostConfusedWith < 0 ? '-' : classNames[c.mostConfusedWith],
  ]);
  return formatTable(['class', 'images', 'correct', 'accuracy', 'precision', 'most confused with'], rows, [
    'left',
    'right',
    'right',
    'right',
    'right',
    'left',
  ]);
}

export interface EvalFiles {
  confusionCsv: string;
  perClassCsv: string;
  heatmapSvg: string;
  heatmapPng: string;
}

/** Writes the CSVs and the heat map into `dir` (created), each file atomically. */
export async function writeEvalOutputs(
  dir: string,
  m: ConfusionMatrix,
  classNames: readonly string[],
  title: string,
): Promise<EvalFiles> {
  fs.mkdirSync(dir, { recursive: true });
  const [confusionCsvFile, perClassCsvFile, heatmapSvg, heatmapPng] = EVAL_FILE_NAMES.map((n) => path.join(dir, n));
  const files: EvalFiles = { confusionCsv: confusionCsvFile, perClassCsv: perClassCsvFile, heatmapSvg, heatmapPng };
  writeAtomic(files.confusionCsv, confusionCsv(m, classNames));
  writeAtomic(files.perClassCsv, perClassCsv(perClassAccuracy(m), classNames));
  await writeSvgAndPng(confusionHeatmap(m, classNames, title).svg, files.heatmapSvg, files.heatmapPng);
  return files;
}
