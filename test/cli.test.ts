// The CLI as a user runs it (compiled dist/): one-line errors with exit code 2, help, summary.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import t from 'tap';
import { tempDir } from './data/fixtures/images';
import { makeStripeDataset } from './helpers/stripes';

const cli = path.resolve('dist/src/cli.js');
interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(...args: string[]): Run {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * `main(args)` in this process, stderr captured (stdout is tap's). main() turns every check's
 * error into its one line and exit code, whichever the check: the spawned cases prove the rest
 * of the way out (process.exit, no stack trace), without a process for each message.
 */
async function runHere(...args: string[]): Promise<Run> {
  const { main } = await import('../src/cli');
  const stderr: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array): boolean => {
    stderr.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  }) as typeof process.stderr.write;
  try {
    return { code: await main(args), stdout: '', stderr: stderr.join('') };
  } finally {
    process.stderr.write = write;
  }
}

t.test('bad options: one line on stderr, exit code 2, no stack trace', async (t) => {
  // Spawned: one check of yargs, one of the flags before the handlers load, one inside them.
  const spawned = new Set(['train --batch-size 0 --data .', 'train --data . --no-such-option', 'eval /no/such.ckpt']);
  const cases: [string[], RegExp][] = [
    [['train', '--preset', 'vgg', '--data', '.'], /--preset|preset/],
    [['train', '--batch-size', '0', '--data', '.'], /--batch-size must be a whole number >= 1/],
    [['train', '--data', '/no/such/dataset'], /dataset '\/no\/such\/dataset' does not exist/],
    [['train', '--data', '.', '--tta', '3'], /--tta must be 1/],
    [
      ['train', '--data', '.', '--freeze', 'conv1-conv9'],
      /--freeze: unknown layer 'conv9'; the layers are conv1, conv2/,
    ],
    [['train', '--data', '.', '--lr-mult', 'fc8=ten'], /--lr-mult: the factor of fc8 must be a positive finite number/],
    [['train', '--data', '.', '--no-such-option'], /Unknown argument/],
    [['eval', '/no/such.ckpt'], /no checkpoint at/],
    [['report', '/no/such/run'], /run directory '\/no\/such\/run' does not exist/],
    [['fly'], /Unknown argument|command/],
    // Multi-host runs always need the cluster key, on a real interface as on loopback.
    [
      ['train', '--data', '.', '--rendezvous', 'tcp://10.1.2.3:29500', '--world-size', '2'],
      /--rendezvous tcp:\/\/10.1.2.3:29500 needs --key-file: runs across hosts always use CURVE/,
    ],
    [['train', '--data', '.', '--rendezvous', 'tcp://127.0.0.1:29500', '--world-size', '2'], /needs --key-file/],
    [['join', 'tcp://10.1.2.3:29500'], /join tcp:\/\/10.1.2.3:29500 needs --key-file/],
    [
      ['join', 'tcp://10.1.2.3:29500', '--key-file', '/no/such.key'],
      /key file \/no\/such.key does not exist: make one with 'alexnet keygen/,
    ],
    [['join', '10.1.2.3:29500', '--key-file', 'k'], /is not tcp:\/\/<host>:<port>/],
    [['train', '--data', '.', '--world-size', '2'], /--world-size only applies to a multi-host run/],
    [
      ['train', '--data', '.', '--rendezvous', 'tcp://127.0.0.1:29500', '--key-file', 'k'],
      /--rendezvous needs --world-size/,
    ],
    [['train', '--data', '.', '--dashboard-host', '0.0.0.0'], /--dashboard-host only applies with --dashboard/],
    [['train', '--data', '.', '--dashboard', '65536'], /--dashboard must be a port 0-65535/],
    [['dashboard', '/no/such/runs'], /runs folder '\/no\/such\/runs' does not exist/],
    [['dashboard', '.', '--port', 'x'], /--port must be a number/],
    [
      ['dashboard', '.', '--port', '0', '--host', '10.255.255.254'],
      /--host 10.255.255.254: not an address of this host/,
    ],
  ];
  for (const [args, pattern] of cases) {
    const r = spawned.has(args.join(' ')) ? run(...args) : await runHere(...args);
    t.equal(r.code, 2, `${args.join(' ')} -> exit 2`);
    t.match(r.stderr, pattern, args.join(' '));
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

t.test(
  'a flag is checked before sharp, TensorFlow.js or ZeroMQ load: the command loads them when it runs',
  async (t) => {
    // The half second those packages take would be paid by --help and every mistyped flag.
    const script = `require(${JSON.stringify(cli)}).main(['train', '--data', '/no/such']).then((code) =>
    process.stdout.write(JSON.stringify({ code, loaded: Object.keys(require.cache) })));`;
    const r = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', stdio: 'pipe' })) as {
      code: number;
      loaded: string[];
    };
    t.equal(r.code, 2, 'the flag was checked');
    const loads = (pkg: string): boolean =>
      r.loaded.some((f) => f.includes(`${path.sep}node_modules${path.sep}${pkg}`));
    t.ok(loads('yargs'), 'the check sees packages: yargs was loaded');
    for (const pkg of ['sharp', '@tensorflow', 'zeromq']) t.notOk(loads(pkg), `${pkg} not loaded`);
  },
);

t.test('dashboard: a port in use is a one-line error', async (t) => {
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => busy.close());
  const port = String((busy.address() as net.AddressInfo).port);
  const r = run('dashboard', '.', '--port', port);
  t.equal(r.code, 2);
  t.match(r.stderr, `--port ${port}: the port is in use; choose another, or 0 for any free port`);
  // train --dashboard: refused before the run writes anything, so the same command can be rerun.
  const root = tempDir(t, 'alexnet-cli-dashboard-');
  const data = await makeStripeDataset(path.join(root, 'data'), { train: 2, val: 1, test: 1 });
  const runDir = path.join(root, 'run');
  const train = run(
    'train',
    '--data',
    data,
    '--preset',
    'small',
    '--backend',
    'wasm',
    '--run-dir',
    runDir,
    '--dashboard',
    port,
  );
  t.equal(train.code, 2);
  t.match(train.stderr, `--dashboard ${port}: the port is in use`);
  t.notOk(fs.existsSync(runDir), 'no run directory made');
});

/** `train --help`, spawned once for the two tests that read it. */
let trainHelpRun: Run | null = null;
const trainHelp = (): Run => (trainHelpRun ??= run('train', '--help'));

t.test('--help explains every train option with its default', async (t) => {
  const r = trainHelp();
  t.equal(r.code, 0);
  for (const opt of ['--preset', '--batch-size', '--lr', '--weight-decay', '--devices', '--resume', '--tta'])
    t.match(r.stdout, opt);
  t.match(r.stdout, /default: 128/);
  // --preset is declared twice (no parser default, for --init-from): its choices must still show once.
  t.match(
    r.stdout,
    /\[choices: "paper", "torchvision", "small"\] \[default: paper\]/,
    '--preset: choices once, default paper',
  );
});

t.test('--help of the multi-host options and commands gives their defaults', async (t) => {
  const train = trainHelp();
  for (const opt of ['--rendezvous', '--world-size', '--key-file', '--ring-host', '--ring-port', '--join-timeout'])
    t.match(train.stdout, opt);
  t.match(train.stdout, /default: 600/);
  const join = run('join', '--help');
  t.equal(join.code, 0);
  for (const opt of ['--key-file', '--devices', '--ring-host', '--ring-port', '--join-timeout'])
    t.match(join.stdout, opt);
  t.match(join.stdout, /default: "auto"/);
  t.match(join.stdout, /--coordinator-timeout[\s\S]*?\[default: 10\]/);
  const keygen = run('keygen', '--help');
  t.match(keygen.stdout, /default: "cluster.key"/);
});

t.test('keygen writes a private key file and will not overwrite it without --force', async (t) => {
  const file = path.join(tempDir(t, 'alexnet-keygen-'), 'cluster.key');
  const first = run('keygen', '--out', file);
  t.equal(first.code, 0);
  t.match(first.stdout, /wrote .*cluster.key \(mode 0600; public key .{40}\)/);
  t.equal(fs.statSync(file).mode & 0o777, 0o600, 'mode 0600');
  const key = fs.readFileSync(file, 'utf8');
  const again = run('keygen', '--out', file);
  t.equal(again.code, 2, 'an existing key file: exit 2');
  t.match(again.stderr, /already exists: pass --force/);
  t.equal(fs.readFileSync(file, 'utf8'), key, 'untouched');
  t.equal(run('keygen', '--out', file, '--force').code, 0);
  t.not(fs.readFileSync(file, 'utf8'), key, '--force replaced it');
  t.equal(fs.statSync(file).mode & 0o777, 0o600, 'still 0600');
});

t.test('summary prints the published parameter count', async (t) => {
  const r = run('summary', '--preset', 'paper');
  t.equal(r.code, 0);
  t.match(r.stdout, /Total params: 60,965,224/);
  t.match(r.stdout, /conv2 \(2 groups\)/);
});

t.test('a flag given twice takes its last value, as `make train ARGS="--epochs 3"` needs', async (t) => {
  // An invalid last value shows which one was read: alone, not '64,0'.
  const r = run('train', '--data', path.join(tempDir(t), 'missing'), '--batch-size', '64', '--batch-size', '0');
  t.equal(r.code, 2);
  t.match(r.stderr, /--batch-size must be a whole number >= 1, got 0$/m);
});

t.test(
  'the last occurrence of a flag wins, whatever its value (yargs alone read --epochs 8 --epochs 1 as 9)',
  async (t) => {
    const { lastFlagWins, trainOptions } = await import('../src/cli');
    const yargs = (await import('yargs')).default;
    const booleans = new Set(['crop', 'overlap']);
    t.same(
      lastFlagWins(
        ['train', '--epochs', '8', '--no-crop', '--epochs', '1', '--crop', '--lr=0.1', '--lr=0.2', '--overlap', 'x'],
        booleans,
      ),
      ['train', '--epochs', '1', '--crop', '--lr=0.2', '--overlap', 'x'],
    );
    const parsed = trainOptions(
      yargs(lastFlagWins(['--epochs', '8', '--max-steps', '40', '--epochs', '1'], booleans)),
    ).parseSync();
    t.equal(parsed.epochs, 1);
    t.equal(parsed['max-steps'], 40);
  },
);

t.test("the Makefile's default run is a valid `alexnet train` command", async (t) => {
  const dry = spawnSync('make', ['-n', 'train'], { encoding: 'utf8' });
  t.equal(dry.status, 0, dry.stderr);
  const line = dry.stdout.split('\n').find((l) => l.includes('cli.js train')) ?? '';
  const args = line
    .trim()
    .split(/\s+/)
    .slice(line.trim().split(/\s+/).indexOf('train') + 1);
  t.ok(args.includes('--preset') && args.includes('small'), `the small preset: ${args.join(' ')}`);
  // The real parser and validator, without training: --help exits before anything runs, so
  // parse through the library instead.
  const { trainOptions } = await import('../src/cli');
  const { buildTrainConfig } = await import('../src/core/config');
  const yargs = (await import('yargs')).default;
  // The data folder may not be materialised yet: point --data at an existing folder instead.
  args[args.indexOf('--data') + 1] = tempDir(t);
  const config = buildTrainConfig(trainOptions(yargs(args).strict()).parseSync() as Record<string, unknown>);
  t.match(config, {
    preset: 'small',
    epochs: 8,
    trainLimit: 0,
    batchSize: 64,
    optimizer: 'adam',
    lrStepEpochs: 6,
    model: { dropoutRate: 0.5 },
    augment: { crop: false, flip: true, pcaLighting: true },
  });
});
