import { spawnSync } from 'node:child_process';
import { chmodSync, promises as fsp, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import {
  decodeFile,
  decodeFailureReason,
  geometryProblem,
  readFailureReason,
  VAGUE_DECODE_FAILURE,
} from '../../src/data/decode/decode';
import { sniffImageSize } from '../../src/data/decode/header';
import { fromRaw, noisyJpeg, rawImage, solidImage, tempDir } from './fixtures/images';

const SIZE = 16;

/** RGB of pixel (x, y) of a decoded square. */
function px(pixels: Uint8Array, x: number, y: number, size = SIZE): number[] {
  const i = (y * size + x) * 3;
  return [pixels[i], pixels[i + 1], pixels[i + 2]];
}

function near(t: tap.Test, got: number[], want: number[], tol: number, msg: string): void {
  t.ok(
    got.every((v, i) => Math.abs(v - want[i]) <= tol),
    `${msg}: got [${got}], want [${want}] +-${tol}`,
  );
}

async function decodeOk(t: tap.Test, file: string): Promise<Uint8Array> {
  const r = await decodeFile(file, { sizePx: SIZE });
  if (!r.ok) {
    t.fail(`${path.basename(file)}: ${r.reason}`);
    return new Uint8Array(SIZE * SIZE * 3);
  }
  t.equal(r.pixels.length, SIZE * SIZE * 3, `${path.basename(file)} is ${SIZE}x${SIZE}x3`);
  return r.pixels;
}

/** Left half red, right half blue, 64x32. */
const halves = (): Buffer => rawImage(64, 32, 3, (x) => (x < 32 ? [255, 0, 0] : [0, 0, 255]));

t.test('every supported format decodes to an 8-bit sRGB square', async (t) => {
  const dir = tempDir(t);
  for (const ext of ['.jpg', '.png', '.webp', '.gif', '.tiff']) {
    const file = await solidImage(path.join(dir, `green${ext}`), [0, 200, 0], 50, 30);
    near(t, px(await decodeOk(t, file), 8, 8), [0, 200, 0], 12, ext);
  }
});

t.test('grayscale, palette and 16-bit become 3-channel 8-bit', async (t) => {
  const dir = tempDir(t);
  const grey = rawImage(20, 20, 1, () => [100]);
  await fromRaw(grey, 20, 20, 1).jpeg().toFile(path.join(dir, 'grey.jpg'));
  near(t, px(await decodeOk(t, path.join(dir, 'grey.jpg')), 5, 5), [100, 100, 100], 2, 'grey JPEG replicated to RGB');
  await fromRaw(halves(), 64, 32, 3).png({ palette: true }).toFile(path.join(dir, 'palette.png'));
  near(t, px(await decodeOk(t, path.join(dir, 'palette.png')), 0, 8), [255, 0, 0], 2, 'palette PNG');
  await fromRaw(halves(), 64, 32, 3).toColourspace('rgb16').png().toFile(path.join(dir, 'deep.png'));
  near(t, px(await decodeOk(t, path.join(dir, 'deep.png')), 15, 8), [0, 0, 255], 1, '16-bit PNG scaled to 8 bits');
  await fromRaw(grey, 20, 20, 1).toColourspace('grey16').png().toFile(path.join(dir, 'grey16.png'));
  near(t, px(await decodeOk(t, path.join(dir, 'grey16.png')), 5, 5), [100, 100, 100], 1, '16-bit grey PNG');
});

t.test('CMYK JPEG is converted to sRGB', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'cmyk.jpg');
  await fromRaw(
    rawImage(20, 20, 3, () => [220, 30, 30]),
    20,
    20,
    3,
  )
    .toColourspace('cmyk')
    .jpeg()
    .toFile(file);
  const pixels = await decodeOk(t, file);
  const [r, g, b] = px(pixels, 5, 5);
  t.ok(r > 150 && g < 90 && b < 90, `red survives the CMYK round trip: [${r}, ${g}, ${b}]`);
});

