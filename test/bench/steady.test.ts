// bench/steady.ts's arithmetic: windows of steps, the collections in each, and the drift figure.
import t from 'tap';
import { slowestOverFastest, windowRows } from '../../bench/steady';

t.test('windows: mean step time from the step ends, collections by their start', async (t) => {
  // Steps end at 10, 20, 30 (10 ms each), then 50, 70 (20 ms each), then 80.
  const ends = [10, 20, 30, 50, 70, 80];
  const gcs = [
    { startMs: 5, major: false },
    { startMs: 25, major: true },
    { startMs: 20, major: false }, // at the first window's end: the second window's
    { startMs: 79, major: true },
  ];
  const rows = windowRows(ends, 0, gcs, 2);
  t.same(
    rows.map((r) => [r.first, r.last, r.meanMs, r.majorGcs, r.minorGcs]),
    [
      [1, 2, 10, 0, 1],
      [3, 4, 15, 1, 1],
      [5, 6, 15, 1, 0],
    ],
  );
  t.same(
    windowRows([10, 20, 30], 0, [], 2).map((r) => [r.first, r.last, r.meanMs]),
    [
      [1, 2, 10],
      [3, 3, 10],
    ],
    'a last, shorter window',
  );
});

t.test('the drift figure leaves the warm-up window out', async (t) => {
  const row = (meanMs: number) => ({ first: 0, last: 0, meanMs, majorGcs: 0, minorGcs: 0 });
  t.equal(slowestOverFastest([row(100), row(50), row(75), row(50)]), 1.5);
  t.equal(slowestOverFastest([row(100), row(50)]), 1);
  t.ok(Number.isNaN(slowestOverFastest([row(100)])), 'one window: no figure');
});
