// Training that survives faults, with real worker processes, real signals and real files:
// workers SIGKILLed three times at seeded random steps are restarted from the newest checkpoint
// (--max-restarts) and the run ends with weights bit-identical to an undisturbed run; so does a
// run whose coordinator is SIGKILLed and then resumed with --resume; a crash or a hang that
// recurs at the same step uses up the restarts and ends the run with the worker's error, no
// worker left running.
// Workers run the compiled dist/ (npm test builds it first).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import t from 'tap';
import { cpuDevices, smallRunArgs, trainConfigOf as config } from '../../helpers/train-config';
import { trainDataParallel } from '../../../src/command-handlers';
import { memoryLogger } from '../../../src/core/log';
import type { StepReportMessage } from '../../../src/dist/control/messages';
import { loadCheckpoint, type CheckpointContents } from '../../../src/train/run/checkpoint';
import { METRICS_FILE, parseMetricsJsonl, type RestartEventRecord } from '../../../src/train/run/run-log';
import { tempDir } from '../../data/fixtures/images';
import { makeStripeDataset } from '../../helpers/stripes';
import { faultyWorkerEnv } from '../fixtures/faulty-worker';
import { attemptPids, isAlive } from '../fixtures/pids';
import { mulberry32 } from '../../../src/data/rng';

const root = tempDir(t);
let data = '';

// 3 classes x 16 training images at a global batch of 12: 4 steps per epoch, 2 epochs (the
// chaos schedule's 3 kills land at global steps 3, 4 and 5, across the epoch boundary).
const STEPS_PER_EPOCH = 4;
const EPOCHS = 2;
const TOTAL_STEPS = STEPS_PER_EPOCH * EPOCHS;
const GLOBAL_BATCH = 12;

const common = (runDir: string, { epochs = EPOCHS, hangTimeoutSec = 60 } = {}) => [
  ...smallRunArgs(data, runDir, { seed: 11 }),
  ...['--epochs', String(epochs), '--checksum-every', '1', '--hang-timeout', String(hangTimeoutSec)],
];
const cpu2 = cpuDevices(2);

/** `kills` distinct global steps in 2 .. total-1, ascending, each with the rank to kill. */
export function chaosSchedule(
  seed: number,
  kills: number,
  total: number,
  worldSize: number,
): { globalStep: number; rank: number }[] {
  const rng = mulberry32(seed); // seeded: the chaos schedule is the same on every run of the test
  const rnd = () => rng.nextFloat();
  const steps = new Set<number>();
  while (steps.size < kills) steps.add(2 + Math.floor(rnd() * (total - 2)));
  return [...steps].sort((a, b) => a - b).map((globalStep) => ({ globalStep, rank: Math.floor(rnd() * worldSize) }));
}

/** Every tensor of two checkpoints (weights and optimizer slots), compared bit for bit. */
function bitDifferences(a: CheckpointContents, b: CheckpointContents): string[] {
  const bytes = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  const diffs: string[] = [];
  a.weights.forEach((w, i) => {
    if (!bytes(w.data).equals(bytes(b.weights[i].data))) diffs.push(`weights ${w.name}`);
  });
  for (const [slot, arrays] of Object.entries(a.optimizer.slots)) {
    arrays.forEach((x, i) => {
      if (!bytes(x).equals(bytes(b.optimizer.slots[slot][i]))) diffs.push(`optimizer ${slot} ${a.weights[i].name}`);
    });
  }
  return diffs;
}

let reference: CheckpointContents | null = null;

t.before(async () => {
  data = await makeStripeDataset(path.join(root, 'stripes'), { train: 16, val: 3, test: 3 });
});

