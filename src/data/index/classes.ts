/**
 * Class names the dataset itself suggests (src/core/class-names.ts parses the ones a user gives).
 */
import * as path from 'node:path';

/**
 * Names the image folders suggest for unnamed labels: when every label 0..n-1 has its images
 * in folders of one name, and no two labels share a name (the notebook's signs/train/snake/
 * for label 3). Only ever suggested to the user, never applied: a folder name is a guess.
 */
export function suggestNames(samples: readonly { path: string; label: number }[], classCount: number): string[] | null {
  const byLabel = new Map<number, Set<string>>();
  for (const s of samples) {
    const set = byLabel.get(s.label) ?? new Set<string>();
    set.add(path.basename(path.dirname(s.path)));
    byLabel.set(s.label, set);
  }
  const names: string[] = [];
  for (let label = 0; label < classCount; label++) {
    const set = byLabel.get(label);
    if (set === undefined || set.size !== 1) return null;
    names.push([...set][0]);
  }
  return new Set(names).size === names.length && names.every((n) => !n.includes(',')) ? names : null;
}
