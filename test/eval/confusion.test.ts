// Confusion matrix, per-class accuracy and the CSVs, against hand-computed cases.
import t from 'tap';
import {
  addToConfusion,
  argmaxRows,
  confusionCount,
  emptyConfusion,
  perClassAccuracy,
  totalImages,
} from '../../src/eval/confusion';
import { confusionCsv, csvField, perClassCsv, perClassTable } from '../../src/eval/outputs';
import { countTopKCorrect } from '../../src/train/metrics';

// 5 images x 3 classes. Labels 0 0 1 2 2; predictions (argmax) 0 1 1 2 0.
const scores = Float32Array.from([
  0.9,
  0.05,
  0.05, // label 0 -> 0
  0.2,
  0.7,
  0.1, //   label 0 -> 1
  0.1,
  0.8,
  0.1, //   label 1 -> 1
  0.1,
  0.2,
  0.7, //   label 2 -> 2
  0.5,
  0.2,
  0.3, //   label 2 -> 0
]);
const labels = Int32Array.from([0, 0, 1, 2, 2]);

t.test('argmax: lowest index wins ties, NaN never wins, an all-NaN row predicts nothing', async (t) => {
  t.same(Array.from(argmaxRows(scores, 3)), [0, 1, 1, 2, 0]);
  t.same(
    Array.from(
      argmaxRows(Float32Array.from([1, 3, 3, NaN, 2, NaN, NaN, NaN, NaN, -Infinity, -Infinity, -Infinity]), 3),
    ),
    [1, 1, -1, 0],
  );
});

t.test('argmax agrees with top-1 correctness on ties', async (t) => {
  const tied = Float32Array.from([2, 2, 0, 2, 2, 0]);
  const tiedLabels = Int32Array.from([0, 1]);
  const pred = argmaxRows(tied, 3);
  const hits = Array.from(pred).filter((p, i) => p === tiedLabels[i]).length;
  t.equal(hits, countTopKCorrect(tied, tiedLabels, 3, 1));
});

t.test('the matrix and per-class accuracy of the hand-made case', async (t) => {
  const m = emptyConfusion(3);
  addToConfusion(m, scores.subarray(0, 6), labels.subarray(0, 2));
  addToConfusion(m, scores.subarray(6), labels.subarray(2));
  t.same(Array.from(m.counts), [1, 1, 0, 0, 1, 0, 1, 0, 1], 'rows: true class, columns: predicted');
  t.equal(confusionCount(m, 2, 0), 1);
  t.equal(totalImages(m), 5);
  const per = perClassAccuracy(m);
  t.same(
    per.map((c) => c.images),
    [2, 1, 2],
  );
  t.same(
    per.map((c) => c.correct),
    [1, 1, 1],
  );
  t.same(
    per.map((c) => c.accuracy),
    [0.5, 1, 0.5],
  );
  t.same(
    per.map((c) => c.predicted),
    [2, 2, 1],
  );
  t.same(
    per.map((c) => c.precision),
    [0.5, 0.5, 1],
  );
  t.same(
    per.map((c) => c.mostConfusedWith),
    [1, -1, 0],
  );
});

t.test('a class without images has NaN accuracy; bad input is refused', async (t) => {
  const m = emptyConfusion(2);
  addToConfusion(m, Float32Array.from([1, 0]), Int32Array.from([0]));
  t.ok(Number.isNaN(perClassAccuracy(m)[1].accuracy));
  t.ok(Number.isNaN(perClassAccuracy(m)[1].precision));
  t.throws(() => addToConfusion(m, Float32Array.from([1, 0, 0]), Int32Array.from([0])), RangeError);
  t.throws(() => addToConfusion(m, Float32Array.from([1, 0]), Int32Array.from([2])), /label 2/);
});

t.test('NaN rows are errors, kept out of the square matrix but in the CSV', async (t) => {
  const m = emptyConfusion(2);
  addToConfusion(m, Float32Array.from([NaN, NaN, 0, 1]), Int32Array.from([0, 1]));
  t.same(Array.from(m.unscored), [1, 0]);
  t.same(
    perClassAccuracy(m).map((c) => c.images),
    [1, 1],
  );
  t.equal(perClassAccuracy(m)[0].accuracy, 0);
  const csv = confusionCsv(m, ['a', 'b']).trim().split('\n');
  t.equal(csv[0], 'true \\ predicted,a,b,(no score)');
  t.equal(csv[1], 'a,0,0,1');
});

t.test('CSV: quoted names, header row and first column, rows sum to the images', async (t) => {
  t.equal(csvField('plain'), 'plain');
  t.equal(csvField('a,b'), '"a,b"');
  t.equal(csvField('say "hi"'), '"say ""hi"""');
  t.equal(csvField(NaN), '');
  const m = emptyConfusion(3);
  addToConfusion(m, scores, labels);
  const names = ['cat', 'dog, big', 'bird'];
  const lines = confusionCsv(m, names).trim().split('\n');
  t.equal(lines.length, 4);
  t.equal(lines[0], 'true \\ predicted,cat,"dog, big",bird');
  t.same(lines.slice(1), ['cat,1,1,0', '"dog, big",0,1,0', 'bird,1,0,1']);
  const per = perClassCsv(perClassAccuracy(m), names).trim().split('\n');
  t.equal(per[0], 'class,images,correct,accuracy,predicted,precision,most_confused_with');
  t.equal(per[1], 'cat,2,1,0.5,2,0.5,"dog, big"');
  t.equal(per[2], '"dog, big",1,1,1,2,0.5,');
  const table = perClassTable(perClassAccuracy(m), names);
  t.match(table, /\| cat\s+\|\s+2 \|\s+1 \|\s+50\.00% \|/);
});
