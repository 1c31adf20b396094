import t from 'tap';
import {
  centerCropBox,
  channelAffine,
  ColourStats,
  drawAugment,
  pcaLightingShift,
  tenCropBatch,
  tenCropBoxes,
  writeCrop,
} from '../../src/data/augment';
import { hashInts, mulberry32, permutation, rngFor, RngStream } from '../../src/data/rng';

/** A deterministic pseudo-random uint8 square. */
function randomSquare(sizePx: number, seed: number): Uint8Array {
  const rng = mulberry32(seed);
  return Uint8Array.from({ length: sizePx * sizePx * 3 }, () => rng.nextInt(256));
}

/** 3x3 rotation (orthonormal columns) for test eigenvectors. */
const ROT = (() => {
  const a = 0.5,
    b = 0.3;
  const rz = [
    [Math.cos(a), -Math.sin(a), 0],
    [Math.sin(a), Math.cos(a), 0],
    [0, 0, 1],
  ];
  const rx = [
    [1, 0, 0],
    [0, Math.cos(b), -Math.sin(b)],
    [0, Math.sin(b), Math.cos(b)],
  ];
  return rz.map((row) => [0, 1, 2].map((j) => row.reduce((s, v, k) => s + v * rx[k][j], 0)));
})();

const STATS: ColourStats = {
  meanRgb: [0.48, 0.45, 0.4],
  stdRgb: [0.23, 0.22, 0.25],
  eigenvalues: [0.2, 0.02, 0.005],
  eigenvectors: ROT,
};

t.test('rng: seeded, order-sensitive, permutations', async (t) => {
  t.equal(hashInts(1, 2), hashInts(1, 2));
  t.not(hashInts(1, 2), hashInts(2, 1));
  t.not(hashInts(2 ** 40), hashInts(0), 'high words of large seeds count');
  const a = rngFor(RngStream.augment, 7, 3, 11);
  const b = rngFor(RngStream.augment, 7, 3, 11);
  t.same(
    Array.from({ length: 5 }, () => a.nextU32()),
    Array.from({ length: 5 }, () => b.nextU32()),
  );
  const p = permutation(1000, rngFor(RngStream.shuffle, 1, 0));
  t.same(
    [...p].sort((x, y) => x - y),
    Array.from({ length: 1000 }, (_, i) => i),
    'a permutation',
  );
  t.notSame([...p], [...permutation(1000, rngFor(RngStream.shuffle, 1, 1))], 'another epoch, another order');
  const rng = mulberry32(42);
  const xs = Array.from({ length: 20000 }, () => rng.nextNormal());
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
  t.ok(
    Math.abs(mean) < 0.03 && Math.abs(variance - 1) < 0.04,
    `N(0,1): mean ${mean.toFixed(4)}, var ${variance.toFixed(4)}`,
  );
});

t.test('crop boxes', async (t) => {
  t.same(centerCropBox(256, 227), { xPx: 14, yPx: 14 });
  t.same(centerCropBox(256, 224), { xPx: 16, yPx: 16 });
  const ten = tenCropBoxes(256, 224);
  t.equal(ten.length, 10);
  t.same(
    ten.slice(0, 5).map((c) => [c.box.xPx, c.box.yPx]),
    [
      [0, 0],
      [32, 0],
      [0, 32],
      [32, 32],
      [16, 16],
    ],
  );
  t.same(
    ten.map((c) => c.flip),
    [false, false, false, false, false, true, true, true, true, true],
  );
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const { box } = drawAugment(rngFor(RngStream.augment, 1, 0, i), 10, 8);
    seen.add(`${box.xPx},${box.yPx}`);
  }
  t.same(
    [...seen].sort(),
    ['0,0', '0,1', '0,2', '1,0', '1,1', '1,2', '2,0', '2,1', '2,2'],
    'exactly the 3x3 offsets that fit, all reachable',
  );
});

t.test('drawAugment is a function of (seed, epoch, index) only', async (t) => {
  const draw = (seed: number, epoch: number, index: number) =>
    drawAugment(rngFor(RngStream.augment, seed, epoch, index), 256, 227);
  t.same(draw(5, 2, 17), draw(5, 2, 17));
  t.notSame(draw(5, 2, 17), draw(5, 3, 17), 'epoch changes it');
  t.notSame(draw(5, 2, 17), draw(5, 2, 18), 'index changes it');
  t.notSame(draw(5, 2, 17), draw(6, 2, 17), 'seed changes it');
  const flips = Array.from({ length: 4000 }, (_, i) => draw(1, 0, i).flip).filter(Boolean).length;
  t.ok(flips > 1850 && flips < 2150, `about half flipped: ${flips}/4000`);
});

