// The reproduction script's recipes parse as real `alexnet train` options, its readings of
// steps.jsonl and metrics.jsonl are right, and the PyTorch reference runs on a real image
// folder (when Debian's python3-torch is installed) and writes metrics our parser reads.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import yargs from 'yargs';
import { benchScript, pythonUnavailable, SYSTEM_PYTHON } from '../../bench/harness';
import { trainOptions } from '../../src/cli';
import { buildTrainConfig, type CliArgs } from '../../src/core/config';
import { buildSpec } from '../../src/model/presets';
import { parseMetricsJsonl, parseStepsJsonl, type StepRecord } from '../../src/train/run/run-log';
import {
  ABLATIONS,
  ablationChartSvg,
  ablationTable,
  ablationTrainArgs,
  epochsToTrainError,
  gapPoints,
  lrDropEpochs,
  oursTrainArgs,
  referenceArgs,
  reproductionTable,
  seedGapLines,
  smoothedTrainError,
} from '../../scripts/reproduction-lib';
import { tempDir } from '../data/fixtures/images';
import { makeStripeDataset } from '../helpers/stripes';

const root = tempDir(t);
let data = '';
t.before(async () => {
  data = await makeStripeDataset(path.join(root, 'stripes'), { train: 8, val: 2, test: 2 });
});

const parse = (argv: string[]) => buildTrainConfig(trainOptions(yargs(argv)).parseSync() as CliArgs);

t.test("the reproduction recipe is the issue's: SGD 0.01, momentum 0.9, decay 5e-4, plateau, 2 workers", async (t) => {
  const c = parse(oursTrainArgs(data, path.join(root, 'r'), 6, 1, 'native'));
  t.match(c, {
    preset: 'small',
    optimizer: 'sgd',
    lr: 0.01,
    momentum: 0.9,
    weightDecay: 0.0005,
    schedule: 'plateau',
    devices: 'cpu:2',
    epochs: 6,
    seed: 1,
    backend: 'native',
  });
  t.same(c.augment, { crop: true, flip: true, pcaLighting: true }, 'random crops, flips (and PCA lighting) on');
});

t.test('each ablation changes exactly its one option', async (t) => {
  const budget = { epochs: 2, trainLimit: 100, batchSize: 64, lr: 0.01, logEvery: 10 };
  const base = parse(ablationTrainArgs(ABLATIONS[0], data, path.join(root, 'a'), budget));
  t.match(base, {
    schedule: 'constant',
    trainLimit: 100,
    logEverySteps: 10,
    model: { activation: 'relu', lrn: true, overlappingPool: true, dropoutRate: null },
  });
  const changed = (id: string) =>
    parse(
      ablationTrainArgs(
        ABLATIONS.find((a) => a.id === id)!,
        data,
        path.join(root, id),
        budget,
      ),
    ).model;
  t.equal(changed('tanh').activation, 'tanh');
  t.equal(changed('no-lrn').lrn, false);
  t.equal(changed('pool-2x2').overlappingPool, false);
  t.equal(changed('no-dropout').dropoutRate, 0);
});

const step = (epochs: number, top1Error: number, count = 100): StepRecord => ({
  epoch: Math.ceil(epochs),
  step: 1,
  globalStep: 1,
  epochs,
  lr: 0.01,
  train: { loss: 1, top1Error, top5Error: 0, count },
  stepsPerEpoch: 10,
  timeMs: 1000 * epochs,
});

t.test('epochs to a training error: smoothed over windows, weighted by image count', async (t) => {
  const records = [step(0.1, 0.8), step(0.2, 0.4), step(0.3, 0.2, 300), step(0.4, 0.1)];
  const text = `${records.map((r) => JSON.stringify(r)).join('\n')}\n{"epochs": 0.5, "tra`;
  t.same(parseStepsJsonl(text), records, 'a half-written last line is ignored');
  const curve = smoothedTrainError(records, 2);
  t.same(
    curve.map((p) => p.epochs),
    [0.2, 0.3, 0.4],
  );
  t.ok(Math.abs(curve[1].error - (0.4 * 100 + 0.2 * 300) / 400) < 1e-12, 'count-weighted');
  t.equal(epochsToTrainError(curve, 0.3), 0.3);
  t.equal(epochsToTrainError(curve, 0.05), null, 'never reached');
});

