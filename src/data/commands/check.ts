/**
 * `data check` (decode every file, report the bad ones and the class balance) and the
 * preflight the trainer runs before the first step (a dataset whose images cannot be decoded
 * is a DataError before training starts, not an epoch of empty batches).
 */
import * as path from 'node:path';
import { DataError } from '../../core/errors';
import { classCounts, Dataset, Sample, SPLIT_NAMES, SplitName } from '../index/dataset';
import { DecodeOptions, decodeFile, VAGUE_DECODE_FAILURE } from '../decode/decode';
import { DEFAULT_DECODE_CONCURRENCY, mapLimit } from '../pool';
import { type ListProblem, problemWhere } from '../index/listfile';
import { IgnoredFile } from '../index/scan';
import { formatTable } from '../../core/text-format';

export interface BadFile {
  split: SplitName;
  path: string;
  reason: string;
}

export interface SplitBalance {
  split: SplitName;
  /** Decodable images per class. */
  valid: number[];
  /** Files per class, decodable or not. */
  listed: number[];
}

export interface CheckReport {
  root: string;
  classes: string[];
  bad: BadFile[];
  ignored: IgnoredFile[];
  warnings: string[];
  /** Every problem of the index (list files: file:line), all of them. */
  problems: ListProblem[];
  balance: SplitBalance[];
}

