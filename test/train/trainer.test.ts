// End to end on tiny generated data, single process on the wasm backend (what CI runs):
// the loss falls, tensors do not leak, checkpoints resume exactly, exports load in plain tfjs.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { trainConfigOf as config } from '../helpers/train-config';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend/select';
import type { TrainConfig } from '../../src/core/config';
import { BatchLoader } from '../../src/data/loader';
import { loadExportedModel } from '../../src/model/export';
import { loadCheckpoint, encodeCheckpoint, decodeCheckpoint } from '../../src/train/run/checkpoint';
import { buildRunState } from '../../src/train/setup';
import { trainStep } from '../../src/train/step';
import { STEPS_FILE, type EpochRecord, type StepRecord } from '../../src/train/run/run-log';
import { Trainer } from '../../src/train/trainer';
import { memoryLogger } from '../../src/core/log';
import { tempDir } from '../data/fixtures/images';
import { makeStripeDataset } from '../helpers/stripes';

async function train(cfg: TrainConfig, stopAfterSteps = Infinity) {
  let steps = 0;
  const log = memoryLogger();
  const result = await new Trainer(cfg, {
    log,
    tty: false,
    collective: null,
    shouldStop: () => ++steps >= stopAfterSteps,
  }).run();
  return { result, log };
}

let data = '';
// Runs that later subtests reuse where they train the same thing: each is costly to train again.
let fourEpochs: { runDir: string; log: ReturnType<typeof memoryLogger> } | null = null;
let twoEpochs: Awaited<ReturnType<typeof train>>['result'] | null = null;
const common = (runDir: string, preset = 'small', dataset = data) => [
  '--data',
  dataset,
  '--preset',
  preset,
  '--init',
  'he',
  '--batch-size',
  '12',
  '--lr',
  '0.01',
  '--run-dir',
  runDir,
  '--backend',
  'wasm',
  '--seed',
  '3',
];

const root = tempDir(t);
t.before(async () => {
  await initBackend('wasm', false);
});

t.test('setup: a stripes dataset', async (t) => {
  data = await makeStripeDataset(path.join(root, 'stripes'), { train: 16, val: 4, test: 4 });
  t.ok(fs.existsSync(path.join(data, 'train', 'checker', '0.png')));
});

t.test('the loss falls and the run writes metrics, checkpoints and models', async (t) => {
  const runDir = path.join(root, 'four-epochs');
  const { result, log } = await train(config([...common(runDir), '--epochs', '4']));
  fourEpochs = { runDir, log };
  const losses = result.epochs.map((e: EpochRecord) => e.train.loss);
  t.equal(result.epochs.length, 4);
  t.ok(losses[3] < losses[0] * 0.9, `train loss fell: ${losses.map((l) => l.toFixed(3)).join(' -> ')}`);
  t.ok(result.test && result.test.count === 12, 'test split evaluated');
  const lines = fs.readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n');
  t.equal(lines.length, 5, '4 epochs + the test line');
  for (const f of ['last.ckpt', 'final-model/model.json', 'final-model/weights.bin'])
    t.ok(fs.existsSync(path.join(runDir, f)), f);

  // The exported graph model runs in plain tfjs and agrees with the checkpoint.
  const { model, meta } = await loadExportedModel(path.join(runDir, 'final-model'));
  t.same(meta.classes, ['checker', 'horizontal', 'vertical']);
  const x = tf.randomNormal([2, 28, 28, 3], 0, 1, 'float32', 1);
  const probs = (model.execute(x, 'probabilities') as tf.Tensor).arraySync() as number[][];
  for (const row of probs) t.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-4, 'softmax rows sum to 1');
});

t.test('--decode-cache-mb: cached images are not read again; 0 reads every epoch', async (t) => {
  // A training image deleted after epoch 1: only a run without the cache meets it missing.
  const skippedPerEpoch = async (cacheMb: string): Promise<number[]> => {
    const copy = path.join(tempDir(t), 'data');
    fs.cpSync(data, copy, { recursive: true });
    const cfg = config([
      ...common(path.join(copy, 'run'), 'small', copy),
      '--epochs',
      '2',
      '--decode-cache-mb',
      cacheMb,
    ]);
    let steps = 0;
    const result = await new Trainer(cfg, {
      log: memoryLogger(),
      tty: false,
      collective: null,
      shouldStop: () => {
        if (++steps === 2) fs.rmSync(path.join(copy, 'train', 'checker', '0.png')); // epoch 1 is 16 images, 2 steps
        return false;
      },
    }).run();
    return result.epochs.map((e: EpochRecord) => e.skippedImages);
  };
  t.same(await skippedPerEpoch('2048'), [0, 0], 'cached: epoch 2 does not read the file');
  t.same(await skippedPerEpoch('0'), [0, 1], 'no cache: epoch 2 reads it, finds it gone, skips it');
});

t.test('--log-every writes windows of steps that add up to each epoch', async (t) => {
  const runDir = path.join(tempDir(t), 'steps');
  const { result } = await train(config([...common(runDir), '--epochs', '2', '--log-every', '2']));
  twoEpochs = result;
  const records = fs
    .readFileSync(path.join(runDir, STEPS_FILE), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as StepRecord);
  for (const [i, epoch] of result.epochs.entries()) {
    const mine = records.filter((r) => r.epoch === i + 1);
    const count = mine.reduce((a, r) => a + r.train.count, 0);
    const lossSum = mine.reduce((a, r) => a + r.train.loss * r.train.count, 0);
    t.equal(count, epoch.train.count, `epoch ${i + 1}: the windows hold every training image once`);
    t.ok(Math.abs(lossSum / count - epoch.train.loss) < 1e-9, `epoch ${i + 1}: windows average to the epoch loss`);
    t.equal(mine[mine.length - 1].epochs, i + 1, 'the last window of an epoch ends at a whole epoch');
    t.ok(
      mine.every((r) => r.step % 2 === 0 || r === mine[mine.length - 1]),
      'a line every 2 steps, plus the epoch end',
    );
  }
  t.ok(
    records.every((r, i) => i === 0 || r.epochs > records[i - 1].epochs),
    'fractional epochs increase',
  );
});

