// A host that drops out of a multi-host run, on two network namespaces (needs root and
// iproute2; skipped otherwise): the joined host's agent is SIGKILLed mid-run (its worker
// follows it), the coordinator notices the silent rank, restarts the run from the newest
// checkpoint and waits --rejoin-timeout; a replacement `alexnet join` on that host takes the
// free ranks, and the run ends with weights bit-identical to an undisturbed run.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import yargs from 'yargs';
import { buildTrainConfig, type CliArgs, type TrainConfig } from '../../../src/core/config';
import { trainOptions } from '../../../src/cli';
import { trainDataParallel } from '../../../src/command-handlers';
import { memoryLogger } from '../../../src/core/log';
import { writeKeyFile } from '../../../src/dist/security/keyfile';
import { loadCheckpoint } from '../../../src/train/run/checkpoint';
import { METRICS_FILE, parseMetricsJsonl, type RestartEventRecord } from '../../../src/train/run/run-log';
import { tempDir } from '../../data/fixtures/images';
import { makeStripeDataset } from '../../helpers/stripes';
import { HOST_ADDRESSES, twoHosts } from '../fixtures/netns';

const cli = path.resolve('dist/src/cli.js');
const root = tempDir(t, 'alexnet-rejoin-');
const key = path.join(root, 'cluster.key');
let data = '';

const training = (runDir: string) => [
  '--data',
  data,
  '--preset',
  'small',
  '--init',
  'he',
  '--batch-size',
  '12',
  '--backend',
  'wasm',
  '--seed',
  '9',
  '--epochs',
  '2',
  '--checkpoint-every',
  '2',
  '--run-dir',
  runDir,
];

/** `alexnet` in namespace `ns`; output collected, killed at teardown if still running. */
function inHost(
  t: { teardown: (fn: () => void) => void },
  ns: string,
  args: string[],
): { child: ChildProcess; output: () => string; exit: Promise<number | null> } {
  // `ip netns exec` execs node in place: the child's pid is the alexnet process itself.
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, cli, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, output: () => output, exit };
}