t.test('an undisturbed run (the reference)', async (t) => {
  const runDir = path.join(root, 'undisturbed');
  const started = Date.now();
  const result = await trainDataParallel(config([...common(runDir), '--max-restarts', '0']), cpu2, memoryLogger());
  t.equal(result.epochs.length, EPOCHS);
  reference = loadCheckpoint(runDir);
  t.same(reference.position, { epoch: EPOCHS, stepInEpoch: 0, globalStep: TOTAL_STEPS });
  t.comment(`undisturbed run: ${((Date.now() - started) / 1000).toFixed(1)} s`);
});

t.test('workers SIGKILLed 3 times at seeded random steps: 3 restarts, bit-identical weights', async (t) => {
  const runDir = path.join(root, 'chaos');
  const schedule = chaosSchedule(14, 3, TOTAL_STEPS, 2);
  t.comment(`chaos schedule: ${schedule.map((k) => `rank ${k.rank} at global step ${k.globalStep}`).join(', ')}`);
  const log = memoryLogger();
  const killed: { globalStep: number; rank: number; pid: number }[] = [];
  let killedInAttempt = -1;
  const onStepReport = (m: StepReportMessage) => {
    const next = schedule[killed.length];
    const attempts = attemptPids(log.lines);
    // One kill per attempt: reports of a group already failing do not count.
    if (
      next === undefined ||
      attempts.length - 1 === killedInAttempt ||
      m.epoch * STEPS_PER_EPOCH + m.step < next.globalStep
    )
      return;
    const pid = attempts[attempts.length - 1][next.rank];
    killedInAttempt = attempts.length - 1;
    killed.push({ ...next, pid });
    process.kill(pid, 'SIGKILL');
  };
  const started = Date.now();
  // Step checkpoints every 2 steps, and by time every 0.2 s (they interleave at random).
  const cfg = config([
    ...common(runDir),
    '--max-restarts',
    '3',
    '--checkpoint-every',
    '2',
    '--checkpoint-every-min',
    String(0.2 / 60),
    '--keep-checkpoints',
    '2',
  ]);
  const result = await trainDataParallel(cfg, cpu2, log, { onStepReport });
  t.equal(
    killed.length,
    3,
    `killed ${killed.map((k) => `rank ${k.rank} (pid ${k.pid}) at step ${k.globalStep}`).join(', ')}`,
  );
  t.equal(result.epochs.length > 0, true, 'rank 0 reported its result');
  const events = parseMetricsJsonl(fs.readFileSync(path.join(runDir, METRICS_FILE), 'utf8')).events;
  const restarts = events.filter((e): e is RestartEventRecord => e.event === 'restart');
  t.equal(restarts.length, 3, 'three restart events in metrics.jsonl');
  restarts.forEach((r, i) => {
    t.match(
      r.cause,
      new RegExp(`rank ${killed[i].rank} was killed by SIGKILL`),
      `restart ${i + 1} names rank ${killed[i].rank} and SIGKILL`,
    );
    const failedAt = (r.epoch - 1) * STEPS_PER_EPOCH + r.step;
    const lost = failedAt - (r.resumeFrom?.globalStep ?? 0);
    t.comment(
      `restart ${r.restart}: ${r.cause}; resumed from ${r.resumeFrom ? path.basename(r.resumeFrom.file) : 'the start'} (global step ${r.resumeFrom?.globalStep ?? 0}): ${lost} step(s) lost`,
    );
  });
  t.ok(
    log.lines.some((l) => /warn: restart 1 of 3: worker rank \d was killed by SIGKILL/.test(l)),
    'each restart is logged with its cause',
  );
  const stalls = events.filter((e) => e.event === 'checkpoint').map((e) => (e.event === 'checkpoint' ? e.stallMs : 0));
  t.ok(
    stalls.length > 0,
    `${stalls.length} step checkpoints, stall per checkpoint ${Math.min(...stalls).toFixed(1)} .. ${Math.max(...stalls).toFixed(1)} ms`,
  );
  const steps = fs.readdirSync(runDir).filter((n) => /^step-\d+\.ckpt$/.test(n));
  t.ok(steps.length <= 2, `the newest 2 step checkpoints kept: ${steps.join(', ')}`);
  const final = loadCheckpoint(runDir);
  t.same(final.position, { epoch: EPOCHS, stepInEpoch: 0, globalStep: TOTAL_STEPS });
  t.same(
    bitDifferences(reference as CheckpointContents, final),
    [],
    'weights and momentum bit-identical to the undisturbed run',
  );
  const trainMetrics = (dir: string) =>
    parseMetricsJsonl(fs.readFileSync(path.join(dir, METRICS_FILE), 'utf8')).epochs.map((e) => [
      e.train,
      e.val,
      e.skippedImages,
    ]);
  t.same(
    trainMetrics(runDir),
    trainMetrics(path.join(root, 'undisturbed')),
    'every epoch record equals the undisturbed run (train and val metrics)',
  );
  t.comment(`chaos run: ${((Date.now() - started) / 1000).toFixed(1)} s`);
});

