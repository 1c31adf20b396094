// Data-parallel training with real worker processes and real ZeroMQ sockets, on CPU-simulated
// devices (wasm workers): same answer as one worker, faults end the run cleanly.
// Workers run the compiled dist/ (npm test builds it first).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import t from 'tap';
import { cpuDevices, smallRunArgs, trainConfigOf as config } from '../../helpers/train-config';
import { initBackend } from '../../../src/backend/select';
import { trainDataParallel } from '../../../src/command-handlers';
import { faultyWorkerEnv } from '../fixtures/faulty-worker';
import { attemptPids, isAlive } from '../fixtures/pids';
import { loadCheckpoint } from '../../../src/train/run/checkpoint';
import { METRICS_FILE, parseMetricsJsonl } from '../../../src/train/run/run-log';
import { loadNewestCheckpoint } from '../../../src/train/run/checkpoint-store';
import { Trainer } from '../../../src/train/trainer';
import { memoryLogger } from '../../../src/core/log';
import { tempDir } from '../../data/fixtures/images';
import { ensureNativeAddon } from '../../helpers/native-addon';
import { makeStripeDataset } from '../../helpers/stripes';
import { maxRelativeDifference } from '../../helpers/weights';

const root = tempDir(t);
let data = '';

const common = (runDir: string, backend: 'wasm' | 'native' = 'wasm') => smallRunArgs(data, runDir, { backend });
const cpu = cpuDevices;

/** The worker pids from the coordinator's "started N workers (pids a, b)" line; throws without it. */
function workerPids(lines: string[]): number[] {
  const [first] = attemptPids(lines);
  if (first === undefined)
    throw new Error(`no "started N workers (pids ...)" line in the coordinator's log:\n${lines.join('\n')}`);
  return first;
}

t.before(async () => {
  await initBackend('wasm', false);
  data = await makeStripeDataset(path.join(root, 'stripes'), { train: 16, val: 3, test: 3 });
});

t.test(
  '2 workers at global batch 12 = 1 worker at batch 12 (dropout off), with bad files: skipped images are counted over all ranks, each file named once',
  async (t) => {
    // 4 stripes a class plus a truncated PNG and an empty file in the training split: 14 files, so
    // each epoch has a full step of 12 and one of 2 (1 a rank), and the bad files land in either.
    const broken = await makeStripeDataset(path.join(root, 'broken'), { train: 4, val: 1, test: 1 });
    const good = fs.readFileSync(path.join(broken, 'train', 'checker', '0.png'));
    fs.writeFileSync(
      path.join(broken, 'train', 'checker', 'truncated.png'),
      good.subarray(0, Math.floor(good.length / 2)),
    );
    fs.writeFileSync(path.join(broken, 'train', 'vertical', 'empty.png'), Buffer.alloc(0));
    const args = (runDir: string) => [
      ...common(runDir).map((a) => (a === data ? broken : a)),
      ...['--epochs', '2', '--dropout', '0'],
    ];
    const skippedPerEpoch = (runDir: string) =>
      parseMetricsJsonl(fs.readFileSync(path.join(runDir, METRICS_FILE), 'utf8')).epochs.map((e) => e.skippedImages);
    const oneLog = memoryLogger();
    await new Trainer(config(args(path.join(root, 'skip-one'))), {
      log: oneLog,
      tty: false,
      collective: null,
      shouldStop: () => false,
    }).run();
    const twoLog = memoryLogger();
    const result = await trainDataParallel(
      config([...args(path.join(root, 'skip-two')), '--checksum-every', '1']),
      cpu(2),
      twoLog,
    );
    t.equal(result.epochs.length, 2, 'rank 0 reported its result');
    t.same(skippedPerEpoch(path.join(root, 'skip-one')), [2, 2], '1 worker: both bad files in each epoch');
    t.same(skippedPerEpoch(path.join(root, 'skip-two')), [2, 2], '2 workers: the same counts, summed over the ranks');
    const namedIn = (dir: string) =>
      fs
        .readFileSync(path.join(root, dir, 'bad-files.tsv'), 'utf8')
        .trim()
        .split('\n')
        .filter((l) => /truncated\.png|empty\.png/.test(l)).length;
    t.equal(namedIn('skip-one'), 2, 'bad-files.tsv names each file once (1 worker)');
    t.equal(namedIn('skip-two'), 2, 'bad-files.tsv names each file once (2 workers)');
    t.equal(
      oneLog.lines.filter((l) => l.includes('truncated.png')).length,
      1,
      'one warning for the truncated file over 2 epochs',
    );
    const a = loadCheckpoint(path.join(root, 'skip-one'));
    const b = loadCheckpoint(path.join(root, 'skip-two'));
    t.same(b.position, a.position);
    t.same(
      b.weights.map((w) => w.name),
      a.weights.map((w) => w.name),
      'the same tensors on both sides',
    );
    const maxRel = maxRelativeDifference(a.weights, b.weights);
    t.ok(maxRel <= 1e-4, `max relative weight difference ${maxRel.toExponential(2)} <= 1e-4`);
  },
);

