import { unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { ConfigError } from '../../src/core/errors';
import {
  centerCropBox,
  channelAffine,
  cropElements,
  drawAugment,
  pcaLightingShift,
  writeCrop,
} from '../../src/data/augment';
import { rngFor, RngStream } from '../../src/data/rng';
import { Sample } from '../../src/data/index/dataset';
import { decodeFile } from '../../src/data/decode/decode';
import { Batch, BatchLoader, batchesPerEpoch, LoaderOptions } from '../../src/data/loader';
import { epochOrder, planEpoch, shardRange } from '../../src/data/shard';
import { DatasetStats } from '../../src/data/stats';
import { fromRaw, rawImage, tempDir } from './fixtures/images';

const RESIZE = 12;
const CROP = 10;
const STATS: DatasetStats = {
  meanRgb: [0.5, 0.4, 0.3],
  stdRgb: [0.2, 0.25, 0.3],
  eigenvalues: [0.05, 0.01, 0.001],
  eigenvectors: [
    [0.6, 0.8, 0],
    [0.8, -0.6, 0],
    [0, 0, 1],
  ],
  imageCount: 1,
};

/** `count` distinct small PNGs (a gradient per sample) in `dir`; labels cycle over 3 classes. */
async function makeSamples(dir: string, count: number): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (let i = 0; i < count; i++) {
    const file = path.join(dir, `s${i}.png`);
    await fromRaw(
      rawImage(16, 14, 3, (x, y) => [(x * 16 + i * 7) % 256, (y * 18) % 256, (i * 29) % 256]),
      16,
      14,
      3,
    )
      .png()
      .toFile(file);
    samples.push({ path: file, label: i % 3 });
  }
  return samples;
}

function loader(samples: Sample[], o: Partial<LoaderOptions> = {}): BatchLoader {
  return new BatchLoader({
    samples,
    resizeSize: RESIZE,
    cropSize: CROP,
    globalBatchSize: 4,
    rank: 0,
    worldSize: 1,
    seed: 3,
    mode: 'train',
    stats: STATS,
    ...o,
  });
}

async function collect(l: BatchLoader, epoch: number): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of l.epoch(epoch)) out.push(b);
  return out;
}

t.test('sharding covers every sample exactly once, 1 to 4 ranks', async (t) => {
  let checked = 0;
  for (const n of [1, 5, 7, 23, 64]) {
    for (const batch of [1, 3, 4, 16]) {
      for (let world = 1; world <= 4; world++) {
        for (const dropLast of [false, true]) {
          const order = epochOrder(n, true, 11, 2);
          const plans = Array.from({ length: world }, (_, r) => planEpoch(order, batch, dropLast, r, world));
          const expected = batchesPerEpoch(n, batch, dropLast);
          const seen = plans.flatMap((p) => p.flatMap((b) => [...b.sampleIndices]));
          const want = dropLast ? [...order.subarray(0, expected * batch)] : [...order];
          const ok =
            plans.every((p) => p.length === expected) &&
            seen.length === want.length &&
            new Set(seen).size === seen.length &&
            want.every((i) => seen.includes(i)) &&
            plans[0].every(
              (b, k) => plans.map((p) => p[k].sampleIndices.length).reduce((a, x) => a + x, 0) === b.globalSize,
            );
          if (!ok) t.fail(`n=${n} batch=${batch} world=${world} dropLast=${dropLast}`);
          checked += 1;
        }
      }
    }
  }
  t.equal(checked, 160, 'all combinations checked');
  t.same(
    [0, 1, 2, 3].map((r) => shardRange(10, r, 4)),
    [
      [0, 3],
      [3, 6],
      [6, 8],
      [8, 10],
    ],
    'contiguous, sizes differ by at most one',
  );
  t.same(shardRange(1, 3, 4), [1, 1], 'a rank may get nothing');
});

