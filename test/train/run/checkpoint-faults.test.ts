// Storage faults and wrong checkpoints in a real (single-process, wasm) training run: a full
// disk during a step checkpoint is a warning naming the intact previous checkpoint and training
// goes on (at an epoch end it is an error naming it); a run directory whose newest checkpoint is damaged resumes from the one before; a
// checkpoint of another preset or class count is refused naming the file.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import yargs from 'yargs';
import { initBackend } from '../../../src/backend/select';
import { temporaryPathFor, writeAtomicAsync } from '../../../src/core/atomic-write';
import { buildTrainConfig, type CliArgs, type TrainConfig } from '../../../src/core/config';
import { trainOptions } from '../../../src/cli';
import { memoryLogger } from '../../../src/core/log';
import { loadCheckpoint } from '../../../src/train/run/checkpoint';
import { stepCheckpointName } from '../../../src/train/run/checkpoint-store';
import { METRICS_FILE, parseMetricsJsonl } from '../../../src/train/run/run-log';
import { Trainer, type TrainerDeps } from '../../../src/train/trainer';
import { tempDir } from '../../data/fixtures/images';
import { makeStripeDataset } from '../../helpers/stripes';

const root = tempDir(t);
let data = '';

function config(argv: string[]): TrainConfig {
  return buildTrainConfig(trainOptions(yargs(argv)).parseSync() as CliArgs) as TrainConfig;
}
const common = (runDir: string, { dataset = data, epochs = 1, preset = 'small' } = {}) => [
  '--data',
  dataset,
  '--preset',
  preset,
  '--init',
  'he',
  '--batch-size',
  '12',
  '--run-dir',
  runDir,
  '--backend',
  'wasm',
  '--seed',
  '3',
  '--epochs',
  String(epochs),
];

function train(cfg: TrainConfig, extra: Partial<TrainerDeps> = {}) {
  const log = memoryLogger();
  return { log, run: new Trainer(cfg, { log, tty: false, collective: null, shouldStop: () => false, ...extra }).run() };
}

t.before(async () => {
  await initBackend('wasm', false);
  data = await makeStripeDataset(path.join(root, 'stripes'), { train: 8, val: 2, test: 2 });
});

t.test(
  'ENOSPC: a step checkpoint is a warning and training goes on; at the epoch end it ends the run; the previous checkpoint stays intact',
  async (t) => {
    const runDir = path.join(root, 'full-disk');
    let writes = 0;
    // The first step checkpoint is written; every later write meets a full disk (/dev/full).
    const writeCheckpoint = (file: string, chunks: readonly Buffer[]) => {
      if (writes++ > 0) fs.symlinkSync('/dev/full', temporaryPathFor(file));
      return writeAtomicAsync(file, chunks);
    };
    const { log, run } = train(config([...common(runDir), '--checkpoint-every', '1', '--no-flip']), {
      writeCheckpoint,
    });
    await t.rejects(
      run,
      {
        name: 'CheckpointError',
        message:
          /could not write checkpoint .*(best|last)\.ckpt at global step 2: ENOSPC.*the previous checkpoint .*step-00000001\.ckpt is intact/,
      },
      'the epoch end needs its checkpoint',
    );
    t.match(
      log.lines.join('\n'),
      /warn: could not write checkpoint .*step-00000002\.ckpt at global step 2: ENOSPC: no space left on device.*the previous checkpoint .*step-00000001\.ckpt is intact/,
    );
    t.equal(
      loadCheckpoint(path.join(runDir, stepCheckpointName(1))).position.globalStep,
      1,
      'step 1 checkpoint intact',
    );
    const events = parseMetricsJsonl(fs.readFileSync(path.join(runDir, METRICS_FILE), 'utf8')).events;
    t.same(
      events.map((e) => e.event === 'checkpoint' && e.globalStep),
      [1],
      'only the written checkpoint is recorded',
    );
  },
);

t.test('a damaged newest checkpoint: --resume <run dir> names it and continues from the one before', async (t) => {
  const runDir = path.join(root, 'damaged');
  await train(config([...common(runDir), '--checkpoint-every', '1'])).run;
  fs.rmSync(path.join(runDir, 'last.ckpt'));
  const newest = path.join(runDir, stepCheckpointName(2));
  fs.truncateSync(newest, fs.statSync(newest).size - 100);
  const { log, run } = train(config([...common(runDir, { epochs: 2 }), '--resume', runDir]));
  const result = await run;
  t.match(
    log.lines.join('\n'),
    new RegExp(`warn: refusing checkpoint ${newest}: .*truncated.*trying the previous one`),
  );
  t.match(
    log.lines.join('\n'),
    new RegExp(`resumed from ${path.join(runDir, stepCheckpointName(1))}: epoch 1, step 1, global step 1`),
  );
  t.equal(result.epochs.length, 2);
});

t.test('--resume from another preset or class count is a clear error naming the file', async (t) => {
  const runDir = path.join(root, 'source');
  await train(config([...common(runDir), '--max-steps', '1'])).run;
  const file = path.join(runDir, 'last.ckpt');
  const paper = config([...common(path.join(root, 'other-preset'), { preset: 'paper' }), '--resume', file]);
  await t.rejects(train(paper).run, {
    name: 'CheckpointError',
    message: `${file} was trained with --preset small, this run uses --preset paper`,
  });
  const four = await makeStripeDataset(path.join(root, 'four-classes'), { train: 2, val: 1, test: 1 });
  fs.cpSync(path.join(four, 'train', 'checker'), path.join(four, 'train', 'dots'), { recursive: true });
  await t.rejects(
    train(config([...common(path.join(root, 'other-classes'), { dataset: four }), '--resume', file])).run,
    { name: 'CheckpointError', message: `${file} has 3 classes, the dataset has 4` },
  );
});
