/**
 * The comm thread: real ZeroMQ ipc sockets driven from worker threads, two ranks in this
 * process. Sync calls block the main thread; the peer's request is posted first, so its own
 * thread serves it meanwhile.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { CommTimeoutError } from '../../../src/core/errors';
import { sharedFloats } from '../../../src/dist/collective';
import { CommThread } from '../../../src/dist/comm-thread/comm-thread';
import type { WireDtype } from '../../../src/dist/ring/wire-codec';
import { builtFile } from '../../helpers/repo';

async function pair(t: Test, wireDtype: WireDtype = 'fp32', timeoutMs = 10_000): Promise<CommThread[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'comm-thread-'));
  const threads = await Promise.all(
    [0, 1].map((rank) =>
      CommThread.start({ rank, worldSize: 2, bindAddress: `ipc://${dir}/r${rank}.sock`, timeoutMs }),
    ),
  );
  await Promise.all(threads.map((th, r) => th.connect(threads[(r + 1) % 2].endpoint, wireDtype)));
  t.teardown(async () => {
    await Promise.all(threads.map((th) => th.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return threads;
}

t.test('all-reduce in shared memory, broadcast, and blocking gathers/scatters', async (t) => {
  const [a, b] = await pair(t);
  const x = sharedFloats(300_000).fill(1);
  const y = sharedFloats(300_000).fill(2);
  await Promise.all([a.allReduce(x), b.allReduce(y)]);
  t.equal(x[123], 3);
  t.equal(y[299_999], 3);
  const plain = [Float32Array.of(5, 6), Float32Array.of(7, 8)];
  await Promise.all([a.broadcast(plain[0], 1), b.broadcast(plain[1], 1)]);
  t.same([...plain[0]], [7, 8], 'broadcast into a non-shared buffer');

  const pending = b.allGather(Float32Array.of(9, 10, 11), [2, 3]);
  const gathered = a.allGatherSync(Float32Array.of(1, 2), [2, 3]);
  t.same([...gathered], [1, 2, 9, 10, 11]);
  t.same([...(await pending)], [1, 2, 9, 10, 11]);

  const scatter = b.reduceScatter(Float32Array.of(10, 20, 30), [1, 2]);
  t.same([...a.reduceScatterSync(Float32Array.of(1, 2, 3), [1, 2])], [11]);
  t.same([...(await scatter)], [22, 33]);
});

t.test('started all-reduces run while the main thread works, and settle', async (t) => {
  const [a, b] = await pair(t, 'bf16');
  const parts = [
    [sharedFloats(1000).fill(1.5), sharedFloats(10).fill(-2)],
    [sharedFloats(1000).fill(0.25), sharedFloats(10).fill(4)],
  ];
  parts[1].forEach((p) => b.allReduceStart(p));
  parts[0].forEach((p) => a.allReduceStart(p));
  await Promise.all([a.settle(), b.settle()]);
  t.equal(parts[0][0][999], 1.75);
  t.equal(parts[1][1][3], 2);
  t.ok(a.bytesSent() < 1010 * 4 * 0.6, 'bf16: about half the fp32 bytes');
});

t.test('a silent peer is a CommTimeoutError in the blocked main thread, not a hang', async (t) => {
  const [a] = await pair(t, 'fp32', 500);
  const started = Date.now();
  t.throws(() => a.allGatherSync(Float32Array.of(1), [1, 1]), CommTimeoutError);
  t.ok(Date.now() - started < 20_000, 'returned');
  await t.rejects(a.allReduce(Float32Array.of(1)), CommTimeoutError, 'the ring stays broken after a failure');
});

t.test('a process that exits mid-collective exits with its own code (no SIGABRT from ZeroMQ)', async (t) => {
  const script = builtFile('test/dist/fixtures/comm-exit.ts');
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) =>
    child.on('exit', (c, s) => resolve([c, s])),
  );
  t.equal(signal, null, `no signal (stderr: ${stderr.trim() || 'empty'})`);
  t.equal(code, 3);
});
