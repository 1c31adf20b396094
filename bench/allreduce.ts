/**
 * Ring all-reduce benchmark in the style of nccl-tests' all_reduce_perf: for each transport
 * (ipc, tcp; shm: the shared-memory group of src/dist/shm, ranks on one host) and world size
 * (2..4 separate processes), float32 sums of 1 KB .. 256 MB plus the AlexNet gradient
 * (61,100,840 floats); the time of a repetition is its slowest rank's, the table shows the
 * median of --reps after one warm-up. busbw = bytes / time * 2(n-1)/n.
 * The torch.distributed gloo reference (bench/gloo_allreduce.py) runs on the same sizes when
 * Debian's python3-torch is installed. Single-thread memcpy bandwidth is measured in the same
 * run (the ceiling for shm), and the load average printed.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/allreduce.js [--quick] [--out results.json]
 *       [--ranks 2,3,4] [--transports ipc,tcp,shm] [--sizes 244403360,...] [--reps 5]
 *       [--chunk-bytes 1048576] [--no-gloo]
 *
 * Run the compiled JS: under ts-node every worker also carries the TypeScript compiler in its
 * heap, which makes each garbage collection (and so the all-reduce) slower.
 */
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEFAULT_CHUNK_BYTES } from '../src/dist/ring/allreduce';
import { forkScript, nextMessage } from '../src/dist/launch/fork-script';
import { reduceKernelName } from '../src/dist/ring/reduce-kernel';
import { createIpcRingDir, ipcRingAddress, removeIpcRingDir } from '../src/dist/ring/ring-address';
import { busBandwidth } from '../src/dist/ring/ring-schedule';
import { shmUnavailableReason } from '../src/dist/shm/addon';
import { newShmPrefix, sweepSegments } from '../src/dist/shm/shm-group';
import type { ParentCommand, WorkerReply } from './allreduce-worker';
import { benchScript, flagValue, median, pythonUnavailable, runPythonJson } from './harness';

const ALEXNET_BYTES = 61_100_840 * 4;
const FULL_SIZES = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144].map((k) => k * 1024);
const QUICK_SIZES = FULL_SIZES.filter((b) => b <= 1 << 20);

interface Options {
  sizesBytes: number[];
  ranks: number[];
  transports: ('ipc' | 'tcp' | 'shm')[];
  reps: number;
  chunkBytes: number;
  gloo: boolean;
  outPath: string | null;
}

export interface Row {
  transport: 'ipc' | 'tcp' | 'shm' | 'gloo-tcp';
  ranks: number;
  bytes: number;
  timeMs: number;
  algbwGBps: number;
  busbwGBps: number;
  cpuMsPerRank: number;
  repMs: number[];
}

function parseArgs(argv: string[]): Options {
  const value = (flag: string): string | undefined => flagValue(argv, flag);
  const list = (flag: string, fallback: string): string[] => (value(flag) ?? fallback).split(',');
  const quick = argv.includes('--quick');
  const defaultSizes = quick ? QUICK_SIZES : [...FULL_SIZES, ALEXNET_BYTES].sort((a, b) => a - b);
  const options: Options = {
    sizesBytes: value('--sizes')?.split(',').map(Number) ?? defaultSizes,
    ranks: list('--ranks', '2,3,4').map(Number),
    transports: list('--transports', 'ipc,tcp') as Options['transports'],
    reps: Number(value('--reps') ?? 5),
    chunkBytes: Number(value('--chunk-bytes') ?? DEFAULT_CHUNK_BYTES),
    gloo: !argv.includes('--no-gloo'),
    outPath: value('--out') ?? null,
  };
  const bad =
    options.ranks.some((n) => !Number.isInteger(n) || n < 2) ||
    options.transports.some((t) => t !== 'ipc' && t !== 'tcp' && t !== 'shm') ||
    options.sizesBytes.some((b) => !Number.isInteger(b) || b < 4) ||
    !(options.reps >= 1) ||
    !(options.chunkBytes >= 4);
  if (bad) throw new Error(`bad arguments: ${argv.join(' ')} (see the header of bench/allreduce.ts)`);
  return options;
}

function rowFrom(
  transport: Row['transport'],
  ranks: number,
  bytes: number,
  repMs: number[],
  cpuMsPerRank: number,
): Row {
  const timeMs = median(repMs);
  const algbwGBps = bytes / (timeMs / 1e3) / 1e9;
  const busbwGBps = busBandwidth(bytes, timeMs / 1e3, ranks) / 1e9;
  return { transport, ranks, bytes, timeMs, algbwGBps, busbwGBps, cpuMsPerRank, repMs };
}