t.test('alpha is flattened on white', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'alpha.png');
  // left half transparent, right half opaque black
  await fromRaw(
    rawImage(32, 32, 4, (x) => (x < 16 ? [0, 0, 0, 0] : [0, 0, 0, 255])),
    32,
    32,
    4,
  )
    .png()
    .toFile(file);
  const pixels = await decodeOk(t, file);
  near(t, px(pixels, 1, 8), [255, 255, 255], 1, 'transparent -> white');
  near(t, px(pixels, 14, 8), [0, 0, 0], 1, 'opaque black stays black');
});

t.test('EXIF orientation is applied', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'rotated.jpg');
  // orientation 6: shown rotated 90 degrees clockwise, so the red left half ends up on top
  await fromRaw(halves(), 64, 32, 3).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toFile(file);
  const pixels = await decodeOk(t, file);
  near(t, px(pixels, 0, 0), [255, 0, 0], 30, 'top-left red');
  near(t, px(pixels, 15, 0), [255, 0, 0], 30, 'top-right red');
  near(t, px(pixels, 0, 15), [0, 0, 255], 30, 'bottom-left blue');
});

t.test('resize keeps the centre square of the shorter side', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'wide.png');
  // 96x32: thirds red | green | blue; the centre square is the green third
  await fromRaw(
    rawImage(96, 32, 3, (x) => (x < 32 ? [255, 0, 0] : x < 64 ? [0, 255, 0] : [0, 0, 255])),
    96,
    32,
    3,
  )
    .png()
    .toFile(file);
  const pixels = await decodeOk(t, file);
  near(t, px(pixels, 1, 8), [0, 255, 0], 40, 'left edge green');
  near(t, px(pixels, 14, 8), [0, 255, 0], 40, 'right edge green');
});

t.test('bad files give a reason instead of throwing', async (t) => {
  const dir = tempDir(t);
  const full = await noisyJpeg(path.join(dir, 'full.jpg'), 200, 150);
  const bytes = await fsp.readFile(full);
  const cases: [string, Buffer | null, RegExp][] = [
    ['truncated.jpg', bytes.subarray(0, Math.floor(bytes.length * 0.6)), /truncated or corrupt/],
    ['zero.jpg', Buffer.alloc(0), /empty file/],
    ['text.jpg', Buffer.from('this is not an image\n'), /not an image/],
    ['missing.jpg', null, /file missing/],
  ];
  for (const [name, content, reason] of cases) {
    if (content) writeFileSync(path.join(dir, name), content);
    const r = await decodeFile(path.join(dir, name), { sizePx: SIZE });
    t.notOk(r.ok, `${name} is refused`);
    t.match(r.ok ? '' : r.reason, reason, `${name}: reason`);
  }
  await fsp.mkdir(path.join(dir, 'folder.jpg'));
  const asDir = await decodeFile(path.join(dir, 'folder.jpg'), { sizePx: SIZE });
  t.match(asDir.ok ? '' : asDir.reason, /directory/);
});

t.test('1x1 and oversized images are refused', async (t) => {
  const dir = tempDir(t);
  const tiny = await solidImage(path.join(dir, 'pixel.gif'), [1, 2, 3], 1, 1);
  const rTiny = await decodeFile(tiny, { sizePx: SIZE });
  t.match(rTiny.ok ? '' : rTiny.reason, /too small: 1x1/);
  // a real 268-megapixel image takes seconds to make; lowering the limit exercises the same path
  const big = await solidImage(path.join(dir, 'big.png'), [1, 2, 3], 300, 200);
  const rBig = await decodeFile(big, { sizePx: SIZE, maxInputPixels: 50_000 });
  t.match(rBig.ok ? '' : rBig.reason, /too large: 300x200 = 60000 pixels > limit 50000/);
  // a header claiming 30000x20000 (no pixel data): refused at the default limit before any decode
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(30_000, 0);
  ihdr.writeUInt32BE(20_000, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const bomb = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]),
    Buffer.from('IHDR'),
    ihdr,
    Buffer.alloc(4),
  ]);
  writeFileSync(path.join(dir, 'bomb.png'), bomb);
  const rBomb = await decodeFile(path.join(dir, 'bomb.png'), { sizePx: SIZE });
  t.match(
    rBomb.ok ? '' : rBomb.reason,
    'too large: 30000x20000 = 600000000 pixels > limit 268402689',
    "default limit is sharp's",
  );
});

