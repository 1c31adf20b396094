import { existsSync, mkdirSync, promises as fsp, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import sharp from 'sharp';
import t from 'tap';
import { DataError } from '../../../src/core/errors';
import { classCounts, openDataset } from '../../../src/data/index/dataset';
import { dedupeByContent } from '../../../src/data/commands/dedupe';
import { FASHION_MNIST_CLASSES, materializeFashionMnist } from '../../../src/data/commands/fashion-mnist';
import { idxImages, parseIdx, readIdxFile } from '../../../src/data/commands/idx';
import { buildImageTree, COMPLETE_MARKER } from '../../../src/data/commands/image-tree';
import { encodePng, zlibStored } from '../../../src/data/decode/png';
import { mulberry32 } from '../../../src/data/rng';
import { tempDir } from '../fixtures/images';

function randomBytes(n: number, seed: number): Uint8Array {
  const rng = mulberry32(seed);
  return Uint8Array.from({ length: n }, () => rng.nextInt(256));
}

/** IDX bytes: magic, dims, data. */
function idxBytes(dims: number[], data: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head[2] = 0x08;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, data]);
}

t.test('encodePng: sharp reads back the exact pixels', async (t) => {
  for (const [w, h, c] of [
    [28, 28, 1],
    [5, 3, 3],
    [100, 70, 3],
  ] as const) {
    const pixels = randomBytes(w * h * c, w);
    const png = encodePng(pixels, w, h, c);
    const meta = await sharp(png).metadata();
    t.same([meta.width, meta.height, meta.channels], [w, h, c], `${w}x${h}x${c} geometry`);
    // sharp outputs sRGB unless told to keep one grey band
    const { data } = await (c === 1 ? sharp(png).toColourspace('b-w') : sharp(png))
      .raw()
      .toBuffer({ resolveWithObject: true });
    t.ok(Buffer.from(pixels).equals(data), `${w}x${h}x${c} pixels identical`);
  }
  const big = randomBytes(70_000, 9);
  t.ok(zlib.inflateSync(zlibStored(big)).equals(Buffer.from(big)), 'stored zlib stream with several blocks inflates');
  t.throws(() => encodePng(new Uint8Array(3), 2, 2, 1), RangeError);
});

t.test('IDX: parse, gzip, errors', async (t) => {
  const dir = tempDir(t);
  const pixels = randomBytes(3 * 4 * 2, 1);
  writeFileSync(path.join(dir, 'img.gz'), zlib.gzipSync(idxBytes([3, 4, 2], pixels)));
  writeFileSync(path.join(dir, 'lab'), idxBytes([3], Uint8Array.from([2, 0, 1])));
  const images = await readIdxFile(path.join(dir, 'img.gz'));
  t.same(images.dims, [3, 4, 2]);
  const set = idxImages(images, await readIdxFile(path.join(dir, 'lab')), 'test');
  t.same([set.widthPx, set.heightPx, set.labels], [2, 4, [2, 0, 1]]);
  t.same([...set.pixels[1]], [...pixels.subarray(8, 16)]);
  t.throws(() => parseIdx(Buffer.from([1, 2, 3, 4])), { message: /bad magic/ });
  t.throws(() => parseIdx(idxBytes([5], new Uint8Array(4))), { message: /expected 5 data bytes/ });
  t.throws(() => idxImages(images, parseIdx(idxBytes([2], new Uint8Array(2))), 'x'), DataError);
});

t.test('dedupeByContent: keeps one copy, drops contents with two labels', async (t) => {
  const a = Uint8Array.from([1, 2]),
    b = Uint8Array.from([3, 4]),
    c = Uint8Array.from([5, 6]);
  const r = dedupeByContent([
    { pixels: a, label: 0 },
    { pixels: b, label: 1 },
    { pixels: Uint8Array.from(a), label: 0 },
    { pixels: c, label: 2 },
    { pixels: Uint8Array.from(c), label: 3 },
  ]);
  t.same(r, { kept: [0, 1], duplicateCopies: 1, conflicting: [3, 4] });
});

t.test('buildImageTree: atomic, replaces its own tree, never a foreign folder', async (t) => {
  const root = tempDir(t);
  const out = path.join(root, 'tree');
  const img = { split: 'train' as const, className: 'a', fileName: 'x.png', pixels: new Uint8Array(4) };
  await buildImageTree(out, [img], { widthPx: 2, heightPx: 2, channels: 1 }, { v: 1 });
  t.ok(existsSync(path.join(out, COMPLETE_MARKER)));
  await buildImageTree(out, [{ ...img, fileName: 'y.png' }], { widthPx: 2, heightPx: 2, channels: 1 }, { v: 2 });
  t.same(await fsp.readdir(path.join(out, 'train', 'a')), ['y.png'], 'old tree replaced');
  t.same((await fsp.readdir(root)).sort(), ['tree'], 'no staging folders left');
  const foreign = path.join(root, 'mine');
  mkdirSync(foreign);
  await t.rejects(buildImageTree(foreign, [img], { widthPx: 2, heightPx: 2, channels: 1 }, {}), {
    message: /not made by this tool/,
  });
});

t.test('materializeFashionMnist on a small fake package: dedupe, split, idempotent', async (t) => {
  const pkg = tempDir(t);
  const rows = (label: number) => Array.from({ length: 20 }, (_, i) => Array.from(randomBytes(784, label * 100 + i)));
  for (let label = 0; label < 10; label++) {
    const data: unknown[] = rows(label);
    if (label === 0) data.push([], data[0]); // a malformed row and an exact duplicate
    if (label === 1) data.push(rows(2)[5]); // the same picture as class 2's #5: mislabelled somewhere
    writeFileSync(path.join(pkg, `${label}.json`), JSON.stringify({ data }));
  }
  const out = path.join(tempDir(t), 'fm');
  const r = await materializeFashionMnist({ outDir: out, test: 40, val: 20, seed: 1, packageDir: pkg });
  t.same(r.malformed, ['0:20']);
  t.equal(r.duplicateCopies, 1);
  t.equal(r.conflicting, 2);
  t.same(r.counts, { train: 139, val: 20, test: 40 }, '202 good rows - 1 duplicate copy - 2 conflicting = 199');
  const ds = await openDataset(out);
  t.same(ds.classes, [...FASHION_MNIST_CLASSES].sort());
  t.same(classCounts(ds.splits.test?.samples ?? [], 10), new Array(10).fill(4), 'test is stratified');
  const png = await sharp(
    path.join(out, 'train', 'bag', (await fsp.readdir(path.join(out, 'train', 'bag')))[0]),
  ).metadata();
  t.same([png.width, png.height, png.channels, png.format], [28, 28, 1, 'png'], '28x28 grayscale PNG');
  const again = await materializeFashionMnist({ outDir: out, test: 40, val: 20, seed: 1, packageDir: pkg });
  t.ok(again.alreadyComplete, 'second run is a no-op');
});
