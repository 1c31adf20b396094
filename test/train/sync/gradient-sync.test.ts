// Each gradient-sync strategy in one process, on wasm (what CI runs): two data-parallel ranks over
// the in-memory ring (with and without --overlap) reach the update of one process on the whole
// batch, with bit-identical replicas; the hybrid strategy's plumbing (conv gradients reduced,
// FC slices applied as they come) gives that update too at one rank; and the factory picks the
// strategy the config asks for. Real processes and sockets: test/train/sync/hybrid.test.ts and
// test/dist/launch/data-parallel.test.ts.
import t from 'tap';
import { readFloats } from '../../../src/backend/readback';
import { initBackend } from '../../../src/backend/select';
import { trainConfig, type TrainConfig } from '../../../src/core/config';
import { memoryLogger } from '../../../src/core/log';
import type { Batch } from '../../../src/data/loader';
import type { SyncCollective } from '../../../src/dist/collective';
import { createAlexNet, disposeModel, type AlexNet } from '../../../src/model/alexnet';
import { Optimizer } from '../../../src/train/optimizer';
import { trainStep } from '../../../src/train/step';
import { createGradientSync } from '../../../src/train/sync/create-sync';
import { DataParallelSync } from '../../../src/train/sync/data-parallel-sync';
import type { GradientSync } from '../../../src/train/sync/gradient-sync';
import { HybridHead } from '../../../src/train/sync/hybrid';
import { HybridSync } from '../../../src/train/sync/hybrid-sync';
import { LocalSync } from '../../../src/train/sync/local-sync';
import { maxRelativeError } from '../../helpers/kernel-cases';
import { memoryCollectives } from '../../helpers/memory-collective';
import { randomBatch, TINY_SPEC } from '../../helpers/micro-batch';

const CLASSES = 4;
const IMAGES = 6;
const STEPS = 2;

const config = (changes: Partial<TrainConfig> = {}): Readonly<TrainConfig> =>
  trainConfig({ runDir: '/nonexistent', batchSize: IMAGES, bucketMb: 0.001, ...changes });

interface Replica {
  model: AlexNet;
  optimizer: Optimizer;
}