t.test('BatchLoader on real files: lockstep, coverage, labels, determinism across world sizes', async (t) => {
  const samples = await makeSamples(tempDir(t), 11);
  const crops = new Map<number, Float32Array>();
  const per = cropElements(CROP);
  for (let world = 1; world <= 4; world++) {
    const seen: number[] = [];
    const counts: number[] = [];
    for (let rank = 0; rank < world; rank++) {
      const batches = await collect(loader(samples, { rank, worldSize: world, prefetchBatches: rank % 3 }), 1);
      counts.push(batches.length);
      for (const b of batches) {
        t.equal(b.images.length, b.count * per, 'images hold count crops');
        t.same(
          [...b.labels],
          [...b.sampleIndices].map((i) => samples[i].label),
          'labels follow samples',
        );
        b.sampleIndices.forEach((s, k) => {
          seen.push(s);
          const crop = b.images.slice(k * per, (k + 1) * per);
          const before = crops.get(s);
          if (before && !before.every((v, i) => v === crop[i])) t.fail(`sample ${s} differs with world size ${world}`);
          crops.set(s, crop);
        });
      }
    }
    t.same(counts, new Array(world).fill(3), `world ${world}: every rank yields 3 batches`);
    t.same(
      seen.sort((a, b) => a - b),
      [...Array(11).keys()],
      `world ${world}: every sample once`,
    );
  }
  const other = await collect(loader(samples), 2);
  t.notSame(
    [...other[0].sampleIndices],
    [...(await collect(loader(samples), 1))[0].sampleIndices],
    'epochs shuffle differently',
  );
});

t.test('small last batch: empty shares are still yielded', async (t) => {
  const samples = await makeSamples(tempDir(t), 5);
  const shares = await Promise.all([0, 1, 2, 3].map((rank) => collect(loader(samples, { rank, worldSize: 4 }), 0)));
  t.same(
    shares.map((s) => s.length),
    [2, 2, 2, 2],
  );
  t.same(
    shares.map((s) => s[1].count),
    [1, 0, 0, 0],
    'last global batch has one sample',
  );
  t.equal(shares[3][1].images.length, 0);
  t.equal(shares[3][1].globalPlanned, 1);
  const dropped = await collect(loader(samples, { dropLast: true }), 0);
  t.equal(dropped.length, 1, 'dropLast drops it');
});

t.test('bad files are skipped once each, counted every epoch, never thrown', async (t) => {
  const dir = tempDir(t);
  const samples = await makeSamples(dir, 8);
  writeFileSync(samples[2].path, 'garbage');
  writeFileSync(samples[5].path, Buffer.alloc(0));
  const warnings: string[] = [];
  const l = loader(samples, { onSkip: (p, reason) => warnings.push(`${path.basename(p)}: ${reason}`) });
  for (const epoch of [0, 1]) {
    const batches = await collect(l, epoch);
    t.equal(
      batches.reduce((a, b) => a + b.skipped, 0),
      2,
      `epoch ${epoch}: 2 skipped`,
    );
    t.equal(
      batches.reduce((a, b) => a + b.count, 0),
      6,
      `epoch ${epoch}: 6 images`,
    );
    t.ok(
      batches.every((b) => b.images.every(Number.isFinite)),
      'no garbage values',
    );
  }
  t.same(
    warnings.sort(),
    ['s2.png: not an image (unrecognised format)', 's5.png: empty file (0 bytes)'],
    'one warning per file',
  );
  t.same(
    l
      .skippedPaths()
      .map((s) => path.basename(s.path))
      .sort(),
    ['s2.png', 's5.png'],
  );
});

