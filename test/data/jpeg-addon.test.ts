/**
 * The JPEG addon: decodeFile's path for plain JPEGs. Its pixels are the JS resample's over a
 * full decode, byte for byte (or a DCT-scaled decode when it shrinks 2x and more), and every
 * file it does not take gets sharp's result, as without the addon.
 */
import { promises as fsp, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { decodeFile, DecodeResult, DecodeOptions, jpegDecodeScale } from '../../src/data/decode/decode';
import { JPEG_ADDON_FILE, jpegAddonPath, loadJpegAddon } from '../../src/data/decode/jpeg-addon';
import { resizeCoverToRgb, squareTaps } from '../../src/data/decode/resample';
import { fromRaw, noisyJpeg, rawImage, tempDir } from './fixtures/images';
import { buildAddonIfMissing } from '../helpers/native-addon';

const said = buildAddonIfMissing('data/decode/addon/build.sh', jpegAddonPath());
const addon = loadJpegAddon();

/** decodeFile as where the addon is not built: sharp for every JPEG. */
async function decodeWithSharp(file: string, opts: DecodeOptions): Promise<DecodeResult> {
  const saved = process.env['ALEXNET_JPEG_ADDON'];
  process.env['ALEXNET_JPEG_ADDON'] = '/nonexistent/alexnet_jpeg.node';
  try {
    return await decodeFile(file, opts);
  } finally {
    if (saved === undefined) delete process.env['ALEXNET_JPEG_ADDON'];
    else process.env['ALEXNET_JPEG_ADDON'] = saved;
  }
}

function pixelsOf(t: tap.Test, r: DecodeResult, what: string): Uint8Array {
  if (!r.ok) t.fail(`${what}: ${r.reason}`);
  return r.ok ? r.pixels : new Uint8Array(0);
}

/** The reference: sharp's full-size decode (libjpeg-turbo too), resampled by resample.ts. */
async function jsResampleOfFullDecode(file: string, sizePx: number): Promise<Uint8Array> {
  const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  const channels = info.channels as 1 | 3;
  return resizeCoverToRgb({ widthPx: info.width, heightPx: info.height, channels, data: new Uint8Array(data) }, sizePx);
}

/** Indices where two equal-length byte arrays differ (the count, and the largest difference). */
function difference(a: Uint8Array, b: Uint8Array): { count: number; max: number; mean: number } {
  let count = 0;
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > 0) count++;
    max = Math.max(max, d);
    sum += d;
  }
  return { count, max, mean: sum / a.length };
}

t.test('the decode scale: the smallest of 1/8, 2/8, 4/8 that still covers the square, else full size', async (t) => {
  t.equal(jpegDecodeScale({ widthPx: 500, heightPx: 375 }, 256), 8, '375 -> 256 is below 2x: full size');
  t.equal(jpegDecodeScale({ widthPx: 500, heightPx: 375 }, 64), 2, '1/8 gives 47 rows < 64; 2/8 gives 94');
  t.equal(jpegDecodeScale({ widthPx: 4000, heightPx: 3000 }, 256), 1, '1/8 of 3000 rows is 375');
  t.equal(jpegDecodeScale({ widthPx: 2048, heightPx: 2048 }, 256), 1, 'exactly 256 covers');
  t.equal(jpegDecodeScale({ widthPx: 2047, heightPx: 2047 }, 256), 1, 'rounded up as libjpeg does: 255.9 -> 256');
  t.equal(jpegDecodeScale({ widthPx: 2040, heightPx: 2040 }, 256), 2, '255 rows at 1/8: 2/8');
  t.equal(jpegDecodeScale({ widthPx: 60, heightPx: 40 }, 256), 8, 'an enlargement decodes at full size');
});

