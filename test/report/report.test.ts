// The run report: metrics.jsonl parsing, report.md, and the curves a training run redraws
// every epoch (tiny run, wasm backend, single process); a plotting failure never stops training.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import sharp from 'sharp';
import yargs from 'yargs';
import { initBackend } from '../../src/backend/select';
import { trainOptions } from '../../src/cli';
import { buildTrainConfig, type CliArgs, type TrainConfig } from '../../src/core/config';
import { CURVES_SIZE_PX } from '../../src/report/charts';
import { reportMarkdown, writeRunReport } from '../../src/report/report';
import { parseMetricsJsonl } from '../../src/train/run/run-log';
import { loadCheckpoint, readCheckpointSummary } from '../../src/train/run/checkpoint';
import { memoryLogger } from '../../src/core/log';
import { tempDir } from '../data/fixtures/images';
import { makeStripeDataset } from '../helpers/stripes';
import { trainInProcess } from '../../src/command-handlers';

const root = tempDir(t);
let data = '';

async function train(runDir: string, epochs: number) {
  const argv = [
    '--data',
    data,
    '--preset',
    'small',
    '--init',
    'he',
    '--batch-size',
    '6',
    '--max-steps',
    '1',
    '--epochs',
    String(epochs),
    '--run-dir',
    runDir,
    '--backend',
    'wasm',
  ];
  const config = buildTrainConfig(trainOptions(yargs(argv)).parseSync() as CliArgs) as TrainConfig;
  const log = memoryLogger();
  // The single-process path as `alexnet train` runs it: its trainer redraws the report each epoch.
  const result = await trainInProcess(config, log, false);
  return { result, log };
}

const line = (epoch: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    epoch,
    globalStep: epoch,
    lr: 0.01,
    train: { loss: 1, top1Error: 0.5, top5Error: 0, count: 6 },
    val: { loss: 1.2, top1Error: 0.6, top5Error: 0, count: 3 },
    imagesPerSec: 12.5,
    epochMs: 480,
    skippedImages: 0,
    ...extra,
  });

t.test(
  'metrics.jsonl: NaN comes back from null, a resumed epoch replaces the old one, a torn line is counted',
  async (t) => {
    const text = [
      line(1),
      line(2, { lr: 0.1 }),
      line(2, { train: { loss: null, top1Error: null, top5Error: null, count: 0 }, val: null }),
      JSON.stringify({ test: { loss: 0.9, top1Error: 0.25, top5Error: 0, count: 12 }, tta: 10 }),
      '{"epoch": 3, "globalSt',
      '',
    ].join('\n');
    const m = parseMetricsJsonl(text);
    t.same(
      m.epochs.map((e) => e.epoch),
      [1, 2],
    );
    t.ok(Number.isNaN(m.epochs[1].train.loss));
    t.equal(m.epochs[1].val, null);
    t.equal(m.epochs[1].lr, 0.01, 'the later line for epoch 2 wins');
    t.same(m.test, { test: { loss: 0.9, top1Error: 0.25, top5Error: 0, count: 12 }, tta: 10 });
    t.equal(m.badLines, 1);
    const md = reportMarkdown('r', m, null);
    t.match(md, '| test (10 patches)');
    t.match(md, /\| +2 \| 0\.0100 \| +n\/a \|/, 'a NaN loss prints as n/a');
    t.match(md, '1 unreadable line(s)');
    t.match(md, 'No checkpoint');
  },
);

t.test('setup: a stripes dataset', async (t) => {
  await initBackend('wasm', false);
  data = await makeStripeDataset(path.join(root, 'stripes'), { train: 2, val: 1, test: 1 });
  t.ok(fs.existsSync(data));
});

t.test(
  'training draws curves.png/svg and report.md each epoch; `report` redraws them with the test line',
  async (t) => {
    const runDir = path.join(root, 'run');
    const { log } = await train(runDir, 2);
    t.notMatch(log.lines.join('\n'), /could not write the run report/);
    const meta = await sharp(path.join(runDir, 'curves.png')).metadata();
    t.same([meta.format, meta.width, meta.height], ['png', CURVES_SIZE_PX.width, CURVES_SIZE_PX.height]);
    const svg = fs.readFileSync(path.join(runDir, 'curves.svg'), 'utf8');
    const points = [...svg.matchAll(/<polyline[^>]*points="([^"]*)"/g)].map((m) => m[1].split(' ').length);
    t.same(points, [2, 2, 2, 2, 2, 2, 2], 'after epoch 2: two points per line (loss, top-1, top-5 train/val; lr)');
    const md = fs.readFileSync(path.join(runDir, 'report.md'), 'utf8');
    t.match(md, '2 of 2 epochs recorded.');
    t.match(md, '![training curves](curves.png)');
    t.match(md, /\| preset +\| small +\|/);
    t.match(md, /\| model\.lrn +\| true +\|/);
    t.match(md, /\| img\/s \|/);
    t.notMatch(md, 'test (', 'the trainer drew it before the final test');

    // The header-only read sees what the full checkpoint holds.
    const summary = readCheckpointSummary(path.join(runDir, 'last.ckpt'));
    const full = loadCheckpoint(runDir);
    t.same(summary.config, full.config);
    t.same(summary.position, full.position);

    const files = await writeRunReport(runDir);
    t.match(fs.readFileSync(files.markdown, 'utf8'), /\| test \(centre crop\)\s+\|/);

    const cli = spawnSync(process.execPath, [path.resolve('dist/src/cli.js'), 'report', runDir], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    t.equal(cli.status, 0, cli.stderr);
    t.match(cli.stdout, 'report.md');
  },
);

t.test('a report that cannot be written is a warning, and training goes on', async (t) => {
  const runDir = path.join(root, 'blocked');
  // A folder where the PNG should go: the atomic rename onto it fails every epoch.
  fs.mkdirSync(path.join(runDir, 'curves.png'), { recursive: true });
  const { result, log } = await train(runDir, 2);
  t.equal(result.epochs.length, 2);
  t.ok(result.test, 'the run reached its final test');
  t.equal(log.lines.filter((l) => /^warn: could not write the run report/.test(l)).length, 2, 'one warning per epoch');
});
