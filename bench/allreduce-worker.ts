/**
 * One rank of the all-reduce benchmark, forked by bench/allreduce.ts (see there). Talks to the
 * parent over the fork IPC channel: bind -> 'bound' (endpoint), 'connect' -> 'connected',
 * 'run' -> one 'timings' per size, then 'finished'.
 */
import { allReduceScalars, ringAllReduce } from '../src/dist/ring/allreduce';
import { ZmqRingTransport } from '../src/dist/ring/zmq-ring';

export type ParentCommand =
  | { kind: 'connect'; next: string }
  | { kind: 'run'; sizesBytes: number[]; reps: number; warmup: number; chunkBytes: number };

export type WorkerReply =
  | { kind: 'bound'; rank: number; endpoint: string }
  | { kind: 'connected'; rank: number }
  | {
      kind: 'timings';
      rank: number;
      sizeBytes: number;
      repMs: number[];
      /** CPU time of the whole process (all threads) per repetition, user + system. */
      cpuMsPerRep: number;
      correct: boolean;
    }
  | { kind: 'finished'; rank: number }
  | { kind: 'failed'; rank: number; message: string };

const TIMEOUT_MS = 120_000;

function nextCommand(): Promise<ParentCommand> {
  return new Promise((resolve) => process.once('message', (m) => resolve(m as ParentCommand)));
}

async function timeSize(
  transport: ZmqRingTransport,
  sizeBytes: number,
  reps: number,
  warmup: number,
  chunkBytes: number,
): Promise<{ repMs: number[]; cpuMsPerRep: number; correct: boolean }> {
  const { rank, worldSize } = transport;
  const buffer = new Float32Array(Math.max(1, Math.floor(sizeBytes / 4)));
  const repMs: number[] = [];
  let correct = true;
  let cpuUs = 0;
  for (let rep = 0; rep < warmup + reps; rep++) {
    buffer.fill(rank + 1);
    // Start together, so a rank's time is not its wait for the slowest peer to arrive.
    await allReduceScalars([], transport, { timeoutMs: TIMEOUT_MS });
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    await ringAllReduce(buffer, transport, rank, worldSize, { chunkBytes, timeoutMs: TIMEOUT_MS });
    if (rep >= warmup) {
      repMs.push(performance.now() - started);
      const cpu = process.cpuUsage(cpuBefore);
      cpuUs += cpu.user + cpu.system;
    }
    const want = (worldSize * (worldSize + 1)) / 2;
    correct &&= buffer[0] === want && buffer[buffer.length - 1] === want;
  }
  return { repMs, cpuMsPerRep: cpuUs / 1e3 / reps, correct };
}

async function main(): Promise<void> {
  const [rank, worldSize, bindAddress] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]];
  const reply = (r: WorkerReply): void => void process.send?.(r);
  let transport: ZmqRingTransport | null = null;
  try {
    transport = await ZmqRingTransport.bind({ rank, worldSize, bindAddress });
    reply({ kind: 'bound', rank, endpoint: transport.endpoint });
    const connect = await nextCommand();
    if (connect.kind !== 'connect') throw new Error(`expected connect, got ${connect.kind}`);
    await transport.connect(connect.next);
    reply({ kind: 'connected', rank });
    const run = await nextCommand();
    if (run.kind !== 'run') throw new Error(`expected run, got ${run.kind}`);
    for (const sizeBytes of run.sizesBytes) {
      const result = await timeSize(transport, sizeBytes, run.reps, run.warmup, run.chunkBytes);
      reply({ kind: 'timings', rank, sizeBytes, ...result });
    }
    reply({ kind: 'finished', rank });
  } catch (err) {
    reply({ kind: 'failed', rank, message: err instanceof Error ? err.message : String(err) });
  } finally {
    await transport?.close();
    if (process.connected) process.disconnect();
  }
}

void main();