t.test('plain JPEGs: the bytes of the JS resample over a full decode', { skip: addon ? false : said }, async (t) => {
  const dir = tempDir(t);
  const photo = await noisyJpeg(path.join(dir, 'photo.jpg'), 500, 375, 1);
  const cases: [string, Promise<string>, number][] = [
    ['4:2:0 photo, 375 -> 256 rows', Promise.resolve(photo), 256],
    [
      '4:4:4, progressive',
      sharp(photo)
        .jpeg({ quality: 85, chromaSubsampling: '4:4:4', progressive: true })
        .toFile(path.join(dir, 'p444.jpg'))
        .then(() => path.join(dir, 'p444.jpg')),
      224,
    ],
    [
      'grayscale',
      sharp(photo)
        .grayscale()
        .jpeg()
        .toFile(path.join(dir, 'gray.jpg'))
        .then(() => path.join(dir, 'gray.jpg')),
      200,
    ],
    [
      'exact: 300x256 to 256, a whole-pixel crop',
      sharp(photo)
        .resize(300, 256, { fit: 'fill' })
        .jpeg()
        .toFile(path.join(dir, 'exact.jpg'))
        .then(() => path.join(dir, 'exact.jpg')),
      256,
    ],
    [
      'enlarged: 61x41 to 64',
      sharp(photo)
        .resize(61, 41, { fit: 'fill' })
        .jpeg()
        .toFile(path.join(dir, 'small.jpg'))
        .then(() => path.join(dir, 'small.jpg')),
      64,
    ],
  ];
  for (const [what, made, sizePx] of cases) {
    const file = await made;
    const got = pixelsOf(t, await decodeFile(file, { sizePx }), what);
    const want = await jsResampleOfFullDecode(file, sizePx);
    t.equal(got.length, sizePx * sizePx * 3, `${what}: a ${sizePx} square`);
    t.same(difference(got, want), { count: 0, max: 0, mean: 0 }, `${what}: identical bytes`);
    // And it is not sharp's own resize (so the test above did see the addon's output).
    const bySharp = pixelsOf(t, await decodeWithSharp(file, { sizePx }), what);
    if (!what.startsWith('exact')) t.ok(difference(got, bySharp).count > 0, `${what}: not sharp's pixels`);
  }
});

t.test('a large JPEG decodes at 1/8 scale, close to a full decode', { skip: addon ? false : said }, async (t) => {
  const dir = tempDir(t);
  // A smooth photo-like image: gradients and a soft disc, where DCT scaling and bilinear agree.
  const big = rawImage(1600, 1200, 3, (x, y) => {
    const disc = (x - 800) ** 2 + (y - 600) ** 2 < 400 ** 2 ? 60 : 0;
    return [Math.round((x / 1600) * 200) + disc, Math.round((y / 1200) * 200), 120 + disc];
  });
  const file = path.join(dir, 'big.jpg');
  await fromRaw(big, 1600, 1200, 3).jpeg({ quality: 92 }).toFile(file);
  t.equal(jpegDecodeScale({ widthPx: 1600, heightPx: 1200 }, 128), 1, '1/8: 200x150');
  const got = pixelsOf(t, await decodeFile(file, { sizePx: 128 }), 'big.jpg');
  const full = await jsResampleOfFullDecode(file, 128);
  const d = difference(got, full);
  t.ok(d.mean < 1 && d.max <= 12, `against a full decode: mean |diff| ${d.mean.toFixed(3)} < 1, max ${d.max} <= 12`);
  t.ok(d.count > 0, 'and not the full decode itself (the scaled decode ran)');
});

