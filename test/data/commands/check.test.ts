import { promises as fsp, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import yargs from 'yargs';
import { DataError } from '../../../src/core/errors';
import { checkDataset, formatCheckReport, isUnusable, preflight } from '../../../src/data/commands/check';
import { makeDataCommand } from '../../../src/data/commands/commands';
import { openDataset } from '../../../src/data/index/dataset';
import { decodeFile } from '../../../src/data/decode/decode';
import { prepareDataset } from '../../../src/data/commands/prepare';
import { loadStats } from '../../../src/data/stats';
import { imageTree, noisyJpeg, solidImage, tempDir } from '../fixtures/images';

/** A dataset with one bad file of each kind among good ones. */
async function messyDataset(root: string): Promise<void> {
  await imageTree(root, { train: { cat: 4, dog: 3 }, val: { cat: 1, dog: 1 } });
  const full = await fsp.readFile(await noisyJpeg(path.join(root, 'train', 'cat', 'photo.jpg'), 120, 90));
  writeFileSync(path.join(root, 'train', 'cat', 'cut.jpg'), full.subarray(0, full.length >> 1));
  writeFileSync(path.join(root, 'train', 'dog', 'zero.jpg'), '');
  writeFileSync(path.join(root, 'train', 'dog', 'readme.png'), 'not a png');
  await solidImage(path.join(root, 'val', 'dog', 'pixel.png'), [0, 0, 0], 1, 1);
  await fsp.mkdir(path.join(root, 'train', 'bird'));
}

async function runData(args: string[]): Promise<string[]> {
  const lines: string[] = [];
  await yargs(['data', ...args])
    .command(makeDataCommand((l) => lines.push(l)))
    .strict()
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new Error(msg);
    })
    .parseAsync();
  return lines;
}

t.test('checkDataset lists each bad file with its reason, and the balance', async (t) => {
  const root = tempDir(t);
  await messyDataset(root);
  const report = await checkDataset(await openDataset(root));
  const reasons = Object.fromEntries(report.bad.map((b) => [path.basename(b.path), b.reason]));
  t.match(reasons, {
    'cut.jpg': /truncated or corrupt/,
    'zero.jpg': /empty file/,
    'readme.png': /not an image/,
    'pixel.png': /too small: 1x1/,
  });
  t.equal(report.bad.length, 4);
  t.same(
    report.balance.map((b) => [b.split, b.valid, b.listed]),
    [
      ['train', [5, 3], [6, 5]],
      ['val', [1, 1], [1, 2]],
    ],
  );
  t.notOk(isUnusable(report));
  const text = formatCheckReport(report);
  t.match(text, /\| train \| train\/cat\/cut\.jpg\s+\| truncated or corrupt/);
  t.match(text, /empty class folder/);
  t.match(text, /\|\s+1 \| dog\s+\| 3 \(2 bad\) \| 1 \(1 bad\) \|\s+37\.5% \|/);
});

t.test('preflight: DataError when nothing decodes', async (t) => {
  const root = tempDir(t);
  const bad = ['a.jpg', 'b.png'].map((n) => path.join(root, n));
  for (const f of bad) writeFileSync(f, 'x');
  await t.rejects(
    preflight(
      bad.map((p) => ({ path: p, label: 0 })),
      { sizePx: 8 },
    ),
    { name: 'DataError', message: /none of 2 probed images/ },
  );
  const good = await solidImage(path.join(root, 'ok.png'), [1, 2, 3]);
  await preflight(
    [...bad, good].map((p) => ({ path: p, label: 0 })),
    { sizePx: 8 },
  );
  await t.rejects(preflight([], { sizePx: 8 }), DataError);
});

t.test('prepare writes a clean resized copy in the same tree', async (t) => {
  const root = tempDir(t);
  await messyDataset(root);
  const dst = path.join(tempDir(t), 'small');
  const skipped: string[] = [];
  const r = await prepareDataset(root, dst, {
    sizePx: 8,
    format: 'png',
    onSkip: (p) => skipped.push(path.basename(p)),
  });
  t.equal(r.written, 10);
  t.same(skipped.sort(), ['cut.jpg', 'pixel.png', 'readme.png', 'zero.jpg']);
  const ds = await openDataset(dst);
  t.same(ds.classes, ['cat', 'dog']);
  t.equal(ds.splits.train?.samples.length, 8);
  t.ok(
    ds.splits.train?.samples.some((s) => s.path === path.join(dst, 'train', 'cat', 'photo.png')),
    'same relative path, new extension',
  );
  const orig = await decodeFile(path.join(root, 'train', 'cat', 'img001.png'), { sizePx: 8 });
  const copy = await decodeFile(path.join(dst, 'train', 'cat', 'img001.png'), { sizePx: 8 });
  t.same(copy.ok && [...copy.pixels], orig.ok && [...orig.pixels], 'lossless copy decodes to the same square');
  const again = await prepareDataset(root, dst, { sizePx: 8, format: 'png' });
  t.same([again.written, again.reused], [0, 10], 'a second run reuses the finished files');
});

t.test('commands: check, stats, index through yargs', async (t) => {
  const root = tempDir(t);
  await messyDataset(root);
  const check = await runData(['check', root]);
  t.match(check.join('\n'), /Bad files \(4; training skips them\)/);
  const statsFile = path.join(tempDir(t), 'stats.json');
  const stats = await runData(['stats', root, '--size', '16', '--out', statsFile]);
  t.match(stats.join('\n'), /images 8\nmean \[/);
  t.match(await loadStats(path.dirname(statsFile)), { imageCount: 8, sizePx: 16 });
  const index = await runData(['index', root, '--out', path.join(tempDir(t), 'index')]);
  t.match(index[0], /2 classes; train 11, val 3/);
  const broken = tempDir(t);
  await fsp.mkdir(path.join(broken, 'train', 'a'), { recursive: true });
  writeFileSync(path.join(broken, 'train', 'a', 'x.jpg'), 'x');
  await t.rejects(runData(['check', broken]), { name: 'DataError', message: /no image could be decoded/ });
});