t.test('decode threads and the main thread give the same batches and the same skips', async (t) => {
  const dir = tempDir(t);
  const samples = await makeSamples(dir, 9);
  writeFileSync(samples[4].path, 'garbage');
  const run = async (decodeThreads: boolean): Promise<{ batches: Batch[]; skips: string[] }> => {
    const skips: string[] = [];
    const l = loader(samples, { decodeThreads, onSkip: (p, reason) => skips.push(`${path.basename(p)}: ${reason}`) });
    return { batches: await collect(l, 1), skips };
  };
  const threads = await run(true);
  const main = await run(false);
  t.same(threads.skips, main.skips, `skips: ${main.skips.join(', ')}`);
  t.same(
    threads.batches.map((b) => [...b.sampleIndices]),
    main.batches.map((b) => [...b.sampleIndices]),
  );
  t.ok(
    threads.batches.every((b, i) => b.images.every((v, k) => v === main.batches[i].images[k])),
    'identical pixels',
  );
});

t.test('reuseImageBuffers: the same pixels, batch by batch, in a few recycled buffers', async (t) => {
  const dir = tempDir(t);
  const samples = await makeSamples(dir, 47); // 12 batches of 4 per epoch, the last of 3
  writeFileSync(samples[9].path, 'garbage'); // a batch with a skip: a view of a full batch's buffer
  for (const mode of ['train', 'tenCrop'] as const) {
    const fresh = loader(samples, { mode });
    const reused = loader(samples, { mode, reuseImageBuffers: true });
    const everyEpoch = new Set<ArrayBufferLike>();
    // Both epochs' reference first: a loader without the option takes spare buffers too (it may:
    // nothing else holds them), and would leave none for the second epoch here.
    const wants = [await collect(fresh, 0), await collect(fresh, 1)];
    for (const epoch of [0, 1]) {
      const want = wants[epoch];
      const buffers = new Set<ArrayBufferLike>();
      let i = 0;
      let same = 0;
      // Each batch is read before the next is asked for: the consumer the option is for. It reads
      // after a wait, as a training step does, while the batches after it are decoded and written.
      for await (const b of reused.epoch(epoch)) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        const w = want[i++];
        if (
          b.images.length === w.images.length &&
          b.images.every((v, k) => v === w.images[k]) &&
          b.sampleIndices.every((v, k) => v === w.sampleIndices[k])
        )
          same++;
        buffers.add(b.images.buffer);
        everyEpoch.add(b.images.buffer);
      }
      t.equal(i, want.length, `${mode}, epoch ${epoch}: every batch`);
      t.equal(same, want.length, `${mode}, epoch ${epoch}: every batch has a fresh batch's pixels`);
      // Prefetch 2: the batch being read and two decoded ahead, plus the last batch's size.
      t.ok(buffers.size <= 5, `${mode}, epoch ${epoch}: ${i} batches in ${buffers.size} buffers`);
    }
    t.ok(everyEpoch.size <= 5, `${mode}: the second epoch reuses the first's buffers (${everyEpoch.size} in all)`);
  }
  // A consumer that stops early: the next epoch is still right.
  const fresh = loader(samples);
  const reused = loader(samples, { reuseImageBuffers: true });
  for await (const b of reused.epoch(0)) if (b.index === 2) break;
  const want = await collect(fresh, 1);
  let i = 0;
  let same = 0;
  for await (const b of reused.epoch(1)) {
    const w = want[i++];
    if (b.images.every((v, k) => v === w.images[k])) same++;
  }
  t.equal(same, want.length, "after a break, the next epoch has a fresh epoch's pixels");
});

t.test('a file deleted mid-epoch is skipped', async (t) => {
  const samples = await makeSamples(tempDir(t), 8);
  const l = loader(samples, { prefetchBatches: 0, mode: 'center' });
  const counts: number[] = [];
  for await (const b of l.epoch(0)) {
    counts.push(b.count);
    if (b.index === 0) unlinkSync(samples[6].path); // in batch 1, not decoded yet
  }
  t.same(counts, [4, 3]);
  t.match(l.skippedPaths(), [{ path: samples[6].path, reason: /file missing/ }]);
});

