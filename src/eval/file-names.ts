/**
 * Where `alexnet eval` writes, by name: a module with no imports, so that readers of a run
 * directory (the dashboard) find the eval outputs without loading what draws them.
 */
import * as path from 'node:path';

export const CONFUSION_CSV = 'confusion.csv';
export const PER_CLASS_CSV = 'per-class.csv';

/** The files writeEvalOutputs writes, by name (no command replaces them unless it wrote them: data/commands/owned.ts). */
export const EVAL_FILE_NAMES: readonly string[] = [CONFUSION_CSV, PER_CLASS_CSV, 'confusion.svg', 'confusion.png'];

/** The folders eval writes into a run directory by default start so. */
export const EVAL_DIR_PREFIX = 'eval-';

/** Where eval's files go by default: beside the checkpoint, one folder per split and TTA. */
export function defaultEvalDir(checkpoint: string, split: string, tta: 1 | 10): string {
  return path.join(path.dirname(checkpoint), `${EVAL_DIR_PREFIX}${split}${tta === 10 ? '-tta10' : ''}`);
}