t.test('a worker killed with SIGKILL mid-run ends the run with its rank; its checkpoint loads', async (t) => {
  const runDir = path.join(root, 'killed');
  const log = memoryLogger();
  // --max-restarts 0: the run ends at the first failure (fault-tolerance.test.ts tests restarts).
  const run = trainDataParallel(
    config([
      ...common(runDir),
      '--epochs',
      '2',
      '--checkpoint-every',
      '1',
      '--hang-timeout',
      '60',
      '--max-restarts',
      '0',
    ]),
    cpu(2),
    log,
  );
  // Wait for a checkpoint (so some steps ran), then kill rank 1.
  const started = Date.now();
  const checkpointed = () => fs.existsSync(runDir) && fs.readdirSync(runDir).some((n) => n.endsWith('.ckpt'));
  while (!checkpointed() && Date.now() - started < 60_000) await new Promise((r) => setTimeout(r, 100));
  const pids = workerPids(log.lines);
  t.equal(pids.length, 2, `worker pids ${pids.join(', ')}`);
  const killedAt = Date.now();
  process.kill(pids[1], 'SIGKILL');
  await t.rejects(run, /rank 1 was killed by SIGKILL at epoch \d+, step \d+/);
  t.ok(Date.now() - killedAt < 10_000, `noticed in ${Date.now() - killedAt} ms`);
  t.notOk(pids.some(isAlive), 'no orphan worker left');
  const newest = loadNewestCheckpoint(runDir, memoryLogger());
  if (newest === null) throw new Error(`no loadable checkpoint in ${runDir}`);
  const ckpt = newest.contents;
  t.ok(ckpt.position.globalStep >= 1, `checkpoint loadable at global step ${ckpt.position.globalStep}`);
  // Resuming from such a checkpoint: fault-tolerance.test.ts (restarts after worker SIGKILLs, and
  // --resume after a coordinator's), bit-identical to an undisturbed run.
});

const nativeAddon = ensureNativeAddon();

