import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { DataError } from '../../src/core/errors';
import { mulberry32 } from '../../src/data/rng';
import {
  addImage,
  computeStats,
  emptyMoments,
  loadStats,
  meanAndCovariance,
  saveStats,
  statsPath,
  symmetricEigen3,
} from '../../src/data/stats';
import { solidImage, tempDir } from './fixtures/images';

function matVec(a: number[][], v: number[]): number[] {
  return a.map((row) => row.reduce((s, x, k) => s + x * v[k], 0));
}

t.test('symmetricEigen3: A v = lambda v, orthonormal, descending', async (t) => {
  const rng = mulberry32(1);
  for (let trial = 0; trial < 50; trial++) {
    const b = Array.from({ length: 3 }, () => Array.from({ length: 3 }, () => rng.nextFloat() - 0.5));
    const a = b.map((row, i) => row.map((_, j) => b[0][i] * b[0][j] + b[1][i] * b[1][j] + b[2][i] * b[2][j])); // B^T B: symmetric PSD
    const { values, vectors } = symmetricEigen3(a);
    let err = 0;
    for (let j = 0; j < 3; j++) {
      const v = [vectors[0][j], vectors[1][j], vectors[2][j]];
      const av = matVec(a, v);
      err = Math.max(err, ...av.map((x, k) => Math.abs(x - values[j] * v[k])));
      for (let k = 0; k < 3; k++) {
        const dot = vectors[0][j] * vectors[0][k] + vectors[1][j] * vectors[1][k] + vectors[2][j] * vectors[2][k];
        err = Math.max(err, Math.abs(dot - (j === k ? 1 : 0)));
      }
    }
    if (err > 1e-10 || values[0] < values[1] || values[1] < values[2])
      t.fail(`trial ${trial}: error ${err}, values ${values}`);
  }
  const diag = symmetricEigen3([
    [1, 0, 0],
    [0, 3, 0],
    [0, 0, 2],
  ]);
  t.same(diag.values, [3, 2, 1]);
  t.same(
    diag.vectors,
    [
      [0, 0, 1],
      [1, 0, 0],
      [0, 1, 0],
    ],
    'columns follow the sorted values',
  );
});

t.test('moments: mean and covariance of known pixels', async (t) => {
  const m = emptyMoments();
  addImage(m, Uint8Array.from([255, 0, 0, 255, 0, 0]));
  addImage(m, Uint8Array.from([0, 0, 255, 0, 0, 255]));
  const { mean, cov } = meanAndCovariance(m);
  t.same(mean, [0.5, 0, 0.5]);
  t.same(cov, [
    [0.25, 0, -0.25],
    [0, 0, 0],
    [-0.25, 0, 0.25],
  ]);
  t.throws(() => meanAndCovariance(emptyMoments()), DataError);
});

t.test('computeStats over decoded files, skipping bad ones', async (t) => {
  const dir = tempDir(t);
  const red = await solidImage(path.join(dir, 'red.png'), [255, 0, 0]);
  const blue = await solidImage(path.join(dir, 'blue.png'), [0, 0, 255]);
  writeFileSync(path.join(dir, 'bad.jpg'), 'nope');
  const skipped: string[] = [];
  const s = await computeStats(
    [
      { path: red, label: 0 },
      { path: blue, label: 0 },
      { path: path.join(dir, 'bad.jpg'), label: 0 },
    ],
    { sizePx: 8, onSkip: (p) => skipped.push(path.basename(p)) },
  );
  t.same(skipped, ['bad.jpg']);
  t.equal(s.imageCount, 2);
  t.same(s.meanRgb, [0.5, 0, 0.5]);
  t.same(s.stdRgb, [0.5, 1, 0.5], 'a constant channel gets std 1, never 0');
  t.ok(
    Math.abs(s.eigenvalues[0] - 0.5) < 1e-12 && s.eigenvalues[1] < 1e-12,
    `one direction of variance: ${s.eigenvalues}`,
  );
  t.ok(
    Math.abs(Math.abs(s.eigenvectors[0][0]) - Math.SQRT1_2) < 1e-9 &&
      Math.abs(s.eigenvectors[0][0] + s.eigenvectors[2][0]) < 1e-9,
    'along (1, 0, -1)/sqrt(2)',
  );
  await t.rejects(computeStats([{ path: path.join(dir, 'bad.jpg'), label: 0 }], { sizePx: 8 }), DataError);
});

t.test('computeStats with maxImages uses a seeded subset', async (t) => {
  const dir = tempDir(t);
  const samples = [];
  for (let i = 0; i < 6; i++)
    samples.push({ path: await solidImage(path.join(dir, `${i}.png`), [i * 40, 0, 0]), label: 0 });
  const a = await computeStats(samples, { sizePx: 4, maxImages: 3, seed: 1 });
  const b = await computeStats(samples, { sizePx: 4, maxImages: 3, seed: 1 });
  t.equal(a.imageCount, 3);
  t.same(a, b);
});

t.test('save / load stats.json', async (t) => {
  const dir = tempDir(t);
  t.equal(await loadStats(dir), null, 'absent -> null');
  const stats = {
    meanRgb: [0.1, 0.2, 0.3],
    stdRgb: [0.4, 0.5, 0.6],
    eigenvalues: [0.3, 0.2, 0.1],
    eigenvectors: [
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ],
    imageCount: 7,
    sizePx: 256,
  } as const;
  const file = await saveStats(dir, {
    ...stats,
    meanRgb: [...stats.meanRgb],
    stdRgb: [...stats.stdRgb],
    eigenvalues: [...stats.eigenvalues],
    eigenvectors: stats.eigenvectors.map((r) => [...r]),
  });
  t.equal(file, statsPath(dir));
  t.same(await loadStats(dir), stats);
  writeFileSync(file, '{"format":"alexnet-dataset-stats/1","meanRgb":[1,2]}');
  await t.rejects(loadStats(dir), { name: 'DataError', message: /invalid or missing 'meanRgb'/ });
  writeFileSync(file, '{ not json');
  await t.rejects(loadStats(dir), { name: 'DataError', message: /not valid JSON/ });
});