t.test('writeCrop matches a direct reference, with and without flip', async (t) => {
  const src = randomSquare(12, 3);
  const affine = channelAffine(STATS, [0.01, -0.02, 0.03]);
  for (const flip of [false, true]) {
    const box = { xPx: 3, yPx: 2 };
    const out = new Float32Array(5 + 7 * 7 * 3);
    writeCrop(src, 12, 7, box, flip, affine, out, 5);
    let maxErr = 0;
    for (let y = 0; y < 7; y++) {
      for (let x = 0; x < 7; x++) {
        const sx = box.xPx + (flip ? 6 - x : x);
        for (let c = 0; c < 3; c++) {
          const p = src[((box.yPx + y) * 12 + sx) * 3 + c];
          const want = (p / 255 + [0.01, -0.02, 0.03][c] - STATS.meanRgb[c]) / STATS.stdRgb[c];
          maxErr = Math.max(maxErr, Math.abs(out[5 + (y * 7 + x) * 3 + c] - want));
        }
      }
    }
    t.ok(maxErr < 1e-5, `flip=${flip}: max error ${maxErr}`);
    t.equal(out[0], 0, 'nothing written before the offset');
  }
  t.throws(() => writeCrop(src, 12, 7, { xPx: 6, yPx: 0 }, false, affine, new Float32Array(147), 0), RangeError);
});

t.test('no stats: pixel / 255 - 0.5', async (t) => {
  const out = new Float32Array(3);
  writeCrop(Uint8Array.from([0, 255, 51]), 1, 1, { xPx: 0, yPx: 0 }, false, channelAffine(null), out, 0);
  t.same(
    [...out].map((v) => Number(v.toFixed(6))),
    [-0.5, 0.5, -0.3],
  );
});

t.test('PCA lighting: shift = V diag(lambda) alpha, covariance 0.01 V diag(lambda^2) V^T', async (t) => {
  const n = 20000;
  const shifts: number[][] = [];
  for (let i = 0; i < n; i++) {
    const { alphas } = drawAugment(rngFor(RngStream.augment, 9, 1, i), 256, 227);
    const s = pcaLightingShift(STATS, alphas);
    // projecting the shift on eigenvector j gives alpha_j * lambda_j exactly
    for (let j = 0; j < 3; j++) {
      const proj = ROT[0][j] * s[0] + ROT[1][j] * s[1] + ROT[2][j] * s[2];
      if (Math.abs(proj - alphas[j] * STATS.eigenvalues[j]) > 1e-12) t.fail(`projection ${j} of sample ${i}`);
    }
    shifts.push(s);
  }
  const mean = [0, 1, 2].map((c) => shifts.reduce((a, s) => a + s[c], 0) / n);
  const want = (r: number, c: number): number =>
    [0, 1, 2].reduce((a, k) => a + 0.01 * ROT[r][k] * STATS.eigenvalues[k] ** 2 * ROT[c][k], 0);
  for (let r = 0; r < 3; r++) {
    for (let c = 0; c < 3; c++) {
      const cov = shifts.reduce((a, s) => a + (s[r] - mean[r]) * (s[c] - mean[c]), 0) / n;
      const tol = 4 * Math.sqrt((want(r, r) * want(c, c)) / n); // ~4 standard errors of the estimate
      t.ok(
        Math.abs(cov - want(r, c)) < tol,
        `cov[${r}][${c}] ${cov.toExponential(3)} ~ ${want(r, c).toExponential(3)} +- ${tol.toExponential(1)}`,
      );
    }
  }
  const sdAlpha =
    Math.sqrt(shifts.reduce((a, s) => a + (s[0] * ROT[0][0] + s[1] * ROT[1][0] + s[2] * ROT[2][0]) ** 2, 0) / n) /
    STATS.eigenvalues[0];
  t.ok(Math.abs(sdAlpha - 0.1) < 0.003, `alpha_1 has std 0.1: ${sdAlpha.toFixed(4)}`);
});

t.test('tenCropBatch: 10 patches per image, image-major', async (t) => {
  const imgs = [randomSquare(6, 1), randomSquare(6, 2)];
  const out = tenCropBatch(imgs, 6, 4, null);
  const per = 4 * 4 * 3;
  t.equal(out.length, 2 * 10 * per);
  const ref = new Float32Array(per);
  writeCrop(imgs[1], 6, 4, { xPx: 2, yPx: 2 }, true, channelAffine(null), ref, 0);
  t.same([...out.subarray((10 + 8) * per, (10 + 9) * per)], [...ref], 'image 1, patch 8 = bottom-right flipped');
});
