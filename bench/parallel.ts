/**
 * The parallel modes benchmark (docs/parallel-modes.md): data vs hybrid (--parallel), fp32 vs
 * 16-bit wire (--wire-dtype), overlap on and off (--overlap). Four sections:
 *
 *   npx tsc -p tsconfig.json
 *   node dist/bench/parallel.js wire                      # bytes per step per worker, every preset (the model, wire-bytes.ts)
 *   node dist/bench/parallel.js host [--preset paper] [--batch 32] [--reps 3] [--backend native]
 *   node dist/bench/parallel.js hosts [--rates 10gbit,1gbit] [--preset paper] [--batch 32] [--steps 4] [--configs 'data fp32,...']   # root: two network namespaces
 *   node dist/bench/parallel.js gpu [--step-ms 25] [--batch 128] [--workers 2,4,8] [--steps 8] [--transport zmq|shm]  # a projection, see below
 *   ... [--out result.json]
 *
 * host: one machine, 2 worker processes against 1 at the same batch per worker, each a real
 * `alexnet train` (bench/train-run.ts); scaling efficiency = 2-worker img/s / (2 x 1-worker).
 * hosts: a coordinator in one network namespace and `alexnet join` in another, joined by a veth
 * pair shaped with tc tbf, over CURVE tcp; first bytes per host per step on the link with
 * 2 hosts x 2 workers, flat ring vs hierarchical plane, then img/s (1 worker per host) from
 * steps.jsonl's time stamps for --configs ('none': bytes only).
 * gpu: a projection, not a measurement. N local processes each run the real comm thread and
 * ring with the real message sizes, but forward+backward is replaced by a wait of the GPU step
 * time (split over layers by FLOPs), so the figures say what the communication would cost
 * next to a GPU's compute. On this 2-core machine, 8 workers' communication shares 2 cores.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BackendChoice, ParallelMode, PresetName, WireDtype } from '../src/core/config';
import { layerForwardFlops, layerShapes } from '../src/model/alexnet';
import { buildSpec, type ModelSpec } from '../src/model/presets';
import { CommThread } from '../src/dist/comm-thread/comm-thread';
import { newShmPrefix, ShmGroup, sweepSegments } from '../src/dist/shm/shm-group';
import { forkScript, nextMessage } from '../src/dist/launch/fork-script';
import { writeKeyFile } from '../src/dist/security/keyfile';
import { segmentRange } from '../src/dist/ring/ring-schedule';
import { formatTable } from '../src/core/text-format';
import { planBuckets } from '../src/train/sync/overlap';
import { modelParts, wireBytesPerStep } from '../src/train/wire-bytes';
import { flagValue, loadAverage, machineLine, median, repoRoot } from './harness';
import { ensureDataset, oursPlan, PLANS, runOurs } from './train';
import { scalingEfficiency, totalSteps } from './train-stats';

const CLASSES = 1000;
const MB = 1e6;

interface Config {
  label: string;
  mode: ParallelMode;
  dtype: WireDtype;
  overlap: boolean;
}

const CONFIGS: Config[] = [
  { label: 'data fp32', mode: 'data', dtype: 'fp32', overlap: false },
  { label: 'data fp32 overlap', mode: 'data', dtype: 'fp32', overlap: true },
  { label: 'data fp16', mode: 'data', dtype: 'fp16', overlap: false },
  { label: 'hybrid fp32', mode: 'hybrid', dtype: 'fp32', overlap: false },
  { label: 'hybrid fp16', mode: 'hybrid', dtype: 'fp16', overlap: false },
  { label: 'hybrid fp32 overlap', mode: 'hybrid', dtype: 'fp32', overlap: true },
];

const configArgs = (c: Config): string[] => [
  '--parallel',
  c.mode,
  '--wire-dtype',
  c.dtype,
  ...(c.overlap ? ['--overlap'] : []),
];

// ---------------------------------------------------------------- wire

function wireSection(): string {
  const rows: string[][] = [];
  for (const preset of ['paper', 'torchvision', 'small'] as PresetName[]) {
    const spec = buildSpec(preset);
    for (const batchPerWorker of [32, 128]) {
      const of = (mode: ParallelMode, dtype: WireDtype) =>
        wireBytesPerStep({ spec, numClasses: CLASSES, mode, dtype, worldSize: 2, batchPerWorker });
      const data = of('data', 'fp32').total;
      const cells = (['fp32', 'fp16', 'bf16'] as WireDtype[]).flatMap((d) =>
        [of('data', d).total, of('hybrid', d).total].map((b) => (b / MB).toFixed(2)),
      );
      const hybrid = of('hybrid', 'fp32');
      rows.push([
        preset,
        String(batchPerWorker),
        ...cells,
        (hybrid.gradients / MB).toFixed(2),
        (hybrid.activations / MB).toFixed(2),
        `1/${(data / hybrid.total).toFixed(1)}`,
      ]);
    }
  }
  return formatTable(
    [
      'preset',
      'img/worker',
      'data fp32',
      'hybrid fp32',
      'data fp16',
      'hybrid fp16',
      'data bf16',
      'hybrid bf16',
      'hybrid: conv grads',
      'hybrid: activations',
      'hybrid / data (fp32)',
    ],
    rows,
    ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
}

// ---------------------------------------------------------------- host

interface HostRow {
  label: string;
  workers: number;
  imagesPerSec: number;
  stepMs: number;
  computeMs: number;
  copyMs: number;
  reduceMs: number;
  updateMs: number;
  wireMb: number;
  efficiency: number | null;
  command: string;
}

async function hostSection(argv: string[]): Promise<{ table: string; rows: HostRow[] }> {
  const preset = (flagValue(argv, '--preset') ?? 'paper') as PresetName;
  const batchPerWorker = Number(flagValue(argv, '--batch') ?? 32);
  const reps = Number(flagValue(argv, '--reps') ?? 3);
  const backend = (flagValue(argv, '--backend') ?? 'native') as BackendChoice;
  const only = flagValue(argv, '--configs')?.split(',');
  const spec = buildSpec(preset);
  const plan = oursPlan(PLANS[preset], reps);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-bench-parallel-'));
  const rows: HostRow[] = [];
  try {
    const runs: { config: Config; workers: number }[] = [
      { config: CONFIGS[0], workers: 1 },
      ...CONFIGS.filter((c) => only === undefined || only.includes(c.label)).map((config) => ({ config, workers: 2 })),
    ];
    let base: number | null = null;
    for (const { config, workers } of runs) {
      const data = await ensureDataset(spec.resizeSize, workers * batchPerWorker * plan.epochSteps);
      const runDir = path.join(scratch, `${config.label.replace(/ /g, '-')}-${workers}`);
      const r = await runOurs(
        {
          data,
          preset,
          workers,
          batchPerWorker,
          steps: totalSteps(plan),
          epochs: 2,
          runDir,
          backend,
          threads: 1,
          extraArgs: workers > 1 ? configArgs(config) : [],
        },
        plan,
      );
      const measured = r.samples.filter((s) => s.step > plan.warmupSteps);
      const wireMb = measured.reduce((sum, s) => sum + (s.wireBytes ?? 0), 0) / Math.max(1, measured.length) / MB;
      if (workers === 1) base = r.imagesPerSec;
      const b = r.breakdown;
      rows.push({
        label: workers === 1 ? '1 worker' : config.label,
        workers,
        imagesPerSec: r.imagesPerSec,
        stepMs: b.stepMs,
        computeMs: b.partsMs.computeMs,
        copyMs: b.partsMs.copyMs,
        reduceMs: b.partsMs.reduceMs,
        updateMs: b.partsMs.updateMs,
        wireMb,
        efficiency: workers > 1 && base !== null ? scalingEfficiency(base, r.imagesPerSec, workers) : null,
        command: r.command,
      });
      console.log(
        `${rows[rows.length - 1].label}: ${r.imagesPerSec.toFixed(1)} img/s (load ${loadAverage().toFixed(2)})`,
      );
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  const table = formatTable(
    [
      'run',
      'img/s',
      'step ms',
      'compute',
      'copy-out',
      'comm (exposed)',
      'update',
      'MB sent/step/worker',
      'scaling eff.',
    ],
    rows.map((r) => [
      r.label,
      r.imagesPerSec.toFixed(1),
      r.stepMs.toFixed(0),
      r.computeMs.toFixed(0),
      r.copyMs.toFixed(0),
      r.reduceMs.toFixed(0),
      r.updateMs.toFixed(0),
      r.wireMb.toFixed(1),
      r.efficiency === null ? '' : `${(r.efficiency * 100).toFixed(0)}%`,
    ]),
    ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
  return {
    table: `${preset}, ${batchPerWorker} images per worker, ${backend} backend, 1 thread per worker; median of ${reps} repetitions\n\n${table}`,
    rows,
  };
}

// ---------------------------------------------------------------- hosts (network namespaces)

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' });
}

/** Two namespaces joined by a veth pair, each side shaped to `rate`; returns them and a cleanup. */
function shapedHosts(rate: string): { hosts: [string, string]; devices: [string, string]; cleanup: () => void } {
  const tag = `pb${process.pid % 100000}`;
  const hosts: [string, string] = [`${tag}h1`, `${tag}h2`];
  const cleanup = () => hosts.forEach((h) => execFileSync('ip', ['netns', 'del', h], { stdio: 'ignore' }));
  try {
    hosts.forEach((h) => ip('netns', 'add', h));
    ip('link', 'add', `${tag}v1`, 'type', 'veth', 'peer', 'name', `${tag}v2`);
    hosts.forEach((h, i) => {
      const dev = `${tag}v${i + 1}`;
      ip('link', 'set', dev, 'netns', h);
      ip('-n', h, 'addr', 'add', `10.200.78.${i + 1}/24`, 'dev', dev);
      ip('-n', h, 'link', 'set', dev, 'up');
      ip('-n', h, 'link', 'set', 'lo', 'up');
      execFileSync(
        'ip',
        [
          'netns',
          'exec',
          h,
          'tc',
          'qdisc',
          'add',
          'dev',
          dev,
          'root',
          'tbf',
          'rate',
          rate,
          'burst',
          rate === '1gbit' ? '256kb' : '2mb',
          'latency',
          '50ms',
        ],
        { stdio: 'pipe' },
      );
    });
  } catch (err) {
    try {
      cleanup();
    } catch {
      // partly made: nothing more to undo
    }
    throw err;
  }
  return { hosts, devices: [`${tag}v1`, `${tag}v2`], cleanup };
}

