// `alexnet train --init-from`: a fine-tune from an ONNX file of another class count infers the
// preset, replaces the head (one log line), starts at epoch 1 and keeps the file's other
// weights; a file that does not fit --preset is refused naming the layer and both shapes.
import t from 'tap';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { createAlexNet, disposeModel } from '../../src/model/alexnet';
import { buildSpec } from '../../src/model/presets';
import { exportOnnx, namedWeights } from '../../src/model/onnx/write-onnx';
import { loadCheckpoint } from '../../src/train/run/checkpoint';
import { applyInitFrom, initPreset, readInitSource, resolveInitFrom } from '../../src/train/init-from';
import { reinitLayers, trainConfig } from '../../src/core/config';
import { memoryLogger } from '../../src/core/log';
import { makeStripeDataset } from '../helpers/stripes';
import { builtFile } from '../helpers/repo';
import { writeModelCheckpoint } from '../helpers/model-checkpoint';
import { tempDir } from '../data/fixtures/images';

const root = tempDir(t, 'init-from-');

function train(args: string[]): { code: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [builtFile('src/cli.ts'), 'train', ...args], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, ALEXNET_CACHE_DIR: path.join(root, 'cache') },
  });
  return { code: r.status, stderr: r.stderr };
}

t.test('fine-tune from an ONNX file of 5 classes on a 3-class dataset', async (t) => {
  await tf.setBackend('cpu');
  const data = await makeStripeDataset(path.join(root, 'stripes'), { train: 4, val: 1, test: 1 });
  const source = createAlexNet(buildSpec('small'), 5, 3);
  const before = namedWeights(source);
  const file = path.join(root, 'five.onnx');
  exportOnnx(
    source,
    {
      classes: ['a', 'b', 'c', 'd', 'e'],
      inputSize: 28,
      resizeSize: 32,
      meanRgb: [0, 0, 0],
      stdRgb: [1, 1, 1],
      preset: 'small',
    },
    file,
  );
  disposeModel(source);
  const runDir = path.join(root, 'run');
  // No --preset: the file's layers say small. A learning rate of ~0 keeps the weights as loaded.
  const r = train([
    ...['--data', data, '--init-from', file, '--run-dir', runDir, '--epochs', '1', '--max-steps', '1'],
    ...['--batch-size', '6', '--lr', '1e-12', '--backend', 'wasm', '--devices', 'cpu:1'],
  ]);
  t.equal(r.code, 0, 'train exits 0', { stderr: r.stderr.slice(-3000) });
  t.match(r.stderr, /--init-from .*five\.onnx \(ONNX\): preset small \(the one its layers fit\)/);
  t.match(r.stderr, /fc8 replaced: the file has 5 classes, the dataset 3, so fc8 starts fresh with 3 outputs/);
  t.match(r.stderr, /epoch 1: /, 'starts at epoch 1');
  const ckpt = loadCheckpoint(runDir);
  t.equal(ckpt.config.preset, 'small');
  const conv1 = ckpt.weights.find((w) => w.name === 'conv1/kernel')?.data ?? new Float32Array();
  const want = before.get('conv1/kernel')?.data ?? new Float32Array(1);
  const maxDiff = conv1.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0);
  t.ok(maxDiff < 1e-6, `conv1 is the file's (max difference ${maxDiff.toExponential(1)})`);
  t.same(ckpt.weights.find((w) => w.name === 'fc8/kernel')?.shape, [256, 3], 'fc8 has the dataset classes');
  t.equal(ckpt.optimizer.iterations, 1, 'fresh optimizer state: one step taken');

  const refused = train([
    ...['--data', data, '--init-from', file, '--preset', 'paper', '--run-dir', path.join(root, 'r2')],
  ]);
  t.equal(refused.code, 2);
  t.match(
    refused.stderr,
    /does not fit --preset paper: conv1: the file's weight is \[32, 3, 5, 5\], preset paper's is \[96, 3, 11, 11\]/,
  );
});

t.test('a checkpoint as --init-from: its recorded preset, checked against --preset', async (t) => {
  const model = createAlexNet(buildSpec('small'), 3, 1);
  const ckpt = await writeModelCheckpoint(path.join(root, 'ckpt-run'), model, ['x', 'y', 'z']);
  disposeModel(model);
  const source = await readInitSource(path.join(root, 'ckpt-run'));
  t.equal(source.file, ckpt, 'a run directory: its best.ckpt');
  const config = trainConfig({ runDir: path.join(root, 'r3'), initFrom: ckpt });
  t.equal(initPreset(config, source, false).config.preset, 'small', "the file's preset when --preset is not given");
  t.throws(
    () => initPreset(config, source, true),
    /does not fit --preset paper: conv1\/kernel: the file's is \[5, 5, 3, 32\], preset paper's is \[11, 11, 3, 96\]/,
  );
});

t.test('--reinit fc8: a new head at the same class count (the file has 3 classes, so does the dataset)', async (t) => {
  await tf.setBackend('cpu');
  const trained = createAlexNet(buildSpec('small'), 3, 7);
  const file = await writeModelCheckpoint(path.join(root, 'reinit-src'), trained, ['x', 'y', 'z']);
  const source = await readInitSource(file);
  const fresh = () => createAlexNet(buildSpec('small'), 3, 8);
  const values = (m: ReturnType<typeof fresh>, name: string) =>
    Array.from(m.params.find((p) => p.name === name)?.variable.dataSync() ?? []);
  const kept = fresh();
  t.match(applyInitFrom(kept, source), /fc8 included \(3 classes\)/);
  t.same(values(kept, 'fc8/kernel'), values(trained, 'fc8/kernel'), "without --reinit: the file's fc8");
  const model = fresh();
  const reference = fresh();
  const config = trainConfig({ runDir: path.join(root, 'r4'), initFrom: file, reinit: 'fc8' });
  t.match(applyInitFrom(model, source, reinitLayers(config)), /fresh \(--reinit\): fc8/);
  t.same(values(model, 'fc8/kernel'), values(reference, 'fc8/kernel'), 'fc8 keeps its fresh initialisation');
  t.same(values(model, 'fc8/bias'), values(reference, 'fc8/bias'));
  t.same(values(model, 'fc7/kernel'), values(trained, 'fc7/kernel'), "fc7 is the file's");
  await t.rejects(
    resolveInitFrom(trainConfig({ runDir: path.join(root, 'r5'), reinit: 'fc8' }), false, memoryLogger()),
    { name: 'ConfigError', message: /--reinit .* needs --init-from/ },
  );
  for (const m of [trained, kept, model, reference]) disposeModel(m);
});
