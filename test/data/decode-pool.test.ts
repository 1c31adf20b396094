import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { decodeFile } from '../../src/data/decode/decode';
import { DecodePool } from '../../src/data/decode/decode-pool';
import { encodePng } from '../../src/data/decode/png';
import { fromRaw, noisyJpeg, rawImage, tempDir } from './fixtures/images';

t.test('decode threads give decodeFile results, in order, for every kind of file', async (t) => {
  t.ok(DecodePool.available(), 'the compiled thread script exists (the suite runs compiled)');
  const dir = tempDir(t);
  const files: string[] = [];
  for (let i = 0; i < 5; i++) {
    const file = path.join(dir, `gray${i}.png`); // the JS path
    writeFileSync(
      file,
      encodePng(
        rawImage(28, 28, 1, (x, y) => [(x * 9 + y * i) & 255]),
        28,
        28,
        1,
      ),
    );
    files.push(file);
  }
  const rgba = path.join(dir, 'rgba.png'); // sharp, in the thread
  await fromRaw(
    rawImage(20, 30, 4, (x) => [x * 10, 50, 90, 128]),
    20,
    30,
    4,
  )
    .png()
    .toFile(rgba);
  const jpeg = await noisyJpeg(path.join(dir, 'photo.jpg'), 60, 45);
  const garbage = path.join(dir, 'garbage.png');
  writeFileSync(garbage, 'not an image');
  files.push(rgba, jpeg, garbage, path.join(dir, 'missing.png'), files[0]);

  const pool = new DecodePool(2);
  t.teardown(() => pool.close());
  const opts = { sizePx: 32 };
  const threaded = await pool.decode(files, opts);
  const inline = await Promise.all(files.map((f) => decodeFile(f, opts)));
  t.equal(threaded.length, files.length);
  threaded.forEach((r, i) => {
    const want = inline[i];
    const name = path.basename(files[i]);
    if (r.ok && want.ok) t.ok(Buffer.from(r.pixels).equals(Buffer.from(want.pixels)), `${name}: same pixels`);
    else t.same(r, want, `${name}: same result`);
  });
  t.same(
    threaded.map((r) => r.ok),
    [true, true, true, true, true, true, true, false, false, true],
  );
  t.same(await pool.decode([], opts), [], 'nothing to decode');
  // Several requests in flight at once, as the loader's prefetch sends them.
  const again = await Promise.all([pool.decode(files.slice(0, 3), opts), pool.decode(files.slice(3), opts)]);
  t.same(
    again.flat().map((r) => r.ok),
    threaded.map((r) => r.ok),
  );
});

t.test('bad sizes are refused', async (t) => {
  t.throws(() => new DecodePool(0), RangeError);
});