t.test('tables: the gap in points, lr drops, never-reached thresholds', async (t) => {
  const metrics = (errors: number[], lrs: number[], test: number) =>
    parseMetricsJsonl(
      [
        ...errors.map((e, i) =>
          JSON.stringify({
            epoch: i + 1,
            lr: lrs[i],
            train: { loss: 1, top1Error: e, top5Error: 0, count: 10 },
            val: { loss: 1, top1Error: e, top5Error: 0, count: 5 },
            imagesPerSec: 10,
            epochMs: 1000,
          }),
        ),
        JSON.stringify({ test: { loss: 1, top1Error: test, top5Error: 0.01, count: 100 }, tta: 1 }),
      ].join('\n'),
    );
  const ours = metrics([0.3, 0.2, 0.2], [0.01, 0.01, 0.001], 0.105);
  const ref = metrics([0.3, 0.25], [0.01, 0.01], 0.1);
  t.same(lrDropEpochs(ours), [2]);
  t.ok(Math.abs(gapPoints(ours, ref) - 0.5) < 1e-9, '10.5% vs 10.0% is +0.5 points');
  const table = reproductionTable([
    { name: 'ours', shortName: 'ours', metrics: ours, wallMs: 120_000 },
    { name: 'ref', shortName: 'ref', metrics: ref, wallMs: 60_000 },
  ]);
  t.match(table, /ours.*10\.50%.*1\.00%.*20\.00%.*3.*2.*2\.0 min.*10/);
  t.match(table, /ref.*10\.00%.*none.*1\.0 min/);
  const ours2 = metrics([0.3], [0.01], 0.115);
  const ref2 = metrics([0.3], [0.01], 0.12);
  const lines = seedGapLines([0, 1], [ours, ours2], [ref, ref2]);
  t.match(lines[0], /seeds 0, 1: ours 11\.00% \(10\.50-11\.50%\), reference 11\.00% \(10\.00-12\.00%\)/);
  t.match(lines[1], /\*\*\+0\.00 percentage points\*\*.*per seed: 0: \+0\.50, 1: -0\.50/);

  const run = { name: 'x', shortName: 'x', metrics: ours, wallMs: 1 };
  const fast = {
    ablation: ABLATIONS[0],
    run,
    curve: [
      { epochs: 0.5, error: 0.3 },
      { epochs: 1, error: 0.2 },
    ],
  };
  const slow = {
    ablation: ABLATIONS[1],
    run,
    curve: [
      { epochs: 1, error: 0.3 },
      { epochs: 2, error: 0.26 },
    ],
  };
  const ablation = ablationTable([fast, slow], 0.25);
  t.match(ablation, /baseline.*1\.00.*1\.00x.*20\.00%.*10\.50%/);
  t.match(ablation, /tanh.*not in 2\.0.*n\/a.*26\.00%/);
  t.match(ablationChartSvg([fast, slow], 0.25), /<svg[\s\S]*baseline[\s\S]*tanh[\s\S]*25%/);
});

const noTorch = pythonUnavailable('import torch, PIL');
t.test(
  'the PyTorch reference trains on an image folder and writes our metrics format',
  { skip: noTorch ?? false },
  async (t) => {
    const dir = tempDir(t);
    // Our statistics, where the reference reads them (the dataset folder itself is never written).
    const statsFile = path.join(dir, 'stats.json');
    const stats = spawnSync(
      process.execPath,
      [path.resolve('dist/src/cli.js'), 'data', 'stats', data, '--out', statsFile],
      { encoding: 'utf8' },
    );
    t.equal(stats.status, 0, `alexnet data stats: ${stats.stderr}`);
    const specFile = path.join(dir, 'spec.json');
    fs.writeFileSync(specFile, JSON.stringify(buildSpec('small', { init: 'he' })));
    const out = path.join(dir, 'metrics.jsonl');
    const args = referenceArgs(data, specFile, out, 2);
    const world = args.indexOf('--world');
    args[world + 1] = '1'; // one process keeps the test light; the 2-process path is what the reproduction runs
    const run = spawnSync(
      SYSTEM_PYTHON,
      [benchScript('torch_reference.py'), ...args, '--batch', '8', '--stats', statsFile],
      { encoding: 'utf8' },
    );
    t.equal(run.status, 0, run.stderr.split('\n').slice(-5).join('\n'));
    const m = parseMetricsJsonl(fs.readFileSync(out, 'utf8'));
    t.equal(m.epochs.length, 2);
    t.equal(m.epochs[0].train.count, 24, 'every training image once per epoch');
    t.equal(m.epochs[0].val?.count, 6);
    t.equal(m.test?.test.count, 6);
    t.ok(
      m.epochs.every((e) => Number.isFinite(e.train.loss) && e.train.loss > 0),
      'finite losses',
    );
  },
);
