/**
 * The ceiling any socket data plane has on this machine: two node processes swap a buffer over
 * a unix socket (plain `net`, no ZeroMQ, no reduction), both directions at once, as the two
 * ranks of a ring do. A 2-rank ring all-reduce of S bytes sends S/2 each way in the
 * reduce-scatter and S/2 each way in the all-gather, so it can be no faster than this swap of
 * S bytes: its bus bandwidth is at most S / (swap time). docs/allreduce.md compares that bound
 * with the target (1.5x gloo) and with our ZeroMQ ring.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/socket-ceiling.js [--bytes 244403360] [--reps 5]
 */
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { forkScript, nextMessage } from '../src/dist/launch/fork-script';
import { flagValue, loadAverage, median } from './harness';

const CHUNK_BYTES = 4 << 20;

interface Go {
  kind: 'go';
}
interface Done {
  kind: 'done';
  ms: number;
}
const isDone = (m: unknown): m is Done => (m as Done | null)?.kind === 'done';

/** Sends `src` and receives `dst.length` bytes at the same time; the milliseconds both took. */
async function swap(socket: net.Socket, src: Buffer, dst: Buffer): Promise<number> {
  const started = performance.now();
  let got = 0;
  const received = new Promise<void>((resolve) => {
    const onData = (chunk: Buffer): void => {
      chunk.copy(dst, got);
      got += chunk.length;
      if (got >= dst.length) {
        // Paused between swaps: a flowing socket with no listener would drop the next swap's
        // first bytes, which can arrive before this side's next 'go'.
        socket.pause();
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
    socket.resume();
  });
  const written = (async () => {
    for (let offset = 0; offset < src.length; offset += CHUNK_BYTES) {
      if (!socket.write(src.subarray(offset, offset + CHUNK_BYTES))) await once(socket, 'drain');
    }
  })();
  await Promise.all([received, written]);
  return performance.now() - started;
}

async function child(socketPath: string, bytes: number): Promise<void> {
  const socket = net.connect(socketPath);
  await once(socket, 'connect');
  const src = Buffer.alloc(bytes, 1);
  const dst = Buffer.alloc(bytes);
  process.on('message', (m: Go) => {
    if (m.kind === 'go') void swap(socket, src, dst).then((ms) => process.send?.({ kind: 'done', ms } satisfies Done));
  });
  process.send?.({ kind: 'ready' });
}

async function parent(argv: string[]): Promise<void> {
  const bytes = Number(flagValue(argv, '--bytes') ?? 61_100_840 * 4);
  const reps = Number(flagValue(argv, '--reps') ?? 5);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socket-ceiling-'));
  const socketPath = path.join(dir, 'swap.sock');
  const server = net.createServer();
  server.listen(socketPath);
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const peer = forkScript(__filename, ['child', socketPath, String(bytes)]);
  const [socket] = await accepted;
  await nextMessage(peer, (m): m is { kind: 'ready' } => (m as { kind?: string } | null)?.kind === 'ready', 30_000);
  const src = Buffer.alloc(bytes, 2);
  const dst = Buffer.alloc(bytes);
  const times: number[] = [];
  for (let r = 0; r < reps + 1; r++) {
    const theirs = nextMessage(peer, isDone, 60_000);
    peer.send({ kind: 'go' } satisfies Go);
    const mine = await swap(socket, src, dst);
    const { ms } = await theirs;
    if (r > 0) times.push(Math.max(mine, ms)); // the first swap is a warm-up
  }
  peer.kill();
  socket.destroy();
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });
  const ms = median(times);
  const gbps = bytes / (ms / 1000) / 1e9;
  console.log(
    JSON.stringify({
      bytes,
      reps,
      swapMs: times.map((t) => Number(t.toFixed(1))),
      medianSwapMs: Number(ms.toFixed(1)),
      // GB/s each way; for 2 ranks this is also the bound on an all-reduce's bus bandwidth.
      perDirectionGBps: Number(gbps.toFixed(3)),
      load: Number(loadAverage().toFixed(2)),
    }),
  );
}

const [mode, socketPath, bytes] = process.argv.slice(2);
(mode === 'child' ? child(socketPath, Number(bytes)) : parent(process.argv.slice(2))).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
