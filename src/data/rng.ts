/**
 * Small seeded PRNG for the data pipeline. Every random decision (shuffle, crop, flip, PCA
 * lighting) gets its own generator whose state is derived from integers such as
 * (seed, epoch, sampleIndex), so the outcome does not depend on the rank count, the prefetch
 * depth or the order in which decodes finish.
 */

/** murmur3's 32-bit finaliser: a cheap bijective mix with good avalanche. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Low and high 32-bit words of a non-negative safe integer (seeds may exceed 2^32). */
function words(n: number): [number, number] {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new RangeError(`seed words must be non-negative safe integers, got ${n}`);
  return [n >>> 0, Math.floor(n / 0x100000000) >>> 0];
}

/** Hash a tuple of non-negative integers to one 32-bit state. Order matters: (1, 2) != (2, 1). */
export function hashInts(...values: number[]): number {
  let h = 0x9e3779b9;
  for (const v of values) {
    for (const w of words(v)) h = fmix32((h ^ w) + 0x9e3779b9 + (h << 6) + (h >>> 2));
  }
  return h;
}

/** Tags that keep the streams of different purposes apart for the same (seed, epoch). */
export const RngStream = { shuffle: 1, augment: 2, split: 3, subset: 4 } as const;

export interface Rng {
  /** Uniform integer in [0, 2^32). */
  nextU32(): number;
  /** Uniform float in [0, 1). */
  nextFloat(): number;
  /** Uniform integer in [0, n): n < 2^32; the bias of the multiply method is below n / 2^32. */
  nextInt(n: number): number;
  /** Standard normal N(0, 1) by Box-Muller (one value per call; the sine partner is dropped so the stream stays simple to reason about). */
  nextNormal(): number;
}

/** mulberry32: 32-bit state, period 2^32, passes gjrand/PractRand far beyond what crops need. */
export function mulberry32(state: number): Rng {
  let s = state >>> 0;
  const nextU32 = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const nextFloat = (): number => nextU32() / 0x100000000;
  return {
    nextU32,
    nextFloat,
    nextInt: (n: number) => Math.floor(nextFloat() * n),
    nextNormal: () => {
      const u1 = 1 - nextFloat(); // (0, 1]: log(0) would be -Infinity
      const u2 = nextFloat();
      return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    },
  };
}

/** A generator for one purpose and one tuple of integers, e.g. rngFor(RngStream.augment, seed, epoch, index). */
export function rngFor(stream: number, ...values: number[]): Rng {
  return mulberry32(hashInts(stream, ...values));
}

/** A seeded random subset of at most `max` items, kept in their original order (all when max is unset or larger). */
export function seededSubset<T>(items: readonly T[], max: number | undefined, seed: number): T[] {
  if (max === undefined || max <= 0 || max >= items.length) return [...items];
  const order = permutation(items.length, rngFor(RngStream.subset, seed));
  return Array.from(order.subarray(0, max))
    .sort((x, y) => x - y)
    .map((i) => items[i]);
}

/** Fisher-Yates permutation of 0..n-1. */
export function permutation(n: number, rng: Rng): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const tmp = p[i];
    p[i] = p[j];
    p[j] = tmp;
  }
  return p;
}
