// Model shape, parameter counts, LRN and grouped convolution against plain-JS references.
import t from 'tap';
import * as tf from '@tensorflow/tfjs';
import {
  countParams,
  createAlexNet,
  disposeModel,
  dropoutMask,
  dropoutMaskSeed,
  forward,
  forwardFlopsPerImage,
  groupedConv,
  layerShapes,
  type ColumnSlice,
} from '../../src/model/alexnet';
import { buildSpec } from '../../src/model/presets';

t.before(async () => {
  await tf.setBackend('cpu');
});

t.test('parameter counts match the published figures', async (t) => {
  t.equal(countParams(buildSpec('paper'), 1000), 60_965_224, 'paper, grouped conv2/4/5');
  t.equal(countParams(buildSpec('torchvision'), 1000), 61_100_840, 'torchvision');
  // conv1 by hand: 55 x 55 positions x 96 channels x (11 x 11 x 3) multiply-adds.
  const conv1 = 2 * 55 * 55 * 96 * 11 * 11 * 3;
  const fc = 2 * (9216 * 4096 + 4096 * 4096 + 4096 * 1000);
  const paper = forwardFlopsPerImage(buildSpec('paper'), 1000);
  t.ok(paper > conv1 + fc, 'conv1 and the FC layers are part of it');
  t.ok(
    Math.abs(paper / 1e9 - 1.45) < 0.05,
    `paper forward ${(paper / 1e9).toFixed(3)} GFLOP per image (~0.72 G multiply-adds, as published)`,
  );
  const ungrouped = buildSpec('paper');
  for (const c of ungrouped.convs) c.groups = 1;
  t.equal(countParams(ungrouped, 1000), 62_378_344, 'paper without groups');
});

t.test('paper geometry: 227 -> 55 -> 27 -> 13 -> 6x6x256', async (t) => {
  const shapes = layerShapes(buildSpec('paper'), 1000);
  const at = (layer: string) => shapes.find((s) => s.layer.startsWith(layer))?.outputShape;
  t.same(at('conv1'), [55, 55, 96]);
  t.same(at('conv1/pool'), [27, 27, 96]);
  t.same(at('conv2/pool'), [13, 13, 256]);
  t.same(at('conv5/pool'), [6, 6, 256]);
  t.same(at('fc8'), [1000]);
});

t.test('variables match the counted parameters, and init follows the paper', async (t) => {
  const spec = buildSpec('small', { init: 'paper' });
  const model = createAlexNet(spec, 10, 7);
  const total = model.params.reduce((s, p) => s + p.variable.size, 0);
  t.equal(total, countParams(spec, 10));
  const w = model.params.find((p) => p.name === 'fc6/kernel')!.variable.dataSync() as Float32Array;
  const mean = w.reduce((a, b) => a + b, 0) / w.length;
  const std = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length);
  t.ok(Math.abs(std - 0.01) < 0.001, `fc6 weight std ${std} ~ 0.01`);
  const bias = (name: string) => Array.from(model.params.find((p) => p.name === name)!.variable.dataSync());
  t.ok(
    bias('conv2/bias').every((b) => b === 1),
    'conv2 bias 1',
  );
  t.ok(
    bias('conv4/bias').every((b) => b === 1),
    'conv4 bias 1',
  );
  t.ok(
    bias('fc7/bias').every((b) => b === 1),
    'fc7 bias 1',
  );
  t.ok(
    bias('conv1/bias').every((b) => b === 0),
    'conv1 bias 0',
  );
  t.ok(
    bias('fc8/bias').every((b) => b === 0),
    'fc8 bias 0',
  );
  const again = createAlexNet(spec, 10, 7);
  t.same(
    Array.from(again.params[0].variable.dataSync()),
    Array.from(model.params[0].variable.dataSync()),
    'same seed, same weights',
  );
  disposeModel(model);
  disposeModel(again);
});

t.test('forward gives logits (not probabilities) of the right shape', async (t) => {
  const model = createAlexNet(buildSpec('small', { init: 'he' }), 5, 1);
  const logits = forward(model, tf.randomNormal([3, 28, 28, 3], 0, 1, 'float32', 3) as tf.Tensor4D, {
    training: false,
  });
  t.same(logits.shape, [3, 5]);
  const rows = (await logits.array()) as number[][];
  t.ok(
    rows.some((r) => Math.abs(r.reduce((a, b) => a + b, 0) - 1) > 1e-3 || r.some((v) => v < 0)),
    'rows are not a softmax',
  );
  disposeModel(model);
});

/** The paper's LRN on plain arrays: b = a / (k + alpha * sum_{|j-c|<=r} a_j^2)^beta. */
function lrnReference(
  x: Float32Array,
  channels: number,
  r: number,
  k: number,
  alpha: number,
  beta: number,
): Float32Array {
  const out = new Float32Array(x.length);
  for (let base = 0; base < x.length; base += channels) {
    for (let c = 0; c < channels; c++) {
      let sum = 0;
      for (let j = Math.max(0, c - r); j <= Math.min(channels - 1, c + r); j++) sum += x[base + j] ** 2;
      out[base + c] = x[base + c] / (k + alpha * sum) ** beta;
    }
  }
  return out;
}

t.test('LRN with the paper constants matches the formula (alpha not divided by n)', async (t) => {
  const spec = buildSpec('paper');
  const { depthRadius, bias, alpha, beta } = spec.lrn!;
  t.same([depthRadius * 2 + 1, bias, alpha, beta], [5, 2, 1e-4, 0.75], 'n=5, k=2, alpha=1e-4, beta=0.75');
  const x = tf.randomNormal([2, 3, 3, 12], 0, 30, 'float32', 5);
  const got = tf.localResponseNormalization(x as tf.Tensor4D, depthRadius, bias, alpha, beta).dataSync();
  const want = lrnReference(x.dataSync() as Float32Array, 12, depthRadius, bias, alpha, beta);
  let maxErr = 0;
  for (let i = 0; i < want.length; i++)
    maxErr = Math.max(maxErr, Math.abs(got[i] - want[i]) / (Math.abs(want[i]) + 1e-6));
  t.ok(maxErr < 1e-5, `max relative error ${maxErr}`);
});

