// --overlap's buckets in one process: how parameters are grouped (from the last one back), the
// order buckets start in, a parameter that never got a gradient, and a parameter used twice.
import * as tf from '@tensorflow/tfjs';
import t from 'tap';
import { FusionBuffer } from '../../../src/train/sync/fusion-buffer';
import { OverlappedReduce, planBuckets } from '../../../src/train/sync/overlap';
import { memoryCollectives } from '../../helpers/memory-collective';

t.test('planBuckets: consecutive parameters from the last back, each at least the bucket size', async (t) => {
  t.same(
    planBuckets([10, 10, 10, 10], 80),
    [
      [3, 2],
      [1, 0],
    ],
    '2 x 40 bytes per bucket',
  );
  t.same(
    planBuckets([100, 1, 1, 1], 8),
    [
      [3, 2],
      [1, 0],
    ],
    'the big first parameter closes the last bucket',
  );
  t.same(planBuckets([1, 1, 100], 8), [[2], [1, 0]], 'a remainder smaller than a bucket still goes');
  t.same(planBuckets([5, 5], 1e9), [[1, 0]], 'one bucket for everything');
  t.same(planBuckets([], 8), []);
  const sizes = [7, 3, 9, 2, 11, 4];
  const all = planBuckets(sizes, 20).flat();
  t.same(
    [...all].sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5],
    'every parameter in exactly one bucket',
  );
});

t.test('buckets start in order as backward finishes their parameters; the sums are right', async (t) => {
  const shapes = [[4], [4], [4], [4]];
  const [a, b] = memoryCollectives(2);
  const fa = new FusionBuffer(shapes);
  const fb = new FusionBuffer(shapes);
  const oa = new OverlappedReduce(fa, a, 32); // two parameters (32 bytes) a bucket
  const ob = new OverlappedReduce(fb, b, 32);
  t.equal(oa.bucketCount, 2);
  const grads = (offset: number) => shapes.map((s, i) => tf.fill(s, offset + i));
  for (const [o, offset] of [
    [oa, 1],
    [ob, 10],
  ] as const) {
    const hook = o.begin();
    // What the forward pass does with each parameter; backward then runs from the last one.
    const vars = grads(0).map((g) => tf.variable(g));
    const { grads: got } = tf.variableGrads(
      () => tf.addN(vars.map((v, i) => tf.sum(tf.mul(hook(i, v), tf.fill([4], offset + i))))) as tf.Scalar,
      vars,
    );
    o.finish();
    tf.dispose([...vars, ...Object.values(got)]);
  }
  t.same(
    a.calls.map((c) => c.length),
    [8, 8],
    'bucket [3, 2] first, then [1, 0]',
  );
  await Promise.all([oa.settle(), ob.settle()]);
  t.same(Array.from(fa.params), [11, 11, 11, 11, 13, 13, 13, 13, 15, 15, 15, 15, 17, 17, 17, 17]);
  t.same(Array.from(fb.params), Array.from(fa.params), 'both ranks hold the same sums');
});

t.test('a parameter without a gradient counts as zero; one used twice is refused', async (t) => {
  const [c] = memoryCollectives(1);
  const f = new FusionBuffer([[2], [2]]);
  f.data.fill(9);
  const o = new OverlappedReduce(f, c, 1);
  o.begin();
  o.finish();
  t.same(Array.from(f.params), [0, 0, 0, 0], 'never arrived: zero, and its bucket still starts');
  t.equal(c.calls.length, 2);
  const hook = o.begin();
  const v = tf.variable(tf.ones([2]));
  t.throws(
    () => tf.variableGrads(() => tf.sum(tf.add(hook(0, v), hook(0, v))) as tf.Scalar, [v]),
    /parameter 0 is used twice/,
  );
  v.dispose();
});
