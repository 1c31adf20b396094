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
import { jpegOrientation, sniffImageSize } from '../../src/data/decode/header';
import {
  JPEG_ADDON_FILE,
  jpegAddonPath,
  loadJpegAddon,
  nativeResampler,
  tapArrays,
  type TapArrays,
} from '../../src/data/decode/jpeg-addon';
import { resizeCoverToRgb, squareTaps, type PixelImage } from '../../src/data/decode/resample';
import { fromRaw, noisyJpeg, rawImage, tempDir } from './fixtures/images';
import { buildAddonIfMissing } from '../helpers/native-addon';
import { channelAffine, writeCropJs, type ChannelAffine } from '../../src/data/augment';
import { IMAGENET_STATS } from '../../src/data/stats';

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

/** The reference: sharp's full-size decode (libjpeg-turbo too), turned upright, resampled by resample.ts. */
async function jsResampleOfFullDecode(file: string, sizePx: number): Promise<Uint8Array> {
  const { data, info } = await sharp(file, { autoOrient: true }).raw().toBuffer({ resolveWithObject: true });
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

/** `image` written to dir/name; the file's path. */
async function writeImage(dir: string, name: string, image: ReturnType<typeof sharp>): Promise<string> {
  await image.toFile(path.join(dir, name));
  return path.join(dir, name);
}

/** An IFD entry: tag, type, count and a 16-bit value. */
type IfdEntry = [tag: number, type: number, count: number, value: number];

/**
 * `jpeg` with an APP1 EXIF block (IFD0 holding `entries`, at offset `ifd`) right after its start
 * of image: an orientation without the sRGB profile that sharp's withMetadata adds.
 */
function withExif(jpeg: Buffer, little: boolean, entries: IfdEntry[], ifd = 8): Buffer {
  const tiff = Buffer.alloc(8 + 2 + 12 * entries.length + 4);
  const u16 = (v: number, at: number): number => (little ? tiff.writeUInt16LE(v, at) : tiff.writeUInt16BE(v, at));
  const u32 = (v: number, at: number): number => (little ? tiff.writeUInt32LE(v, at) : tiff.writeUInt32BE(v, at));
  tiff.write(little ? 'II' : 'MM', 0, 'latin1');
  u16(42, 2);
  u32(ifd, 4);
  u16(entries.length, 8);
  entries.forEach(([tag, type, count, value], e) => {
    u16(tag, 10 + 12 * e);
    u16(type, 12 + 12 * e);
    u32(count, 14 + 12 * e);
    u16(value, 18 + 12 * e);
  });
  const payload = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
  const header = Buffer.from([0xff, 0xe1, (payload.length + 2) >> 8, (payload.length + 2) & 0xff]);
  return Buffer.concat([jpeg.subarray(0, 2), header, payload, jpeg.subarray(2)]);
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
  const cases: [string, string, number][] = [
    ['4:2:0 photo, 375 -> 256 rows', photo, 256],
    [
      '4:4:4, progressive',
      await writeImage(
        dir,
        'p444.jpg',
        sharp(photo).jpeg({ quality: 85, chromaSubsampling: '4:4:4', progressive: true }),
      ),
      224,
    ],
    ['grayscale', await writeImage(dir, 'gray.jpg', sharp(photo).grayscale().jpeg()), 200],
    [
      'exact: 300x256 to 256, a whole-pixel crop',
      await writeImage(dir, 'exact.jpg', sharp(photo).resize(300, 256, { fit: 'fill' }).jpeg()),
      256,
    ],
    [
      'enlarged: 61x41 to 64',
      await writeImage(dir, 'small.jpg', sharp(photo).resize(61, 41, { fit: 'fill' }).jpeg()),
      64,
    ],
  ];
  for (const [what, file, sizePx] of cases) {
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

t.test('every EXIF orientation: the upright image, byte for byte', { skip: addon ? false : said }, async (t) => {
  const dir = tempDir(t);
  const photo = await noisyJpeg(path.join(dir, 'photo.jpg'), 61, 41, 4);
  for (let orientation = 1; orientation <= 8; orientation++) {
    const file = path.join(dir, `o${orientation}.jpg`);
    const bytes = withExif(await fsp.readFile(photo), orientation % 2 === 0, [[0x0112, 3, 1, orientation]]);
    writeFileSync(file, bytes);
    t.equal(jpegOrientation(bytes), orientation, `orientation ${orientation}: read from the file`);
    const got = pixelsOf(t, await decodeFile(file, { sizePx: 32 }), `orientation ${orientation}`);
    const want = await jsResampleOfFullDecode(file, 32);
    t.same(difference(got, want), { count: 0, max: 0, mean: 0 }, `orientation ${orientation}: sharp's upright image`);
    const [w, h] = orientation >= 5 ? [41, 61] : [61, 41];
    t.equal(
      addon?.decodeSquare(
        new Uint8Array(bytes),
        8,
        orientation,
        w,
        h,
        ...flatTaps(w, h, 32),
        new Uint8Array(32 * 32 * 3),
      ),
      null,
      `orientation ${orientation}: the addon decodes it (${w}x${h} upright)`,
    );
  }
  // Scaled and turned: a smooth 640x400 photo shown upright at 400x640, decoded at 2/8.
  const smooth = rawImage(640, 400, 3, (x, y) => [Math.round((x / 640) * 220), Math.round((y / 400) * 220), 90]);
  const turned = path.join(dir, 'turned.jpg');
  writeFileSync(
    turned,
    withExif(await fromRaw(smooth, 640, 400, 3).jpeg({ quality: 92 }).toBuffer(), true, [[0x0112, 3, 1, 6]]),
  );
  t.equal(jpegDecodeScale({ widthPx: 640, heightPx: 400 }, 64), 2, '2/8: 160x100 (1/8 gives 50 rows < 64)');
  const got = pixelsOf(t, await decodeFile(turned, { sizePx: 64 }), 'turned.jpg');
  const d = difference(got, await jsResampleOfFullDecode(turned, 64));
  t.ok(
    d.mean < 1 && d.max <= 8,
    `against sharp's full upright decode: mean |diff| ${d.mean.toFixed(3)} < 1, max ${d.max}`,
  );
  t.ok(d.count > 0, 'and not the full decode itself (the scaled decode ran)');
});

t.test('jpegOrientation reads the first EXIF block, and gives up on what it cannot read', async (t) => {
  const jpeg = await fromRaw(
    rawImage(16, 16, 3, () => [9, 99, 199]),
    16,
    16,
    3,
  )
    .jpeg()
    .toBuffer();
  t.equal(jpegOrientation(jpeg), 1, 'no EXIF: upright');
  t.equal(jpegOrientation(withExif(jpeg, true, [[0x0112, 3, 1, 6]])), 6, 'little-endian (II)');
  t.equal(jpegOrientation(withExif(jpeg, false, [[0x0112, 3, 1, 8]])), 8, 'big-endian (MM)');
  t.equal(
    jpegOrientation(
      withExif(jpeg, false, [
        [0x010f, 2, 4, 0],
        [0x0112, 3, 1, 3],
      ]),
    ),
    3,
    'after another tag',
  );
  t.equal(jpegOrientation(withExif(jpeg, true, [[0x010f, 2, 4, 0]])), 1, 'EXIF without the tag: upright');
  t.equal(
    jpegOrientation(withExif(jpeg, true, [[0x0112, 4, 1, 6]])),
    null,
    'a LONG where a SHORT belongs: sharp decides',
  );
  t.equal(jpegOrientation(withExif(jpeg, true, [[0x0112, 3, 1, 9]])), null, 'value 9: sharp decides');
  t.equal(jpegOrientation(withExif(jpeg, true, [[0x0112, 3, 1, 6]], 0xfffffffe)), null, 'IFD0 offset past the block');
  t.equal(jpegOrientation(withExif(jpeg, true, [[0x0112, 3, 1, 6]], 30)), null, 'entries past the block');
  const twice = withExif(jpeg, true, [[0x0112, 3, 1, 6]]);
  const second = withExif(jpeg, true, [[0x0112, 3, 1, 3]]);
  const app1 = second.subarray(2, second.length - jpeg.length + 2);
  t.equal(
    jpegOrientation(Buffer.concat([twice.subarray(0, 2), app1, twice.subarray(2)])),
    3,
    'the first EXIF block counts',
  );
  t.equal(sniffImageSize(withExif(jpeg, true, [[0x0112, 3, 1, 6]]))?.widthPx, 16, 'the size is still found after it');
});

t.test("files the addon does not take get sharp's result", { skip: addon ? false : said }, async (t) => {
  const dir = tempDir(t);
  const halves = rawImage(64, 32, 3, (x) => (x < 32 ? [255, 0, 0] : [0, 0, 255]));
  const photo = await noisyJpeg(path.join(dir, 'photo.jpg'), 120, 90, 2);
  const bytes = await fsp.readFile(photo);
  const files: [string, string][] = [
    ['CMYK', await writeImage(dir, 'cmyk.jpg', fromRaw(halves, 64, 32, 3).toColourspace('cmyk').jpeg())],
    ['an ICC profile (Display P3)', await writeImage(dir, 'p3.jpg', sharp(photo).withIccProfile('p3').jpeg())],
  ];
  for (const [what, file] of files) {
    const got = pixelsOf(t, await decodeFile(file, { sizePx: 32 }), what);
    const bySharp = pixelsOf(t, await decodeWithSharp(file, { sizePx: 32 }), what);
    t.same(difference(got, bySharp), { count: 0, max: 0, mean: 0 }, `${what}: sharp's pixels`);
    t.equal(
      addon?.decodeSquare(
        new Uint8Array(await fsp.readFile(file)),
        8,
        1,
        1,
        1,
        ...flatTaps(1, 1, 1),
        new Uint8Array(3),
      ),
      what.startsWith('CMYK') ? 'not gray, YCbCr or RGB (CMYK/YCCK need colour management)' : 'has an ICC profile',
      `${what}: the addon says why it leaves the file to sharp`,
    );
  }

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
function flatTaps(widthPx: number, heightPx: number, sizePx: number): TapArrays {
  return tapArrays(squareTaps(widthPx, heightPx, sizePx));
}

t.test('decodeSquare checks its arguments', { skip: addon ? false : said }, async (t) => {
  const dir = tempDir(t);
  const input = new Uint8Array(await fsp.readFile(await noisyJpeg(path.join(dir, 'a.jpg'), 40, 30)));
  const out = new Uint8Array(16 * 16 * 3);
  t.equal(addon?.decodeSquare(input, 8, 1, 40, 30, ...flatTaps(40, 30, 16), out), null, 'a plain JPEG decodes');
  t.equal(
    addon?.decodeSquare(input, 8, 1, 41, 30, ...flatTaps(41, 30, 16), out),
    'decoded 40x30 upright, expected 41x30',
    'taps for another size: a reason, not pixels',
  );
  t.throws(
    () => addon?.decodeSquare(input, 8, 1, 40, 30, ...flatTaps(40, 30, 16), new Uint8Array(10)),
    /taps and output sizes disagree/,
    'an output of the wrong size',
  );
  const wrongType = new Float32Array(3) as unknown as Int32Array;
  const [, offset, weights, ...down] = flatTaps(40, 30, 16);
  t.throws(
    () => addon?.decodeSquare(input, 8, 1, 40, 30, wrongType, offset, weights, ...down, out),
    /bad argument types/,
    'a Float32Array where Int32Array belongs',
  );
  const [first] = flatTaps(40, 30, 16);
  const outside = Int32Array.from(first, (v) => v + 30);
  t.throws(
    () => addon?.decodeSquare(input, 8, 1, 40, 30, outside, offset, weights, ...down, out),
    /taps read outside the image/,
    'taps that would read past the row',
  );
  const noTaps = Int32Array.from(offset, () => 0);
  t.throws(
    () => addon?.decodeSquare(input, 8, 1, 40, 30, first, noTaps, new Float64Array(0), ...down, out),
    /taps read outside the image/,
    'outputs without a single tap',
  );
  t.throws(
    () => addon?.decodeSquare(input, 8, 9, 40, 30, ...flatTaps(40, 30, 16), out),
    /scale or orientation out of range/,
    'orientation 9 (EXIF has 1-8)',
  );
});

t.test("resampleSquare (decoded PNGs): the JS resample's bytes", { skip: addon ? false : said }, async (t) => {
  const native = nativeResampler(addon);
  if (native == null) throw new Error('the addon has no resampleSquare');
  let seed = 7;
  const noise = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % 256;
  const image = (widthPx: number, heightPx: number, channels: 1 | 3): PixelImage => ({
    widthPx,
    heightPx,
    channels,
    data: Uint8Array.from({ length: widthPx * heightPx * channels }, noise),
  });
  const cases: [number, number, 1 | 3, number][] = [
    [28, 28, 1, 32], // Fashion-MNIST at the small preset
    [28, 28, 3, 32],
    [40, 30, 1, 16], // shrinking, landscape
    [31, 57, 3, 64], // enlarging, portrait, odd sizes
    [500, 375, 3, 256],
    [3, 2, 1, 5],
  ];
  for (const [w, h, c, size] of cases) {
    const img = image(w, h, c);
    const js = resizeCoverToRgb(img, size);
    const cpp = resizeCoverToRgb(img, size, native);
    t.equal(cpp.length, size * size * 3, `${w}x${h}x${c} -> ${size}: an RGB square`);
    t.ok(
      cpp.every((v, i) => v === js[i]),
      `${w}x${h}x${c} -> ${size}: the same bytes as the JS resample`,
    );
  }
  const img = image(20, 10, 3);
  const taps = flatTaps(20, 10, 8);
  const out = new Uint8Array(8 * 8 * 3);
  t.throws(
    () => addon?.resampleSquare?.(img.data, 20, 10, 2, ...taps, out),
    /not width x height x channels/,
    '2 channels',
  );
  t.throws(
    () => addon?.resampleSquare?.(img.data.subarray(1), 20, 10, 3, ...taps, out),
    /not width x height x channels/,
    'a pixel short',
  );
  t.throws(() => addon?.resampleSquare?.(img.data, 20, 10, 3, ...taps, out.subarray(3)), /sizes disagree/);
  t.throws(() => addon?.resampleSquare?.(img.data, 19, 10, 3, ...flatTaps(20, 10, 8), out), /not width x height/);
  // A middle output reading past the rows the last one reads (first [0, 0, 1], 1, 3 and 1 taps).
  const [a0, a1, a2] = flatTaps(3, 3, 3);
  const down = [Int32Array.from([0, 0, 1]), Int32Array.from([0, 1, 4, 5]), new Float64Array(5).fill(0.2)] as const;
  t.throws(
    () => addon?.resampleSquare?.(new Uint8Array(27), 3, 3, 3, a0, a1, a2, ...down, new Uint8Array(27)),
    /taps read outside the image/,
    'rows the vertical pass would not keep',
  );
  t.equal(nativeResampler(null), null, 'no addon: the JS resample');
  t.equal(nativeResampler({ decodeSquare: () => null }), null, 'a build without resampleSquare: the JS resample');
});

t.test(
  "writeCrop (the loader's crop on the training thread): writeCropJs's floats",
  { skip: addon ? false : said },
  async (t) => {
    const writeNative = addon?.writeCrop;
    if (!writeNative) return t.fail('this build has no writeCrop');
    let seed = 5;
    const src = Uint8Array.from({ length: 40 * 40 * 3 }, () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
    const affines: ChannelAffine[] = [
      channelAffine(null),
      channelAffine(IMAGENET_STATS, [0.013, -0.021, 0.007]),
      { scale: [1 / 3, 0.1, 7], offset: [-0.3, 1e-9, -123.456] }, // products that round differently in float than in double
    ];
    for (const [k, affine] of affines.entries()) {
      for (const flip of [false, true]) {
        for (const [crop, box] of [
          [40, { xPx: 0, yPx: 0 }],
          [33, { xPx: 7, yPx: 2 }],
          [1, { xPx: 39, yPx: 39 }],
        ] as const) {
          const want = new Float32Array(5 + crop * crop * 3 + 4).fill(-7);
          const got = want.slice();
          writeCropJs(src, 40, crop, box, flip, affine, want, 5);
          writeNative(
            src,
            40,
            crop,
            box.xPx,
            box.yPx,
            flip,
            Float64Array.of(...affine.scale, ...affine.offset),
            got,
            5,
          );
          t.ok(
            Buffer.from(got.buffer).equals(Buffer.from(want.buffer)),
            `affine ${k}, ${flip ? 'flipped' : 'as is'}, ${crop} px at (${box.xPx}, ${box.yPx}): the same floats, nothing written outside`,
          );
        }
      }
    }
    const out = new Float32Array(10 * 10 * 3);
    const map = new Float64Array(6);
    t.throws(() => writeNative(src, 40, 10, 31, 0, false, map, out, 0), { code: 'JPEG_ADDON' }, 'a crop past the edge');
    t.throws(() => writeNative(src, 40, 10, 0, 0, false, map, out, 1), { code: 'JPEG_ADDON' }, 'an output too short');
    t.throws(
      () => writeNative(src, 41, 10, 0, 0, false, map, out, 0),
      { code: 'JPEG_ADDON' },
      'a square larger than src',
    );
    t.throws(
      () => writeNative(src, 40, 10, 0, 0, false, new Float64Array(3), out, 0),
      { code: 'JPEG_ADDON' },
      'a short map',
    );
  },
);

t.test('a missing addon is no error', async (t) => {
  t.equal(path.basename(JPEG_ADDON_FILE), 'alexnet_jpeg.node');
  t.equal(loadJpegAddon('/nonexistent/alexnet_jpeg.node'), null, 'null: every JPEG goes through sharp');
  const photo = await noisyJpeg(path.join(tempDir(t), 'photo.jpg'), 120, 90, 3);
  t.ok((await decodeWithSharp(photo, { sizePx: 32 })).ok, 'and decodes');
});
