// `alexnet eval` end to end on a tiny trained model (wasm backend, single process): the
// confusion CSV, per-class CSV and heat map agree with the top-1 error it reports.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import sharp from 'sharp';
import yargs from 'yargs';
import { initBackend } from '../../src/backend/select';
import { trainOptions } from '../../src/cli';
import { runEval } from '../../src/command-handlers';
import { buildTrainConfig, type CliArgs, type TrainConfig } from '../../src/core/config';
import { Trainer } from '../../src/train/trainer';
import { memoryLogger } from '../../src/core/log';
import { tempDir } from '../data/fixtures/images';
import { makeStripeDataset, STRIPE_CLASSES } from '../helpers/stripes';

const root = tempDir(t);
const runDir = path.join(root, 'run');
const TEST_IMAGES = 4 * STRIPE_CLASSES.length;

t.before(async () => {
  await initBackend('wasm', false);
  const data = await makeStripeDataset(path.join(root, 'stripes'), { train: 4, val: 1, test: 4 });
  const argv = [
    '--data',
    data,
    '--preset',
    'small',
    '--init',
    'he',
    '--batch-size',
    '12',
    '--epochs',
    '1',
    '--run-dir',
    runDir,
    '--backend',
    'wasm',
    '--seed',
    '1',
  ];
  const config = buildTrainConfig(trainOptions(yargs(argv)).parseSync() as CliArgs) as TrainConfig;
  await new Trainer(config, { log: memoryLogger(), tty: false, collective: null, shouldStop: () => false }).run();
});

function readCsv(file: string): string[][] {
  return fs
    .readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(','));
}

async function checkOutputs(t: tap.Test, dir: string, top1Error: number): Promise<void> {
  const k = STRIPE_CLASSES.length;
  const confusion = readCsv(path.join(dir, 'confusion.csv'));
  t.equal(confusion.length, k + 1, 'a header row and a row per class');
  t.ok(
    confusion.every((r) => r.length === k + 1),
    'a first column and a column per class',
  );
  t.same(
    confusion[0].slice(1),
    confusion.slice(1).map((r) => r[0]),
    'the same class names across and down',
  );
  t.same(new Set(confusion[0].slice(1)), new Set(STRIPE_CLASSES));
  const counts = confusion.slice(1).map((r) => r.slice(1).map(Number));
  t.equal(
    counts.flat().reduce((a, b) => a + b, 0),
    TEST_IMAGES,
    'the counts sum to the images evaluated',
  );
  const diagonal = counts.reduce((a, row, i) => a + row[i], 0);
  t.equal(diagonal, Math.round((1 - top1Error) * TEST_IMAGES), 'the diagonal is the top-1 hits');

  const perClass = readCsv(path.join(dir, 'per-class.csv'));
  t.equal(perClass.length, k + 1);
  t.same(
    perClass.slice(1).map((r) => Number(r[1])),
    counts.map((row) => row.reduce((a, b) => a + b, 0)),
    'images per class = row sums',
  );
  t.same(
    perClass.slice(1).map((r) => Number(r[2])),
    counts.map((row, i) => row[i]),
    'correct per class = the diagonal',
  );

  const svg = fs.readFileSync(path.join(dir, 'confusion.svg'), 'utf8');
  const [, width, height] = /width="(\d+)" height="(\d+)"/.exec(svg) ?? [];
  const meta = await sharp(path.join(dir, 'confusion.png')).metadata();
  t.equal(meta.format, 'png');
  t.equal(meta.width, Number(width), 'PNG as wide as the SVG');
  t.equal(meta.height, Number(height));
  t.ok(Number(width) >= 200 && Number(height) >= 200, `${width}x${height}`);
}

t.test('centre crop: top-1/top-5, per-class table, files in <run>/eval-test', async (t) => {
  const log = memoryLogger();
  const r = await runEval({ checkpoint: runDir, split: 'test', tta: 1, 'batch-size': 5, backend: 'wasm' }, log);
  t.equal(r.summary.count, TEST_IMAGES);
  t.equal(r.perClass.length, STRIPE_CLASSES.length);
  t.equal(path.dirname(r.files.confusionCsv), path.join(runDir, 'eval-test'));
  const results = log.lines.filter((l) => l.startsWith('result: ')).join('\n');
  t.match(results, /\| class\s+\| images \| correct \| accuracy \| precision \| most confused with \|/);
  for (const name of STRIPE_CLASSES) t.match(results, new RegExp(`\\| ${name}\\s+\\|\\s+4 \\|`));
  t.match(results, /test \(12 images, centre crop\): top-1 error/);
  await checkOutputs(t, path.dirname(r.files.confusionCsv), r.summary.top1Error);
});

t.test('10 patches with --out: the averaged softmax decides the prediction', async (t) => {
  const out = path.join(root, 'tta-out');
  const r = await runEval(
    { checkpoint: runDir, split: 'test', tta: 10, 'batch-size': 7, backend: 'wasm', out },
    memoryLogger(),
  );
  t.equal(r.summary.count, TEST_IMAGES);
  t.equal(r.files.heatmapPng, path.join(out, 'confusion.png'));
  await checkOutputs(t, out, r.summary.top1Error);
});
