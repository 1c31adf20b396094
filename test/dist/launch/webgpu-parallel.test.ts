// Data-parallel training on simulated GPUs: `alexnet train --devices webgpu:2` runs 2 real
// worker processes on the webgpu backend (in CI both on Mesa's software Vulkan device,
// lavapipe; two processes share it) with the ring all-reduce over ZeroMQ, and ends with the
// same weights as 1 wasm worker at the same global batch. Workers run the compiled dist/.
// Skips with one loud line where no adapter exists; fails instead in CI.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import yargs from 'yargs';
import { initBackend } from '../../../src/backend/select';
import { buildTrainConfig, type CliArgs, type TrainConfig } from '../../../src/core/config';
import { trainOptions } from '../../../src/cli';
import { memoryLogger } from '../../../src/core/log';
import { loadCheckpoint } from '../../../src/train/run/checkpoint';
import { Trainer } from '../../../src/train/trainer';
import { tempDir } from '../../data/fixtures/images';
import { makeStripeDataset } from '../../helpers/stripes';
import { maxRelativeDifference } from '../../helpers/weights';
import { requireWebgpu } from '../../helpers/webgpu';

const root = tempDir(t);

t.test('2 webgpu workers at global batch 8 = 1 wasm worker at batch 8 (dropout off)', async (t) => {
  if (!(await requireWebgpu(t, 'webgpu data-parallel test'))) return;
  const data = await makeStripeDataset(path.join(root, 'stripes'), { train: 16, val: 2, test: 2 });
  const args = (runDir: string, devices: string) => [
    '--data',
    data,
    '--preset',
    'small',
    '--init',
    'he',
    '--batch-size',
    '8',
    '--lr',
    '0.01',
    '--seed',
    '5',
    '--max-steps',
    '2',
    '--dropout',
    '0',
    '--epochs',
    '1',
    '--run-dir',
    runDir,
    '--devices',
    devices,
    '--checksum-every',
    '1',
  ];
  // The reference runs in this process on wasm: webgpu's compiling of every pipeline (seconds of
  // CPU on lavapipe) is paid by the 2 workers alone, and they are held to the backend that the
  // kernel and step tests hold webgpu to.
  const one = buildTrainConfig(
    trainOptions(yargs(args(path.join(root, 'one'), 'cpu:1'))).parseSync() as CliArgs,
  ) as TrainConfig;
  await initBackend('wasm', false);
  await new Trainer(one, { log: memoryLogger(), tty: false, collective: null, shouldStop: () => false }).run();

  const cli = path.resolve('dist/src/cli.js');
  const { stdout, stderr } = await promisify(execFile)(
    process.execPath,
    [cli, 'train', ...args(path.join(root, 'two'), 'webgpu:2')],
    { encoding: 'utf8', timeout: 300_000 },
  );
  const out = `${stdout}\n${stderr}`;
  t.match(out, /devices: 2 webgpu worker\(s\) sharing whatever adapter Dawn picks/, 'the device line');
  t.match(
    out,
    /backend: webgpu \[tfjs [\d.]+, webgpu; adapter .+ \((software|hardware)\)\]/,
    'the backend line names the adapter',
  );
  const a = loadCheckpoint(path.join(root, 'one'));
  const b = loadCheckpoint(path.join(root, 'two'));
  t.same(b.position, a.position);
  const maxRel = maxRelativeDifference(a.weights, b.weights);
  t.ok(maxRel <= 1e-4, `max relative weight difference ${maxRel.toExponential(2)} <= 1e-4`);

  // eval and predict read back asynchronously on webgpu: the same figures as on wasm.
  const evalLine = async (backend: string) => {
    const extra = backend === 'webgpu' ? ['--allow-software-gpu'] : [];
    const r = await promisify(execFile)(
      process.execPath,
      [
        cli,
        'eval',
        path.join(root, 'two'),
        '--split',
        'val',
        '--backend',
        backend,
        ...extra,
        '--out',
        path.join(root, `eval-${backend}`),
      ],
      { encoding: 'utf8', timeout: 120_000 },
    );
    const line = /val \(\d+ images, centre crop\): top-1 error .*, loss [\d.]+/.exec(r.stdout);
    if (line === null) throw new Error(`no result line in eval's output:\n${r.stdout}\n${r.stderr}`);
    return line[0];
  };
  t.equal(await evalLine('webgpu'), await evalLine('wasm'), 'alexnet eval: webgpu = wasm');
  const image = path.join(data, 'val', 'checker', fs.readdirSync(path.join(data, 'val', 'checker'))[0]);
  const predict = async (backend: string) =>
    (
      await promisify(execFile)(
        process.execPath,
        [
          cli,
          'predict',
          '--model',
          path.join(root, 'two', 'final-model'),
          '--backend',
          backend,
          ...(backend === 'webgpu' ? ['--allow-software-gpu'] : []),
          image,
        ],
        { encoding: 'utf8', timeout: 120_000 },
      )
    ).stdout;
  t.equal(await predict('webgpu'), await predict('wasm'), 'alexnet predict: webgpu = wasm');
});
