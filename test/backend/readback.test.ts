// The readback helpers on a synchronous backend (cpu) and their grouping: what webgpu reads in
// one go must fit one binding. The webgpu side runs in webgpu/training.ts.
import t from 'tap';
import * as tf from '@tensorflow/tfjs';
import { bindingGroups, readConcatenated, readScalarAnd, readsSync } from '../../src/backend/readback';

t.test('groups never exceed the limit, except a tensor bigger than it, alone', async (t) => {
  const sizes = (xs: { size: number }[][]) => xs.map((g) => g.map((x) => x.size));
  const ts = [5, 3, 9, 2, 2, 1].map((size) => ({ size }));
  t.same(sizes(bindingGroups(ts, 8)), [[5, 3], [9], [2, 2, 1]]);
  t.same(sizes(bindingGroups(ts, Infinity)), [[5, 3, 9, 2, 2, 1]]);
  t.same(sizes(bindingGroups(ts, 1)), [[5], [3], [9], [2], [2], [1]]);
  t.same(bindingGroups([], 4), []);
});

t.test('cpu: reads are synchronous, concatenated in order', async (t) => {
  await tf.setBackend('cpu');
  t.ok(readsSync());
  const a = tf.tensor2d([
    [1, 2],
    [3, 4],
  ]);
  const b = tf.tensor1d([5, 6, 7]);
  t.same(Array.from(await readConcatenated([a, b])), [1, 2, 3, 4, 5, 6, 7]);
  const both = await readScalarAnd(tf.scalar(9), a);
  t.equal(both.scalar, 9);
  t.same(Array.from(both.values), [1, 2, 3, 4]);
  tf.dispose([a, b]);
});
