/**
 * `data prepare`: write a resized copy of a dataset once, so every epoch decodes small files.
 * Each image is stored as exactly the square the loader would make (shorter side `sizePx`,
 * centre crop, sRGB, alpha flattened, EXIF applied), so training on the copy at the same
 * resize size gives the same pixels up to the re-encoding loss. The copy keeps the relative
 * layout of the source; bad files are left out and reported, so the copy is clean.
 */
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { DataError } from '../../core/errors';
import { openDataset, type OpenOptions, Sample, SPLIT_NAMES, SplitName } from '../index/dataset';
import { isNonEmptyDir, recordWritten, WRITTEN_RECORD } from './owned';
import { DecodeOptions, decodeFile } from '../decode/decode';
import { isFile } from '../index/scan';
import { writeListFiles, SplitSamples } from './organize';
import { DEFAULT_DECODE_CONCURRENCY, mapLimit } from '../pool';

export type PreparedFormat = 'jpeg' | 'png' | 'webp';

export interface PrepareOptions extends DecodeOptions {
  format?: PreparedFormat;
  /** JPEG/WebP quality, 1-100. Default 90. */
  quality?: number;
  /** Re-encode files that already exist in the destination. Default false: resume where a previous run stopped. */
  overwrite?: boolean;
  /** Write into a non-empty destination that `prepare` did not make. */
  force?: boolean;
  /** How to read the source (--layout, --classes). */
  open?: OpenOptions;
  concurrency?: number;
  onSkip?: (path: string, reason: string) => void;
  onProgress?: (done: number, total: number) => void;
}

export interface PrepareResult {
  written: number;
  reused: number;
  skipped: { path: string; reason: string }[];
}

/**
 * Destination of one sample: the same path relative to the dataset root, with the new
 * extension; a listed file outside the root goes to <dst>/external/<split>/<index>_<name>.
 */
export function preparedPath(
  srcRoot: string,
  dstRoot: string,
  sample: Sample,
  split: SplitName,
  index: number,
  ext: string,
): string {
  const rel = path.relative(srcRoot, sample.path);
  const inside = !rel.startsWith('..') && !path.isAbsolute(rel);
  const base = inside ? rel : path.join('external', split, `${index}_${path.basename(sample.path)}`);
  return path.join(dstRoot, base.slice(0, base.length - path.extname(base).length) + ext);
}

function encoder(
  pixels: Uint8Array,
  sizePx: number,
  format: PreparedFormat,
  quality: number,
): ReturnType<typeof sharp> {
  const img = sharp(pixels, { raw: { width: sizePx, height: sizePx, channels: 3 } });
  if (format === 'png') return img.png();
  if (format === 'webp') return img.webp({ quality });
  return img.jpeg({ quality });
}

/** Decode + re-encode one file into `dst` (via a temporary name). Returns a failure reason or null. */
async function prepareOne(src: string, dst: string, opts: PrepareOptions): Promise<string | null> {
  const r = await decodeFile(src, opts);
  if (!r.ok) return r.reason;
  await fsp.mkdir(path.dirname(dst), { recursive: true });
  const tmp = `${dst}.${process.pid}.tmp`;
  await encoder(r.pixels, opts.sizePx, opts.format ?? 'jpeg', opts.quality ?? 90).toFile(tmp);
  await fsp.rename(tmp, dst);
  return null;
}

/** Resized copy of the dataset at `srcRoot` into `dstRoot`, in the same layout. */
export async function prepareDataset(srcRoot: string, dstRoot: string, opts: PrepareOptions): Promise<PrepareResult> {
  const ds = await openDataset(srcRoot, opts.open);
  const dst = path.resolve(dstRoot);
  if (dst === ds.root) throw new DataError('prepare needs a destination different from the source');
  // A destination alexnet made (it has the record) is resumed; anything else is someone's folder.
  if (!opts.force && isNonEmptyDir(dst) && !existsSync(path.join(dst, WRITTEN_RECORD))) {
    throw new DataError(
      `${dst} already holds files that data prepare did not write: choose a new or empty destination, or pass --force to write into it`,
    );
  }
  await fsp.mkdir(dst, { recursive: true });
  recordWritten(dst, []);
  const ext = `.${opts.format === 'png' ? 'png' : opts.format === 'webp' ? 'webp' : 'jpg'}`;
  const jobs: { split: SplitName; sample: Sample; out: string }[] = [];
  const taken = new Set<string>();
  for (const split of SPLIT_NAMES) {
    ds.splits[split]?.samples.forEach((sample, i) => {
      let out = preparedPath(ds.root, dst, sample, split, i, ext);
      // a.png and a.jpg in one folder would both become a.jpg: keep the old extension in the name
      if (taken.has(out)) out = `${out.slice(0, -ext.length)}_${path.extname(sample.path).slice(1)}${ext}`;
      taken.add(out);
      jobs.push({ split, sample, out });
    });
  }
  const result: PrepareResult = { written: 0, reused: 0, skipped: [] };
  const ok = new Array<boolean>(jobs.length).fill(false);
  let done = 0;
  await mapLimit(jobs, opts.concurrency ?? DEFAULT_DECODE_CONCURRENCY, async (job, i) => {
    if (!opts.overwrite && (await isFile(job.out))) {
      result.reused += 1;
      ok[i] = true;
    } else {
      const reason = await prepareOne(job.sample.path, job.out, opts);
      if (reason === null) {
        result.written += 1;
        ok[i] = true;
      } else {
        result.skipped.push({ path: job.sample.path, reason });
        opts.onSkip?.(job.sample.path, reason);
      }
    }
    opts.onProgress?.(++done, jobs.length);
  });
  if (ds.source === 'lists') {
    const splits: SplitSamples = {};
    jobs.forEach((job, i) => {
      if (ok[i]) (splits[job.split] ??= []).push({ path: job.out, label: job.sample.label });
    });
    await writeListFiles(dst, splits, ds.classes, opts.force ?? false);
  }
  return result;
}
