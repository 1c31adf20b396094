/**
 * A run never writes into a directory that already holds files (another run's checkpoints,
 * metrics.jsonl, models, or anything of the user's) unless it continues that run with
 * --resume, or the user says --force.
 */
import * as path from 'node:path';
import { ConfigError } from '../../core/errors';
import { isNonEmptyDir } from '../../data/commands/owned';

/** True when `resume` (a run directory or a checkpoint file in one) is `runDir` or inside it. */
function resumesInto(runDir: string, resume: string | null): boolean {
  if (resume === null) return false;
  const rel = path.relative(path.resolve(runDir), path.resolve(resume));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel) && !rel.includes(path.sep));
}

export function assertFreshRunDir(runDir: string, resume: string | null, force: boolean): void {
  if (force || resumesInto(runDir, resume) || !isNonEmptyDir(runDir)) return;
  throw new ConfigError(
    `--run-dir ${runDir} already holds files: choose a new --run-dir, continue that run with --resume ${runDir}, or pass --force to write into it`,
  );
}
