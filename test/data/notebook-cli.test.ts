// The notebook's dataset through the real CLI (dist/), from the folder above signs/ and from
// another working directory: data check/index/stats, train, eval, predict, report; the
// dataset folder is never written, and a read-only one trains.
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { tempDir } from './fixtures/images';
import { NOTEBOOK_CLASSES, notebookDataset, snapshot, type NotebookDataset } from './fixtures/notebook';

const cli = path.resolve('dist/src/cli.js');
const classes = NOTEBOOK_CLASSES.join(',');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runIn(cwd: string, cache: string, args: string[]): Run {
  const r = spawnSync(process.execPath, [cli, ...args], {
    cwd,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, ALEXNET_CACHE_DIR: cache },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exit code 0, with the command's stderr in the diagnostics when it is not. */
function exitsOk(t: Test, r: Run, what: string): void {
  t.equal(r.code, 0, `${what} exits 0`, { stderr: r.stderr.slice(-3000) });
}

const small = [
  '--preset',
  'small',
  '--batch-size',
  '16',
  '--backend',
  'wasm',
  '--devices',
  'cpu:1',
  '--log-level',
  'info',
];

interface Notebook {
  nb: NotebookDataset;
  cache: string;
  /** signs/ as made, before any command ran. */
  before: Map<string, string>;
}

/** The notebook dataset, made once for the tests that only read it (removed with the file's test). */
let notebookMade: Promise<Notebook> | null = null;
const notebook = (): Promise<Notebook> =>
  (notebookMade ??= (async () => {
    const nb = await notebookDataset(tempDir(t, 'alexnet-nb-'));
    return { nb, cache: tempDir(t, 'alexnet-cache-'), before: await snapshot(nb.root) };
  })());

/** run1: one epoch on the notebook dataset from the folder above signs/, trained once for the tests that use it. */
let run1Trained: Promise<{ runDir: string; train: Run }> | null = null;
const run1 = (): Promise<{ runDir: string; train: Run }> =>
  (run1Trained ??= (async () => {
    const { nb, cache } = await notebook();
    const runDir = path.join(nb.parent, 'run1');
    const args = ['train', '--data', 'signs', '--classes', classes, '--epochs', '1', '--run-dir', runDir, ...small];
    return { runDir, train: runIn(nb.parent, cache, args) };
  })());

t.test('the notebook dataset, from the folder above signs/ and from elsewhere', async (t) => {
  const { nb, cache, before } = await notebook();
  const elsewhere = tempDir(t, 'alexnet-cwd-');
  const fromAbove = (args: string[]): Run => runIn(nb.parent, cache, args);
  const fromElsewhere = (args: string[]): Run => runIn(elsewhere, cache, args);

  for (const [where, run, data] of [
    ['above', fromAbove, 'signs'],
    ['elsewhere', fromElsewhere, nb.root],
  ] as const) {
    const check = run(['data', 'check', data, '--classes', classes]);
    exitsOk(t, check, `data check from ${where}`);
    t.match(
      check.stdout,
      `list files train.txt, valid.txt, test.txt: paths are relative to ${nb.parent} (the folder above signs/`,
    );
    t.match(check.stdout, /Bad files \(2; training skips them\)/);
    t.match(check.stdout, /train\/monkey\/00000072\.jpg \| truncated or corrupt image data/);
    t.match(check.stdout, /train\/snake\/00000073\.jpg +\| empty file \(0 bytes\)/);
    t.match(check.stdout, /\|\s+3 \| snake\s+\| 4 \(1 bad\) \|/, "label 3 is the notebook's snake");
    t.notMatch(check.stdout, /signs\/signs/);
  }

  const index = fromAbove(['data', 'index', 'signs']);
  t.equal(index.code, 1);
  t.match(
    index.stderr,
    /data index writes train.txt, val.txt, test.txt and classes.txt, and never into the dataset .*pass --out <folder>, e.g. --out signs-index/,
  );
  const into = fromAbove(['data', 'index', 'signs', '--out', 'signs']);
  t.equal(into.code, 1, 'into the dataset itself: refused');
  t.match(into.stderr, /valid.txt \(beside it, val.txt would be a second list of the val split\)/);
  const indexed = fromAbove(['data', 'index', 'signs', '--out', 'signs-index', '--classes', classes]);
  exitsOk(t, indexed, 'data index --out');
  t.match(
    readFileSync(path.join(nb.parent, 'signs-index', 'train.txt'), 'utf8'),
    /^\.\.\/signs\/train\/snake\/\d{8}\.jpg\t3$/m,
    'snake keeps label 3',
  );
  exitsOk(
    t,
    fromElsewhere(['data', 'index', nb.root, '--out', 'idx', '--classes', classes]),
    'data index --out from elsewhere',
  );
  t.match(readFileSync(path.join(elsewhere, 'idx', 'train.txt'), 'utf8'), /\/signs\/train\/snake\/\d{8}\.jpg\t3$/m);
  const indexCheck = fromElsewhere(['data', 'check', 'idx']);
  exitsOk(t, indexCheck, 'data check of the new index');
  t.match(
    indexCheck.stdout,
    `list files train.txt, val.txt, test.txt: paths are relative to ${path.join(elsewhere, 'idx')} (the list file's folder)`,
  );
  t.match(indexCheck.stdout, /\|\s+3 \| snake\s+\|/, 'its classes.txt keeps the notebook order');

  const { runDir: run1Dir, train } = await run1();
  exitsOk(t, train, 'train');
  t.match(train.stderr, /dataset .*signs: 12 classes; train 50, val 12, test 12/);
  t.match(train.stderr, /saved .*alexnet-cache-.*stats-32px\.json/, 'statistics go to the cache');
  for (const bad of [nb.broken.truncated, nb.broken.empty]) {
    t.equal(train.stderr.split(bad).length - 1, 1, `${bad} named once`);
  }
  t.match(train.stderr, /epoch 1: .*\| 2 bad images skipped/);
  t.match(readFileSync(path.join(run1Dir, 'bad-files.tsv'), 'utf8').split('\n').filter(Boolean).length, 2);
  const meta = JSON.parse(readFileSync(path.join(run1Dir, 'final-model', 'model.json'), 'utf8')) as {
    userDefinedMetadata: { alexnet: { classes: string[] } };
  };
  t.same(
    meta.userDefinedMetadata.alexnet.classes,
    [...NOTEBOOK_CLASSES],
    "the exported model's metadata has the names",
  );

  const evalRun = fromElsewhere(['eval', run1Dir, '--split', 'test', '--backend', 'wasm']);
  exitsOk(t, evalRun, 'eval');
  t.match(
    evalRun.stdout,
    /^\| rooster +\| +1 \|/m,
    "eval's per-class table has the names (from the checkpoint's --classes)",
  );
  t.match(evalRun.stdout, /^\| snake +\|/m);
  const predict = fromElsewhere([
    'predict',
    '--model',
    path.join(run1Dir, 'final-model'),
    path.join(nb.root, 'test', 'monkey', (await fsp.readdir(path.join(nb.root, 'test', 'monkey')))[0]),
    '--backend',
    'wasm',
  ]);
  exitsOk(t, predict, 'predict');
  t.match(predict.stdout, /  1\. (rooster|tiger|dragon|snake|ratt|ox|monkey|dog|goat|pig|horse|rabbit) +\d/);
  exitsOk(t, fromAbove(['eval', 'run1', '--split', 'val', '--backend', 'wasm']), 'eval from above');
  const report = fromElsewhere(['report', run1Dir]);
  exitsOk(t, report, 'report');
  t.match(
    readFileSync(path.join(run1Dir, 'report.md'), 'utf8'),
    /\| classes +\| 12: rooster, tiger, dragon, snake, ratt, ox, monkey, dog, goat, pig, horse, rabbit/,
    'report.md names the classes',
  );

  const run2 = path.join(elsewhere, 'run2');
  const trainElsewhere = fromElsewhere([
    'train',
    '--data',
    nb.root,
    '--epochs',
    '1',
    '--max-steps',
    '1',
    '--run-dir',
    run2,
    ...small,
  ]);
  exitsOk(t, trainElsewhere, 'train from another directory');
  t.match(trainElsewhere.stderr, /dataset .*signs: 12 classes; train 50, val 12, test 12/);

  t.same(await snapshot(nb.root), before, 'no file in signs/ was changed, created or deleted');
});

/** A private mount namespace with a read-only bind mount: a real EROFS, even for root (tests run as root, where chmod stops nothing). */
function readOnlyMountWorks(dir: string): boolean {
  const r = spawnSync(
    'unshare',
    ['-m', 'sh', '-c', `mount --bind -o ro '${dir}' '${dir}' && ! touch '${dir}/probe' 2>/dev/null`],
    { encoding: 'utf8' },
  );
  return r.status === 0;
}

/** Run the CLI with `dir` mounted read-only. */
function runReadOnly(dir: string, cwd: string, cache: string, args: string[]): Run {
  const quoted = [process.execPath, cli, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const script = `mount --bind -o ro '${dir}' '${dir}' && exec ${quoted}`;
  const r = spawnSync('unshare', ['-m', 'sh', '-c', script], {
    cwd,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, ALEXNET_CACHE_DIR: cache },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const probeDir = tempDir(t, 'alexnet-ro-probe-');
const readOnly = readOnlyMountWorks(probeDir);

t.test(
  'a read-only dataset trains; statistics go to the run directory when the cache cannot be written either',
  { skip: readOnly ? false : 'no private read-only mount here (needs unshare -m and mount)' },
  async (t) => {
    const nb = await notebookDataset(tempDir(t, 'alexnet-ro-'), { perClass: { train: 2, valid: 1, test: 1 } });
    const before = await snapshot(nb.root);
    const runDir = path.join(nb.parent, 'run');
    // The cache inside the read-only mount: it cannot be written either.
    const r = runReadOnly(nb.root, nb.parent, path.join(nb.root, '.cache'), [
      'train',
      '--data',
      'signs',
      '--epochs',
      '1',
      '--max-steps',
      '1',
      '--run-dir',
      runDir,
      ...small,
    ]);
    exitsOk(t, r, 'train on the read-only dataset');
    t.match(r.stderr, `saved ${path.join(runDir, 'stats.json')}`);
    t.ok(existsSync(path.join(runDir, 'final-model', 'model.json')));
    t.same(await snapshot(nb.root), before, 'nothing written into the dataset');
    // With the dataset writable and the cache elsewhere, the first test checks the same after two trains.
  },
);

t.test('every command that writes refuses to replace a file it did not write', async (t) => {
  const nb = await notebookDataset(tempDir(t, 'alexnet-own-'), { perClass: { train: 2, valid: 1, test: 1 } });
  const cache = tempDir(t, 'alexnet-cache-');
  const run = (args: string[]): Run => runIn(nb.parent, cache, args);
  const mine = (file: string, text = 'my own file\n'): string => {
    writeFileSync(file, text);
    return text;
  };
  const cases: { what: string; file: string; args: string[]; code: 1 | 2; refused: RegExp }[] = [
    {
      what: 'data index --out',
      file: path.join(nb.parent, 'idx', 'classes.txt'),
      args: ['data', 'index', 'signs', '--out', 'idx'],
      code: 1,
      refused: /classes.txt already exists and was not written by alexnet: choose another --out, or pass --force/,
    },
    {
      what: 'data split',
      file: path.join(nb.root, 'train', 'train.txt'),
      args: ['data', 'split', 'signs/train'],
      code: 1,
      refused: /train.txt already exists and was not written by alexnet/,
    },
    {
      what: 'data split --materialize copy',
      file: path.join(nb.parent, 'tree', 'train', 'rooster', '00000000.jpg'),
      args: ['data', 'split', 'signs/train', '--val', '0', '--test', '0', '--out', 'tree', '--materialize', 'copy'],
      code: 1,
      refused:
        /1 file\(s\) of the copy tree already exist in .*tree \(first: .*00000000.jpg\): choose another --out, or pass --force/,
    },
    {
      what: 'data stats --out',
      file: path.join(nb.parent, 'stats.json'),
      args: ['data', 'stats', 'signs', '--out', 'stats.json', '--size', '16'],
      code: 1,
      refused: /stats.json already exists and was not written by alexnet/,
    },
    {
      what: 'data prepare',
      file: path.join(nb.parent, 'small', 'notes.txt'),
      args: ['data', 'prepare', 'signs', 'small', '--size', '16'],
      code: 1,
      refused: /small already holds files that data prepare did not write/,
    },
    {
      what: 'train --run-dir',
      file: path.join(nb.parent, 'run', 'notes.txt'),
      args: ['train', '--data', 'signs', '--epochs', '1', '--max-steps', '1', '--run-dir', 'run', ...small],
      code: 2,
      refused: /--run-dir .*run already holds files: choose a new --run-dir, continue that run with --resume/,
    },
  ];
  for (const c of cases) {
    await fsp.mkdir(path.dirname(c.file), { recursive: true });
    const text = mine(c.file);
    const r = run(c.args);
    t.equal(r.code, c.code, `${c.what}: refused, exit ${c.code}`);
    t.match(r.stderr, c.refused, c.what);
    t.equal(readFileSync(c.file, 'utf8'), text, `${c.what}: the existing file is untouched`);
  }
  // eval --out, on the notebook's run1 (the train case above makes none).
  const { runDir } = await run1();
  const out = path.join(nb.parent, 'eval-out');
  await fsp.mkdir(out);
  const evalTo = async (...args: string[]): Promise<Run> =>
    runIn(nb.parent, (await notebook()).cache, ['eval', runDir, '--out', out, '--backend', 'wasm', ...args]);
  const text = mine(path.join(out, 'confusion.csv'));
  const ev = await evalTo();
  t.equal(ev.code, 1);
  t.match(
    ev.stderr,
    /confusion.csv already exists and was not written by alexnet: choose another --out, or pass --force/,
  );
  t.equal(readFileSync(path.join(out, 'confusion.csv'), 'utf8'), text);
  t.equal((await evalTo('--force')).code, 0, 'eval --force replaces it');
  t.equal((await evalTo()).code, 0, 'its own files: replaced without --force');
  t.notSame(readFileSync(path.join(out, 'confusion.csv'), 'utf8'), text);
});

t.test('data check lists every problem of the list files in one pass, with file:line', async (t) => {
  const nb = await notebookDataset(tempDir(t, 'alexnet-problems-'), { perClass: { train: 1, valid: 1, test: 1 } });
  const cache = tempDir(t, 'alexnet-cache-');
  const train = path.join(nb.root, 'train.txt');
  const lines = readFileSync(train, 'utf8').split('\n').filter(Boolean);
  const extra = [
    lines[0], // the same file again
    lines[1].replace(/\t\d+$/, '\t5'), // tiger's image under ox's label
    'signs/train/tiger/99999999.jpg\t1', // missing
    'signs/train/tiger/00000001.jpg\tone', // not an integer
    'signs/train/tiger/00000001.jpg\t12', // out of range of the 12 names
  ];
  writeFileSync(train, [...lines, ...extra].map((l) => `${l}\n`).join(''));
  // Horse (10) only in valid: not in train.
  writeFileSync(
    train,
    readFileSync(train, 'utf8')
      .split('\n')
      .filter((l) => !/\t10$/.test(l))
      .join('\n'),
  );
  const r = runIn(nb.parent, cache, ['data', 'check', 'signs', '--classes', classes]);
  t.equal(r.code, 1, 'a problem that stops training: exit 1, after the full report');
  const at = (n: number): string => `${train}:${n}`;
  const total = lines.length - 1; // the horse line is gone: the added lines move up by one
  t.match(
    r.stdout,
    `${at(total + 1)}: ${path.join(nb.root, 'train', 'rooster', '00000000.jpg')} is listed twice (also at ${at(1)})`,
  );
  t.match(
    r.stdout,
    `${at(total + 2)}: ${path.join(nb.root, 'train', 'tiger', '00000001.jpg')} is listed under label 5 (ox) here and under label 1 (tiger) at ${at(2)}`,
  );
  t.match(r.stdout, `${at(total + 3)}: signs/train/tiger/99999999.jpg does not exist`);
  t.match(r.stdout, `${at(total + 4)}: label "one" is not an integer`);
  t.match(r.stdout, `${at(total + 5)}: label 12 is out of range 0..11 (--classes has 12 classes)`);
  t.match(r.stdout, /valid.txt:11: label 10 \(horse\) is in the val split but has no image in train/);
  t.match(r.stdout, /test.txt:11: label 10 \(horse\) is in the test split but has no image in train/);
  t.match(
    r.stdout,
    /Problems \(7\):\n.*train.txt:14: .*\n.*train.txt:15: .*\n.*train.txt:16: .*\n.*train.txt:17: .*\n.*train.txt:18: .*\n.*valid.txt:11: .*\n.*test.txt:11: /,
    'by file, then line',
  );
  t.match(r.stdout, /Bad files \(2; training skips them\)/, 'and the images were decoded too');
  t.match(r.stderr, /2 of the problems above stop training/);
});