export interface CheckOptions extends Partial<DecodeOptions> {
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Decoding at a small size costs the same decode but little resize: enough to find bad files. */
const CHECK_SIZE_PX = 32;

/** Decode every image of every split. */
export async function checkDataset(ds: Dataset, opts: CheckOptions = {}): Promise<CheckReport> {
  const jobs = SPLIT_NAMES.flatMap((split) => (ds.splits[split]?.samples ?? []).map((sample) => ({ split, sample })));
  const decode: DecodeOptions = { ...opts, sizePx: opts.sizePx ?? CHECK_SIZE_PX };
  let done = 0;
  const reasons = await mapLimit(jobs, opts.concurrency ?? DEFAULT_DECODE_CONCURRENCY, async ({ sample }) => {
    const r = await decodeFile(sample.path, decode);
    opts.onProgress?.(++done, jobs.length);
    return r.ok ? null : r.reason;
  });
  // Second pass, alone: nothing else in flight can clear libvips' error message now.
  for (let i = 0; i < jobs.length; i++) {
    if (reasons[i] !== VAGUE_DECODE_FAILURE) continue;
    const again = await decodeFile(jobs[i].sample.path, decode);
    reasons[i] = again.ok ? null : again.reason;
  }
  const bad: BadFile[] = [];
  reasons.forEach((reason, i) => {
    if (reason !== null) bad.push({ split: jobs[i].split, path: jobs[i].sample.path, reason });
  });
  const badPaths = new Set(bad.map((b) => b.path));
  const balance = SPLIT_NAMES.filter((s) => ds.splits[s]).map((split) => {
    const samples = ds.splits[split]?.samples ?? [];
    return {
      split,
      listed: classCounts(samples, ds.classes.length),
      valid: classCounts(
        samples.filter((s) => !badPaths.has(s.path)),
        ds.classes.length,
      ),
    };
  });
  // A list dataset's ignored files are its missing lines, already among the problems with their line.
  const ignored = ds.source === 'lists' ? [] : ds.ignored;
  return { root: ds.root, classes: ds.classes, bad, ignored, warnings: ds.warnings, problems: ds.problems, balance };
}

/** True when no split has a valid image. */
export function isUnusable(report: CheckReport): boolean {
  return report.balance.every((b) => b.valid.every((n) => n === 0));
}

function balanceTable(report: CheckReport): string {
  const headers = ['label', 'class', ...report.balance.map((b) => b.split), 'train share'];
  const train = report.balance.find((b) => b.split === 'train');
  const trainTotal = train ? train.valid.reduce((a, b) => a + b, 0) : 0;
  const rows = report.classes.map((name, c) => [
    c,
    name,
    ...report.balance.map((b) =>
      b.valid[c] === b.listed[c] ? `${b.valid[c]}` : `${b.valid[c]} (${b.listed[c] - b.valid[c]} bad)`,
    ),
    train && trainTotal > 0 ? `${((100 * train.valid[c]) / trainTotal).toFixed(1)}%` : '-',
  ]);
  const totals = ['', 'total', ...report.balance.map((b) => `${b.valid.reduce((a, n) => a + n, 0)}`), ''];
  return formatTable(
    headers,
    [...rows, totals],
    ['right', 'left', ...report.balance.map((): 'right' => 'right'), 'right'],
  );
}

/** Problems by file (in the order the files were read), then by line: the order to fix them in. */
function inFileOrder(problems: readonly ListProblem[]): ListProblem[] {
  const files = [...new Set(problems.map((p) => p.file))];
  return [...problems].sort((a, b) => files.indexOf(a.file) - files.indexOf(b.file) || (a.line ?? 0) - (b.line ?? 0));
}

/** Human-readable report: bad files, ignored files, warnings, class balance. */
export function formatCheckReport(report: CheckReport, maxRows = 200): string {
  const rel = (p: string): string => path.relative(report.root, p) || p;
  const parts: string[] = [];
  if (report.bad.length > 0) {
    const rows = report.bad.slice(0, maxRows).map((b) => [b.split, rel(b.path), b.reason]);
    parts.push(
      `Bad files (${report.bad.length}; training skips them):`,
      formatTable(['split', 'file', 'reason'], rows),
    );
    if (report.bad.length > maxRows) parts.push(`... and ${report.bad.length - maxRows} more`);
  } else {
    parts.push('Bad files: none.');
  }
  if (report.problems.length > 0) {
    parts.push(
      '',
      `Problems (${report.problems.length}):`,
      ...inFileOrder(report.problems).map((p) => `  ${problemWhere(p)}: ${p.message}`),
    );
  } else {
    parts.push('', 'Problems in the list files or folders: none.');
  }
  if (report.ignored.length > 0) {
    const rows = report.ignored.slice(0, maxRows).map((f) => [rel(f.path), f.reason]);
    parts.push('', `Ignored files (${report.ignored.length}):`, formatTable(['file', 'reason'], rows));
  }
  if (report.warnings.length > 0) parts.push('', 'Warnings:', ...report.warnings.map((w) => `- ${w}`));
  parts.push('', `Class balance (decodable images, ${report.classes.length} classes):`, balanceTable(report));
  return parts.join('\n');
}

export interface PreflightOptions extends DecodeOptions {
  /** Images decoded, evenly spaced over the list. Default 64. */
  probeCount?: number;
  concurrency?: number;
}

/**
 * Decode a few evenly spaced samples; throw DataError when none decodes, naming the first
 * failures. Cheap enough to run before every training run; `data check` is the full scan.
 */
export async function preflight(samples: readonly Sample[], opts: PreflightOptions): Promise<void> {
  if (samples.length === 0) throw new DataError('the split has no samples');
  const n = Math.min(opts.probeCount ?? 64, samples.length);
  const probe = Array.from({ length: n }, (_, k) => samples[Math.floor((k * samples.length) / n)]);
  const results = await mapLimit(probe, opts.concurrency ?? DEFAULT_DECODE_CONCURRENCY, (s) =>
    decodeFile(s.path, opts),
  );
  if (results.some((r) => r.ok)) return;
  const examples = results.slice(0, 3).map((r, k) => `  ${probe[k].path}: ${r.ok ? 'ok' : r.reason}`);
  throw new DataError(
    `none of ${n} probed images could be decoded, e.g.:\n${examples.join('\n')}\nRun \`alexnet data check\` for the full list.`,
  );
}
