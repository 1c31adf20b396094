// --freeze with real worker processes and ZeroMQ sockets on wasm, in data and hybrid mode: the
// frozen layers' weights stay bit for bit what they were, the others train, the optimizer keeps
// no state for them, fewer bytes go on the wire (as wire-bytes.ts predicts), and a checkpoint of
// a frozen run resumes.
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { cpuDevices, smallRunArgs, trainConfigOf as config } from '../helpers/train-config';
import { initBackend } from '../../src/backend/select';
import { trainDataParallel } from '../../src/command-handlers';
import { layerOfParam } from '../../src/core/config';
import { memoryLogger } from '../../src/core/log';
import type { StepReportMessage } from '../../src/dist/control/messages';
import { createAlexNet, disposeModel } from '../../src/model/alexnet';
import { buildSpec } from '../../src/model/presets';
import { loadCheckpoint, type CheckpointContents } from '../../src/train/run/checkpoint';
import { Trainer } from '../../src/train/trainer';
import { wireBytesPerStep } from '../../src/train/wire-bytes';
import { tempDir } from '../data/fixtures/images';
import { makeStripeDataset } from '../helpers/stripes';

const root = tempDir(t);
let data = '';
const SEED = 5;
// The ZeroMQ ring counts its bytes (shared memory carries none over a wire).
const STEPS = ['--max-steps', '2', '--dropout', '0', '--epochs', '1', '--transport', 'zmq'];

/** The weights every run starts from: createAlexNet with the run's seed (the same bits on every backend). */
function initialWeights(): Map<string, Float32Array> {
  const model = createAlexNet(buildSpec('small', { init: 'he', dropoutRate: 0 }), 3, SEED);
  const weights = new Map(model.params.map((p) => [p.name, p.variable.dataSync() as Float32Array]));
  disposeModel(model);
  return weights;
}

async function train2(
  name: string,
  extra: string[],
): Promise<{ ckpt: CheckpointContents; reports: StepReportMessage[] }> {
  const runDir = path.join(root, name);
  const reports: StepReportMessage[] = [];
  await trainDataParallel(
    config([...smallRunArgs(data, runDir, { seed: SEED }), ...STEPS, ...extra]),
    cpuDevices(2),
    memoryLogger(),
    {
      onStepReport: (m) => reports.push(m),
    },
  );
  return { ckpt: loadCheckpoint(runDir), reports };
}

/** Frozen layers: every weight bit-equal to the start; the others moved; slots for the trained params only. */
function checkFrozen(t: Test, ckpt: CheckpointContents, frozen: string[], label: string): void {
  const start = initialWeights();
  t.equal(ckpt.weights.length, 16, `${label}: the checkpoint holds every layer's weights, frozen ones too`);
  for (const w of ckpt.weights) {
    const before = start.get(w.name) as Float32Array;
    const same = w.data.every((v, k) => Object.is(v, before[k]));
    if (frozen.includes(layerOfParam(w.name))) t.ok(same, `${label}: ${w.name} (frozen) unchanged bit for bit`);
    else t.notOk(same, `${label}: ${w.name} trained`);
  }
  const trained = ckpt.weights.map((w) => w.name).filter((n) => !frozen.includes(layerOfParam(n)));
  t.same(ckpt.optimizer.params, trained, `${label}: optimizer slots for the trained params only`);
}

/** Every report's bytes within 2% of the model, and their mean. */
function checkBytes(t: Test, reports: StepReportMessage[], expected: number, label: string): number {
  t.equal(reports.length, 4, `${label}: 2 steps x 2 ranks reported`);
  for (const r of reports) {
    const off = Math.abs(r.wireBytes - expected) / expected;
    t.ok(
      off < 0.02,
      `${label} rank ${r.rank}: ${r.wireBytes} bytes, model ${Math.round(expected)} (${(off * 100).toFixed(2)}% off)`,
    );
  }
  return reports.reduce((s, r) => s + r.wireBytes, 0) / reports.length;
}

t.before(async () => {
  await initBackend('wasm', false);
  data = await makeStripeDataset(path.join(root, 'stripes'), { train: 16, val: 3, test: 3 });
});

const spec = buildSpec('small', { dropoutRate: 0 });
const plan = { spec, numClasses: 3, dtype: 'fp32', worldSize: 2, batchPerWorker: 6 } as const;

t.test(
  'data mode, 2 workers, --freeze conv1-conv5 --overlap: conv layers unchanged, their gradients off the wire',
  async (t) => {
    const frozen = ['conv1', 'conv2', 'conv3', 'conv4', 'conv5'];
    const { ckpt, reports } = await train2('data-frozen', [
      '--freeze',
      'conv1-conv5',
      '--overlap',
      '--checksum-every',
      '1',
    ]);
    checkFrozen(t, ckpt, frozen, 'data');
    const all = wireBytesPerStep({ ...plan, mode: 'data' }).total;
    const mean = checkBytes(
      t,
      reports,
      wireBytesPerStep({ ...plan, mode: 'data', frozen: new Set(frozen) }).total,
      'data',
    );
    t.ok(
      mean < 0.9 * all,
      `data: ${Math.round(mean)} bytes a step frozen, ${Math.round(all)} with every layer trained`,
    );

    // A frozen run resumes (here in one process, with the same --freeze): still unchanged, still no slots.
    const resumed = path.join(root, 'data-frozen-resumed');
    const cfg = config([
      ...smallRunArgs(data, resumed, { seed: SEED }),
      ...['--max-steps', '2', '--dropout', '0', '--epochs', '2', '--freeze', 'conv1-conv5'],
      ...['--resume', path.join(root, 'data-frozen')],
    ]);
    await new Trainer(cfg, { log: memoryLogger(), tty: false, collective: null, shouldStop: () => false }).run();
    const after = loadCheckpoint(resumed);
    t.equal(after.position.globalStep, 4, 'resumed and trained 2 more steps');
    checkFrozen(t, after, frozen, 'resumed');
  },
);

t.test(
  'hybrid mode, 2 workers, --freeze conv1-conv3,fc6: frozen conv and FC slices unchanged, fewer bytes',
  async (t) => {
    const frozen = ['conv1', 'conv2', 'conv3', 'fc6'];
    const { ckpt, reports } = await train2('hybrid-frozen', [
      '--parallel',
      'hybrid',
      '--freeze',
      'conv1-conv3,fc6',
      '--checksum-every',
      '1',
    ]);
    checkFrozen(t, ckpt, frozen, 'hybrid');
    const all = wireBytesPerStep({ ...plan, mode: 'hybrid' }).total;
    const mean = checkBytes(
      t,
      reports,
      wireBytesPerStep({ ...plan, mode: 'hybrid', frozen: new Set(frozen) }).total,
      'hybrid',
    );
    t.ok(mean < all, `hybrid: ${Math.round(mean)} bytes a step frozen, ${Math.round(all)} with every layer trained`);
  },
);
