/**
 * Normal initial weights, bit for bit what tf.randomNormal(shape, mean, std, 'float32', seed)
 * draws, in about half its time (docs/measurements.md, "Under 8 minutes"). tfjs draws pairs by
 * Marsaglia's polar method from Baagøe's Alea generator (alea.ts, seeded with the seed's decimal
 * string), each uniform through two closures and each value through a method call; here the
 * generator's state lives in locals of one loop. Same arithmetic in the same order, so the same
 * doubles, rounded to the same floats: test/model/normal-init.test.ts compares them with tfjs's
 * for several seeds and sizes.
 */

import { aleaSeed, FRACTION } from './alea';

/**
 * `count` normal values of the given mean and standard deviation, as tf.randomNormal draws them
 * with the same (truthy) seed.
 */
export function normalArray(count: number, mean: number, std: number, seed: number): Float32Array {
  // tfjs draws from Math.random() for a seed of 0 (or NaN): that is no seed, and nothing to match.
  if (!seed) throw new RangeError(`normalArray: seed ${seed} is no seed in tf.randomNormal`);
  let { s0, s1, s2, c } = aleaSeed(String(seed));
  const out = new Float32Array(count);
  let i = 0;
  while (i < count) {
    let v1: number;
    let v2: number;
    let s: number;
    do {
      // Two of Alea's steps, each a uniform in [0, 1) mapped to [-1, 1). Written out twice on
      // purpose: the state in locals, not behind a call, is the whole speed-up.
      let t = 2091639 * s0 + c * FRACTION;
      s0 = s1;
      s1 = s2;
      s2 = t - (c = t | 0);
      v1 = 2 * s2 - 1;
      t = 2091639 * s0 + c * FRACTION;
      s0 = s1;
      s1 = s2;
      s2 = t - (c = t | 0);
      v2 = 2 * s2 - 1;
      s = v1 * v1 + v2 * v2;
    } while (s >= 1 || s === 0);
    const mul = Math.sqrt((-2.0 * Math.log(s)) / s);
    out[i++] = mean + std * v1 * mul;
    if (i < count) out[i++] = mean + std * v2 * mul;
  }
  return out;
}