/** ALEXNET_SHM_PREFIX from a running worker's environment (null: no such process or variable). */
function shmPrefixOf(pid: number | undefined): string | null {
  if (pid === undefined) return null;
  try {
    const vars = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    return vars.find((v) => v.startsWith('ALEXNET_SHM_PREFIX='))?.slice('ALEXNET_SHM_PREFIX='.length) || null;
  } catch {
    return null;
  }
}

t.test('a coordinator SIGKILLed mid-run, then --resume: bit-identical weights', async (t) => {
  const runDir = path.join(root, 'coordinator-killed');
  const argv = [...common(runDir), '--checkpoint-every', '2'];
  const child = spawn(process.execPath, [path.resolve('dist/src/cli.js'), 'train', ...argv, '--devices', 'cpu:2'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // A SIGKILLed coordinator cannot remove its ipc folder (alexnet-ring-*): it goes into root, which tap removes.
    env: { ...process.env, TMPDIR: root },
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const started = Date.now();
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  while (
    !fs.existsSync(path.join(runDir, 'step-00000004.ckpt')) &&
    Date.now() - started < 120_000 &&
    child.exitCode === null
  )
    await new Promise((r) => setTimeout(r, 50));
  // The run's shared-memory segments are named after the prefix in its workers' environment.
  const prefix = shmPrefixOf(attemptPids(output.split('\n')).flat()[0]);
  child.kill('SIGKILL');
  await exited;
  const pids = attemptPids(output.split('\n')).flat();
  t.equal(pids.length, 2, `worker pids ${pids.join(', ')}`);
  const gone = Date.now();
  while (pids.some(isAlive) && Date.now() - gone < 30_000) await new Promise((r) => setTimeout(r, 100));
  t.notOk(pids.some(isAlive), 'the workers left with their coordinator');
  t.ok(prefix, `the workers ran with segment prefix ${prefix}`);
  t.same(
    fs.readdirSync('/dev/shm').filter((n) => prefix !== null && n.startsWith(prefix)),
    [],
    'no shared-memory segment outlived the SIGKILLed run',
  );
  const newest = fs
    .readdirSync(runDir)
    .filter((n) => /^step-\d+\.ckpt$/.test(n))
    .sort()
    .pop();
  if (newest === undefined) return void t.fail('the coordinator was killed before its first step checkpoint');
  const from = loadCheckpoint(path.join(runDir, newest)).position.globalStep;
  t.ok(from > 0 && from < TOTAL_STEPS, `killed after ${newest}, global step ${from} of ${TOTAL_STEPS}`);
  const resumed = await trainDataParallel(config([...argv, '--resume', runDir]), cpu2, memoryLogger());
  // The images this run trained (an epoch's images/s counts only those): the steps after the
  // checkpoint, none before. (A kill at an epoch's last step leaves that epoch's end to run, with
  // no training in it, so the epoch count does not tell.)
  const trained = Math.round(resumed.epochs.reduce((n, e) => n + (e.imagesPerSec * e.epochMs) / 1000, 0));
  t.equal(
    trained,
    (TOTAL_STEPS - from) * GLOBAL_BATCH,
    `resumed at global step ${from}: trained only the steps after it`,
  );
  const final = loadCheckpoint(runDir);
  t.same(final.position, { epoch: EPOCHS, stepInEpoch: 0, globalStep: TOTAL_STEPS });
  t.same(
    bitDifferences(reference as CheckpointContents, final),
    [],
    'weights and momentum bit-identical to the undisturbed run',
  );
});

for (const [kind, maxRestarts, pattern] of [
  // One restart each: counting several to the limit is restarts.test.ts's (runWithRestarts).
  [
    'crash',
    1,
    /worker rank 1 exited with code 3 at epoch 1, step \d \(gave up after 1 restart\(s\), --max-restarts 1\)/,
  ],
  [
    'hang',
    1,
    /worker rank 1 stopped responding \(no message for \d+ s\) at epoch 1, step \d: hung \(gave up after 1 restart\(s\), --max-restarts 1\)/,
  ],
] as const) {
  t.test(`a ${kind} that recurs at the same step uses up the restarts, then ends the run`, async (t) => {
    // Rank 1 fails after its first step, in every attempt.
    const faultEnv = faultyWorkerEnv(1, 1, kind);
    Object.assign(process.env, faultEnv);
    t.teardown(() => {
      for (const name of Object.keys(faultEnv)) delete process.env[name];
    });
    const runDir = path.join(root, `recurring-${kind}`);
    const log = memoryLogger();
    // No step checkpoints: each restart begins again and meets the fault at the same step.
    const cfg = config([
      ...common(runDir, { epochs: 1, hangTimeoutSec: 3 }),
      '--max-restarts',
      String(maxRestarts),
      '--checkpoint-every-min',
      '0',
    ]);
    const started = Date.now();
    await t.rejects(trainDataParallel(cfg, cpu2, log), pattern);
    t.ok(Date.now() - started < 60_000 * (maxRestarts + 1), `ended in ${Date.now() - started} ms`);
    const pids = attemptPids(log.lines);
    t.same(
      pids.map((p) => p.length),
      Array<number>(maxRestarts + 1).fill(2),
      `${maxRestarts + 1} attempts of 2 workers: pids ${pids.join('; ')}`,
    );
    t.notOk(pids.flat().some(isAlive), 'no orphan worker left');
    const restarts = parseMetricsJsonl(fs.readFileSync(path.join(runDir, METRICS_FILE), 'utf8')).events.filter(
      (e): e is RestartEventRecord => e.event === 'restart',
    );
    // (Whether the coordinator saw the same step twice depends on whether the dying worker's last
    // report arrived before its exit, so sameStepAgain is shown, not asserted.)
    t.same(
      restarts.map((r) => [r.restart, r.rank, r.resumeFrom]),
      Array.from({ length: maxRestarts }, (_, i) => [i + 1, 1, null]),
      `${maxRestarts} restart(s) of rank 1, from the start (no checkpoint yet)`,
    );
    t.comment(
      restarts.map((r) => `restart ${r.restart}: ${r.cause}${r.sameStepAgain ? ' (same step again)' : ''}`).join('; '),
    );
  });
}

t.test('a second Ctrl-C kills the workers and ends the run: no restart', async (t) => {
  const runDir = path.join(root, 'double-interrupt');
  const child = spawn(
    process.execPath,
    [path.resolve('dist/src/cli.js'), 'train', ...common(runDir, { epochs: 50 }), '--devices', 'cpu:2'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const started = Date.now();
  while (!/Epoch 1\/50|epoch 1:/.test(output) && Date.now() - started < 90_000)
    await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGINT');
  await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGINT');
  const code = await exited;
  t.not(code, 0, `exit code ${code}`);
  t.match(output, /second Ctrl-C: killing the workers/);
  t.notMatch(output, /restart 1 of/, 'not restarted');
});
