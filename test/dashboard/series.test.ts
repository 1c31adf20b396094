// The dashboard's numbers as pure functions: downsampling keeps long curves light and their
// shape; images/s, ETA and the all-reduce's transfer/skew split come out of the run's files.
import t from 'tap';
import { downsample, etaSeconds, imagesPerSec, stepBreakdowns } from '../../src/dashboard/series';
import type { StepRecord, WorkerRecord } from '../../src/train/run/run-log';

t.test('downsample: at most maxPoints rows, each the mean of its bucket', async (t) => {
  const x = Array.from({ length: 1000 }, (_, i) => i);
  const y = x.map((i) => 2 * i);
  const [dx, dy] = downsample([x, y], 100);
  t.equal(dx.length, 100);
  t.equal(dy.length, 100);
  t.equal(dx[0], 4.5, 'first bucket: the mean of 0..9');
  t.equal(dy[0], 9);
  t.equal(dx[99], 994.5, 'last bucket: the mean of 990..999');
  const [sx] = downsample([[...x, 1000]], 100);
  t.ok(sx.length <= 100, `1001 points -> ${sx.length}`);
});

t.test(
  'downsample: short columns come back as copies; NaN is left out of a mean, a bucket of NaN stays NaN',
  async (t) => {
    const cols = [
      [1, 2, 3],
      [4, 5, 6],
    ];
    const out = downsample(cols, 10);
    t.same(out, cols);
    t.not(out[0], cols[0], "a copy, not the caller's array");
    const [, y] = downsample(
      [
        [0, 1, 2, 3],
        [1, NaN, NaN, NaN],
      ],
      2,
    );
    t.equal(y[0], 1, 'NaN ignored beside a number');
    t.ok(Number.isNaN(y[1]), 'all NaN: a gap');
    t.same(downsample([[]], 5), [[]]);
  },
);

const step = (epoch: number, stepN: number, timeMs: number, count = 10): StepRecord => ({
  epoch,
  step: stepN,
  globalStep: (epoch - 1) * 4 + stepN,
  epochs: epoch - 1 + stepN / 4,
  lr: 0.1,
  train: { loss: 1, top1Error: 0.5, top5Error: 0.1, count },
  stepsPerEpoch: 4,
  timeMs,
});

t.test(
  'images/s: each line over the time since the previous; none across an epoch boundary (validation ran)',
  async (t) => {
    const rates = imagesPerSec([step(1, 1, 0), step(1, 2, 500), step(1, 3, 1500, 20), step(2, 1, 9000)]);
    t.ok(Number.isNaN(rates[0]));
    t.equal(rates[1], 20);
    t.equal(rates[2], 20);
    t.ok(Number.isNaN(rates[3]));
  },
);

t.test('ETA: the remaining epochs at the recent pace', async (t) => {
  t.equal(etaSeconds([], 2), null);
  t.equal(etaSeconds([step(1, 1, 0)], 2), null, 'one line has no pace');
  // 0.25 epochs per second -> 4 s per epoch; at 0.5 epochs of 2: 1.5 epochs = 6 s left.
  t.equal(etaSeconds([step(1, 1, 0), step(1, 2, 1000)], 2), 6);
  t.equal(etaSeconds([step(1, 1, 0), step(1, 4, 3000)], 1), 0, 'done: nothing left');
});

t.test('all-reduce split: the least-waiting rank is the transfer, the rest of each rank is skew wait', async (t) => {
  const sample = (rank: number, stepN: number, reduceMs: number): Extract<WorkerRecord, { kind: 'step' }> => ({
    kind: 'step',
    rank,
    epoch: 1,
    step: stepN,
    timeMs: stepN * 1000,
    timingsMs: { dataWaitMs: 1, computeMs: 50, copyMs: 2, reduceMs, updateMs: 3 },
  });
  const b = stepBreakdowns([sample(0, 1, 40), sample(1, 1, 10), sample(0, 2, 12), sample(1, 2, 30), sample(0, 3, 25)]);
  t.same(
    b.map((x) => [x.rank, x.reduceMs, x.skewWaitMs]),
    [
      [0, 10, 30],
      [1, 10, 0],
      [0, 12, 0],
      [1, 12, 18],
      [0, 25, 0],
    ],
  );
  t.equal(b[0].computeMs, 50, 'the other parts pass through');
});