/** Bytes namespace `ns` has sent on its veth `dev` so far (counted from the namespace's creation). */
function txBytes(ns: string, dev: string): number {
  return Number(
    execFileSync('ip', ['netns', 'exec', ns, 'cat', `/sys/class/net/${dev}/statistics/tx_bytes`]).toString(),
  );
}

/** Runs `alexnet <args>` inside namespace `ns`; resolves with its output when it exits. */
function inNamespace(
  ns: string,
  args: string[],
  onOutput: (text: string) => void,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(
    'ip',
    ['netns', 'exec', ns, process.execPath, path.join(repoRoot(), 'dist/src/cli.js'), ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const add = (d: Buffer) => {
    output += d.toString();
    onOutput(output);
  };
  child.stdout.on('data', add);
  child.stderr.on('data', add);
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, output })));
}

interface StepLine {
  epoch: number;
  step: number;
  timeMs: number;
}

async function twoHostRun(
  rate: string,
  config: Config,
  preset: PresetName,
  batchPerWorker: number,
  steps: number,
  data: string,
  scratch: string,
): Promise<number> {
  const { hosts, cleanup } = shapedHosts(rate);
  try {
    const key = path.join(scratch, 'cluster.key');
    if (!fs.existsSync(key)) writeKeyFile(key, false);
    const runDir = path.join(scratch, `${rate}-${config.label.replace(/ /g, '-')}`);
    // Set from the coordinator's output callback (a holder: TypeScript does not see that assignment).
    const join: { run: Promise<{ code: number | null; output: string }> | null } = { run: null };
    const args = [
      'train',
      '--data',
      data,
      '--preset',
      preset,
      '--batch-size',
      String(2 * batchPerWorker),
      '--epochs',
      '2',
      '--max-steps',
      String(steps),
      '--log-every',
      '1',
      '--backend',
      'native',
      '--devices',
      'cpu:1',
      '--rendezvous',
      'tcp://10.200.78.1:0',
      '--world-size',
      '2',
      '--key-file',
      key,
      '--run-dir',
      runDir,
      ...configArgs(config),
    ];
    const coordinator = inNamespace(hosts[0], args, (out) => {
      const m = /waiting for 1 more worker\(s\) to join at (tcp:\/\/[\d.]+:\d+)/.exec(out);
      if (m && join.run === null) {
        join.run = inNamespace(hosts[1], ['join', m[1], '--key-file', key, '--devices', 'cpu:1'], () => undefined);
      }
    });
    const result = await coordinator;
    const joined = join.run ? await join.run : null;
    if (result.code !== 0)
      throw new Error(
        `two-host ${config.label} at ${rate} failed:\n${result.output.slice(-2000)}\njoin:\n${joined?.output.slice(-2000) ?? 'not started'}`,
      );
    const lines = fs
      .readFileSync(path.join(runDir, 'steps.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as StepLine)
      .filter((l) => l.epoch === 2);
    // The second epoch's steps 2..n: its first step follows the decoding epoch and its checkpoint.
    const measured = lines.slice(1);
    if (measured.length < 2) throw new Error(`two-host ${config.label}: too few steps in steps.jsonl`);
    const ms = measured[measured.length - 1].timeMs - measured[0].timeMs;
    return ((measured.length - 1) * 2 * batchPerWorker * 1000) / ms;
  } finally {
    cleanup();
  }
}

async function hostsSection(argv: string[]): Promise<string> {
  if (process.getuid?.() !== 0) return 'not run: the two-host benchmark makes network namespaces, which needs root';
  const rates = (flagValue(argv, '--rates') ?? '10gbit,1gbit').split(',');
  const preset = (flagValue(argv, '--preset') ?? 'paper') as PresetName;
  const batchPerWorker = Number(flagValue(argv, '--batch') ?? 32);
  const steps = Number(flagValue(argv, '--steps') ?? 4);
  const chosen = (flagValue(argv, '--configs') ?? 'data fp32,data fp16,hybrid fp32,hybrid fp16').split(',');
  const configs = CONFIGS.filter((c) => chosen.includes(c.label));
  const spec = buildSpec(preset);
  const data = await ensureDataset(spec.resizeSize, 2 * batchPerWorker * steps);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-bench-hosts-'));
  const rows: string[][] = [];
  let bytes = '';
  try {
    bytes = await linkBytesTable(preset, batchPerWorker, steps, scratch);
    for (const rate of rates) {
      const results = new Map<string, number>();
      for (const config of configs) {
        const ips = await twoHostRun(rate, config, preset, batchPerWorker, steps, data, scratch);
        results.set(config.label, ips);
        console.log(`${rate} ${config.label}: ${ips.toFixed(1)} img/s`);
      }
      const data32 = results.get('data fp32') ?? NaN;
      rows.push([
        rate,
        ...configs.map((c) => (results.get(c.label) ?? NaN).toFixed(1)),
        `${((results.get('hybrid fp32') ?? NaN) / data32).toFixed(2)}x`,
      ]);
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  const table = formatTable(['link', ...configs.map((c) => `${c.label} img/s`), 'hybrid / data (fp32)'], rows, [
    'left',
    ...configs.map(() => 'right' as const),
    'right',
  ]);
  const speed =
    configs.length === 0
      ? ''
      : `\n\n${preset}, ${batchPerWorker} images per worker, 1 native worker per host, tcp + CURVE over a tbf-shaped veth pair\n\n${table}`;
  return `${bytes}${speed}`;
}

/**
 * Bytes each host sends on the link in one run of 2 hosts x `perHost` workers (data fp32) on
 * `transport` (zmq: the flat ring; auto: the hierarchical plane), `steps` steps of one epoch.
 */
async function linkBytesRun(
  transport: 'zmq' | 'auto',
  perHost: number,
  preset: PresetName,
  batchPerWorker: number,
  steps: number,
  data: string,
  scratch: string,
): Promise<{ bytes: number[]; plane: string; params: number }> {
  const { hosts, devices, cleanup } = shapedHosts('10gbit');
  try {
    const key = path.join(scratch, 'cluster.key');
    if (!fs.existsSync(key)) writeKeyFile(key, false);
    const runDir = path.join(scratch, `bytes-${transport}-${steps}`);
    const join: { run: Promise<{ code: number | null; output: string }> | null } = { run: null };
    const devicesArg = ['--devices', `cpu:${perHost}`];
    const args = [
      'train',
      ...['--data', data, '--preset', preset, '--batch-size', String(2 * perHost * batchPerWorker)],
      ...['--epochs', '1', '--max-steps', String(steps), '--backend', 'native', '--transport', transport],
      ...[...devicesArg, '--rendezvous', 'tcp://10.200.78.1:0', '--world-size', String(2 * perHost)],
      ...['--key-file', key, '--run-dir', runDir],
    ];
    const coordinator = inNamespace(hosts[0], args, (out) => {
      const m = /to join at (tcp:\/\/[\d.]+:\d+)/.exec(out);
      if (m && join.run === null)
        join.run = inNamespace(hosts[1], ['join', m[1], '--key-file', key, ...devicesArg], () => undefined);
    });
    const result = await coordinator;
    const joined = join.run ? await join.run : null;
    if (result.code !== 0)
      throw new Error(
        `link bytes (${transport}) failed:\n${result.output.slice(-2000)}\njoin:\n${joined?.output.slice(-2000) ?? 'not started'}`,
      );
    const plane = /data plane: ([^\n(]+)/.exec(result.output)?.[1].trim() ?? '?';
    // The model's size as the run built it (the class count is the dataset's, not CLASSES).
    const params = Number(/Total params: ([\d,]+)/.exec(result.output)?.[1].replace(/,/g, '') ?? NaN);
    return { bytes: hosts.map((h, i) => txBytes(h, devices[i])), plane, params };
  } finally {
    cleanup();
  }
}

/**
 * Bytes per host per step on the link between the hosts, flat ring vs hierarchical, against
 * 2(H-1)/H x the gradient buffer: each plane runs `steps` and 2 x `steps` steps, and the
 * difference / `steps` cancels start-up (the weights broadcast), evaluation and checkpoints.
 */
async function linkBytesTable(
  preset: PresetName,
  batchPerWorker: number,
  steps: number,
  scratch: string,
): Promise<string> {
  const perHost = 2;
  const hostsCount = 2;
  const spec = buildSpec(preset);
  const data = await ensureDataset(spec.resizeSize, 2 * perHost * batchPerWorker * 2 * steps);
  const rows: string[][] = [];
  let bufferBytes = NaN;
  for (const transport of ['zmq', 'auto'] as const) {
    const short = await linkBytesRun(transport, perHost, preset, batchPerWorker, steps, data, scratch);
    const long = await linkBytesRun(transport, perHost, preset, batchPerWorker, 2 * steps, data, scratch);
    bufferBytes = long.params * 4;
    const ideal = ((2 * (hostsCount - 1)) / hostsCount) * bufferBytes;
    const perStep = short.bytes.map((b, h) => (long.bytes[h] - b) / steps);
    console.log(`${long.plane}: ${perStep.map((b) => (b / MB).toFixed(2)).join(', ')} MB per host per step`);
    rows.push([
      long.plane,
      ...perStep.map((b) => (b / MB).toFixed(2)),
      (ideal / MB).toFixed(2),
      `${(perStep.reduce((a, b) => a + b, 0) / perStep.length / ideal).toFixed(2)}x`,
    ]);
  }
  const table = formatTable(
    ['plane', 'host 1 MB/step', 'host 2 MB/step', '2(H-1)/H x buffer MB', 'measured / that'],
    rows,
    ['left', 'right', 'right', 'right', 'right'],
  );
  return (
    `${preset} (${(bufferBytes / MB).toFixed(2)} MB of fp32 gradients), ${hostsCount} hosts x ${perHost} native workers, ` +
    `data fp32, tcp + CURVE; bytes sent on each host's veth per step ((2s - s steps) / s, s = ${steps}); ` +
    `the flat ring's ideal is 2(N-1)/N x buffer = ${((2 * (hostsCount * perHost - 1)) / (hostsCount * perHost)).toFixed(2)}x\n\n${table}`
  );
}

// ---------------------------------------------------------------- gpu projection

interface GpuRankSpec {
  rank: number;
  worldSize: number;
  dir: string;
  preset: PresetName;
  batchPerWorker: number;
  stepMs: number;
  steps: number;
  config: Config;
  /** The shared-memory group's segment prefix (--transport shm), or null: the ZeroMQ ring. */
  shmPrefix: string | null;
}

type GpuReply = { kind: 'done'; stepMs: number[] } | { kind: 'failed'; message: string };

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** The GPU is busy: the main thread blocks, as it would waiting for the device. */
function gpuBusy(ms: number): void {
  if (ms > 0) Atomics.wait(sleeper, 0, 0, ms);
}

/** Per parameter (model order): its layer's share of the forward FLOPs. */
function flopShares(spec: ModelSpec): { paramShare: number[]; convShare: number; fcShares: number[] } {
  const flops = layerForwardFlops(spec, CLASSES).map((l) => l.flops);
  const total = flops.reduce((a, b) => a + b, 0);
  const shares = flops.map((f) => f / total);
  const convCount = spec.convs.length;
  return {
    paramShare: shares.flatMap((s) => [s / 2, s / 2]),
    convShare: shares.slice(0, convCount).reduce((a, b) => a + b, 0),
    fcShares: shares.slice(convCount),
  };
}

/** One simulated step of rank `thread`'s part: waits for compute, real collectives of real sizes. */
async function simulatedStep(
  thread: CommThread,
  s: GpuRankSpec,
  spec: ModelSpec,
  fusion: Float32Array,
  convFusion: Float32Array,
): Promise<void> {
  const fwd = s.stepMs / 3;
  const bwd = (2 * s.stepMs) / 3;
  const { paramShare, convShare, fcShares } = flopShares(spec);
  const n = s.worldSize;
  const sizes = layerShapes(spec, CLASSES)
    .filter((r) => r.params > 0)
    .flatMap((r) => {
      const channels = r.outputShape[r.outputShape.length - 1];
      return [r.params - channels, channels];
    });
  const overlapped = async (values: Float32Array, paramCount: number, backwardMs: (i: number) => number) => {
    if (!s.config.overlap) {
      for (let i = paramCount - 1; i >= 0; i--) gpuBusy(backwardMs(i));
      await thread.allReduce(values);
      return;
    }
    const buckets = planBuckets(sizes.slice(0, paramCount), 25 * MB);
    const offsets: number[] = [];
    sizes.slice(0, paramCount).reduce((at, size, i) => ((offsets[i] = at), at + size), 0);
    for (const bucket of buckets) {
      for (const i of bucket) gpuBusy(backwardMs(i));
      const first = bucket[bucket.length - 1];
      const last = bucket[0];
      thread.allReduceStart(values.subarray(offsets[first], offsets[last] + sizes[last]));
    }
    await thread.settle();
  };
  if (s.config.mode === 'data') {
    gpuBusy(fwd);
    await overlapped(fusion, sizes.length, (i) => bwd * paramShare[i]);
    return;
  }
  // Hybrid: conv forward, the gathers around each FC layer, their scatters, conv backward.
  const { features, fcUnits } = modelParts(spec, CLASSES);
  const batch = s.batchPerWorker * n;
  gpuBusy(fwd * convShare);
  thread.allGatherSync(
    new Float32Array(s.batchPerWorker * features),
    new Array<number>(n).fill(s.batchPerWorker * features),
  );
  const widths = fcUnits.map((u) =>
    Array.from({ length: n }, (_, r) => segmentRange(u, n, r)).map((c) => (c.end - c.start) * batch),
  );
  fcUnits.forEach((_, l) => {
    gpuBusy(fwd * fcShares[l]);
    thread.allGatherSync(new Float32Array(widths[l][s.rank]), widths[l]);
  });
  for (let l = fcUnits.length - 1; l >= 0; l--) {
    thread.reduceScatterSync(new Float32Array(widths[l].reduce((a, b) => a + b, 0)), widths[l]);
    gpuBusy(bwd * fcShares[l]);
  }
  thread.reduceScatterSync(new Float32Array(batch * features), new Array<number>(n).fill(s.batchPerWorker * features));
  const convParams = spec.convs.length * 2;
  await overlapped(convFusion, convParams, (i) => bwd * paramShare[i]);
}

async function gpuRank(s: GpuRankSpec): Promise<number[]> {
  const thread = await CommThread.start({
    rank: s.rank,
    worldSize: s.worldSize,
    bindAddress: `ipc://${s.dir}/rank-${s.rank}`,
    timeoutMs: 60_000,
  });
  try {
    await thread.connect(`ipc://${s.dir}/rank-${(s.rank + 1) % s.worldSize}`, s.config.dtype);
    if (s.shmPrefix !== null) {
      await thread.useSharedMemory(
        ShmGroup.create({ rank: s.rank, worldSize: s.worldSize, prefix: s.shmPrefix, timeoutMs: 60_000 }),
      );
    }
    const spec = buildSpec(s.preset);
    const { convParams, fcParams } = modelParts(spec, CLASSES);
    // In the shared-memory segment with --transport shm (reduced in place), as the trainer allocates them.
    const fusion = thread.allocate(convParams + fcParams);
    const convFusion = thread.allocate(convParams);
    const times: number[] = [];
    for (let step = 0; step < s.steps; step++) {
      const started = performance.now();
      await simulatedStep(thread, s, spec, fusion, convFusion);
      await thread.allReduce(new Float32Array(7), { exact: true }); // the step's tail
      times.push(performance.now() - started);
    }
    return times;
  } finally {
    await thread.close();
  }
}

const isGpuReply = (m: unknown): m is GpuReply => typeof m === 'object' && m !== null && 'kind' in m;

async function gpuProjection(argv: string[]): Promise<string> {
  const stepMs = Number(flagValue(argv, '--step-ms') ?? 25);
  const batchPerWorker = Number(flagValue(argv, '--batch') ?? 128);
  const workerCounts = (flagValue(argv, '--workers') ?? '2,4,8').split(',').map(Number);
  const steps = Number(flagValue(argv, '--steps') ?? 8);
  const transport = flagValue(argv, '--transport') ?? 'zmq';
  if (transport !== 'zmq' && transport !== 'shm') throw new Error(`--transport shm or zmq, got ${transport}`);
  const preset = (flagValue(argv, '--preset') ?? 'paper') as PresetName;
  const configs = CONFIGS.filter((c) =>
    ['data fp32', 'data fp32 overlap', 'data fp16', 'hybrid fp32', 'hybrid fp16'].includes(c.label),
  );
  const rows: string[][] = [];
  for (const n of workerCounts) {
    const cells: string[] = [];
    for (const config of configs) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-gpu-proj-'));
      const shmPrefix = transport === 'shm' ? newShmPrefix() : null;
      try {
        const children = Array.from({ length: n }, (_, rank) =>
          forkScript(__filename, [
            '--gpu-rank',
            JSON.stringify({
              rank,
              worldSize: n,
              dir,
              preset,
              batchPerWorker,
              stepMs,
              steps,
              config,
              shmPrefix,
            } satisfies GpuRankSpec),
          ]),
        );
        const replies = await Promise.all(children.map((c) => nextMessage(c, isGpuReply, 10 * 60_000)));
        const failed = replies.find((r) => r.kind === 'failed');
        if (failed && failed.kind === 'failed') throw new Error(`${config.label} x${n}: ${failed.message}`);
        // A step ends when its slowest rank ends: the per-step maximum, after one warm-up step.
        const per = replies.map((r) => (r.kind === 'done' ? r.stepMs : []));
        const stepTimes = per[0].slice(1).map((_, i) => Math.max(...per.map((p) => p[i + 1])));
        const step = median(stepTimes);
        cells.push(`${((n * batchPerWorker * 1000) / step).toFixed(0)} (${((stepMs / step) * 100).toFixed(0)}%)`);
        console.log(`${config.label} x${n}: step ${step.toFixed(1)} ms`);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
        if (shmPrefix !== null) sweepSegments(shmPrefix);
      }
    }
    rows.push([String(n), ((n * batchPerWorker * 1000) / stepMs).toFixed(0), ...cells]);
  }
  const table = formatTable(['GPUs', 'ideal img/s', ...configs.map((c) => `${c.label}: img/s (eff.)`)], rows, [
    'right',
    'right',
    ...configs.map(() => 'right' as const),
  ]);
  return `PROJECTION: ${preset}, ${batchPerWorker} images per GPU, forward+backward replaced by a ${stepMs} ms wait; real comm threads and ${transport === 'shm' ? 'shared memory' : 'rings over ipc'} on this ${os.cpus().length}-core machine\n\n${table}`;
}

// ---------------------------------------------------------------- main

async function main(argv: string[]): Promise<void> {
  const section = argv[0] ?? 'wire';
  const out = flagValue(argv, '--out');
  let text: string;
  let json: unknown = null;
  if (section === 'wire')
    text = `bytes sent per step per worker (MB), 2 workers, ${CLASSES} classes (the model in src/train/wire-bytes.ts; a test holds it to the comm thread's count)\n\n${wireSection()}`;
  else if (section === 'host') {
    const r = await hostSection(argv);
    text = r.table;
    json = r.rows;
  } else if (section === 'hosts') text = await hostsSection(argv);
  else if (section === 'gpu') text = await gpuProjection(argv);
  else throw new Error(`unknown section '${section}': wire, host, hosts or gpu (see the header of bench/parallel.ts)`);
  const report = `${text}\n\n${machineLine()}\ncommand: node dist/bench/parallel.js ${argv.join(' ')}`;
  console.log(`\n${report}`);
  if (out)
    fs.writeFileSync(
      out,
      `${JSON.stringify({ date: new Date().toISOString(), section, report, rows: json }, null, 2)}\n`,
    );
}

if (require.main === module) {
  const rankAt = process.argv.indexOf('--gpu-rank');
  if (rankAt >= 0) {
    const reply = (r: GpuReply): void => void process.send?.(r, () => process.exit(r.kind === 'done' ? 0 : 1));
    gpuRank(JSON.parse(process.argv[rankAt + 1]) as GpuRankSpec).then(
      (stepMs) => reply({ kind: 'done', stepMs }),
      (err: unknown) => reply({ kind: 'failed', message: err instanceof Error ? err.message : String(err) }),
    );
  } else {
    main(process.argv.slice(2)).catch((err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    });
  }
}