type Reply<K extends WorkerReply['kind']> = Extract<WorkerReply, { kind: K }>;
const replyOf =
  <K extends WorkerReply['kind']>(kind: K) =>
  (m: unknown): m is Reply<K> | Reply<'failed'> => {
    const k = (m as WorkerReply).kind;
    return k === kind || k === 'failed';
  };

function unlessFailed<K extends WorkerReply['kind']>(m: Reply<K> | Reply<'failed'>): Reply<K> {
  const reply: WorkerReply = m;
  if (reply.kind === 'failed') throw new Error(`rank ${reply.rank} failed: ${reply.message}`);
  return m as Reply<K>;
}

/** One ring of `ranks` worker processes running every size; rows in size order. */
async function benchRing(transport: 'ipc' | 'tcp', ranks: number, options: Options): Promise<Row[]> {
  const worker = path.join(__dirname, `allreduce-worker${path.extname(__filename)}`);
  const dir = createIpcRingDir();
  const address = (rank: number): string => (transport === 'ipc' ? ipcRingAddress(dir, rank) : 'tcp://127.0.0.1:*');
  const children = Array.from({ length: ranks }, (_, rank) =>
    forkScript(worker, [String(rank), String(ranks), address(rank)]),
  );
  const send = (rank: number, command: ParentCommand): void => void children[rank].send(command);
  try {
    const bound = await Promise.all(children.map((c) => nextMessage(c, replyOf('bound'), 60_000)));
    const endpoints = bound.map((m) => unlessFailed(m).endpoint);
    const connected = children.map((c) => nextMessage(c, replyOf('connected'), 60_000));
    children.forEach((_, rank) => send(rank, { kind: 'connect', next: endpoints[(rank + 1) % ranks] }));
    (await Promise.all(connected)).forEach(unlessFailed);
    const timings = new Map<number, Reply<'timings'>[]>();
    children.forEach((child) =>
      child.on('message', (m: WorkerReply) => {
        if (m.kind === 'timings') timings.set(m.sizeBytes, [...(timings.get(m.sizeBytes) ?? []), m]);
      }),
    );
    const finished = children.map((c) => nextMessage(c, replyOf('finished'), 30 * 60_000));
    const { sizesBytes, reps, chunkBytes } = options;
    children.forEach((_, rank) => send(rank, { kind: 'run', sizesBytes, reps, warmup: 1, chunkBytes }));
    (await Promise.all(finished)).forEach(unlessFailed);
    return sizesBytes.map((bytes) => {
      const perRank = timings.get(bytes) ?? [];
      if (perRank.length !== ranks || perRank.some((r) => !r.correct)) {
        throw new Error(`${transport} n=${ranks} ${bytes} B: wrong sum or missing ranks`);
      }
      const slowest = Array.from({ length: reps }, (_, i) => Math.max(...perRank.map((r) => r.repMs[i])));
      return rowFrom(transport, ranks, bytes, slowest, Math.max(...perRank.map((r) => r.cpuMsPerRep)));
    });
  } finally {
    await Promise.all(children.map((c) => waitForExit(c, 10_000)));
    removeIpcRingDir(dir);
  }
}

/** The shm group's ranks over every size; rows in size order (same timing rules as the ring). */
async function benchShm(ranks: number, options: Options): Promise<Row[]> {
  const worker = path.join(__dirname, `allreduce-shm-worker${path.extname(__filename)}`);
  const prefix = newShmPrefix();
  const children = Array.from({ length: ranks }, (_, rank) =>
    forkScript(worker, [String(rank), String(ranks), prefix]),
  );
  try {
    const timings = new Map<number, Reply<'timings'>[]>();
    children.forEach((child) =>
      child.on('message', (m: WorkerReply) => {
        if (m.kind === 'timings') timings.set(m.sizeBytes, [...(timings.get(m.sizeBytes) ?? []), m]);
      }),
    );
    const finished = children.map((c) => nextMessage(c, replyOf('finished'), 30 * 60_000));
    const { sizesBytes, reps, chunkBytes } = options;
    children.forEach((c) => c.send({ kind: 'run', sizesBytes, reps, warmup: 1, chunkBytes } satisfies ParentCommand));
    (await Promise.all(finished)).forEach(unlessFailed);
    return sizesBytes.map((bytes) => {
      const perRank = timings.get(bytes) ?? [];
      if (perRank.length !== ranks || perRank.some((r) => !r.correct))
        throw new Error(`shm n=${ranks} ${bytes} B: wrong sum or missing ranks`);
      const slowest = Array.from({ length: reps }, (_, i) => Math.max(...perRank.map((r) => r.repMs[i])));
      return rowFrom('shm', ranks, bytes, slowest, Math.max(...perRank.map((r) => r.cpuMsPerRep)));
    });
  } finally {
    await Promise.all(children.map((c) => waitForExit(c, 10_000)));
    sweepSegments(prefix);
  }
}

