/**
 * Seeded, stratified train/val/test split. Held-out totals are exact (a requested 10,000 test
 * images gives 10,000), shared out over the classes in proportion to their size by largest
 * remainders, so every class keeps its share within one image.
 */
import { ConfigError } from '../../core/errors';
import { SplitName } from '../index/dataset';
import { permutation, rngFor, RngStream } from '../rng';

export interface SplitSpec {
  /** Fraction of all samples in [0, 1), or an absolute count when >= 1. */
  val: number;
  test: number;
}

/** A fraction (< 1) of `total`, or a count (>= 1, integer). */
export function resolveCount(amount: number, total: number, what: string): number {
  if (!(amount >= 0) || (amount >= 1 && !Number.isInteger(amount))) {
    throw new ConfigError(`${what} must be a fraction in [0, 1) or a whole count, got ${amount}`);
  }
  return amount < 1 ? Math.round(amount * total) : amount;
}

/**
 * Share `total` out in proportion to `weights` without any share exceeding its cap
 * (Hamilton's method, ties to the lower index so the result is deterministic).
 */
export function apportion(total: number, weights: readonly number[], caps: readonly number[]): number[] {
  const capSum = caps.reduce((a, b) => a + b, 0);
  if (total > capSum) throw new ConfigError(`cannot take ${total} samples from ${capSum}`);
  const weightSum = weights.reduce((a, b) => a + b, 0);
  const quotas = weights.map((w) => (weightSum > 0 ? (total * w) / weightSum : 0));
  const shares = quotas.map((q, i) => Math.min(Math.floor(q), caps[i]));
  let left = total - shares.reduce((a, b) => a + b, 0);
  const byRemainder = quotas
    .map((_, i) => i)
    .sort((i, j) => quotas[j] - Math.floor(quotas[j]) - (quotas[i] - Math.floor(quotas[i])) || i - j);
  while (left > 0) {
    for (const i of byRemainder) {
      if (left === 0) break;
      if (shares[i] < caps[i]) {
        shares[i] += 1;
        left -= 1;
      }
    }
  }
  return shares;
}

/**
 * Assign each item (given by its label) to a split. Within a class, a seeded shuffle decides
 * which items are held out: test first, then val, the rest train.
 */
export function stratifiedSplit(labels: readonly number[], spec: SplitSpec, seed: number): SplitName[] {
  const n = labels.length;
  const testTotal = resolveCount(spec.test, n, 'test');
  const valTotal = resolveCount(spec.val, n, 'val');
  if (testTotal + valTotal > n) throw new ConfigError(`val ${valTotal} + test ${testTotal} exceed the ${n} samples`);
  const byClass = new Map<number, number[]>();
  labels.forEach((label, i) => {
    const list = byClass.get(label);
    if (list) list.push(i);
    else byClass.set(label, [i]);
  });
  const classes = [...byClass.keys()].sort((a, b) => a - b);
  const sizes = classes.map((c) => (byClass.get(c) as number[]).length);
  const testShares = apportion(testTotal, sizes, sizes);
  const valShares = apportion(
    valTotal,
    sizes,
    sizes.map((s, k) => s - testShares[k]),
  );
  const out = new Array<SplitName>(n).fill('train');
  classes.forEach((c, k) => {
    const items = byClass.get(c) as number[];
    const order = permutation(items.length, rngFor(RngStream.split, seed, c));
    order.forEach((pos, rank) => {
      if (rank < testShares[k]) out[items[pos]] = 'test';
      else if (rank < testShares[k] + valShares[k]) out[items[pos]] = 'val';
    });
  });
  return out;
}