function replica(): Replica {
  const model = createAlexNet(TINY_SPEC, CLASSES, 5);
  const optimizer = new Optimizer(
    { name: 'sgd', momentum: 0.9, weightDecay: 5e-4, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
    model.params,
  );
  return { model, optimizer };
}

/** Rank r's contiguous share of the global batch, as the loader cuts it. */
function share(batch: Batch, rank: number, worldSize: number, imageSize: number): Batch {
  const per = Math.ceil(batch.count / worldSize);
  const from = Math.min(rank * per, batch.count);
  const n = Math.min(per, batch.count - from);
  const px = imageSize * imageSize * 3;
  return {
    ...batch,
    images: batch.images.slice(from * px, (from + n) * px),
    labels: batch.labels.slice(from, from + n),
    sampleIndices: batch.sampleIndices.slice(from, from + n),
    count: n,
  };
}

async function weightsOf(model: AlexNet): Promise<Float32Array[]> {
  return Promise.all(model.params.map((p) => readFloats(p.variable)));
}

/** STEPS steps of each rank's replica under its strategy; the weights after them. */
async function train(ranks: { replica: Replica; sync: GradientSync }[]): Promise<Float32Array[][]> {
  for (let step = 0; step < STEPS; step++) {
    const batch = randomBatch(ranks[0].replica.model, IMAGES, 40 + step);
    await Promise.all(
      ranks.map(({ replica: r, sync }) =>
        trainStep(r.model, sync.optimizer, share(batch, sync.rank, sync.worldSize, TINY_SPEC.inputSize), {
          lr: 0.05,
          dropoutSeed: 3 + step,
          sync,
          stopVote: false,
        }),
      ),
    );
  }
  return Promise.all(ranks.map(({ replica: r }) => weightsOf(r.model)));
}

function worstDifference(got: Float32Array[], want: Float32Array[]): number {
  return Math.max(...got.map((g, i) => maxRelativeError(g, want[i])));
}

let reference: Float32Array[] = [];

t.before(async () => {
  await initBackend('wasm', false);
  const r = replica();
  [reference] = await train([{ replica: r, sync: new LocalSync(r.optimizer) }]);
  disposeModel(r.model);
});

for (const overlap of [false, true]) {
  t.test(
    `data-parallel over 2 in-memory ranks${overlap ? ' with --overlap' : ''} = one process on the whole batch`,
    async (t) => {
      const collectives = memoryCollectives(2);
      const replicas = [replica(), replica()];
      const syncs = await Promise.all(
        collectives.map((c, r) =>
          createGradientSync({
            config: config({ overlap }),
            collective: c,
            model: replicas[r].model,
            optimizer: replicas[r].optimizer,
            microBatch: 0,
            log: memoryLogger(),
          }),
        ),
      );
      t.ok(
        syncs.every((s) => s instanceof DataParallelSync),
        'the data-parallel strategy',
      );
      const [w0, w1] = await train(replicas.map((r, i) => ({ replica: r, sync: syncs[i] })));
      t.ok(
        w0.every((w, i) => w.every((v, j) => Object.is(v, w1[i][j]))),
        'the two replicas are bit-identical',
      );
      const worst = worstDifference(w0, reference);
      t.ok(worst <= 1e-4, `largest relative difference from one process ${worst.toExponential(2)} <= 1e-4`);
      const ops = collectives[0].calls.map((c) => c.op);
      t.equal(ops[0], 'broadcast', "rank 0's weights first");
      t.equal(
        ops.includes('allReduceStart'),
        overlap,
        overlap ? 'buckets started during backward' : 'one all-reduce after backward',
      );
      replicas.forEach((r) => disposeModel(r.model));
    },
  );
}

t.test('the comparison can fail: a different learning rate gives different weights', async (t) => {
  const r = replica();
  await trainStep(r.model, r.optimizer, randomBatch(r.model, IMAGES, 40), { lr: 0.5, dropoutSeed: 3, stopVote: false });
  t.ok(worstDifference(await weightsOf(r.model), reference) > 1e-3);
  disposeModel(r.model);
});

t.test('the hybrid strategy at one rank = one process (conv gradients reduced, FC slices applied)', async (t) => {
  const [c] = memoryCollectives(1);
  const r = replica();
  const head = await HybridHead.create(r.model, r.optimizer, c);
  const sync = new HybridSync(head, c);
  await train([{ replica: { model: r.model, optimizer: head.optimizer }, sync }]);
  await sync.materialize(false);
  const worst = worstDifference(await weightsOf(r.model), reference);
  t.ok(worst <= 1e-4, `largest relative difference ${worst.toExponential(2)} <= 1e-4`);
  t.ok(
    c.calls.some((call) => call.op === 'allGather'),
    'the FC layers gathered their inputs',
  );
  head.dispose();
  disposeModel(r.model);
});

t.test('the factory: one process, data, and --overlap that micro-batches turn off', async (t) => {
  const r = replica();
  const setup = { model: r.model, optimizer: r.optimizer, microBatch: 0, log: memoryLogger() };
  t.ok(
    (await createGradientSync({ ...setup, config: config(), collective: null })) instanceof LocalSync,
    'no collective: local',
  );
  const [one] = memoryCollectives(1);
  t.ok(
    (await createGradientSync({ ...setup, config: config({ parallel: 'hybrid' }), collective: one })) instanceof
      LocalSync,
    'a world of one: local, whatever the mode',
  );
  const pair = memoryCollectives(2);
  const logs = [memoryLogger(), memoryLogger()];
  const syncs = await Promise.all(
    pair.map((c: SyncCollective, i) =>
      createGradientSync({ ...setup, config: config({ overlap: true }), collective: c, microBatch: 1, log: logs[i] }),
    ),
  );
  t.ok(syncs.every((s) => s instanceof DataParallelSync));
  t.match(
    logs[0].lines.join('\n'),
    /--overlap is off: each worker's 3 images run in micro-batches of 1/,
    'said once, by rank 0',
  );
  t.equal(logs[1].lines.length, 0);
  disposeModel(r.model);
});