/** Direct grouped convolution on plain arrays (NHWC, HWIO, stride 1, 'same' odd kernel). */
function groupedConvReference(
  x: Float32Array,
  [n, h, w, cin]: number[],
  k: Float32Array,
  kh: number,
  cout: number,
  groups: number,
): Float32Array {
  const out = new Float32Array(n * h * w * cout);
  const cinG = cin / groups;
  const coutG = cout / groups;
  const pad = (kh - 1) / 2;
  for (let b = 0; b < n; b++)
    for (let i = 0; i < h; i++)
      for (let j = 0; j < w; j++)
        for (let o = 0; o < cout; o++) {
          const g = Math.floor(o / coutG);
          let sum = 0;
          for (let di = 0; di < kh; di++)
            for (let dj = 0; dj < kh; dj++) {
              const y = i + di - pad;
              const z = j + dj - pad;
              if (y < 0 || y >= h || z < 0 || z >= w) continue;
              for (let c = 0; c < cinG; c++)
                sum += x[((b * h + y) * w + z) * cin + g * cinG + c] * k[((di * kh + dj) * cinG + c) * cout + o];
            }
          out[((b * h + i) * w + j) * cout + o] = sum;
        }
  return out;
}

t.test('grouped conv: group g sees only input maps of group g', async (t) => {
  const xShape: [number, number, number, number] = [2, 5, 5, 6];
  const x = tf.randomNormal(xShape, 0, 1, 'float32', 11) as tf.Tensor4D;
  const kernel = tf.randomNormal([3, 3, 3, 4], 0, 1, 'float32', 12) as tf.Tensor4D;
  const bias = tf.zeros([4]) as tf.Tensor1D;
  const got = groupedConv(x, kernel, bias, { stride: 1, pad: 'same', groups: 2 }, 'tanh');
  const want = groupedConvReference(
    x.dataSync() as Float32Array,
    xShape,
    kernel.dataSync() as Float32Array,
    3,
    4,
    2,
  ).map(Math.tanh);
  const g = got.dataSync();
  let maxErr = 0;
  for (let i = 0; i < want.length; i++) maxErr = Math.max(maxErr, Math.abs(g[i] - want[i]));
  t.ok(maxErr < 1e-5, `max abs error ${maxErr}`);
  t.same(got.shape, [2, 5, 5, 4]);
});

t.test('dropout masks: the floats of the tensor ops they replace (a tf.randomUniform row per image)', async (t) => {
  /** floor(u + keep) / keep over one tf.randomUniform row per image, cut to `columns`. */
  const reference = (width: number, rate: number, seeds: string[], columns?: ColumnSlice): Float32Array =>
    tf.tidy(() => {
      const keep = 1 - rate;
      const rows = seeds.map((seed) => {
        const row = tf.randomUniform([1, columns?.of ?? width], 0, 1, 'float32', seed);
        return columns ? tf.slice(row, [0, columns.start], [1, width]) : row;
      });
      const u = rows.length === 1 ? rows[0] : tf.concat(rows, 0);
      return tf.div(tf.floor(tf.add(u, keep)), keep).dataSync() as Float32Array;
    });
  const cases: [n: number, width: number, rate: number, columns?: ColumnSlice][] = [
    [1, 7, 0.5],
    [64, 256, 0.5],
    [3, 4096, 0.1],
    [5, 100, 0.9],
    [4, 100, 0.37],
    [6, 40, 0.37, { start: 30, of: 100 }],
  ];
  for (const [n, width, rate, columns] of cases) {
    const seeds = Array.from({ length: n }, (_, i) => dropoutMaskSeed(11, 2, 3 * i + 1));
    const ours = dropoutMask(n, width, rate, (i) => seeds[i], columns);
    const theirs = reference(width, rate, seeds, columns);
    const differ = new Uint32Array(ours.buffer).findIndex((bits, i) => bits !== new Uint32Array(theirs.buffer)[i]);
    const kept = ours.filter((v) => v !== 0).length / ours.length;
    t.equal(
      differ,
      -1,
      `${n} x ${width}${columns ? ` (columns ${columns.start}.. of ${columns.of})` : ''}, rate ${rate}: identical (${(100 * kept).toFixed(0)}% kept)`,
    );
  }
});

t.test('seed 0 is a seed: the same weights and dropout masks every time (tfjs reads 0 as "no seed")', async (t) => {
  const spec = buildSpec('small');
  const a = createAlexNet(spec, 3, 0);
  const b = createAlexNet(spec, 3, 0);
  a.params.forEach((p, i) => t.same(p.variable.dataSync(), b.params[i].variable.dataSync(), `${p.name} equal`));
  const images = tf.randomUniform([2, spec.inputSize, spec.inputSize, 3], 0, 1, 'float32', 7) as tf.Tensor4D;
  const first = forward(a, images, { training: true, dropoutSeed: 0 }).dataSync();
  const second = forward(a, images, { training: true, dropoutSeed: 0 }).dataSync();
  t.same(first, second, 'dropout masks of step 0, rank 0, seed 0 repeat');
  const other = createAlexNet(spec, 3, 1);
  t.not(other.params[0].variable.dataSync()[0], a.params[0].variable.dataSync()[0], 'seeds 0 and 1 differ');
  [a, b, other].forEach(disposeModel);
  images.dispose();
});