async function until(check: () => boolean, what: string, timeoutMs = 120_000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.before(async () => {
  data = await makeStripeDataset(path.join(root, 'stripes'), { train: 16, val: 3, test: 3 });
  writeKeyFile(key, false);
});

t.test('a joined host SIGKILLed mid-run rejoins (a replacement agent); the run ends bit-identical', async (t) => {
  const hosts = twoHosts(t);
  if (hosts === null) {
    t.pass('skipped: needs root and ip netns');
    return;
  }
  const [h1, h2] = hosts;
  const reference = path.join(root, 'reference');
  const config = buildTrainConfig(
    trainOptions(yargs([...training(reference), '--max-restarts', '0'])).parseSync() as CliArgs,
  ) as TrainConfig;
  await trainDataParallel(config, { kind: 'cpu', worldSize: 2, gpuIds: [], note: null }, memoryLogger());

  const runDir = path.join(root, 'dropped');
  const rendezvous = `tcp://${HOST_ADDRESSES[0]}:29531`;
  const coordinator = inHost(t, h1, [
    'train',
    ...training(runDir),
    '--devices',
    'cpu:1',
    '--rendezvous',
    rendezvous,
    '--world-size',
    '2',
    '--key-file',
    key,
    '--hang-timeout',
    '5',
    '--rejoin-timeout',
    '60',
    '--max-restarts',
    '2',
  ]);
  const first = inHost(t, h2, ['join', rendezvous, '--key-file', key, '--devices', 'cpu:1']);
  await until(() => fs.existsSync(path.join(runDir, 'step-00000004.ckpt')), 'the step 4 checkpoint');
  first.child.kill('SIGKILL'); // the whole host's agent; its worker notices its parent is gone
  await first.exit;
  await until(() => /restart 1 of 2: worker rank 1 .*stopped responding/.test(coordinator.output()), 'the restart');
  const replacement = inHost(t, h2, ['join', rendezvous, '--key-file', key, '--devices', 'cpu:1']);
  const [coordinatorCode, replacementCode] = await Promise.all([coordinator.exit, replacement.exit]);
  t.equal(coordinatorCode, 0, 'the coordinator finished the run');
  t.equal(replacementCode, 0, 'the replacement host finished');
  const restarts = parseMetricsJsonl(fs.readFileSync(path.join(runDir, METRICS_FILE), 'utf8')).events.filter(
    (e): e is RestartEventRecord => e.event === 'restart',
  );
  t.equal(restarts.length, 1, 'one restart recorded');
  t.comment(
    `${restarts[0]?.cause}; resumed from ${restarts[0]?.resumeFrom ? path.basename(restarts[0].resumeFrom.file) : 'the start'}`,
  );
  const a = loadCheckpoint(reference);
  const b = loadCheckpoint(runDir);
  t.same(b.position, a.position);
  const bytes = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  t.same(
    a.weights.filter((w, i) => !bytes(w.data).equals(bytes(b.weights[i].data))).map((w) => w.name),
    [],
    'weights bit-identical to the undisturbed run',
  );
});

t.test("a worker lost on the coordinator's host: the other host's agent is told to rejoin and does", async (t) => {
  const hosts = twoHosts(t);
  if (hosts === null) {
    t.pass('skipped: needs root and ip netns');
    return;
  }
  const [h1, h2] = hosts;
  const runDir = path.join(root, 'local-loss');
  const rendezvous = `tcp://${HOST_ADDRESSES[0]}:29532`;
  const coordinator = inHost(t, h1, [
    'train',
    ...training(runDir),
    '--devices',
    'cpu:1',
    '--rendezvous',
    rendezvous,
    '--world-size',
    '2',
    '--key-file',
    key,
    '--hang-timeout',
    '30',
    '--max-restarts',
    '1',
  ]);
  const agent = inHost(t, h2, ['join', rendezvous, '--key-file', key, '--devices', 'cpu:1']);
  await until(() => fs.existsSync(path.join(runDir, 'step-00000004.ckpt')), 'the step 4 checkpoint');
  const pid = Number(/started 1 workers \(pids? (\d+)\)/.exec(coordinator.output())?.[1]);
  t.ok(pid > 0, `rank 0's worker: pid ${pid}`);
  process.kill(pid, 'SIGKILL');
  // Cleared at the end: a pending timer kept the test process (and a slot of the suite) for the rest of the minute.
  const timeout = new Promise<null>((r) => {
    const timer = setTimeout(() => r(null), 60_000);
    t.teardown(() => clearTimeout(timer));
  });
  const [coordinatorCode, agentCode] = await Promise.all([
    Promise.race([coordinator.exit, timeout]),
    Promise.race([agent.exit, timeout]),
  ]);
  if (coordinatorCode !== 0 || agentCode !== 0)
    t.comment(`coordinator:\n${coordinator.output()}\nagent:\n${agent.output()}`);
  t.equal(coordinatorCode, 0, 'the coordinator finished the run');
  t.equal(agentCode, 0, 'the same agent finished it too');
  t.match(
    agent.output(),
    /the run restarts: worker rank 0 was killed by SIGKILL.*joining the restarted run/,
    'the agent rejoined by itself',
  );
  t.same(
    loadCheckpoint(runDir).weights.map((w) => w.data.length),
    loadCheckpoint(path.join(root, 'reference')).weights.map((w) => w.data.length),
  );
  const bytes = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  const [a, b] = [loadCheckpoint(path.join(root, 'reference')), loadCheckpoint(runDir)];
  t.same(
    a.weights.filter((w, i) => !bytes(w.data).equals(bytes(b.weights[i].data))).map((w) => w.name),
    [],
    'weights bit-identical to the undisturbed run',
  );
});