/** Single-thread memcpy (TypedArray.set) of the largest size, GB/s, median of `reps`. */
function memcpyGBps(bytes: number, reps: number): number {
  const src = new Float32Array(Math.floor(bytes / 4)).fill(1);
  const dst = new Float32Array(src.length).fill(2);
  const ms: number[] = [];
  for (let i = 0; i <= reps; i++) {
    const started = performance.now();
    dst.set(src);
    if (i > 0) ms.push(performance.now() - started);
  }
  return src.byteLength / (median(ms) / 1e3) / 1e9;
}

/** Lets a worker close its sockets and exit; kills it if it has not after `graceMs`. */
function waitForExit(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    if (child.connected) child.disconnect();
  });
}

/** gloo rows, or the one-line reason there are none. */
function benchGloo(options: Options): Row[] | string {
  const unavailable = pythonUnavailable('import torch.distributed as d; assert d.is_gloo_available()');
  if (unavailable !== null) return `${unavailable}: gloo reference skipped`;
  const script = benchScript('gloo_allreduce.py');
  const args = [
    script,
    '--ranks',
    options.ranks.join(','),
    '--sizes',
    options.sizesBytes.join(','),
    '--reps',
    String(options.reps),
  ];
  const parsed = runPythonJson<{
    results: { ranks: number; bytes: number; rep_ms: number[]; cpu_ms_per_rank: number }[];
  }>(args);
  if (typeof parsed === 'string') return `gloo reference ${parsed}`;
  return parsed.results.map((r) => rowFrom('gloo-tcp', r.ranks, r.bytes, r.rep_ms, r.cpu_ms_per_rank));
}

function formatBytes(bytes: number): string {
  if (bytes === ALEXNET_BYTES) return '244.4 MB (AlexNet)';
  const units = ['B', 'KB', 'MB', 'GB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) ((value /= 1024), unit++);
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}

export function markdownTable(rows: Row[], gloo: Row[]): string {
  const glooOf = (r: Row): Row | undefined => gloo.find((g) => g.ranks === r.ranks && g.bytes === r.bytes);
  const lines = [
    '| transport | ranks | size | time (ms) | algbw (GB/s) | busbw (GB/s) | CPU ms/rank | gloo busbw | vs gloo |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of [...rows, ...gloo]) {
    const g = r.transport === 'gloo-tcp' ? undefined : glooOf(r);
    lines.push(
      `| ${r.transport} | ${r.ranks} | ${formatBytes(r.bytes)} | ${r.timeMs.toFixed(3)} | ` +
        `${r.algbwGBps.toFixed(3)} | ${r.busbwGBps.toFixed(3)} | ${r.cpuMsPerRank.toFixed(1)} | ` +
        `${g ? g.busbwGBps.toFixed(3) : ''} | ${g ? `${(r.busbwGBps / g.busbwGBps).toFixed(2)}x` : ''} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const loadBefore = os.loadavg()[0];
  const rows: Row[] = [];
  const notes: string[] = [];
  for (const transport of options.transports) {
    if (transport === 'shm') {
      const why = shmUnavailableReason();
      if (why !== null) notes.push(`shm skipped: ${why}`);
      else for (const ranks of options.ranks) rows.push(...(await benchShm(ranks, options)));
      continue;
    }
    for (const ranks of options.ranks) rows.push(...(await benchRing(transport, ranks, options)));
  }
  const memcpy = memcpyGBps(Math.max(...options.sizesBytes), options.reps);
  const glooResult = options.gloo ? benchGloo(options) : 'gloo reference not requested (--no-gloo)';
  const gloo = typeof glooResult === 'string' ? [] : glooResult;
  const context =
    `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}, ` +
    `reduce kernel ${reduceKernelName()}, chunk ${options.chunkBytes} B, median of ` +
    `${options.reps}, memcpy ${memcpy.toFixed(2)} GB/s (1 thread, ${formatBytes(Math.max(...options.sizesBytes))}), ` +
    `load average ${loadBefore.toFixed(2)} -> ${os.loadavg()[0].toFixed(2)}`;
  console.log(`# ring all-reduce (${context})\n`);
  console.log(markdownTable(rows, gloo));
  if (typeof glooResult === 'string') console.log(`\nnote: ${glooResult}`);
  for (const note of notes) console.log(`note: ${note}`);
  if (options.outPath !== null) {
    const json = { date: new Date().toISOString(), context, options, rows, gloo: glooResult };
    fs.writeFileSync(options.outPath, `${JSON.stringify(json, null, 2)}\n`);
    console.log(`\nwrote ${options.outPath}`);
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
