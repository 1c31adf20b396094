// Launching from a scheduler's environment, end to end: two network namespaces as two hosts
// (needs root and iproute2; skipped otherwise), each running the SAME `alexnet train` command
// line with the variables torchrun / PyTorchJob or Slurm set; host 0 runs the coordinator, host
// 1 joins it over CURVE tcp, and the run finishes with both workers. A half-set environment is
// a one-line error naming what is missing, before anything starts.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { writeKeyFile } from '../../../src/dist/security/keyfile';
import { loadCheckpoint } from '../../../src/train/run/checkpoint';
import { tempDir } from '../../data/fixtures/images';
import { makeStripeDataset } from '../../helpers/stripes';
import { twoHosts } from '../fixtures/netns';

const cli = path.resolve('dist/src/cli.js');
const root = tempDir(t, 'alexnet-scheduler-');
const key = path.join(root, 'cluster.key');
let data = '';

/** Runs `alexnet` (in namespace `ns`, if given) with `env` added; resolves with its exit code and output. */
function alexnet(
  args: string[],
  env: Record<string, string>,
  ns: string | null = null,
): Promise<{ code: number | null; output: string }> {
  const [cmd, argv] =
    ns === null ? [process.execPath, [cli, ...args]] : ['ip', ['netns', 'exec', ns, process.execPath, cli, ...args]];
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
  return new Promise((resolve) => child.on('exit', (code) => (clearTimeout(timer), resolve({ code, output }))));
}

const trainArgs = (runDir: string) => [
  'train',
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
  '5',
  '--epochs',
  '1',
  '--max-steps',
  '3',
  '--run-dir',
  runDir,
  '--devices',
  'cpu:1',
  '--key-file',
  key,
];

t.before(async () => {
  data = await makeStripeDataset(path.join(root, 'stripes'), { train: 16, val: 3, test: 3 });
  writeKeyFile(key, false);
});

const JOBS: [string, (rank: number) => Record<string, string>][] = [
  [
    'torchrun / PyTorchJob',
    (rank) => ({ MASTER_ADDR: '10.200.77.1', MASTER_PORT: '29517', WORLD_SIZE: '2', RANK: String(rank) }),
  ],
  [
    'Slurm',
    (rank) => ({
      SLURM_JOB_NUM_NODES: '2',
      SLURM_NODEID: String(rank),
      SLURM_PROCID: String(rank),
      SLURM_JOB_NODELIST: '10.200.77.[1-2]',
      MASTER_PORT: '29518',
    }),
  ],
];

for (const [scheduler, envOf] of JOBS) {
  t.test(`${scheduler} variables: the same command on two hosts trains one run`, async (t) => {
    const hosts = twoHosts(t);
    if (hosts === null) {
      t.pass('skipped: needs root and ip netns');
      return;
    }
    const runDir = path.join(root, scheduler.replace(/\W+/g, '-'));
    const [coordinator, joiner] = await Promise.all(
      hosts.map((ns, rank) => alexnet(trainArgs(runDir), envOf(rank), ns)),
    );
    t.equal(coordinator.code, 0, 'host 0 finished');
    t.equal(joiner.code, 0, 'host 1 finished');
    t.match(
      coordinator.output,
      /job: host 0 of 2 runs the coordinator at 10\.200\.77\.1 \(tcp:\/\/10\.200\.77\.1:295\d\d\)/,
    );
    t.match(joiner.output, /job: host 1 of 2 joins the coordinator/);
    t.match(
      coordinator.output,
      /ring: rank 0 tcp:\/\/10\.200\.77\.1:\d+ -> rank 1 tcp:\/\/10\.200\.77\.2:\d+ -> rank 0/,
      'one rank on each host',
    );
    t.equal(loadCheckpoint(runDir).position.globalStep, 3);
  });
}

t.test('a half-set environment is a one-line error naming what is missing', async (t) => {
  const { code, output } = await alexnet(trainArgs(path.join(root, 'half')), {
    MASTER_ADDR: '10.200.77.1',
    WORLD_SIZE: '2',
  });
  t.equal(code, 2);
  t.match(
    output,
    /^alexnet: a half-set torchrun environment: MASTER_ADDR, WORLD_SIZE are set but MASTER_PORT, NODE_RANK or RANK are not/m,
  );
  t.notOk(fs.existsSync(path.join(root, 'half')), 'nothing started');
});

t.test('explicit flags win: with --rendezvous the environment is not read', async (t) => {
  const { code, output } = await alexnet(
    [...trainArgs(path.join(root, 'flags')), '--rendezvous', 'tcp://127.0.0.1:0'],
    { MASTER_ADDR: '10.200.77.1', WORLD_SIZE: '2' },
  );
  t.equal(code, 2);
  t.match(
    output,
    /^alexnet: --rendezvous needs --world-size/m,
    'the flags are checked, the half-set environment is not',
  );
});
