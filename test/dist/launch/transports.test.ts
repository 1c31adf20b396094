// The two data planes of one host give the same bits: training with --transport shm (shared
// memory) and --transport zmq (the ZeroMQ ipc ring) ends with bit-identical weights, for the wire
// dtypes, --overlap and the hybrid mode, at 2 and 3 workers (real worker processes on wasm). The
// sum order is the ring's in both (docs/shm.md), so checkpoints and resume stay exact whichever
// plane ran. Also: --transport shm where it cannot run is an error, and no segment is left.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { cpuDevices, smallRunArgs, trainConfigOf as config } from '../../helpers/train-config';
import { initBackend } from '../../../src/backend/select';
import { trainDataParallel } from '../../../src/command-handlers';
import type { Transport } from '../../../src/core/config';
import { memoryLogger } from '../../../src/core/log';
import { chooseClusterPlane, chooseDataPlane } from '../../../src/dist/comm-thread/data-plane';
import { planeAssignments } from '../../../src/dist/control/cluster-plane';
import { shmUnavailableReason } from '../../../src/dist/shm/addon';
import { loadCheckpoint } from '../../../src/train/run/checkpoint';
import { tempDir } from '../../data/fixtures/images';
import { makeStripeDataset } from '../../helpers/stripes';

const root = tempDir(t);
let data = '';

const cpu = cpuDevices;

/** Our segments in /dev/shm (a run's are unlinked once every rank attached). */
const ourSegments = (): string[] => fs.readdirSync('/dev/shm').filter((n) => n.startsWith('alexnet-'));

/**
 * A 2-step run on `transport` (the second update already carries the first's momentum): its
 * weights, and the bytes its ranks put on a socket (the step reports: none when shared memory
 * carried everything).
 */
async function train(
  name: string,
  workers: number,
  transport: Transport,
  extra: string[],
): Promise<{ weights: Float32Array[]; socketBytes: number }> {
  const runDir = path.join(root, `${name}-${transport}`);
  const cfg = config([
    ...smallRunArgs(data, runDir),
    ...['--max-steps', '2', '--epochs', '1', '--transport', transport],
    ...extra,
  ]);
  let socketBytes = 0;
  await trainDataParallel(cfg, cpu(workers), memoryLogger(), { onStepReport: (m) => (socketBytes += m.wireBytes) });
  return { weights: loadCheckpoint(runDir).weights.map((w) => w.data), socketBytes };
}

function firstDifference(a: Float32Array[], b: Float32Array[]): string | null {
  for (let k = 0; k < a.length; k++) {
    for (let i = 0; i < a[k].length; i++)
      if (!Object.is(a[k][i], b[k][i])) return `tensor ${k} element ${i}: ${a[k][i]} vs ${b[k][i]}`;
  }
  return null;
}

const unavailable = shmUnavailableReason();

t.before(async () => {
  await initBackend('wasm', false);
  data = await makeStripeDataset(path.join(root, 'stripes'), { train: 16, val: 3, test: 3 });
});

/**
 * Each case trains twice, once on each plane. Every collective is held to the ring bit for bit
 * at N = 2, 3, 4 in fp32, fp16 and bf16 in test/dist/shm/collectives.test.ts; here, whole runs.
 */
const CASES: { name: string; workers: number; extra: string[] }[] = [
  { name: 'data-fp32', workers: 2, extra: ['--dropout', '0.5'] },
  { name: 'data-fp16-overlap', workers: 3, extra: ['--wire-dtype', 'fp16', '--overlap', '--bucket-mb', '0.5'] },
  {
    name: 'hybrid-bf16-overlap',
    workers: 2,
    extra: ['--parallel', 'hybrid', '--wire-dtype', 'bf16', '--overlap', '--bucket-mb', '0.1'],
  },
];

const shmRuns = new Map<string, Float32Array[]>();

for (const c of CASES) {
  t.test(
    `${c.name} at ${c.workers} workers: shared memory = the ZeroMQ ring, bit for bit`,
    { skip: unavailable ?? false },
    async (t) => {
      const shm = await train(c.name, c.workers, 'shm', c.extra);
      const zmq = await train(c.name, c.workers, 'zmq', c.extra);
      shmRuns.set(c.name, shm.weights);
      t.equal(shm.socketBytes, 0, 'shared memory: no byte on a socket');
      t.ok(zmq.socketBytes > 0, `the ring: ${zmq.socketBytes} bytes on its sockets`);
      t.equal(firstDifference(shm.weights, zmq.weights), null, 'every weight has the same bits');
      t.same(ourSegments(), [], 'no segment left in /dev/shm');
    },
  );
}

