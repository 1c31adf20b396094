import * as zlib from 'node:zlib';
import sharp from 'sharp';
import t from 'tap';
import { decodeBuffer } from '../../src/data/decode/decode';
import { decodePlainPng, encodePng, unfilter } from '../../src/data/decode/png';
import { fromRaw, rawImage } from './fixtures/images';

/** Smooth colours with noise on top: every PNG filter type wins somewhere in such an image. */
function photoLike(widthPx: number, heightPx: number, channels: 1 | 3, seed: number): Buffer {
  let state = seed * 2654435761;
  const noise = (): number => {
    state = (state * 1103515245 + 12345) >>> 0;
    return (state >>> 24) % 40;
  };
  return rawImage(widthPx, heightPx, channels, (x, y) =>
    Array.from({ length: channels }, (_, c) =>
      Math.min(255, Math.round(100 + 90 * Math.sin(x / 5 + c) * Math.cos(y / 7)) + noise()),
    ),
  );
}

/** The pixels sharp decodes from `png`, 8-bit, as stored (no colour conversion). */
async function sharpPixels(png: Buffer): Promise<{ data: Buffer; channels: number }> {
  const { data, info } = await sharp(png).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  return { data, channels: info.channels };
}

t.test('gray, RGB and palette PNGs written by sharp decode to exactly sharp pixels', async (t) => {
  const cases: [string, Buffer][] = [
    [
      'gray',
      await fromRaw(photoLike(37, 23, 1, 1), 37, 23, 1)
        .png({ adaptiveFiltering: true })
        .toBuffer(),
    ],
    [
      'RGB',
      await fromRaw(photoLike(37, 23, 3, 2), 37, 23, 3)
        .png({ adaptiveFiltering: true })
        .toBuffer(),
    ],
    [
      'RGB, compression 0',
      await fromRaw(photoLike(9, 40, 3, 3), 9, 40, 3)
        .png({ compressionLevel: 0 })
        .toBuffer(),
    ],
    [
      'palette',
      await fromRaw(photoLike(30, 30, 3, 4), 30, 30, 3)
        .png({ palette: true, colours: 64 })
        .toBuffer(),
    ],
  ];
  for (const [name, png] of cases) {
    const ours = decodePlainPng(png);
    if (!ours) {
      t.fail(`${name}: declined`);
      continue;
    }
    const want = await sharpPixels(png);
    t.equal(ours.channels, want.channels, `${name}: ${want.channels} channel(s)`);
    t.ok(Buffer.from(ours.data).equals(want.data), `${name}: every byte equals sharp's`);
  }
});

/** PNG's filter `type` applied to `rows` (each `stride` bytes, `bpp` bytes a pixel), with each row's filter byte. */
function filterRows(rows: Uint8Array[], stride: number, bpp: number, typeOf: (y: number) => number): Uint8Array {
  const filtered = new Uint8Array(rows.length * (stride + 1));
  rows.forEach((row, y) => {
    const type = typeOf(y);
    const up = y > 0 ? rows[y - 1] : new Uint8Array(stride);
    filtered[y * (stride + 1)] = type;
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? row[x - bpp] : 0;
      const b = up[x];
      const c = x >= bpp ? up[x - bpp] : 0;
      const p = a + b - c;
      const predictor = [
        0,
        a,
        b,
        (a + b) >> 1,
        Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c)
          ? a
          : Math.abs(p - b) <= Math.abs(p - c)
            ? b
            : c,
      ][type];
      filtered[y * (stride + 1) + 1 + x] = (row[x] - predictor) & 255;
    }
  });
  return filtered;
}

t.test('every filter type is undone, on the first row and the others (rows built by hand)', (t) => {
  for (const bpp of [1, 3]) {
    const stride = 4 * bpp;
    const rows = Array.from({ length: 5 }, (_, y) =>
      Uint8Array.from({ length: stride }, (_, x) => (x * 37 + y * 91 + 200) & 255),
    );
    const want = rows.flatMap((r) => Array.from(r));
    const mixed = filterRows(rows, stride, bpp, (y) => y); // filter types 0..4, one a row
    t.same(Array.from(unfilter(mixed, 5, stride, bpp) ?? []), want, `${bpp} byte(s) a pixel, types 0-4 a row each`);
    for (let type = 0; type <= 4; type++) {
      const filtered = filterRows(rows, stride, bpp, () => type);
      t.same(
        Array.from(unfilter(filtered, 5, stride, bpp) ?? []),
        want,
        `${bpp} byte(s) a pixel, type ${type} on every row`,
      );
    }
    mixed[0] = 5;
    t.equal(unfilter(mixed, 5, stride, bpp), null, 'an unknown filter type is refused');
  }
  t.end();
});

t.test("our encoder's files round-trip, stored and deflated", (t) => {
  for (const [w, h, c] of [
    [28, 28, 1],
    [90, 70, 3], // over 16 KiB raw: deflated
  ] as const) {
    const pixels = photoLike(w, h, c, 5);
    const back = decodePlainPng(encodePng(pixels, w, h, c));
    t.ok(back && back.channels === c && Buffer.from(back.data).equals(pixels), `${w}x${h}x${c}`);
  }
  t.end();
});

