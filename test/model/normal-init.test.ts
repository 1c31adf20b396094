// normal-init.ts against tf.randomNormal itself: the same floats, bit for bit, for several seeds,
// sizes (odd ones end on the first of a pair) and scales; and createAlexNet's weights are what
// tf.randomNormal would have drawn for them.
import t from 'tap';
import * as tf from '@tensorflow/tfjs';
import { normalArray } from '../../src/model/normal-init';
import { aleaSeed } from '../../src/model/alea';
import { createAlexNet, disposeModel, tfSeed } from '../../src/model/alexnet';
import { PRESETS } from '../../src/model/presets';

/** The first index where two arrays differ (their bits: NaN would differ from itself), or -1. */
function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  const [x, y] = [new Uint32Array(a.buffer, a.byteOffset, a.length), new Uint32Array(b.buffer, b.byteOffset, b.length)];
  return x.findIndex((bits, i) => bits !== y[i]);
}

t.before(async () => {
  await tf.setBackend('cpu');
});

t.test("the same floats as tf.randomNormal's", async (t) => {
  const cases: [number, number, number, number][] = [
    // count, mean, std, seed
    [1, 0, 1, 1],
    [2, 0, 1, 1],
    [1001, 0, 0.01, 2],
    [100_000, 0, 1, 7],
    [33_333, 0.5, 3, 12345],
    [5, -2, 0.25, 0.5],
  ];
  for (const [count, mean, std, seed] of cases) {
    const ours = normalArray(count, mean, std, seed);
    const theirs = tf.tidy(() => tf.randomNormal([count], mean, std, 'float32', seed).dataSync() as Float32Array);
    t.equal(firstDifference(ours, theirs), -1, `${count} values, N(${mean}, ${std}^2), seed ${seed}: identical`);
  }
  t.equal(normalArray(0, 0, 1, 3).length, 0, 'no values');
  t.throws(() => normalArray(4, 0, 1, 0), RangeError, 'seed 0 is refused: tfjs draws from Math.random for it');
  t.throws(() => normalArray(4, 0, 1, NaN), RangeError, 'and so is NaN');
});

t.test('the values are normal, and seeds differ', async (t) => {
  const values = normalArray(200_000, 1, 2, 9);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length;
  t.ok(Math.abs(mean - 1) < 0.02, `mean ${mean.toFixed(4)} ~ 1`);
  t.ok(Math.abs(Math.sqrt(variance) - 2) < 0.02, `std ${Math.sqrt(variance).toFixed(4)} ~ 2`);
  t.not(firstDifference(normalArray(10, 0, 1, 9), normalArray(10, 0, 1, 10)), -1, 'another seed, other values');
  const state = aleaSeed('1');
  t.ok(
    [state.s0, state.s1, state.s2].every((s) => s >= 0 && s < 1) && state.c === 1,
    'the seeded state: fractions in [0, 1) and a carry of 1',
  );
});

t.test("createAlexNet's weights are tf.randomNormal's", async (t) => {
  const model = createAlexNet(PRESETS.small, 10, 3);
  const weights = model.params.filter((p) => p.kind === 'weight');
  weights.forEach((p, i) => {
    const fanIn = p.shape.slice(0, -1).reduce((a, b) => a * b, 1);
    const std = PRESETS.small.weightInitStd === 'he' ? Math.sqrt(2 / fanIn) : PRESETS.small.weightInitStd;
    const expected = tf.tidy(
      () => tf.randomNormal(p.shape, 0, std, 'float32', tfSeed(3 + i)).dataSync() as Float32Array,
    );
    t.equal(firstDifference(p.variable.dataSync() as Float32Array, expected), -1, `${p.name}: identical`);
  });
  disposeModel(model);
});