t.test('resume continues exactly: same next-epoch loss as an uninterrupted run', async (t) => {
  const dir = tempDir(t);
  // The uninterrupted run: --log-every's (it only adds a log file).
  const straight = twoEpochs;
  if (straight == null) throw new Error('needs the --log-every run');
  // Stop after 2 steps of epoch 1 (4 steps per epoch): the checkpoint is mid-epoch.
  const first = await train(config([...common(path.join(dir, 'b')), '--epochs', '2']), 2);
  t.ok(first.result.stopped, 'stopped by the shouldStop hook');
  const ckpt = loadCheckpoint(path.join(dir, 'b'));
  t.same(ckpt.position, { epoch: 0, stepInEpoch: 2, globalStep: 2 });
  const resumed = await train(
    config([...common(path.join(dir, 'b')), '--epochs', '2', '--resume', path.join(dir, 'b')]),
  );
  const a = straight.epochs[1].train.loss;
  const b = resumed.result.epochs[resumed.result.epochs.length - 1].train.loss;
  t.equal(b, a, `epoch 2 loss after resume ${b} equals uninterrupted ${a}`);
  t.same(
    resumed.result.epochs[0].train,
    straight.epochs[0].train,
    'the resumed epoch counts its steps before the checkpoint too',
  );
  t.equal(resumed.result.test?.top1Error, straight.test?.top1Error);
});

// A checkpoint of another preset or class count: checkpoint-faults.test.ts.
t.test('checkpoint files refuse corruption and round-trip', async (t) => {
  if (fourEpochs == null) throw new Error('needs the four-epoch run');
  const bytes = fs.readFileSync(path.join(fourEpochs.runDir, 'last.ckpt'));
  t.throws(() => decodeCheckpoint(bytes.subarray(0, 40), 'x.ckpt'), { name: 'CheckpointError' });
  t.throws(() => decodeCheckpoint(Buffer.from('hello world, not a checkpoint'), 'x.ckpt'), /bad magic/);
  const c = decodeCheckpoint(bytes, 'x.ckpt');
  t.same(decodeCheckpoint(encodeCheckpoint(c), 'y').weights[0].data, c.weights[0].data, 'encode/decode round trip');
});

t.test('the tensor count stays flat across steps', async (t) => {
  const cfg = config([...common(path.join(tempDir(t), 'm')), '--epochs', '1']);
  const state = await buildRunState(cfg, false, memoryLogger());
  const loader = new BatchLoader({
    samples: state.train,
    resizeSize: state.model.spec.resizeSize,
    cropSize: state.model.spec.inputSize,
    globalBatchSize: 12,
    rank: 0,
    worldSize: 1,
    seed: 0,
    mode: 'train',
    stats: state.stats,
  });
  const counts: number[] = [];
  for (let epoch = 0; epoch < 2; epoch++) {
    for await (const batch of loader.epoch(epoch)) {
      await trainStep(state.model, state.optimizer, batch, { lr: 0.01, dropoutSeed: 1, stopVote: false });
      counts.push(tf.memory().numTensors);
    }
  }
  t.equal(counts.length, 8);
  t.ok(
    counts.every((c) => c === counts[0]),
    `numTensors per step: ${counts.join(', ')}`,
  );
});

t.test('the start-up line names the micro-batch and why', async (t) => {
  const forced = await train(
    config([...common(path.join(tempDir(t), 'mb')), '--epochs', '1', '--max-steps', '1', '--micro-batch', '5']),
  );
  t.ok(
    forced.log.lines.some((l) =>
      /micro-batch 5 of 12 images per worker \(--micro-batch 5; estimate ~\d+ MiB for 12 images, budget/.test(l),
    ),
    forced.log.lines.join('\n'),
  );
  // Without --micro-batch: the four-epoch run's line.
  if (fourEpochs == null) throw new Error('needs the four-epoch run');
  t.ok(
    fourEpochs.log.lines.some((l) => /micro-batch 12: the worker's whole share/.test(l)),
    'the small preset fits whole',
  );
});

t.test('a model of which not even one image fits stops with a ConfigError before the first step', async (t) => {
  let steps = 0;
  // The small preset on a 1 MiB machine: the check follows the model's build, seconds for the paper preset.
  const cfg = config([...common(path.join(tempDir(t), 'tiny-machine')), '--epochs', '1', '--max-steps', '1']);
  const machineMemory = () => ({ totalBytes: 2 ** 20, freeBytes: 2 ** 20, localWorkers: 1 });
  const run = new Trainer(cfg, {
    log: memoryLogger(),
    tty: false,
    collective: null,
    shouldStop: () => false,
    onStep: () => steps++,
    machineMemory,
  }).run();
  await t.rejects(run, {
    name: 'ConfigError',
    message:
      /one image does not fit this backend's memory: a step needs ~\d+ MiB at 1 image \(weights and optimizer ~.*\), usable 1 MiB of free memory/,
  });
  t.equal(steps, 0, 'no step ran');
});
