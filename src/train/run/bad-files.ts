/**
 * Each bad file is named once per run, whatever the worker count: every rank decodes only its
 * share of each epoch, so two ranks can meet the same broken file in different epochs. The
 * first rank to meet it claims it with an exclusive create in the run directory (atomic
 * between processes on one host, no message needed); only that rank prints it, and
 * bad-files.tsv in the run directory lists every bad file with its reason.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../../core/log';

export const BAD_FILES = 'bad-files.tsv';
const CLAIMS = '.bad-files';

export class BadFileLog {
  private readonly seen = new Set<string>();

  constructor(
    private readonly runDir: string,
    private readonly log: Logger,
  ) {}

  /** Called by the loaders for every bad file they meet (each loader once per file). */
  report(file: string, reason: string): void {
    if (this.seen.has(file)) return;
    this.seen.add(file);
    if (!this.claim(file)) return;
    this.log.warn(`skipping ${file}: ${reason} (named once; each epoch line counts the skipped images)`);
    fs.appendFileSync(path.join(this.runDir, BAD_FILES), `${file}\t${reason}\n`);
  }

  /** True for the one process that first meets `file` in this run directory. */
  private claim(file: string): boolean {
    const dir = path.join(this.runDir, CLAIMS);
    fs.mkdirSync(dir, { recursive: true });
    try {
      fs.closeSync(fs.openSync(path.join(dir, createHash('sha1').update(file).digest('hex')), 'wx'));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
  }
}