t.test("files the addon does not take get sharp's result", { skip: addon ? false : said }, async (t) => {
  const dir = tempDir(t);
  const halves = rawImage(64, 32, 3, (x) => (x < 32 ? [255, 0, 0] : [0, 0, 255]));
  const photo = await noisyJpeg(path.join(dir, 'photo.jpg'), 120, 90, 2);
  const bytes = await fsp.readFile(photo);
  const write = async (name: string, image: ReturnType<typeof sharp>): Promise<string> => {
    await image.toFile(path.join(dir, name));
    return path.join(dir, name);
  };
  const files: [string, string][] = [
    ['CMYK', await write('cmyk.jpg', fromRaw(halves, 64, 32, 3).toColourspace('cmyk').jpeg())],
    [
      'EXIF orientation 6',
      await write('rotated.jpg', fromRaw(halves, 64, 32, 3).jpeg().withMetadata({ orientation: 6 })),
    ],
    ['an ICC profile (Display P3)', await write('p3.jpg', sharp(photo).withIccProfile('p3').jpeg())],
  ];
  for (const [what, file] of files) {
    const got = pixelsOf(t, await decodeFile(file, { sizePx: 32 }), what);
    const bySharp = pixelsOf(t, await decodeWithSharp(file, { sizePx: 32 }), what);
    t.same(difference(got, bySharp), { count: 0, max: 0, mean: 0 }, `${what}: sharp's pixels`);
    t.equal(
      addon?.decodeSquare(new Uint8Array(await fsp.readFile(file)), 8, 1, 1, ...flatTaps(1, 1, 1), new Uint8Array(3)),
      what.startsWith('CMYK')
        ? 'not gray, YCbCr or RGB (CMYK/YCCK need colour management)'
        : what.startsWith('EXIF')
          ? 'EXIF orientation'
          : 'has an ICC profile',
      `${what}: the addon says why it leaves the file to sharp`,
    );
  }
  const orientationOne = await write('upright.jpg', fromRaw(halves, 64, 32, 3).jpeg().withMetadata({ orientation: 1 }));
  t.same(
    difference(
      pixelsOf(t, await decodeFile(orientationOne, { sizePx: 32 }), 'upright'),
      await jsResampleOfFullDecode(orientationOne, 32),
    ).count,
    0,
    'EXIF orientation 1 (upright) stays on the addon',
  );

  // Damaged data: refused for sharp's reason (the addon leaves the verdict to sharp).
  const damaged: [string, Buffer][] = [
    ['truncated.jpg', bytes.subarray(0, Math.floor(bytes.length * 0.6))],
    ['header-only.jpg', bytes.subarray(0, 400)],
    ['garbage.jpg', Buffer.concat([bytes.subarray(0, 4), Buffer.from('not a jpeg at all, only its first bytes')])],
  ];
  for (const [name, content] of damaged) {
    writeFileSync(path.join(dir, name), content);
    const got = await decodeFile(path.join(dir, name), { sizePx: 32 });
    t.notOk(got.ok, `${name} is refused`);
    t.same(got, await decodeWithSharp(path.join(dir, name), { sizePx: 32 }), `${name}: sharp's reason`);
  }
});

/** The taps of a sizePx square of a w x h image, as decodeSquare's six arguments. */
function flatTaps(
  widthPx: number,
  heightPx: number,
  sizePx: number,
): [Int32Array, Int32Array, Float64Array, Int32Array, Int32Array, Float64Array] {
  const { across, down } = squareTaps(widthPx, heightPx, sizePx);
  return [across.first, across.offset, across.weights, down.first, down.offset, down.weights];
}

t.test('decodeSquare checks its arguments', { skip: addon ? false : said }, async (t) => {
  const dir = tempDir(t);
  const input = new Uint8Array(await fsp.readFile(await noisyJpeg(path.join(dir, 'a.jpg'), 40, 30)));
  const out = new Uint8Array(16 * 16 * 3);
  t.equal(addon?.decodeSquare(input, 8, 40, 30, ...flatTaps(40, 30, 16), out), null, 'a plain JPEG decodes');
  t.equal(
    addon?.decodeSquare(input, 8, 41, 30, ...flatTaps(41, 30, 16), out),
    'decoded 40x30, expected 41x30',
    'taps for another size: a reason, not pixels',
  );
  t.throws(
    () => addon?.decodeSquare(input, 8, 40, 30, ...flatTaps(40, 30, 16), new Uint8Array(10)),
    /taps and output sizes disagree/,
    'an output of the wrong size',
  );
  const wrongType = new Float32Array(3) as unknown as Int32Array;
  const [, offset, weights, ...down] = flatTaps(40, 30, 16);
  t.throws(
    () => addon?.decodeSquare(input, 8, 40, 30, wrongType, offset, weights, ...down, out),
    /bad argument types/,
    'a Float32Array where Int32Array belongs',
  );
  const [first] = flatTaps(40, 30, 16);
  const outside = Int32Array.from(first, (v) => v + 30);
  t.throws(
    () => addon?.decodeSquare(input, 8, 40, 30, outside, offset, weights, ...down, out),
    /taps read outside the image/,
    'taps that would read past the row',
  );
});

t.test('a missing addon is no error', async (t) => {
  t.equal(path.basename(JPEG_ADDON_FILE), 'alexnet_jpeg.node');
  t.equal(loadJpegAddon('/nonexistent/alexnet_jpeg.node'), null, 'null: every JPEG goes through sharp');
  const photo = await noisyJpeg(path.join(tempDir(t), 'photo.jpg'), 120, 90, 3);
  t.ok((await decodeWithSharp(photo, { sizePx: 32 })).ok, 'and decodes');
});