t.test('error classification', async (t) => {
  t.equal(readFailureReason(Object.assign(new Error('x'), { code: 'EACCES' })), 'permission denied');
  t.equal(
    readFailureReason(Object.assign(new Error('x'), { code: 'ENOENT' })),
    'file missing (deleted or moved after the dataset was indexed)',
  );
  t.match(decodeFailureReason(new Error('Input image exceeds pixel limit')), /too large/);
  t.match(decodeFailureReason(new Error('VipsJpeg: premature end of JPEG image')), /truncated/);
  t.equal(
    decodeFailureReason(new Error('Unknown error')),
    VAGUE_DECODE_FAILURE,
    "sharp's message lost to a concurrent job",
  );
  t.equal(geometryProblem(8, 100, { sizePx: 4 }), null, 'shorter side 8 is enough by default');
  t.equal(geometryProblem(100, 7, { sizePx: 4 }), 'too small: 100x7, shorter side < 8 px');
  t.equal(geometryProblem(28, 28, { sizePx: 4, minSidePx: 32 }), 'too small: 28x28, shorter side < 32 px');
  t.equal(geometryProblem(0, 10, { sizePx: 4 }), 'no image dimensions in the header');
});

/** Run decodeFile in a child process as user 'nobody' (root reads mode-000 files). */
function decodeAsNobody(file: string): { ok: boolean; reason?: string } | string {
  // Compiled (make test): plain node. From TypeScript: only its loader (tap's coverage hooks
  // would write into root-owned folders).
  const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
  const child = spawnSync(
    process.execPath,
    [...loader, path.join(__dirname, 'fixtures', `decode-child${path.extname(__filename)}`), file],
    {
      uid: 65534,
      gid: 65534,
      encoding: 'utf8',
      timeout: 30_000,
      env: { PATH: process.env.PATH ?? '', TS_NODE_TRANSPILE_ONLY: '1' },
    },
  );
  if (child.error || child.status !== 0) return `child failed: ${child.error?.message ?? child.stderr.split('\n')[0]}`;
  return JSON.parse(child.stdout) as { ok: boolean; reason?: string };
}

t.test('unreadable file', async (t) => {
  const dir = tempDir(t);
  const file = await solidImage(path.join(dir, 'secret.png'), [9, 9, 9]);
  chmodSync(file, 0o000);
  if (process.getuid?.() !== 0) {
    const r = await decodeFile(file, { sizePx: SIZE });
    t.match(r.ok ? '' : r.reason, /permission denied/);
    return;
  }
  t.ok(
    (await decodeFile(file, { sizePx: SIZE })).ok,
    'root reads a mode-000 file, so as root it is simply a good image',
  );
  chmodSync(dir, 0o755);
  const r = decodeAsNobody(file);
  if (typeof r === 'string') {
    t.skip(`as nobody: cannot run a child as 'nobody' here (${r})`, async () => undefined);
    return;
  }
  t.same(r, { ok: false, reason: 'permission denied' }, 'as nobody: permission denied');
});

t.test('sniffImageSize agrees with sharp for PNG, JPEG (baseline, progressive, EXIF), GIF', async (t) => {
  const base = fromRaw(halves(), 64, 32, 3);
  const files: [string, ReturnType<typeof fromRaw>][] = [
    ['a.png', base.clone().png()],
    ['a.jpg', base.clone().jpeg()],
    ['p.jpg', base.clone().jpeg({ progressive: true })],
    ['e.jpg', base.clone().jpeg().withMetadata({ orientation: 6 })],
    ['a.gif', base.clone().gif()],
  ];
  for (const [name, img] of files) {
    const bytes = await img.toBuffer();
    const meta = await sharp(bytes).metadata();
    t.same(sniffImageSize(bytes), { widthPx: meta.width, heightPx: meta.height }, name);
  }
  t.equal(sniffImageSize(await base.clone().webp().toBuffer()), null, 'WebP goes to sharp.metadata');
  t.equal(sniffImageSize(Buffer.from([0xff, 0xd8, 0xff])), null, 'truncated JPEG header');
});
