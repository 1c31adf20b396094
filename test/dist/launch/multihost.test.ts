// Multi-host runs on one machine: `alexnet train --rendezvous` and `alexnet join` as real CLI
// processes over tcp://127.0.0.1 with a CURVE key file (the compiled dist/, like a user runs
// it). A joined run equals a normal 2-worker run bit for bit; keyless and wrong-key peers get
// nowhere, on the control plane and on the ring; a busy rendezvous port is a one-line error.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import * as zmq from 'zeromq';
import { writeKeyFile } from '../../../src/dist/security/keyfile';
import { MessageType, PROTOCOL_VERSION, encodeMessage } from '../../../src/dist/control/messages';
import { loadCheckpoint } from '../../../src/train/run/checkpoint';
import { tempDir } from '../../data/fixtures/images';
import { makeStripeDataset } from '../../helpers/stripes';
import { faultyWorkerEnv } from '../fixtures/faulty-worker';
import { isAlive } from '../fixtures/pids';

const cli = path.resolve('dist/src/cli.js');
const root = tempDir(t, 'alexnet-multihost-');
const clusterKey = path.join(root, 'cluster.key');
const otherKey = path.join(root, 'other.key');
let data = '';

/** A CLI process whose stdout and stderr are collected together. */
interface CliProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves with the first match of `pattern` in the output (rejects on exit or timeout). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  exitCode: Promise<number | null>;
}

