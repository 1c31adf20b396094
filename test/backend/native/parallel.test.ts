// Data parallelism on the native backend: 2 worker processes (native, one oneDNN thread each)
// at global batch 12 give the same weights as 1 worker at batch 12, dropout off, to 1e-4.
// A process of its own: the backend is chosen once per process (data-parallel.test.ts holds
// the same equivalence on wasm). Workers run the compiled dist/ (npm test builds it first).
import * as path from 'node:path';
import t from 'tap';
import { trainConfigOf as config } from '../../helpers/train-config';
import { initBackend } from '../../../src/backend/select';
import { trainDataParallel } from '../../../src/command-handlers';
import { loadCheckpoint } from '../../../src/train/run/checkpoint';
import { Trainer } from '../../../src/train/trainer';
import { memoryLogger } from '../../../src/core/log';
import { tempDir } from '../../data/fixtures/images';
import { makeStripeDataset } from '../../helpers/stripes';
import { ensureNativeAddon } from '../../helpers/native-addon';
import { maxRelativeDifference } from '../../helpers/weights';

const { addon, skipReason } = ensureNativeAddon();

t.test(
  '2 native workers at global batch 12 = 1 native worker at batch 12 (dropout off)',
  { skip: addon == null ? skipReason : false },
  async (t) => {
    const root = tempDir(t);
    const data = await makeStripeDataset(path.join(root, 'stripes'), { train: 16, val: 3, test: 3 });
    const run = (dir: string, extra: string[]) =>
      config([
        '--data',
        data,
        '--preset',
        'small',
        '--init',
        'he',
        '--batch-size',
        '12',
        '--lr',
        '0.01',
        '--backend',
        'native',
        '--seed',
        '5',
        '--max-steps',
        '3',
        '--dropout',
        '0',
        '--epochs',
        '1',
        '--run-dir',
        path.join(root, dir),
        ...extra,
      ]);
    const info = await initBackend('native', false);
    t.equal(info.active, 'native');
    await new Trainer(run('one', []), {
      log: memoryLogger(),
      tty: false,
      collective: null,
      shouldStop: () => false,
    }).run();
    // An explicit --backend: a worker that cannot start native fails the run, it does not fall back.
    await trainDataParallel(
      run('two', ['--checksum-every', '1']),
      { kind: 'cpu', worldSize: 2, gpuIds: [], note: null },
      memoryLogger(),
    );
    const a = loadCheckpoint(path.join(root, 'one'));
    const b = loadCheckpoint(path.join(root, 'two'));
    t.same(b.position, a.position);
    const maxRel = maxRelativeDifference(a.weights, b.weights);
    t.ok(maxRel <= 1e-4, `max relative weight difference ${maxRel.toExponential(2)} <= 1e-4`);
  },
);
