/**
 * The collectives over real ZeroMQ sockets, several ranks in this process, over ipc:// and
 * tcp://127.0.0.1. Separate-process rings are in multiprocess.test.ts.
 */
import * as fs from 'node:fs';
import t from 'tap';
import * as zmq from 'zeromq';
import { CommTimeoutError, ConfigError, ProtocolError, WorkerExitedError } from '../../../src/core/errors';
import { allReduceScalars, broadcast, ringAllReduce } from '../../../src/dist/ring/allreduce';
import {
  createIpcRingDir,
  ipcRingAddress,
  parseRingAddress,
  removeIpcRingDir,
} from '../../../src/dist/ring/ring-address';
import { ZmqRingTransport } from '../../../src/dist/ring/zmq-ring';
import { connectZmqRing, expectedRingSum, float64Sum, rankData, sameBits } from '../fixtures/ring';

for (const kind of ['ipc', 'tcp'] as const) {
  t.test(`${kind}: exact sums for 2, 3, 4 ranks and awkward lengths`, async (t) => {
    for (const worldSize of [2, 3, 4]) {
      const ring = await connectZmqRing(worldSize, kind);
      t.teardown(ring.close);
      // 1 element, lengths not divisible by n, and one with several chunks per segment.
      for (const [length, chunkBytes] of [
        [1, 4096],
        [7, 4096],
        [1001, 4096],
        [100_003, 4096],
      ]) {
        const buffers = ring.transports.map((tr) => rankData(tr.rank, length));
        await Promise.all(
          ring.transports.map((tr, r) =>
            ringAllReduce(buffers[r], tr, r, worldSize, { chunkBytes, timeoutMs: 10_000 }),
          ),
        );
        const label = `${kind} n=${worldSize} len=${length}`;
        t.ok(
          buffers.every((b) => sameBits(b, buffers[0])),
          `${label}: bit-identical`,
        );
        let exact = true;
        let close = true;
        for (let i = 0; i < length; i++) {
          if (buffers[0][i] !== expectedRingSum(length, worldSize, i)) exact = false;
          const { sum, absSum } = float64Sum(worldSize, i);
          if (Math.abs(buffers[0][i] - sum) > worldSize * 2 ** -24 * absSum) close = false;
        }
        t.ok(exact, `${label}: ring-order float32 result`);
        t.ok(close, `${label}: float64 sum within float32 rounding`);
      }
      // The same transports carry the other collectives afterwards.
      const weights = ring.transports.map((tr) => rankData(tr.rank, 5000));
      const want = weights[0].slice();
      await Promise.all(ring.transports.map((tr, r) => broadcast(weights[r], tr, 0, { chunkBytes: 1024 })));
      t.ok(
        weights.every((w) => sameBits(w, want)),
        `${kind} n=${worldSize}: broadcast`,
      );
      const sums = await Promise.all(ring.transports.map((tr) => allReduceScalars([tr.rank, 1], tr)));
      t.same(Array.from(sums[worldSize - 1]), [(worldSize * (worldSize - 1)) / 2, worldSize]);
      await ring.close();
    }
  });

  t.test(`${kind}: a dead peer gives CommTimeoutError, not a hang`, async (t) => {
    const ring = await connectZmqRing(3, kind, { lingerMs: 200 });
    t.teardown(ring.close);
    // Rank 1 hangs after the handshake: rank 2 waits for its data and gives up.
    const buffer = rankData(2, 1000);
    const started = Date.now();
    const err = await ringAllReduce(buffer, ring.transports[2], 2, 3, { timeoutMs: 300 }).catch((e: unknown) => e);
    t.type(err, CommTimeoutError);
    t.match(String(err), /rank 2: no data from rank 1 within 300 ms/);
    t.ok(Date.now() - started < 3000, 'reported promptly');
  });

  t.test(`${kind}: a peer that closes early gives WorkerExitedError`, async (t) => {
    const ring = await connectZmqRing(2, kind, { lingerMs: 200 });
    t.teardown(ring.close);
    const buffer = rankData(1, 1000);
    const [, err] = await Promise.all([
      ring.transports[0].close(), // rank 0 "finished" (its BYE reaches rank 1)
      ringAllReduce(buffer, ring.transports[1], 1, 2, { timeoutMs: 2000 }).catch((e: unknown) => e),
    ]);
    t.type(err, WorkerExitedError);
    t.match(String(err), /rank 1: rank 0 closed its ring connection/);
  });
}

