import { execFileSync } from 'node:child_process';
import { promises as fsp, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { DataError } from '../../src/core/errors';
import { classCounts, openDataset } from '../../src/data/index/dataset';
import { formatListText, parseListText } from '../../src/data/index/listfile';
import { imageTree, solidImage, tempDir } from './fixtures/images';

t.test('folder tree: sorted classes, valid as val, non-ASCII names', async (t) => {
  const root = tempDir(t);
  await imageTree(root, { train: { 牛: 2, 鼠: 3, cat: 1 }, valid: { 牛: 1, 鼠: 1 }, test: { cat: 2 } });
  const ds = await openDataset(root);
  t.equal(ds.source, 'folders');
  t.same(ds.classes, ['cat', '牛', '鼠'], 'code-point order');
  t.same(classCounts(ds.splits.train?.samples ?? [], 3), [1, 2, 3]);
  t.same(classCounts(ds.splits.val?.samples ?? [], 3), [0, 1, 1], "'valid' is the val split");
  t.same(classCounts(ds.splits.test?.samples ?? [], 3), [2, 0, 0]);
  const rat = ds.splits.train?.samples.find((s) => s.label === 2);
  t.ok(
    rat && rat.path.includes(`${path.sep}鼠${path.sep}`) && path.isAbsolute(rat.path),
    'absolute path through the non-ASCII folder',
  );
  t.same(ds.splits.val?.classes, ds.classes, 'one label mapping for all splits');
});

t.test('folder tree: empty classes, stray files, dotfiles, FIFOs, nested folders', async (t) => {
  const root = tempDir(t);
  await imageTree(root, { train: { a: 2, b: 1 } });
  await fsp.mkdir(path.join(root, 'train', 'empty'));
  await solidImage(path.join(root, 'train', 'a', 'nested', 'deep.png'), [1, 2, 3]);
  writeFileSync(path.join(root, 'train', 'a', '._img000.png'), 'AppleDouble');
  writeFileSync(path.join(root, 'train', 'a', 'notes.txt'), 'hi');
  writeFileSync(path.join(root, 'train', 'stray.png'), 'x');
  execFileSync('mkfifo', [path.join(root, 'train', 'b', 'pipe.jpg')]);
  const ds = await openDataset(root);
  t.same(ds.classes, ['a', 'b'], 'an empty class folder is not a class');
  t.match(ds.warnings.join('\n'), /empty class folder/);
  t.equal(ds.splits.train?.samples.length, 4, '2 + nested + 1');
  t.ok(
    ds.splits.train?.samples.some((s) => s.path.endsWith('deep.png')),
    'nested folders belong to their class',
  );
  const reasons = Object.fromEntries(ds.ignored.map((f) => [path.basename(f.path), f.reason]));
  t.match(reasons, {
    'notes.txt': /unsupported extension/,
    'stray.png': /not inside a class folder/,
    'pipe.jpg': /not a regular file/,
  });
  t.notOk('._img000.png' in reasons, 'dotfiles are skipped silently');
});

t.test('unusable roots are DataErrors with a hint', async (t) => {
  const root = tempDir(t);
  await t.rejects(openDataset(path.join(root, 'nope')), DataError, 'missing root');
  await imageTree(root, { cat: { x: 1 } });
  await t.rejects(openDataset(root), { name: 'DataError', message: /no train\/val\/test folders.*data split/s });
  const empty = tempDir(t);
  await fsp.mkdir(path.join(empty, 'train', 'a'), { recursive: true });
  writeFileSync(path.join(empty, 'train', 'a', 'x.bmp'), 'BM');
  await t.rejects(openDataset(empty), {
    name: 'DataError',
    message: /no image files found.*x\.bmp.*unsupported extension/,
  });
  const both = tempDir(t);
  await imageTree(both, { val: { a: 1 }, valid: { a: 1 } });
  await t.rejects(openDataset(both), { message: /both val and valid exist/ });
});

t.test('list files: CRLF, BOM, blank lines, spaces, relative and absolute paths', async (t) => {
  const root = tempDir(t);
  await solidImage(path.join(root, 'imgs', 'a b.png'), [1, 1, 1]);
  const abs = await solidImage(path.join(root, 'elsewhere', 'c.png'), [2, 2, 2]);
  await fsp.mkdir(path.join(root, 'lists'));
  writeFileSync(path.join(root, 'train.txt'), `\uFEFFimgs/a b.png\t1\r\n\r\n${abs}\t0\r\n   \n`);
  writeFileSync(path.join(root, 'val.txt'), 'imgs/a b.png 2\n'); // Caffe style: last space
  writeFileSync(path.join(root, 'classes.txt'), '\uFEFFzero\r\none\r\ntwo\r\n');
  const ds = await openDataset(root);
  t.equal(ds.source, 'lists');
  t.same(ds.classes, ['zero', 'one', 'two']);
  t.same(ds.splits.train?.samples, [
    { path: path.join(root, 'imgs', 'a b.png'), label: 1 },
    { path: abs, label: 0 },
  ]);
  t.same(
    ds.splits.val?.samples.map((s) => s.label),
    [2],
  );
});

t.test('list files: errors are reported as file:line', async (t) => {
  const root = tempDir(t);
  await solidImage(path.join(root, 'x.png'), [1, 1, 1]);
  writeFileSync(path.join(root, 'classes.txt'), 'a\nb\n');
  writeFileSync(path.join(root, 'train.txt'), 'x.png\t0\nx.png\tcat\n\nx.png\t2\nx.png\t-1\nnolabel\n');
  const err = await openDataset(root).catch((e: unknown) => e);
  t.type(err, DataError);
  const msg = (err as Error).message;
  const file = path.join(root, 'train.txt');
  t.match(msg, `${file}:2: label "cat" is not an integer`);
  t.match(msg, `${file}:4: label 2 is out of range 0..1 (classes.txt has 2 classes)`);
  t.match(msg, `${file}:5: label -1 is out of range`);
  t.match(msg, `${file}:6: expected "path<TAB>label"`);
  t.notMatch(msg, `${file}:1:`);
});

t.test('list files: missing files are left out with file:line, labels without classes.txt', async (t) => {
  const root = tempDir(t);
  await solidImage(path.join(root, 'x.png'), [1, 1, 1]);
  writeFileSync(path.join(root, 'train.txt'), 'x.png\t4\ngone.png\t1\n');
  const ds = await openDataset(root);
  t.same(ds.classes, ['0', '1', '2', '3', '4'], 'labels 0..max without classes.txt');
  t.equal(ds.splits.train?.samples.length, 1);
  t.match(ds.ignored[0], {
    path: path.join(root, 'gone.png'),
    reason: `listed at ${path.join(root, 'train.txt')}:2 but missing`,
  });
  t.match(ds.warnings[0], /1 listed file\(s\) do not exist/);
  writeFileSync(path.join(root, 'train.txt'), 'gone.png\t1\n');
  await t.rejects(openDataset(root), { name: 'DataError', message: /no image files found/ });
});

t.test('parseListText and formatListText round-trip', async (t) => {
  const dir = '/data/set';
  const samples = [
    { path: '/data/set/a/1.png', label: 0 },
    { path: '/data/set/b/two words.jpg', label: 3 },
  ];
  const text = formatListText(samples, dir);
  t.equal(text, 'a/1.png\t0\nb/two words.jpg\t3\n');
  const parsed = parseListText(text, path.join(dir, 'train.txt'), 4);
  t.same(parsed.problems, []);
  t.same(
    parsed.entries.map((e) => ({ path: e.path, label: e.label })),
    samples,
  );
});