t.test('cacheDecoded: later epochs do not touch the files', async (t) => {
  const samples = await makeSamples(tempDir(t), 6);
  const l = loader(samples, { cacheDecoded: true });
  const first = await collect(l, 0);
  for (const s of samples) unlinkSync(s.path);
  const again = await collect(l, 0);
  t.same(
    again.map((b) => b.count),
    first.map((b) => b.count),
    'served from memory',
  );
  t.same(
    again.map((b) => [...b.images]),
    first.map((b) => [...b.images]),
    'same epoch, same pixels',
  );
  const capped = loader(samples.slice(0, 2), { cacheDecoded: true, cacheMaxBytes: 10 });
  t.equal((await collect(capped, 0))[0].count, 0, 'nothing cached under a tiny cap');
});

t.test('center and tenCrop modes', async (t) => {
  const samples = await makeSamples(tempDir(t), 5);
  const center = await collect(loader(samples, { mode: 'center' }), 7);
  t.same(
    center.flatMap((b) => [...b.sampleIndices]),
    [0, 1, 2, 3, 4],
    'no shuffle',
  );
  const decoded = await decodeFile(samples[1].path, { sizePx: RESIZE });
  if (!decoded.ok) throw new Error(decoded.reason);
  const want = new Float32Array(cropElements(CROP));
  writeCrop(decoded.pixels, RESIZE, CROP, centerCropBox(RESIZE, CROP), false, channelAffine(STATS), want, 0);
  t.same([...center[0].images.subarray(want.length, 2 * want.length)], [...want], 'centre crop, no lighting');
  const ten = await collect(loader(samples, { mode: 'tenCrop' }), 0);
  t.equal(ten[0].cropsPerImage, 10);
  t.equal(ten[0].images.length, 4 * 10 * want.length);
  t.same([...ten[0].images.subarray(14 * want.length, 15 * want.length)], [...want], 'image 1, patch 4 is the centre');
});

t.test('train mode = drawAugment(seed, epoch, index) + lighting + normalisation', async (t) => {
  const samples = await makeSamples(tempDir(t), 3);
  const decoded = await decodeFile(samples[2].path, { sizePx: RESIZE });
  if (!decoded.ok) throw new Error(decoded.reason);
  // An epoch whose draw for image 2 flips and is off-centre, so turning each part off shows.
  const centre = JSON.stringify(centerCropBox(RESIZE, CROP));
  const draw = (epoch: number) => drawAugment(rngFor(RngStream.augment, 3, epoch, 2), RESIZE, CROP);
  const epoch =
    Array.from({ length: 50 }, (_, e) => e).find((e) => draw(e).flip && JSON.stringify(draw(e).box) !== centre) ?? -1;
  t.ok(epoch >= 0, `epoch ${epoch} flips image 2 off-centre`);
  const aug = draw(epoch);
  const per = cropElements(CROP);
  for (const augment of [
    {},
    { pcaLighting: false },
    { crop: false },
    { flip: false },
    { crop: false, flip: false, pcaLighting: false },
  ]) {
    const on = { crop: true, flip: true, pcaLighting: true, ...augment };
    const want = new Float32Array(per);
    const box = on.crop ? aug.box : centerCropBox(RESIZE, CROP);
    writeCrop(
      decoded.pixels,
      RESIZE,
      CROP,
      box,
      on.flip && aug.flip,
      channelAffine(STATS, on.pcaLighting ? pcaLightingShift(STATS, aug.alphas) : undefined),
      want,
      0,
    );
    const l = loader(samples, { augment });
    t.equal(l.batchCount, 1);
    const [batch] = await collect(l, epoch);
    const k = [...batch.sampleIndices].indexOf(2);
    t.same([...batch.images.subarray(k * per, (k + 1) * per)], [...want], `augment ${JSON.stringify(augment)}`);
  }
});

t.test('options are validated', async (t) => {
  t.throws(() => loader([], { cropSize: 13 }), ConfigError);
  t.throws(() => loader([], { rank: 2, worldSize: 2 }), ConfigError);
  t.throws(() => loader([], { globalBatchSize: 0 }), ConfigError);
});