t.test('address in use is a ConfigError naming the address', async (t) => {
  const dir = createIpcRingDir();
  t.teardown(() => removeIpcRingDir(dir));
  t.equal(fs.statSync(dir).mode & 0o777, 0o700, 'ipc directory is private');
  const first = await ZmqRingTransport.bind({ rank: 0, worldSize: 2, bindAddress: ipcRingAddress(dir, 0) });
  t.teardown(() => first.close());
  const ipcErr = await ZmqRingTransport.bind({
    rank: 1,
    worldSize: 2,
    bindAddress: ipcRingAddress(dir, 0),
  }).catch((e: unknown) => e);
  t.type(ipcErr, ConfigError);
  t.match(String(ipcErr), new RegExp(`${ipcRingAddress(dir, 0)} is already in use`));

  const tcp = await ZmqRingTransport.bind({ rank: 0, worldSize: 2, bindAddress: 'tcp://127.0.0.1:*' });
  t.teardown(() => tcp.close());
  const tcpErr = await ZmqRingTransport.bind({
    rank: 1,
    worldSize: 2,
    bindAddress: tcp.endpoint,
  }).catch((e: unknown) => e);
  t.type(tcpErr, ConfigError);
  t.match(String(tcpErr), new RegExp(`address ${tcp.endpoint} is already in use`));

  await t.rejects(
    ZmqRingTransport.bind({ rank: 0, worldSize: 2, bindAddress: 'tcp://10.255.255.1:5555' }),
    ConfigError,
    'not an interface of this host',
  );
  t.throws(() => parseRingAddress('udp://x:1'), ConfigError);
  t.throws(() => parseRingAddress(`ipc:///${'x'.repeat(200)}`), ConfigError);
});

t.test('a stale ipc socket file (crashed run) does not block binding', async (t) => {
  const dir = createIpcRingDir();
  t.teardown(() => removeIpcRingDir(dir));
  fs.writeFileSync(ipcRingAddress(dir, 0).slice('ipc://'.length), '');
  const tr = await ZmqRingTransport.bind({ rank: 0, worldSize: 2, bindAddress: ipcRingAddress(dir, 0) });
  await tr.close();
  t.pass('bound over the stale file');
});

t.test('the hello handshake rejects a stranger and miswired rings', async (t) => {
  const tr = await ZmqRingTransport.bind({ rank: 0, worldSize: 2, bindAddress: 'tcp://127.0.0.1:*', lingerMs: 200 });
  t.teardown(() => tr.close());
  const stranger = new zmq.Push({ linger: 0 });
  t.teardown(() => stranger.close());
  stranger.connect(tr.endpoint);
  await stranger.send(Buffer.from(new Float32Array(64).buffer));
  const err = await tr.connect('tcp://127.0.0.1:1', 2000).catch((e: unknown) => e);
  t.type(err, ProtocolError);
  t.match(String(err), /not a ring hello/);

  // Rank 0 of a 3-ring wired straight to rank 2 (skipping 1): rank 2 sees the wrong sender.
  const miswired = { worldSize: 3, bindAddress: 'tcp://127.0.0.1:*', lingerMs: 200 };
  const a = await ZmqRingTransport.bind({ ...miswired, rank: 0 });
  const c = await ZmqRingTransport.bind({ ...miswired, rank: 2 });
  t.teardown(() => Promise.all([a.close(), c.close()]));
  const [, cErr] = await Promise.allSettled([a.connect(c.endpoint, 500), c.connect(a.endpoint, 2000)]);
  t.equal(cErr.status, 'rejected');
  t.match(String(cErr.status === 'rejected' ? cErr.reason : ''), /hello from rank 0 of 3, expected rank 1/);
});