function startCli(args: string[], env: NodeJS.ProcessEnv = process.env): CliProcess {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exitCode = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let exited = false;
  void exitCode.then(() => (exited = true));
  const waitFor = async (pattern: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> => {
    const started = Date.now();
    for (;;) {
      const m = pattern.exec(output);
      if (m !== null) return m;
      if (exited || Date.now() - started > timeoutMs)
        throw new Error(`no ${pattern} in the output of alexnet ${args[0]}:\n${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  t.teardown(() => {
    if (!exited) child.kill('SIGKILL');
  });
  return { child, output: () => output, waitFor, exitCode };
}

/** A few steps of the small preset; `length` makes a run that lasts until it is killed. */
const SHORT = ['--epochs', '1', '--max-steps', '3'];
const LONG = ['--epochs', '50'];
const common = (runDir: string, length = SHORT): string[] => [
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
  '--dropout',
  '0',
  '--backend',
  'wasm',
  '--seed',
  '5',
  ...length,
  '--run-dir',
  runDir,
];

/** The coordinator host's half of a 2-worker run: 1 local worker, 1 to join. */
const coordinatorArgs = (runDir: string, extra: string[] = [], length = SHORT): string[] => [
  'train',
  ...common(runDir, length),
  '--devices',
  'cpu:1',
  '--rendezvous',
  'tcp://127.0.0.1:0',
  '--world-size',
  '2',
  '--key-file',
  clusterKey,
  ...extra,
];

const ADDRESS = /waiting for 1 more worker\(s\) to join at (tcp:\/\/127\.0\.0\.1:\d+)/;

function sameWeights(a: string, b: string): string[] {
  const x = loadCheckpoint(a);
  const y = loadCheckpoint(b);
  return x.weights
    .filter(
      (w, i) =>
        !Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength).equals(
          Buffer.from(y.weights[i].data.buffer, y.weights[i].data.byteOffset, y.weights[i].data.byteLength),
        ),
    )
    .map((w) => w.name);
}

const trainLosses = (runDir: string): number[] =>
  fs
    .readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { train?: { loss: number } })
    .filter((r) => r.train)
    .map((r) => r.train?.loss ?? NaN);

/** Peers that try their luck without the cluster's secret key: none, or a keypair of their own. */
function intruders(clusterPublicKey: string): zmq.Dealer[] {
  const keyless = new zmq.Dealer({ linger: 0 });
  const ownKeys = new zmq.Dealer({ linger: 0 });
  const own = zmq.curveKeyPair();
  ownKeys.curveServerKey = clusterPublicKey; // the public key leaked; the secret did not
  ownKeys.curvePublicKey = own.publicKey;
  ownKeys.curveSecretKey = own.secretKey;
  return [keyless, ownKeys];
}

/** Connects PUSH sockets without the secret key to a ring endpoint and sends a forged hello and huge gradients. */
function attackRing(endpoint: string, prevRank: number, clusterPublicKey: string, sockets: zmq.Push[]): void {
  for (const keyed of [false, true]) {
    const push = new zmq.Push({ linger: 0, sendHighWaterMark: 10 });
    if (keyed) {
      const own = zmq.curveKeyPair();
      push.curveServerKey = clusterPublicKey;
      push.curvePublicKey = own.publicKey;
      push.curveSecretKey = own.secretKey;
    }
    push.connect(endpoint);
    sockets.push(push);
    const hello = Buffer.alloc(16);
    [0x52494e47, 1, prevRank, 2].forEach((word, i) => hello.writeUInt32LE(word, i * 4));
    void push.send(hello).catch(() => undefined);
    void push.send(Buffer.from(new Float32Array(4096).fill(1e9).buffer)).catch(() => undefined);
  }
}

t.before(async () => {
  data = await makeStripeDataset(path.join(root, 'stripes'), { train: 16, val: 3, test: 3 });
  writeKeyFile(clusterKey, false);
  writeKeyFile(otherKey, false);
});

t.test(
  'a joined 2-host run equals a 2-worker run; keyless peers on the control plane and the ring get nowhere',
  async (t) => {
    const reference = path.join(root, 'reference');
    const single = startCli(['train', ...common(reference), '--devices', 'cpu:2']);
    t.equal(await single.exitCode, 0, 'the 2-worker reference run finished');

    const runDir = path.join(root, 'joined');
    const coordinator = startCli(coordinatorArgs(runDir, ['--checksum-every', '1', '--join-timeout', '60']));
    const address = (await coordinator.waitFor(ADDRESS))[1];
    const publicKey = (JSON.parse(fs.readFileSync(clusterKey, 'utf8')) as { publicKey: string }).publicKey;
    const sockets: zmq.Socket[] = intruders(publicKey);
    t.teardown(() => sockets.forEach((s) => s.close()));
    // Each says hello as a joining host with exactly the one worker the run is missing: if either
    // got through it would take the free rank, and the real host below would be turned away.
    for (const s of sockets as zmq.Dealer[]) {
      s.connect(address);
      void s
        .send(
          encodeMessage({
            type: MessageType.Join,
            protocolVersion: PROTOCOL_VERSION,
            host: 'intruder',
            address: '127.0.0.1',
            pid: 1,
            workers: 1,
          }),
        )
        .catch(() => undefined);
    }
    await coordinator.waitFor(
      /refused a connection to tcp:\/\/127\.0\.0\.1:\d+: (it has no CURVE key|its key is not the cluster key)/,
      30_000,
    );

    const joiner = startCli(['join', address, '--key-file', clusterKey, '--devices', 'cpu:1']);
    const ring = await coordinator.waitFor(/ring: rank 0 (tcp:\S+) -> rank 1 (tcp:\S+) -> rank 0/);
    attackRing(ring[1], 1, publicKey, sockets as zmq.Push[]);
    attackRing(ring[2], 0, publicKey, sockets as zmq.Push[]);

    const [coordinatorCode, joinerCode] = await Promise.all([coordinator.exitCode, joiner.exitCode]);
    t.equal(coordinatorCode, 0, 'the coordinator finished');
    t.equal(joinerCode, 0, 'the joining host finished');
    t.equal(coordinator.output().match(/joined with/g)?.length, 1, 'exactly one host joined');
    t.notMatch(coordinator.output(), /intruder/, 'the intruders never reached the coordinator');
    t.match(joiner.output(), /started 1 workers as rank 1 of 2/);
    t.same(sameWeights(reference, runDir), [], 'the same weights, bit for bit');
    t.same(trainLosses(runDir), trainLosses(reference), 'the same training loss');
  },
);

t.test(
  '2 hosts x 2 workers run the hierarchical plane (shared memory per host, cross rings); replicas agree',
  async (t) => {
    const runDir = path.join(root, 'hierarchical');
    const coordinator = startCli([
      'train',
      ...common(runDir),
      '--devices',
      'cpu:2',
      '--rendezvous',
      'tcp://127.0.0.1:0',
      '--world-size',
      '4',
      '--key-file',
      clusterKey,
      '--checksum-every',
      '1',
      '--join-timeout',
      '60',
    ]);
    const address = (
      await coordinator.waitFor(/waiting for 2 more worker\(s\) to join at (tcp:\/\/127\.0\.0\.1:\d+)/)
    )[1];
    const joiner = startCli(['join', address, '--key-file', clusterKey, '--devices', 'cpu:2']);
    const [coordinatorCode, joinerCode] = await Promise.all([coordinator.exitCode, joiner.exitCode]);
    t.equal(coordinatorCode, 0, `the coordinator finished:\n${coordinator.output()}`);
    t.equal(joinerCode, 0, `the joining host finished:\n${joiner.output()}`);
    t.match(
      coordinator.output(),
      /data plane: hierarchical \(shared memory inside each of 2 hosts x 2 workers, 2 ZeroMQ cross rings of 2 between hosts\)/,
    );
    // --checksum-every 1: the coordinator compared every rank's weights after each step.
    t.notMatch(coordinator.output(), /diverged/);
    t.equal(trainLosses(runDir).length, 1, 'the epoch reported its loss');
    t.ok(trainLosses(runDir).every(Number.isFinite), `loss ${trainLosses(runDir).join(', ')}`);
  },
);

t.test('a host with another key file is refused; the coordinator times out with a clear message', async (t) => {
  const coordinator = startCli(coordinatorArgs(path.join(root, 'wrong-key'), ['--join-timeout', '8']));
  const address = (await coordinator.waitFor(ADDRESS))[1];
  const joiner = startCli(['join', address, '--key-file', otherKey, '--devices', 'cpu:1']);
  t.equal(await joiner.exitCode, 2, 'join exits with code 2');
  t.match(joiner.output(), /refused this host's CURVE handshake .*copy of the coordinator's key file/);
  t.notMatch(joiner.output(), /started \d+ workers/, 'no worker was started');
  t.equal(await coordinator.exitCode, 1, 'the coordinator gives up');
  // Which side gives up first is timing: the coordinator sees a failed decryption, or (on a
  // loaded machine) the client hanging up mid-handshake; either is logged as a refusal.
  t.match(
    coordinator.output(),
    /refused a connection to tcp:\S+: (it does not hold the cluster key|the peer hung up during the handshake)/,
  );
  t.match(coordinator.output(), /rendezvous: only 1 of 2 workers joined at tcp:\S+ within 8 s\. Start 'alexnet join/);
  t.notMatch(coordinator.output(), /\n\s+at /, 'no stack trace');
});

t.test('a worker that crashes on the joined host is named with its host; every process stops', async (t) => {
  // --max-restarts 0: the run ends at the first failure (rejoin.test.ts tests restarts across hosts).
  const coordinator = startCli(
    coordinatorArgs(path.join(root, 'crash'), ['--join-timeout', '60', '--max-restarts', '0']),
  );
  const address = (await coordinator.waitFor(ADDRESS))[1];
  // The fault hook reaches the joined host's worker through its agent's environment.
  const joiner = startCli(['join', address, '--key-file', clusterKey, '--devices', 'cpu:1'], {
    ...process.env,
    ...faultyWorkerEnv(1, 1, 'crash'),
  });
  const [coordinatorCode, joinerCode] = await Promise.all([coordinator.exitCode, joiner.exitCode]);
  t.equal(coordinatorCode, 1);
  t.match(coordinator.output(), /alexnet: worker rank 1 \(on \S+\) exited with code 3 at epoch 1, step \d+/);
  t.equal(joinerCode, 1);
  t.match(joiner.output(), /alexnet: the run failed: worker rank 1 .*exited with code 3/);
  const pids = [coordinator, joiner].flatMap((p) => [...p.output().matchAll(/pids (\d+)/g)].map((m) => Number(m[1])));
  t.equal(pids.length, 2, `worker pids ${pids.join(', ')}`);
  t.notOk(pids.some(isAlive), 'no worker left on either host');
});

t.test('a coordinator killed with SIGKILL: the joined host stops its workers and exits', async (t) => {
  const coordinator = startCli(coordinatorArgs(path.join(root, 'killed'), [], LONG));
  const address = (await coordinator.waitFor(ADDRESS))[1];
  // 1 s instead of the default 10: the test waits out the whole timeout.
  const joiner = startCli([
    'join',
    address,
    '--key-file',
    clusterKey,
    '--devices',
    'cpu:1',
    '--coordinator-timeout',
    '1',
  ]);
  // The first step's progress line: both hosts' workers are training (a whole epoch tested nothing more).
  await coordinator.waitFor(/Epoch 1\/50 \[/, 90_000);
  const remote = Number((await joiner.waitFor(/as rank 1 of 2 \(pids (\d+)\)/))[1]);
  coordinator.child.kill('SIGKILL');
  const killedAt = Date.now();
  t.equal(await joiner.exitCode, 1);
  t.match(joiner.output(), /lost the coordinator at tcp:\S+ for 1 s: stopping this host's workers/);
  t.match(joiner.output(), /lost the coordinator at tcp:\S+; this host's workers were stopped/);
  t.notOk(isAlive(remote), `the joined host's worker is gone ${Date.now() - killedAt} ms after the coordinator`);
});

t.test('a rendezvous port in use is a one-line error naming it, exit 2', async (t) => {
  const busy = new zmq.Router();
  await busy.bind('tcp://127.0.0.1:*');
  t.teardown(() => busy.close());
  const taken = busy.lastEndpoint as string;
  const coordinator = startCli([
    'train',
    ...common(path.join(root, 'busy')),
    '--devices',
    'cpu:1',
    '--rendezvous',
    taken,
    '--world-size',
    '2',
    '--key-file',
    clusterKey,
  ]);
  t.equal(await coordinator.exitCode, 2);
  t.match(coordinator.output(), new RegExp(`alexnet: address ${taken.replace(/[.*]/g, '\\$&')} is already in use`));
  t.notMatch(coordinator.output(), /\n\s+at /, 'no stack trace');
});
