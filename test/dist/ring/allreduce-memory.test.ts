/**
 * The collectives on the in-memory transport: exact results for many world sizes and awkward
 * lengths, the zero-copy hazard checker (the transport compares each chunk at delivery with
 * what was sent), timeouts instead of hangs.
 */
import t from 'tap';
import { CommTimeoutError, ConfigError, ProtocolError } from '../../../src/core/errors';
import { allReduceScalars, broadcast, ringAllReduce } from '../../../src/dist/ring/allreduce';
import { RingTransport, createInMemoryRing } from '../../../src/dist/ring/transport';
import { expectedRingSum, float64Sum, rankData, sameBits } from '../fixtures/ring';

async function allReduceAll(ring: RingTransport[], length: number, chunkBytes: number): Promise<Float32Array[]> {
  const buffers = ring.map((tr) => rankData(tr.rank, length));
  await Promise.all(ring.map((tr, rank) => ringAllReduce(buffers[rank], tr, rank, ring.length, { chunkBytes })));
  return buffers;
}

t.test('exact ring sum, bit-identical on every rank', async (t) => {
  for (const worldSize of [1, 2, 3, 4, 5]) {
    for (const length of [0, 1, 2, 3, 7, 10, 33, 1000]) {
      // One-float chunks only on short buffers: thousands of tiny messages prove nothing more.
      for (const chunkBytes of length <= 33 ? [4, 12, 1 << 20] : [64, 1 << 20]) {
        const ring = createInMemoryRing(worldSize, { maxDelayMs: length <= 10 ? 2 : 0 });
        const buffers = await allReduceAll(ring, length, chunkBytes);
        const label = `n=${worldSize} len=${length} chunk=${chunkBytes}B`;
        for (const b of buffers.slice(1)) {
          if (!sameBits(b, buffers[0])) t.fail(`${label}: ranks differ`);
        }
        for (let i = 0; i < length; i++) {
          const exact = expectedRingSum(length, worldSize, i);
          if (buffers[0][i] !== exact) t.fail(`${label}: element ${i} ${buffers[0][i]} != ${exact}`);
          const { sum, absSum } = float64Sum(worldSize, i);
          if (Math.abs(buffers[0][i] - sum) > worldSize * 2 ** -24 * absSum) {
            t.fail(`${label}: element ${i} off the float64 sum by more than float32 rounding`);
          }
        }
        await Promise.all(ring.map((tr) => tr.close()));
      }
    }
  }
  t.pass('all combinations checked');
});

t.test('horovod-style: identical inputs sum to x * size', async (t) => {
  const ring = createInMemoryRing(4);
  const buffers = ring.map(() => Float32Array.from({ length: 101 }, (_, i) => i * 0.5));
  await Promise.all(ring.map((tr, r) => ringAllReduce(buffers[r], tr, r, 4, { chunkBytes: 40 })));
  t.same(
    Array.from(buffers[2]),
    Array.from({ length: 101 }, (_, i) => i * 2),
  );
});

t.test('the hazard checker catches a sender that overwrites before delivery', async (t) => {
  const [a, b] = createInMemoryRing(2, { maxDelayMs: 5 });
  const data = Float32Array.of(1, 2, 3);
  await a.send(data);
  data[0] = 99; // what a careless all-reduce would do with a zero-copy socket
  await t.rejects(b.recv(1000), /overwrote a sent chunk/);
  await Promise.all([a.close(), b.close()]);
});

t.test('a dead peer gives CommTimeoutError naming rank and peer, not a hang', async (t) => {
  const ring = createInMemoryRing(3);
  await ring[2].close(); // rank 2 "died"
  const buffers = [0, 1].map((r) => rankData(r, 100));
  const started = Date.now();
  const results = await Promise.allSettled(
    [0, 1].map((r) => ringAllReduce(buffers[r], ring[r], r, 3, { timeoutMs: 200 })),
  );
  t.ok(Date.now() - started < 2000, 'fails within the timeout');
  const err0 = results[0].status === 'rejected' ? results[0].reason : null;
  t.type(err0, CommTimeoutError);
  t.match(String(err0), /rank 0: no data from rank 2 within 200 ms/);
  await Promise.all(ring.map((tr) => tr.close()));
});

t.test('mismatched lengths and arguments are reported', async (t) => {
  const ring = createInMemoryRing(2);
  const results = await Promise.allSettled([
    ringAllReduce(new Float32Array(10), ring[0], 0, 2, { timeoutMs: 500 }),
    ringAllReduce(new Float32Array(12), ring[1], 1, 2, { timeoutMs: 500 }),
  ]);
  t.ok(results.some((r) => r.status === 'rejected' && r.reason instanceof ProtocolError));
  await t.rejects(ringAllReduce(new Float32Array(4), ring[0], 1, 2), ConfigError);
  await t.rejects(broadcast(new Float32Array(4), ring[0], 2), ConfigError);
  await t.rejects(ringAllReduce(new Float32Array(4), ring[0], 0, 2, { timeoutMs: 0 }), ConfigError);
  await Promise.all(ring.map((tr) => tr.close()));
  await t.rejects(ring[0].recv(10), /used after close/);
});

t.test('broadcast copies the root buffer everywhere', async (t) => {
  for (const worldSize of [1, 2, 3, 4]) {
    for (const root of [0, worldSize - 1]) {
      for (const length of [0, 1, 5, 1000]) {
        const ring = createInMemoryRing(worldSize, { maxDelayMs: 1 });
        const buffers = ring.map((tr) => rankData(tr.rank, length));
        const want = buffers[root].slice();
        await Promise.all(ring.map((tr, r) => broadcast(buffers[r], tr, root, { chunkBytes: 64 })));
        // The root may reuse its buffer as soon as broadcast returns (checked by the hazard
        // checker on delivery, which already happened).
        buffers[root].fill(-1);
        buffers.forEach((b, r) => {
          if (r !== root && !sameBits(b, want)) t.fail(`n=${worldSize} root=${root} rank ${r}`);
        });
        await Promise.all(ring.map((tr) => tr.close()));
      }
    }
  }
  t.pass('broadcasts checked');
});

t.test('allReduceScalars sums float64 exactly, same on every rank', async (t) => {
  for (const worldSize of [1, 2, 3, 4]) {
    const ring = createInMemoryRing(worldSize);
    const sums = await Promise.all(ring.map((tr) => allReduceScalars([0.1 * (tr.rank + 1), 2 ** 40 + tr.rank, 1], tr)));
    const want = [0, 0, 0];
    for (let r = 0; r < worldSize; r++) {
      want[0] += 0.1 * (r + 1);
      want[1] += 2 ** 40 + r;
      want[2] += 1;
    }
    for (const s of sums) t.same(Array.from(s), want, `n=${worldSize}`);
    const empty = await Promise.all(ring.map((tr) => allReduceScalars([], tr)));
    t.same(Array.from(empty[0]), [], 'no values: a barrier');
    await Promise.all(ring.map((tr) => tr.close()));
  }
});