// A crash and a hang: fault-tolerance.test.ts, whose runs end the same way once their restarts
// are used up, and check the same (the rank named, no orphan worker) for every attempt.
for (const [kind, what, pattern, backend] of [
  ['garbage', 'sends garbage', /rank 1 sent a malformed control message/, 'wasm'],
  [
    'segfault',
    'dies of SIGSEGV on the native backend',
    /rank 1 crashed with SIGSEGV \(a fault in native code: .*--backend wasm/,
    'native',
  ],
] as const) {
  const skip = backend === 'native' && nativeAddon.addon == null ? nativeAddon.skipReason : false;
  t.test(`a worker that ${what} is named and every worker stops`, { skip }, async (t) => {
    const faultEnv = faultyWorkerEnv(1, 2, kind);
    Object.assign(process.env, faultEnv);
    t.teardown(() => {
      for (const name of Object.keys(faultEnv)) delete process.env[name];
    });
    const log = memoryLogger();
    const started = Date.now();
    await t.rejects(
      trainDataParallel(
        config([
          ...common(path.join(root, kind), backend),
          '--epochs',
          '2',
          '--hang-timeout',
          '3',
          '--max-restarts',
          '0',
        ]),
        cpu(2),
        log,
      ),
      pattern,
    );
    t.ok(Date.now() - started < 60_000, `ended in ${Date.now() - started} ms`);
    const pids = workerPids(log.lines);
    t.equal(pids.length, 2, `worker pids ${pids.join(', ')}`);
    t.notOk(pids.some(isAlive), 'no orphan worker left');
  });
}

t.test('Ctrl-C on `alexnet train` stops all workers after a checkpoint; exit code 130', async (t) => {
  const runDir = path.join(root, 'sigint');
  const child = spawn(
    process.execPath,
    [path.resolve('dist/src/cli.js'), 'train', ...common(runDir), '--epochs', '50', '--devices', 'cpu:2'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const started = Date.now();
  // The first step's progress line: training is under way (waiting for the whole first epoch
  // and its evaluation cost 3 more steps on each worker and tested nothing more).
  while (!/Epoch 1\/50 \[/.test(output) && Date.now() - started < 90_000) await new Promise((r) => setTimeout(r, 100));
  child.kill('SIGINT');
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  t.equal(code, 130, 'exit code 130');
  t.match(output, /stopped at epoch \d+, step \d+: checkpoint saved/);
  t.notOk(workerPids(output.split('\n')).some(isAlive), 'no orphan worker left');
  t.ok(loadCheckpoint(runDir).position.globalStep > 0, 'the checkpoint is loadable');
});

/**
 * Starts `alexnet train` on 2 simulated devices, waits until `ready(output)`, kills the
 * coordinator with SIGKILL and returns how long its workers outlived it (Infinity: past 30 s;
 * any survivor is then killed here so the suite leaves no orphans either).
 */
async function killCoordinatorWhen(
  runName: string,
  ready: (output: string) => boolean,
  waitMs: number,
): Promise<{ output: string; workerCount: number; workersGoneMs: number }> {
  const child = spawn(
    process.execPath,
    [
      path.resolve('dist/src/cli.js'),
      'train',
      ...common(path.join(root, runName)),
      '--epochs',
      '50',
      '--devices',
      'cpu:2',
    ],
    // A SIGKILLed coordinator cannot remove its ipc folder (alexnet-ring-*): it goes into root, which tap removes.
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: root } },
  );
  let output = '';
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  const started = Date.now();
  while (!ready(output) && Date.now() - started < waitMs) await new Promise((r) => setTimeout(r, 20));
  const pids = workerPids(output.split('\n'));
  child.kill('SIGKILL');
  const killedAt = Date.now();
  const seenAtKill = output;
  // A worker notices between two synchronous tfjs calls, so allow for a slow step on a busy machine.
  while (pids.some(isAlive) && Date.now() - killedAt < 30_000) await new Promise((r) => setTimeout(r, 100));
  const survivors = pids.filter(isAlive);
  for (const pid of survivors) process.kill(pid, 'SIGKILL');
  return {
    output: seenAtKill,
    workerCount: pids.length,
    workersGoneMs: survivors.length > 0 ? Infinity : Date.now() - killedAt,
  };
}

t.test('a coordinator killed with SIGKILL leaves no orphan workers', async (t) => {
  // Killed once the first step's progress line shows the workers training.
  const { workerCount, workersGoneMs } = await killCoordinatorWhen(
    'orphans',
    (out) => /Epoch 1\/50 \[/.test(out),
    90_000,
  );
  t.equal(workerCount, 2, 'both worker pids printed');
  t.ok(workersGoneMs < 30_000, `workers gone ${workersGoneMs} ms after the coordinator`);
});

t.test('a coordinator killed while its workers are still starting leaves no orphans', async (t) => {
  // The window the orphan guard used to miss: the workers are loading tfjs and zeromq when the
  // coordinator dies, so by the time their guard starts their parent is already init (or tap).
  const { output, workerCount, workersGoneMs } = await killCoordinatorWhen(
    'orphans-start',
    (out) => /started \d+ workers \(pids \d+, \d+\)/.test(out),
    60_000,
  );
  t.equal(workerCount, 2, 'both worker pids printed');
  t.notOk(/backend:/.test(output), 'killed before the workers reported their backend');
  t.ok(workersGoneMs < 30_000, `workers gone ${workersGoneMs} ms after the coordinator`);
});
