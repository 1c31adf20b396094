// The fusion buffer in one process: its layout, packing and unpacking, the tail, and
// reduceFusion's rules (values in the wire dtype, the tail always exact) on a real ring
// all-reduce over the in-memory ring.
import * as tf from '@tensorflow/tfjs';
import t from 'tap';
import { FusionBuffer, reduceFusion, type StepTail } from '../../../src/train/sync/fusion-buffer';
import { memoryCollectives } from '../../helpers/memory-collective';

const SHAPES = [[2, 3], [3], [1, 1, 2, 2]];

const tail = (base: number): StepTail => ({
  sums: { count: base, lossSum: base * 1.5, top1Correct: base - 1, top5Correct: base },
  skipped: base % 2,
  stopVotes: 0,
  checkpointVotes: 1,
});

t.test('layout: parameters back to back, then the 7-slot tail, in shared memory', async (t) => {
  const f = new FusionBuffer(SHAPES);
  t.equal(f.count, 3);
  t.same(
    [0, 1, 2].map((i) => f.rangeOf(i)),
    [
      { start: 0, end: 6 },
      { start: 6, end: 9 },
      { start: 9, end: 13 },
    ],
  );
  t.equal(f.tailAt, 13);
  t.equal(f.data.length, 20);
  t.equal(f.params.length, 13);
  t.equal(f.tail.length, 7);
  t.ok(f.data.buffer instanceof SharedArrayBuffer, 'the comm thread reduces it where it is');
  const empty = new FusionBuffer();
  t.equal(empty.tailAt, 0, 'a tail-only buffer (evaluation)');
  t.equal(empty.data.length, 7);
});

t.test('pack and unpack round-trip every parameter exactly; a wrong count is refused', async (t) => {
  const f = new FusionBuffer(SHAPES);
  const tensors = SHAPES.map((s, i) => tf.randomNormal(s, 0, 1, 'float32', 10 + i));
  f.pack(tensors);
  const back = f.unpack();
  back.forEach((b, i) => {
    t.same(b.shape, SHAPES[i]);
    t.same(Array.from(b.dataSync()), Array.from(tensors[i].dataSync()), `parameter ${i}`);
  });
  await f.packAsync(
    tensors
      .slice()
      .reverse()
      .map((x, i) => (i === 1 ? x : tf.zeros(SHAPES[2 - i]))),
  );
  t.same(Array.from(f.data.subarray(6, 9)), Array.from(tensors[1].dataSync()), 'packAsync writes in place too');
  t.throws(() => f.pack(tensors.slice(1)), /2 tensors for 3 parameters/);
  tf.dispose([...tensors, ...back]);
});

t.test('the tail reads back what was written', async (t) => {
  const f = new FusionBuffer(SHAPES);
  f.writeTail(tail(5));
  t.same(f.readTail(), tail(5));
  t.same(Array.from(f.params), new Array(13).fill(0), 'the parameters are untouched');
});

for (const wireDtype of ['fp32', 'fp16'] as const) {
  t.test(`reduceFusion over 3 ranks, wire ${wireDtype}: every rank holds the sums`, async (t) => {
    const collectives = memoryCollectives(3, wireDtype);
    const buffers = collectives.map((_, r) => {
      const f = new FusionBuffer(SHAPES);
      f.params.forEach((_, i) => (f.data[i] = r * 100 + i));
      f.writeTail(tail(r + 2));
      return f;
    });
    await Promise.all(collectives.map((c, r) => reduceFusion(c, buffers[r])));
    for (const f of buffers) {
      t.same(
        Array.from(f.params),
        Array.from({ length: 13 }, (_, i) => 300 + 3 * i),
      );
      t.same(f.readTail().sums, { count: 9, lossSum: 13.5, top1Correct: 6, top5Correct: 9 });
      t.equal(f.readTail().checkpointVotes, 3);
    }
    // fp32: one collective for everything; 16 bits: the values in the wire dtype, the tail exact
    // (counts above 2048 would round in fp16).
    const want =
      wireDtype === 'fp32'
        ? [{ op: 'allReduce', length: 20, exact: false }]
        : [
            { op: 'allReduce', length: 13, exact: false },
            { op: 'allReduce', length: 7, exact: true },
          ];
    t.same(collectives[0].calls, want);
  });
}
