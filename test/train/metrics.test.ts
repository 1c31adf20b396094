// Top-k error and (sum, count) metrics, against hand-computed cases.
import t from 'tap';
import { addSums, batchSums, countTopKCorrect, summarize, topKError } from '../../src/train/metrics';

t.test('top-1 and top-5 on a hand-made case', async (t) => {
  // 3 samples x 6 classes
  const logits = Float32Array.from([
    0.1,
    0.9,
    0.3,
    0.2,
    0.0,
    -1, // argmax 1
    5,
    4,
    3,
    2,
    1,
    0, //          label 5 is the lowest: not in top 5
    0,
    0,
    0,
    0,
    0,
    1, //          label 4 ties with 4 others below the max
  ]);
  const labels = Int32Array.from([1, 5, 4]);
  t.equal(countTopKCorrect(logits, labels, 6, 1), 1);
  t.ok(Math.abs(topKError(logits, labels, 6, 1) - 2 / 3) < 1e-12);
  t.equal(countTopKCorrect(logits, labels, 6, 5), 1, 'top-5: sample 1 misses; sample 2 loses its ties');
  t.equal(countTopKCorrect(logits, labels, 6, 6), 3);
});

t.test('NaN logits never count as correct', async (t) => {
  t.equal(countTopKCorrect(Float32Array.from([NaN, NaN, NaN]), Int32Array.from([0]), 3, 1), 0);
});

t.test('sums combine as sums, not averages of averages', async (t) => {
  const a = batchSums(Float32Array.from([1, 0, 0, 1]), Int32Array.from([0, 0]), 2, 3);
  const b = batchSums(Float32Array.from([0, 1, 0, 1, 0, 1, 1, 0]), Int32Array.from([1, 1, 1, 1]), 2, 1);
  const s = summarize(addSums(a, b));
  t.equal(s.count, 6);
  t.equal(s.loss, 4 / 6);
  t.ok(Math.abs(s.top1Error - 2 / 6) < 1e-12);
  t.ok(Number.isNaN(summarize({ lossSum: 0, top1Correct: 0, top5Correct: 0, count: 0 }).loss));
});
