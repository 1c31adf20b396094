// The SVG charts as structure: polyline points, axes and labels, no NaN anywhere.
import t from 'tap';
import {
  curvesSvg,
  CURVES_SIZE_PX,
  formatTick,
  lineChart,
  linearAxis,
  logAxis,
  niceStep,
  segments,
  type ChartSpec,
} from '../../src/report/charts';
import { cellSizePx, confusionHeatmap, shade } from '../../src/eval/heatmap';
import { escapeXml } from '../../src/report/svg';
import { addToConfusion, emptyConfusion } from '../../src/eval/confusion';
import type { EpochRecord } from '../../src/train/run/run-log';

const polylines = (svg: string): string[][] =>
  [...svg.matchAll(/<polyline[^>]*points="([^"]*)"/g)].map((m) => m[1].split(' '));
/** Geometry attribute values that are not plain numbers (a NaN would silently drop the shape). */
const badNumbers = (svg: string): string[] =>
  [...svg.matchAll(/ (?:x|y|x1|x2|y1|y2|cx|cy|r|width|height|points)="([^"]*)"/g)]
    .map((m) => m[1])
    .filter((v) => v.split(/[ ,]/).some((n) => !Number.isFinite(Number(n))));

function record(epoch: number, o: Partial<EpochRecord> = {}): EpochRecord {
  const m = (x: number) => ({
    loss: 2 / epoch + x,
    top1Error: 0.8 / epoch + x,
    top5Error: 0.3 / epoch + x,
    count: 100,
  });
  return {
    epoch,
    globalStep: epoch * 10,
    lr: epoch <= 2 ? 0.01 : 0.001,
    train: m(0),
    val: m(0.1),
    imagesPerSec: 50,
    epochMs: 2000,
    skippedImages: 0,
    ...o,
  };
}

t.test('nice steps and axes', async (t) => {
  t.equal(niceStep(10, 5), 2);
  t.equal(niceStep(1, 5), 0.2);
  t.equal(niceStep(0.07, 5), 0.01);
  t.equal(niceStep(700, 5), 100);
  t.equal(niceStep(1000, 5), 200);
  t.same(linearAxis([0.13, 0.87], { includeZero: true }).ticks, [0, 0.2, 0.4, 0.6, 0.8, 1]);
  t.same(linearAxis([1, 2, 3], { integer: true }).ticks, [1, 2, 3], 'whole-number ticks for epochs');
  const single = linearAxis([1], { integer: true });
  t.ok(single.min < 1 && single.max > 1, `one epoch sits inside the axis: ${single.ticks.join(',')}`);
  t.same(linearAxis([], { includeZero: true }).ticks.slice(0, 1), [0], 'no data: still an axis');
  t.same(logAxis([0.01, 0.001]).ticks, [0.001, 0.01]);
  t.same(logAxis([0.01]).ticks, [0.001, 0.01, 0.1], 'a constant lr sits mid-chart');
  t.equal(formatTick(0.35, linearAxis([0, 0.35]), { percent: true }), '35%');
  t.equal(formatTick(0.005, { min: 0, max: 0.02, ticks: [], step: 0.005 }, { percent: true }), '0.5%');
  t.equal(formatTick(0.001, logAxis([0.001]), { log: true }), '1e-3');
});

t.test('missing values break a line into segments', async (t) => {
  const runs = segments(
    [
      { x: 1, y: 1 },
      { x: 2, y: null },
      { x: 3, y: 2 },
      { x: 4, y: NaN },
      { x: 5, y: 3 },
      { x: 6, y: 4 },
    ],
    false,
  );
  t.same(
    runs.map((r) => r.map((p) => p.x)),
    [[1], [3], [5, 6]],
  );
  t.same(
    segments(
      [
        { x: 1, y: 0 },
        { x: 2, y: 1 },
      ],
      true,
    ).map((r) => r.length),
    [1],
    'zero has no place on a log axis',
  );
});

t.test('a chart: one polyline point per epoch, axis labels, escaped text, no NaN', async (t) => {
  const spec: ChartSpec = {
    title: 'Loss <train & val>',
    xLabel: 'epoch',
    yLabel: 'cross-entropy',
    yScale: 'linear',
    integerX: true,
    includeZero: true,
    series: [
      { name: 'train', color: '#00f', points: [1, 2, 3, 4].map((x) => ({ x, y: 1 / x })) },
      { name: 'val', color: '#f00', points: [1, 2, 3, 4].map((x) => ({ x, y: x === 3 ? null : 2 / x })) },
    ],
  };
  const svg = lineChart(spec, { x: 0, y: 0, width: 400, height: 300 });
  t.same(
    polylines(svg).map((p) => p.length),
    [4, 2],
    'train: 4 points; val: 2, then a lone point',
  );
  t.equal((svg.match(/<circle/g) ?? []).length, 7, 'a marker per value');
  t.match(svg, '>epoch</text>');
  t.match(svg, '>cross-entropy</text>');
  t.match(svg, escapeXml('Loss <train & val>'));
  t.same(badNumbers(svg), [], 'every coordinate a number');
});

t.test('the curves image: four panels, train and val lines, lr on a log axis', async (t) => {
  const records = [1, 2, 3, 4, 5].map((e) => record(e));
  records[2] = record(3, { val: null });
  const svg = curvesSvg(records, 'run');
  t.match(svg, `width="${CURVES_SIZE_PX.width}" height="${CURVES_SIZE_PX.height}"`);
  for (const title of ['Loss', 'Top-1 error', 'Top-5 error', 'Learning rate']) t.match(svg, `>${title}</text>`);
  // Loss, top-1, top-5: train (5 points) and val (2 + 2 around the missing epoch 3); lr: 5.
  t.same(
    polylines(svg).map((p) => p.length),
    [5, 2, 2, 5, 2, 2, 5, 2, 2, 5],
  );
  t.match(svg, '>1e-2</text>');
  t.match(svg, '>1e-3</text>');
  t.same(badNumbers(svg), [], 'every coordinate a number');
});

t.test('a diverged run (NaN loss) and an empty run still draw', async (t) => {
  const diverged = [record(1), record(2, { train: { loss: NaN, top1Error: NaN, top5Error: NaN, count: 10 } })];
  for (const svg of [curvesSvg(diverged, 'x'), curvesSvg([], 'empty')]) {
    t.same(badNumbers(svg), [], 'every coordinate a number');
  }
  t.match(curvesSvg([], 'empty'), 'no data yet');
});

t.test('heat map: a cell per non-zero count, class names, sizes that scale', async (t) => {
  const m = emptyConfusion(3);
  addToConfusion(m, Float32Array.from([1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1]), Int32Array.from([0, 1, 1, 2]));
  const h = confusionHeatmap(m, ['cat', 'dog', 'a<b'], 'title');
  t.match(h.svg, `width="${h.widthPx}" height="${h.heightPx}"`);
  t.match(h.svg, '>a&lt;b</text>');
  const cells = h.svg.match(/<rect x="[^"]*" y="[^"]*" width="48"/g) ?? [];
  t.equal(cells.length, 4, 'four non-zero cells');
  t.equal(cellSizePx(10), 48);
  t.equal(cellSizePx(1000), 2);
  t.equal(shade(0), '#f7fbff');
  t.equal(shade(1), '#08306b');
  t.throws(() => confusionHeatmap(m, ['a'], 't'), RangeError);
  t.same(badNumbers(h.svg), []);
});
