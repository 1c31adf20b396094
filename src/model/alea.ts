/**
 * Baagøe's Alea generator as the npm `seedrandom` package's `alea` builds it, which tfjs's
 * randomNormal and randomUniform draw from: its state as plain numbers, so that a hot loop keeps
 * it in locals instead of calling through seedrandom's closures for every value
 * (normal-init.ts's weights, the dropout masks of alexnet.ts). test/model/normal-init.test.ts and
 * test/model/alexnet.test.ts hold both to tfjs's own draws, bit for bit.
 */

/** 2^-32: Alea's uniforms are 32-bit fractions. */
export const FRACTION = 2.3283064365386963e-10;

/** Alea's state: three fractions and a carry. */
export interface AleaState {
  s0: number;
  s1: number;
  s2: number;
  c: number;
}

/**
 * Baagøe's Mash hash, as Alea seeds itself with it: one running value over every string hashed,
 * each result a fraction in [0, 1).
 */
function mash(): (text: string) => number {
  let n = 0xefc8249d;
  return (text) => {
    for (let i = 0; i < text.length; i++) {
      n += text.charCodeAt(i);
      let h = 0.02519603282416938 * n;
      n = h >>> 0;
      h -= n;
      h *= n;
      n = h >>> 0;
      h -= n;
      n += h * 0x100000000;
    }
    return (n >>> 0) * FRACTION;
  };
}

/** Alea's initial state for a seed string (Baagøe's seeding: three blanks, then the seed thrice). */
export function aleaSeed(seed: string): AleaState {
  const hash = mash();
  const blanks = [hash(' '), hash(' '), hash(' ')];
  const [s0, s1, s2] = blanks.map((blank) => {
    const s = blank - hash(seed);
    return s < 0 ? s + 1 : s;
  });
  return { s0, s1, s2, c: 1 };
}

/**
 * `count` uniforms in [0, 1) into `out` from `offset`: what tf.randomUniform([count], 0, 1,
 * 'float32', seed) draws for a string seed (0 + 1 * each of Alea's doubles, rounded to float).
 */
export function uniformInto(out: Float32Array, offset: number, count: number, seed: string): void {
  let { s0, s1, s2, c } = aleaSeed(seed);
  for (let i = 0; i < count; i++) {
    const t = 2091639 * s0 + c * FRACTION;
    s0 = s1;
    s1 = s2;
    s2 = t - (c = t | 0);
    out[offset + i] = s2;
  }
}