t.test('the comparison can fail: the runs above differ from each other', { skip: unavailable ?? false }, async (t) => {
  const [a, b] = [shmRuns.get('data-fp32'), shmRuns.get('data-fp16-overlap')];
  if (a === undefined || b === undefined) throw new Error('the runs above did not finish');
  t.not(firstDifference(a, b), null, 'fp32 at 2 workers and fp16 at 3 end with other bits');
});

t.test('choosing the data plane: auto falls back with its reason, shm refuses where it cannot run', async (t) => {
  t.same(
    chooseDataPlane('auto', true, () => null),
    { kind: 'shm' },
  );
  t.same(
    chooseDataPlane('auto', true, () => 'alexnet_shm.node not built (make shm)'),
    { kind: 'zmq', why: 'alexnet_shm.node not built (make shm)' },
  );
  t.same(
    chooseDataPlane('auto', false, () => null),
    { kind: 'zmq', why: 'the workers run on several hosts' },
  );
  t.same(
    chooseDataPlane('zmq', true, () => null),
    { kind: 'zmq', why: '--transport zmq' },
  );
  t.throws(() => chooseDataPlane('shm', true, () => 'no /dev/shm'), {
    name: 'ConfigError',
    message: /--transport shm: shared memory cannot run here: no \/dev\/shm/,
  });
  t.throws(() => chooseDataPlane('shm', false, () => null), {
    name: 'ConfigError',
    message: /across hosts needs the coordinator/,
  });
});

t.test('across hosts the coordinator chooses: hierarchical where every host has L >= 2 workers and shm', async (t) => {
  t.same(chooseClusterPlane('auto', [2, 2, 2], [null, null, null, null, null, null]), {
    kind: 'hierarchical',
    localSize: 2,
    hosts: 3,
  });
  t.same(chooseClusterPlane('shm', [2, 2], [null, null, null, null]), { kind: 'hierarchical', localSize: 2, hosts: 2 });
  t.same(chooseClusterPlane('zmq', [2, 2], [null, null, null, null]), { kind: 'zmq', why: '--transport zmq' });
  t.match(chooseClusterPlane('auto', [2, 1], [null, null, null]), {
    kind: 'zmq',
    why: /different numbers of workers \(2, 1\)/,
  });
  t.match(chooseClusterPlane('auto', [1, 1], [null, null]), { kind: 'zmq', why: /one worker per host/ });
  t.match(chooseClusterPlane('auto', [2, 2], [null, null, 'no /dev/shm', null]), {
    kind: 'zmq',
    why: /shared memory cannot run on rank 2's host: no \/dev\/shm/,
  });
  t.throws(() => chooseClusterPlane('shm', [2, 1], [null, null, null]), {
    name: 'ConfigError',
    message: /--transport shm across hosts means the hierarchical plane, which cannot run: the hosts run different/,
  });
  const planes = planeAssignments({ kind: 'hierarchical', localSize: 2, hosts: 2 }, ['x0', 'x1', 'x2', 'x3']);
  t.same(
    planes.map((p) => (p.kind === 'hierarchical' ? [p.localRank, p.hostIndex, p.crossNextEndpoint] : p.why)),
    [
      [0, 0, 'x2'],
      [1, 0, 'x3'],
      [0, 1, 'x0'],
      [1, 1, 'x1'],
    ],
    "rank r = h * L + l; cross ring l links the hosts' rank l",
  );
});

t.test('without the addon (as where g++ is missing), auto runs the ring and --transport shm is refused', async (t) => {
  const saved = process.env.ALEXNET_SHM_ADDON;
  process.env.ALEXNET_SHM_ADDON = path.join(root, 'no-such-addon.node'); // the workers inherit it
  t.teardown(() => {
    if (saved === undefined) delete process.env.ALEXNET_SHM_ADDON;
    else process.env.ALEXNET_SHM_ADDON = saved;
  });
  const auto = await train('no-addon-auto', 2, 'auto', []);
  t.ok(auto.socketBytes > 0, `auto: the ring carried the gradients (${auto.socketBytes} bytes)`);
  const cfg = config([
    '--data',
    data,
    '--preset',
    'small',
    '--batch-size',
    '12',
    '--run-dir',
    path.join(root, 'no-addon-shm'),
    '--backend',
    'wasm',
    '--max-steps',
    '1',
    '--epochs',
    '1',
    '--transport',
    'shm',
  ]);
  const log = memoryLogger();
  await t.rejects(
    trainDataParallel(cfg, cpu(2), log),
    /--transport shm: shared memory cannot run here: no-such-addon.node not built/,
  );
  t.notOk(
    log.lines.some((l) => /started \d+ workers/.test(l)),
    'refused by the coordinator, before any worker started',
  );
});
