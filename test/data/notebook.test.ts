// The notebook's own dataset opens as it is: list-file path bases, --layout, class names, the
// one-pass problem list (src/data/index/list-bases.ts, layout.ts, classes.ts; src/data/commands/audit.ts).
import { promises as fsp, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { classCounts, openDataset, problemWarnings } from '../../src/data/index/dataset';
import { candidateBases, resolveListPaths } from '../../src/data/index/list-bases';
import { parseListText } from '../../src/data/index/listfile';
import { chooseLayout } from '../../src/data/index/layout';
import { classNamesFromArgs, parseClassList } from '../../src/core/class-names';
import { suggestNames } from '../../src/data/index/classes';
import { imageTree, solidImage, tempDir } from './fixtures/images';
import { NOTEBOOK_CLASSES, notebookDataset } from './fixtures/notebook';

const notebook = NOTEBOOK_CLASSES.join(',');

t.test('the notebook layout opens from the folder above and from anywhere else', async (t) => {
  const nb = await notebookDataset(tempDir(t));
  for (const cwd of [nb.parent, tempDir(t), nb.root]) {
    const ds = await openDataset(nb.root, { cwd });
    t.equal(ds.source, 'lists', `cwd ${cwd}`);
    t.equal(
      ds.splits.train?.samples.length,
      nb.counts.train,
      'every train line resolves, broken ones too (they exist)',
    );
    t.equal(ds.splits.val?.samples.length, nb.counts.valid, 'valid.txt is the val split');
    t.same(ds.ignored, [], 'nothing missing');
    t.ok(
      ds.splits.train?.samples.every(
        (s) => s.path.startsWith(nb.root + path.sep) && !s.path.includes(`signs${path.sep}signs`),
      ),
      'no signs/signs/',
    );
    t.match(
      ds.notes.join('\n'),
      new RegExp(
        `list files train.txt, val.*test.txt: paths are relative to ${nb.parent.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(the folder above signs/: the paths start with "signs/"\\)`,
      ),
    );
    t.match(
      ds.notes[2],
      `labels 0-11 have no names (no classes.txt, --classes or --classes-file); their image folders name them one to one: --classes ${notebook}`,
    );
    t.same(ds.classes, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11'], 'suggested, not applied');
    t.match(
      ds.notes[0],
      /layout auto: using the list files \(train.txt, valid.txt, test.txt\), which name every split; they list the same 74 images as the folders/,
    );
  }
  const ds = await openDataset(nb.root, { classNames: parseClassList(notebook) });
  t.same(ds.classes, [...NOTEBOOK_CLASSES], "the notebook's order");
  t.equal(ds.notes.length, 2, 'no suggestion once named');
  const snake = ds.splits.train?.samples.filter((s) => s.label === 3).map((s) => path.basename(path.dirname(s.path)));
  t.same([...new Set(snake)], ['snake'], 'label 3 stays snake: no renumbering');
  t.same(classCounts(ds.splits.train?.samples ?? [], 12), [4, 4, 4, 5, 4, 4, 5, 4, 4, 4, 4, 4]);
  const folders = await openDataset(nb.root, { layout: 'folders' });
  t.equal(folders.source, 'folders');
  t.equal(folders.classes[0], 'dog', '--layout folders: sorted folder names');
  t.match(folders.notes[0], /layout folders: the list files \(train.txt, valid.txt, test.txt\) are not used/);
  const named = await openDataset(nb.root, { layout: 'folders', classNames: parseClassList(notebook) });
  t.same(named.splits.train?.samples.filter((s) => s.label === 3).length, 5, '--classes orders folder classes too');
});

t.test('class names: --classes, --classes-file, classes.txt; distinct and non-empty', async (t) => {
  const dir = tempDir(t);
  t.same(parseClassList(' a, b ,c').names, ['a', 'b', 'c']);
  t.throws(() => parseClassList('a,b,a'), {
    name: 'ConfigError',
    message: "--classes: 'a' names both label 0 and label 2",
  });
  t.throws(() => parseClassList('a,,b'), { message: '--classes: class 1 has an empty name' });
  const file = path.join(dir, 'names.txt');
  writeFileSync(file, '\uFEFFrooster\r\ntiger\r\n\r\n');
  t.same(classNamesFromArgs({ 'classes-file': file }), { names: ['rooster', 'tiger'], source: file });
  t.throws(() => classNamesFromArgs({ classes: 'a', 'classes-file': file }), {
    message: 'give --classes or --classes-file, not both',
  });
  t.throws(() => classNamesFromArgs({ 'classes-file': path.join(dir, 'nope') }), {
    message: /--classes-file .*nope: no such file/,
  });
  t.equal(classNamesFromArgs({}), null);
  t.same(
    suggestNames(
      [
        { path: '/a/x/1.jpg', label: 0 },
        { path: '/a/y/2.jpg', label: 1 },
      ],
      2,
    ),
    ['x', 'y'],
  );
  t.equal(
    suggestNames(
      [
        { path: '/a/x/1.jpg', label: 0 },
        { path: '/a/y/2.jpg', label: 0 },
      ],
      1,
    ),
    null,
    'one label in two folders',
  );
  t.equal(
    suggestNames(
      [
        { path: '/a/x/1.jpg', label: 0 },
        { path: '/b/x/2.jpg', label: 1 },
      ],
      2,
    ),
    null,
    'two labels, one folder name',
  );
  const root = tempDir(t);
  await imageTree(root, { train: { a: 1, b: 1 } });
  await t.rejects(openDataset(root, { classNames: parseClassList('a,c') }), {
    name: 'DataError',
    message: /class folder\(s\) b are not among the 2 names of --classes/,
  });
});

t.test('path bases: decided once per file, mixed bases refused', async (t) => {
  const parent = tempDir(t);
  const root = path.join(parent, 'ds');
  await solidImage(path.join(root, 'a.png'), [1, 1, 1]);
  await solidImage(path.join(parent, 'elsewhere', 'b.png'), [2, 2, 2]);
  t.same(
    candidateBases(path.join(root, 'train.txt'), root, root).map((b) => b.kind),
    ['list', 'above'],
    'cwd = list folder: dropped',
  );
  t.same(
    candidateBases(path.join(root, 'train.txt'), root, parent).map((b) => b.kind),
    ['list', 'above', 'cwd'],
    'above and cwd kept apart',
  );
  const exists = async (p: string) =>
    fsp.stat(p).then(
      (s) => s.isFile(),
      () => false,
    );
  const list = path.join(root, 'train.txt');
  const mixed = parseListText('a.png\t0\nelsewhere/b.png\t1\n', list, null);
  const r = await resolveListPaths(list, mixed.entries, root, parent, exists);
  t.equal(r.base?.kind, 'list', 'first existing line decides');
  t.equal(r.problems.length, 1);
  t.match(r.problems[0], {
    line: 2,
    kind: 'bases',
    message: /elsewhere\/b.png exists relative to .* \(the working directory\), but this file's paths are relative to/,
  });
  writeFileSync(list, 'a.png\t0\nelsewhere/b.png\t1\n');
  await t.rejects(openDataset(root, { cwd: parent }), {
    name: 'DataError',
    message: /train.txt:2: elsewhere\/b.png exists relative to/,
  });
  const cwdOnly = parseListText('elsewhere/b.png\t1\n', list, null);
  t.equal((await resolveListPaths(list, cwdOnly.entries, root, parent, exists)).base?.kind, 'cwd');
  const above = parseListText('other/a.png\t1\n', list, null);
  t.equal(
    (await resolveListPaths(list, above.entries, root, parent, exists)).base?.kind,
    'list',
    'folder-above only for paths that start with the dataset name',
  );
});

t.test('--layout: a split that exists only as a folder is never dropped silently', async (t) => {
  const root = tempDir(t);
  await imageTree(root, { train: { a: 2, b: 2 }, val: { a: 1, b: 1 } });
  writeFileSync(path.join(root, 'val.txt'), 'val/a/img000.png\t0\n');
  const auto = await openDataset(root);
  t.equal(auto.source, 'folders');
  t.equal(auto.splits.train?.samples.length, 4, 'train kept');
  t.match(
    auto.notes[0],
    /layout auto: using the folders \(train\/, val\/\): the list files \(val.txt\) do not cover train\/; --layout lists would use val.txt alone/,
  );
  const lists = await openDataset(root, { layout: 'lists' });
  t.equal(lists.splits.train, undefined);
  t.match(lists.warnings.join('\n'), /train\/ is not used: --layout lists, and there is no train list file/);
  t.same(chooseLayout('auto', {}, { train: '/x/train' }), {
    use: 'folders',
    note: null,
    warnings: [],
    compareWithFolders: false,
  });
});

t.test('every problem in one pass, each with file:line', async (t) => {
  const root = tempDir(t);
  for (const f of ['a', 'b', 'c', 'd']) await solidImage(path.join(root, `${f}.png`), [1, 1, 1]);
  writeFileSync(
    path.join(root, 'train.txt'),
    'a.png\t0\nb.png\t1\nc.png\t2\nd.png\t7\na.png\t1\nb.png\tx\ngone.png\t0\nc.png\t2\n',
  );
  writeFileSync(path.join(root, 'val.txt'), 'd.png\t5\n');
  const ds = await openDataset(root, { strict: false });
  const list = ds.problems.map((p) => `${path.basename(p.file)}:${p.line} ${p.kind}`).sort();
  t.same(
    list,
    [
      'train.txt:4 gap',
      'train.txt:5 duplicate',
      'train.txt:6 label',
      'train.txt:7 missing',
      'train.txt:8 duplicate',
      'val.txt:1 duplicate',
      'val.txt:1 gap',
      'val.txt:1 not-in-train',
    ].sort(),
  );
  const gap = ds.problems.find((p) => p.kind === 'gap' && p.line === 4);
  t.match(gap?.message, /label 7: labels 6-6|label 7: label 6 has no image/);
  await t.rejects(openDataset(root), { name: 'DataError', message: /train.txt:6: label "x" is not an integer/ });
  writeFileSync(path.join(root, 'train.txt'), 'a.png\t0\nb.png\t1\nc.png\t2\nd.png\t7\n');
  writeFileSync(path.join(root, 'val.txt'), '');
  const warned = await openDataset(root);
  t.equal(warned.classes.length, 8);
  t.match(
    problemWarnings(warned).join('\n'),
    /1 label value\(s\) with no image \(first: .*train.txt:4: label 7: labels 3-6 have no image/,
  );
});
