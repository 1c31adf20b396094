import { existsSync, promises as fsp, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { ConfigError } from '../../../src/core/errors';
import { classCounts, openDataset } from '../../../src/data/index/dataset';
import { indexDataset, splitFolder } from '../../../src/data/commands/organize';
import { apportion, resolveCount, stratifiedSplit } from '../../../src/data/commands/split';
import { imageTree, tempDir } from '../fixtures/images';

t.test('apportion: exact totals, proportional, capped', async (t) => {
  t.same(apportion(10, [50, 30, 20], [50, 30, 20]), [5, 3, 2]);
  t.same(apportion(3, [1, 1, 1, 1], [1, 1, 1, 1]), [1, 1, 1, 0], 'ties go to the lower index');
  t.same(apportion(4, [10, 1], [2, 5]), [2, 2], 'caps respected, rest moved');
  t.throws(() => apportion(5, [1], [4]), ConfigError);
  t.equal(resolveCount(0.1, 1001, 'val'), 100);
  t.equal(resolveCount(5000, 70000, 'val'), 5000);
  t.throws(() => resolveCount(2.5, 10, 'val'), ConfigError);
});

t.test('stratifiedSplit: exact counts, per-class proportions, seeded', async (t) => {
  const labels = [...new Array(700).fill(0), ...new Array(200).fill(1), ...new Array(100).fill(2)];
  const a = stratifiedSplit(labels, { val: 0.1, test: 150 }, 4);
  const count = (split: string, label?: number) =>
    a.filter((s, i) => s === split && (label === undefined || labels[i] === label)).length;
  t.equal(count('test'), 150);
  t.equal(count('val'), 100);
  t.equal(count('train'), 750);
  t.same(
    [0, 1, 2].map((c) => count('test', c)),
    [105, 30, 15],
    'test share follows class sizes',
  );
  t.same(
    [0, 1, 2].map((c) => count('val', c)),
    [70, 20, 10],
  );
  t.same(stratifiedSplit(labels, { val: 0.1, test: 150 }, 4), a, 'same seed, same split');
  t.notSame(stratifiedSplit(labels, { val: 0.1, test: 150 }, 5), a, 'another seed, another split');
  t.throws(() => stratifiedSplit(labels, { val: 0.6, test: 0.5 }, 1), ConfigError);
});

t.test('data split: list files beside the class folders; link tree', async (t) => {
  const src = tempDir(t);
  await imageTree(src, { '': { cat: 10, 狗: 10 } });
  const r = await splitFolder(src, { spec: { val: 0.2, test: 0.2 }, seed: 1 });
  t.same(r.counts, { train: 12, val: 4, test: 4 });
  t.same(r.classes, ['cat', '狗']);
  const ds = await openDataset(src);
  t.equal(ds.source, 'lists');
  t.same(classCounts(ds.splits.val?.samples ?? [], 2), [2, 2], 'stratified');
  const all = ['train', 'val', 'test'].flatMap((s) => ds.splits[s as 'train']?.samples.map((x) => x.path) ?? []);
  t.equal(new Set(all).size, 20, 'each image in exactly one split');

  const out = path.join(tempDir(t), 'tree');
  await splitFolder(src, { spec: { val: 0.2, test: 0.2 }, seed: 1, outDir: out, materialize: 'link' });
  const tree = await openDataset(out);
  t.same(classCounts(tree.splits.test?.samples ?? [], 2), [2, 2]);
  const linked = tree.splits.train?.samples[0].path ?? '';
  t.equal(statSync(linked).nlink, 2, 'hard link, no copy');
  t.same(
    tree.splits.test?.samples.map((s) => path.basename(s.path)),
    ds.splits.test?.samples.map((s) => path.basename(s.path)),
    'same split as the list files',
  );
  await t.rejects(splitFolder(src, { spec: { val: 0.1, test: 0.1 }, seed: 1, materialize: 'copy' }), {
    message: /--out is required/,
  });
});

t.test('data index: list files reproduce the folder tree', async (t) => {
  const root = tempDir(t);
  await imageTree(root, { train: { b: 2, a: 3 }, val: { a: 1, b: 1 } });
  const tree = await openDataset(root);
  const out = path.join(tempDir(t), 'index');
  const r = await indexDataset(root, out);
  t.same(r.counts, { train: 5, val: 2 });
  t.ok(existsSync(path.join(out, 'classes.txt')));
  t.equal(
    (await fsp.readFile(path.join(out, 'train.txt'), 'utf8')).split('\n')[0],
    `${path.relative(out, root)}/train/a/img000.png\t0`,
  );
  const lists = await openDataset(out);
  t.equal(lists.source, 'lists');
  t.same(lists.splits, tree.splits);
  t.same(lists.classes, tree.classes);
  const again = await indexDataset(root, out);
  t.same(again.counts, { train: 5, val: 2 }, 're-indexing into its own output is allowed');
  writeFileSync(path.join(out, 'train.txt'), 'x\tbad\n');
  await t.rejects(indexDataset(root, out), {
    name: 'DataError',
    message: /train.txt already exists and was not written by alexnet: choose another --out, or pass --force/,
  });
  t.equal(await fsp.readFile(path.join(out, 'train.txt'), 'utf8'), 'x\tbad\n', 'the edited file is kept');
  await indexDataset(root, out, { force: true });
  t.not(await fsp.readFile(path.join(out, 'train.txt'), 'utf8'), 'x\tbad\n', '--force replaces it');
});
