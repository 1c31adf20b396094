import t from 'tap';
import {
  allGatherRecvSegment,
  allReduceChunkElems,
  allGatherSendSegment,
  busBandwidth,
  chunkElemsFor,
  chunkRanges,
  mod,
  ownedSegment,
  reduceScatterRecvSegment,
  reduceScatterSendSegment,
  reductionOrder,
  ringBytesPerRank,
  segmentRange,
} from '../../../src/dist/ring/ring-schedule';

t.test('mod is never negative', async (t) => {
  t.equal(mod(-1, 4), 3);
  t.equal(mod(-5, 4), 3);
  t.equal(mod(7, 4), 3);
  t.equal(mod(0, 1), 0);
});

t.test('segments tile the buffer, sizes differ by at most one', async (t) => {
  for (const worldSize of [1, 2, 3, 4, 7]) {
    for (const length of [0, 1, 2, 3, 5, 10, 11, 1000, 61_100_840]) {
      let expectedStart = 0;
      const sizes: number[] = [];
      for (let k = 0; k < worldSize; k++) {
        const r = segmentRange(length, worldSize, k);
        if (r.start !== expectedStart) t.fail(`gap at segment ${k} (${length}/${worldSize})`);
        expectedStart = r.end;
        sizes.push(r.end - r.start);
      }
      t.equal(expectedStart, length, `covers ${length} over ${worldSize}`);
      t.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `balanced ${length}/${worldSize}`);
    }
  }
  t.same(segmentRange(10, 4, 0), { start: 0, end: 3 });
  t.same(segmentRange(10, 4, 3), { start: 8, end: 10 });
  t.same(segmentRange(1, 4, 0), { start: 0, end: 1 });
  t.same(segmentRange(1, 4, 2), { start: 1, end: 1 }, 'empty trailing segment');
  t.throws(() => segmentRange(10, 4, 4), RangeError);
  t.throws(() => segmentRange(-1, 4, 0), RangeError);
  t.throws(() => segmentRange(10, 0, 0), RangeError);
});

t.test('chunks tile a segment', async (t) => {
  t.same(chunkRanges({ start: 5, end: 15 }, 4), [
    { start: 5, end: 9 },
    { start: 9, end: 13 },
    { start: 13, end: 15 },
  ]);
  t.same(chunkRanges({ start: 3, end: 3 }, 4), [], 'empty segment has no chunks');
  t.same(chunkRanges({ start: 0, end: 1 }, 1000), [{ start: 0, end: 1 }]);
  t.equal(chunkElemsFor(1 << 20), 262_144);
  t.equal(chunkElemsFor(3), 1, 'at least one element');
  t.throws(() => chunkElemsFor(0), RangeError);
  t.throws(() => chunkRanges({ start: 0, end: 4 }, 0), RangeError);
});

t.test('all-reduce chunks: capped by chunkBytes, split for pipelining, not too small', async (t) => {
  const MiB = 1 << 20;
  t.equal(allReduceChunkElems(61_100_840, 2, MiB), MiB / 4, 'large buffers use chunkBytes');
  t.equal(allReduceChunkElems(262_144, 2, MiB), 32_768, '1 MB on 2 ranks: 4 chunks per segment');
  t.equal(allReduceChunkElems(1000, 2, MiB), 4096, 'never below 16 KiB');
  t.equal(allReduceChunkElems(1000, 2, 40), 10, 'but an explicit small chunkBytes wins');
  t.equal(allReduceChunkElems(1, 4, MiB), 4096);
});

t.test('schedule: what one rank sends is what the next one expects', async (t) => {
  for (const n of [2, 3, 4, 5]) {
    for (let rank = 0; rank < n; rank++) {
      const next = mod(rank + 1, n);
      for (let step = 0; step < n - 1; step++) {
        t.equal(reduceScatterSendSegment(rank, step, n), reduceScatterRecvSegment(next, step, n));
        t.equal(allGatherSendSegment(rank, step, n), allGatherRecvSegment(next, step, n));
        if (step > 0) {
          // A reduce-scatter step forwards the segment reduced in the step before.
          t.equal(reduceScatterSendSegment(rank, step, n), reduceScatterRecvSegment(rank, step - 1, n));
        }
      }
      // The segment finished in the last reduce-scatter step is the owned one, sent first in
      // the all-gather; the own segment is never received (and so never written) before that.
      t.equal(reduceScatterRecvSegment(rank, n - 2, n), ownedSegment(rank, n));
      t.equal(allGatherSendSegment(rank, 0, n), ownedSegment(rank, n));
      const touched = Array.from({ length: n - 1 }, (_, s) => reduceScatterRecvSegment(rank, s, n));
      t.notOk(touched.includes(rank), `rank ${rank}/${n} never reduces into its own segment`);
    }
  }
});

t.test('reduction order starts at the segment index and visits every rank once', async (t) => {
  t.same(reductionOrder(0, 3), [0, 1, 2]);
  t.same(reductionOrder(2, 4), [2, 3, 0, 1]);
  for (let k = 0; k < 4; k++) {
    const order = reductionOrder(k, 4);
    // The last rank to add is the segment's owner.
    t.equal(ownedSegment(order[3], 4), k);
  }
});

t.test('bandwidth helpers match nccl-tests', async (t) => {
  t.equal(ringBytesPerRank(1000, 2), 4000);
  t.equal(ringBytesPerRank(1000, 4), 6000);
  t.equal(ringBytesPerRank(1000, 1), 0);
  t.equal(busBandwidth(1e9, 1, 2), 1e9);
  t.equal(busBandwidth(1e9, 1, 4), 1.5e9);
});

t.test('the test fixture inverts segmentRange', async (t) => {
  const { segmentOf } = await import('../fixtures/ring');
  for (const [length, n] of [
    [10, 4],
    [1, 4],
    [7, 3],
    [1000, 7],
    [61_100_840, 2],
  ]) {
    for (let k = 0; k < n; k++) {
      const r = segmentRange(length, n, k);
      if (r.end > r.start && (segmentOf(length, n, r.start) !== k || segmentOf(length, n, r.end - 1) !== k)) {
        t.fail(`segmentOf(${length}, ${n}) wrong for segment ${k}`);
      }
    }
  }
  t.pass('checked');
});