/** Replace the first chunk of `type` in `png` with `body` (CRC recomputed), or insert it after IHDR. */
function withChunk(png: Buffer, type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body, zlib.crc32(head.subarray(4))) >>> 0, 0);
  const afterIhdr = 8 + 12 + 13;
  return Buffer.concat([png.subarray(0, afterIhdr), head, body, crc, png.subarray(afterIhdr)]);
}

t.test('everything else is left to sharp (null), and decodeBuffer still decodes it', async (t) => {
  const rgb = photoLike(20, 20, 3, 6);
  const plain = encodePng(rgb, 20, 20, 3);
  const declined: [string, Buffer][] = [
    ['16-bit', await fromRaw(rgb, 20, 20, 3).toColourspace('rgb16').png().toBuffer()],
    [
      'RGBA',
      encodePng(
        rawImage(20, 20, 4, () => [10, 20, 30, 128]),
        20,
        20,
        4,
      ),
    ],
    [
      'gray + alpha',
      encodePng(
        rawImage(20, 20, 2, () => [10, 128]),
        20,
        20,
        2,
      ),
    ],
    ['interlaced', await fromRaw(rgb, 20, 20, 3).png({ progressive: true }).toBuffer()],
    [
      '1-bit',
      await fromRaw(
        rawImage(20, 20, 1, (x) => [x % 2 ? 255 : 0]),
        20,
        20,
        1,
      )
        .png({ palette: true, colours: 2 })
        .toBuffer(),
    ],
    ['tRNS', withChunk(plain, 'tRNS', Buffer.from([0, 10, 0, 20, 0, 30]))],
    ['gAMA', withChunk(plain, 'gAMA', Buffer.from([0, 0, 0xb1, 0x8f]))],
    ['an unknown chunk', withChunk(plain, 'abCD', Buffer.from('x'))],
  ];
  t.ok(decodePlainPng(withChunk(plain, 'tEXt', Buffer.from('Comment\0hello'))), 'a text chunk does not matter');
  for (const [name, png] of declined) {
    t.equal(decodePlainPng(png), null, `${name}: declined`);
    const r = await decodeBuffer(png, { sizePx: 20 });
    t.ok(r.ok, `${name}: sharp decodes it (${r.ok ? 'ok' : r.reason})`);
  }
});

t.test('damaged files are declined, and get sharp reasons as before', async (t) => {
  const plain = encodePng(photoLike(30, 30, 3, 7), 30, 30, 3);
  const badCrc = Buffer.from(plain);
  badCrc[8 + 8 + 4] ^= 1; // a byte of IHDR's width, its CRC now wrong
  const badData = Buffer.from(plain);
  badData[60] ^= 0xff; // inside IDAT: the CRC no longer matches
  const truncated = plain.subarray(0, plain.length - 40);
  for (const [name, png] of [
    ['bad CRC in IHDR', badCrc],
    ['bad IDAT byte', badData],
    ['truncated', truncated],
  ] as const) {
    t.equal(decodePlainPng(png), null, `${name}: declined`);
    const r = await decodeBuffer(png, { sizePx: 30 });
    t.equal(r.ok, false, `${name}: refused (${r.ok ? 'decoded' : r.reason})`);
  }
  t.equal(decodePlainPng(plain.subarray(0, plain.length - 12)), null, 'no IEND: declined (sharp accepts it)');
  t.equal(decodePlainPng(Buffer.from('not a png at all, just some text bytes here')), null, 'not a PNG');
});

t.test('decodeBuffer: plain PNGs are decoded in JS, other kernels and non-PNGs by sharp', async (t) => {
  const gray = photoLike(28, 28, 1, 8);
  const png = encodePng(gray, 28, 28, 1);
  const same = await decodeBuffer(png, { sizePx: 28 });
  const rgb = Buffer.alloc(28 * 28 * 3);
  for (let i = 0; i < gray.length; i++) rgb.fill(gray[i], 3 * i, 3 * i + 3);
  t.ok(same.ok && Buffer.from(same.pixels).equals(rgb), 'no resize: the gray pixels replicated to RGB');
  // With another kernel, enlarging goes through sharp: its output is sharp's own.
  const lanczos = await decodeBuffer(png, { sizePx: 32, kernel: 'lanczos3' });
  const sharpLanczos = await sharp(png)
    .resize(32, 32, { fit: 'cover', kernel: 'lanczos3' })
    .toColourspace('srgb')
    .raw()
    .toBuffer();
  t.ok(lanczos.ok && Buffer.from(lanczos.pixels).equals(sharpLanczos), 'lanczos3: sharp');
  const big = await decodeBuffer(png, { sizePx: 32 });
  t.ok(big.ok && big.pixels.length === 32 * 32 * 3, 'linear: 32x32x3');
  const tooBig = await decodeBuffer(png, { sizePx: 32, maxInputPixels: 100 });
  t.same(tooBig, { ok: false, reason: 'too large: 28x28 = 784 pixels > limit 100' }, 'the pixel limit still applies');
});
