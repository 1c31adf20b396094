// The native backend's buffer pool: buffers are reused only when nothing outside the backend
// can see them, and the optimizer writes in place only then. First the rules on a stand-in
// storage (a Map, as tfjs-backend-cpu keeps it), then on the real native backend.
import t from 'tap';
import * as tf from '@tensorflow/tfjs';
import type { DataId } from '@tensorflow/tfjs';
import { sgdMomentumStep } from '../../../src/backend/ops';
import { NATIVE_BACKEND_NAME, registerNativeBackend } from '../../../src/backend/native/backend';
import { StoragePool, poolOf, type PooledCpuBackend } from '../../../src/backend/native/storage-pool';
import { ensureNativeAddon } from '../../helpers/native-addon';

/** tfjs-backend-cpu's storage methods, reduced to what the pool hooks. */
function standInBackend(): PooledCpuBackend {
  const data = new Map<DataId, { values?: unknown; refCount: number }>();
  return {
    data,
    write: (values) => {
      const id = {};
      data.set(id, { values, refCount: 1 });
      return id;
    },
    move: (id, values, _shape, _dtype, refCount) => void data.set(id, { values, refCount }),
    readSync: (id) => data.get(id)?.values,
    read: async (id) => data.get(id)?.values,
    disposeData: (id) => {
      const entry = data.get(id);
      if (entry === undefined) return true;
      if (--entry.refCount > 0) return false;
      data.delete(id);
      return true;
    },
  };
}

const N = 5000;

t.test('a buffer comes back for the next output of its size once its one tensor is gone', async (t) => {
  const backend = standInBackend();
  const pool = new StoragePool();
  pool.attach(backend);
  const a = pool.take(N);
  const id = backend.write(a, [N], 'float32');
  t.ok(pool.exclusive(a), 'held by one tensor, never read out');
  t.not(pool.take(N), a, 'not handed out twice while held');
  backend.disposeData(id);
  t.equal(pool.idleBytes, N * 4);
  t.equal(pool.take(N), a, 'reused');
  t.not(pool.take(N + 1), a, 'only for the same size');
  t.equal(pool.take(100).length, 100, 'small buffers are plain allocations');
});

t.test('a buffer read out, shared or viewed is never reused or written', async (t) => {
  const backend = standInBackend();
  const pool = new StoragePool();
  pool.attach(backend);
  const cases: [string, (values: Float32Array, id: DataId) => void][] = [
    ['dataSync', (_values, id) => void backend.readSync(id)],
    ['data()', (_values, id) => void backend.read(id)],
    ['a second tensor on the same array', (values) => void backend.write(values, [N], 'float32')],
    ['a view of it as another tensor', (values) => void backend.write(values.subarray(10, 20), [10], 'float32')],
    ['moved to another backend', (values, id) => backend.move(id, values, [N], 'float32', 1)],
  ];
  for (const [how, share] of cases) {
    const values = pool.take(N);
    const id = backend.write(values, [N], 'float32');
    share(values, id);
    t.notOk(pool.exclusive(values), `${how}: not exclusive`);
    backend.disposeData(id, true);
    t.not(pool.take(N), values, `${how}: not reused after dispose`);
  }
  t.equal(pool.idleBytes, 0);
});

t.test('the pool keeps at most maxPooledBytes', async (t) => {
  const backend = standInBackend();
  const pool = new StoragePool({ maxPooledBytes: 3 * N * 4 });
  pool.attach(backend);
  const ids = Array.from({ length: 5 }, () => backend.write(pool.take(N), [N], 'float32'));
  ids.forEach((id) => backend.disposeData(id));
  t.equal(pool.idleBytes, 3 * N * 4);
  t.equal(pool.stats.released, 3);
});

t.test("a kernel's scratch bytes live as long as their tensor, then serve the next kernel", async (t) => {
  const backend = standInBackend();
  const pool = new StoragePool({ maxPooledBytes: 256 });
  pool.attach(backend);
  const tensor = () => backend.write(pool.take(N), [N], 'float32');
  const first = tensor();
  const scratch = pool.scratchFor(first, 64);
  const second = tensor();
  t.not(pool.scratchFor(second, 64), scratch, 'not handed out twice while its tensor lives');
  backend.disposeData(first);
  t.equal(pool.stats.scratchReleased, 1);
  t.equal(pool.idleBytes, 64, 'counted with the pooled bytes');
  t.equal(pool.scratchFor(tensor(), 64), scratch, 'reused once its tensor is gone');
  const third = tensor();
  pool.scratchFor(third, 64);
  backend.disposeData(third);
  t.equal(pool.scratchFor(tensor(), 32).byteLength, 32);
  t.equal(pool.idleBytes, 64, 'only for the same length: the free 64 bytes stay');
  // A tensor id two tensors share (refCount 2) keeps its scratch until the last one goes.
  const shared = tensor();
  const sharedScratch = pool.scratchFor(shared, 128);
  (backend.data.get(shared) as { refCount: number }).refCount++;
  backend.disposeData(shared);
  t.equal(pool.stats.scratchReleased, 2, 'not after the first dispose');
  backend.disposeData(shared);
  t.equal(pool.stats.scratchReleased, 3, 'after the last');
  t.equal(pool.scratchFor(tensor(), 128), sharedScratch);
  // Beyond maxPooledBytes a scratch buffer is left to the garbage collector.
  const big = tensor();
  pool.scratchFor(big, 512);
  backend.disposeData(big);
  t.equal(pool.idleBytes, 64);
  t.equal(pool.stats.scratchReleased, 3);
});

const { addon, skipReason } = ensureNativeAddon();

t.test('on the native backend', { skip: addon == null ? skipReason : false }, async (t) => {
  if (addon == null) return;
  registerNativeBackend(addon);
  await tf.setBackend(NATIVE_BACKEND_NAME);
  const backend = tf.backend() as unknown as PooledCpuBackend;
  const storage = (x: tf.Tensor) => backend.data.get(x.dataId)?.values as Float32Array;
  const pool = poolOf(backend);
  if (pool == null) throw new Error('the native backend has no pool');
  const x = tf.randomNormal([8, 1024]);
  t.teardown(() => x.dispose());

  t.test('kernel outputs reuse the buffers of disposed outputs', async (t) => {
    const y = tf.relu(x);
    const first = storage(y);
    y.dispose();
    const z = tf.relu(x);
    t.equal(storage(z), first, 'the same Float32Array');
    z.dispose();
  });

  t.test('what dataSync gave, and a stock slice viewing an output, survive later kernels', async (t) => {
    const y = tf.relu(x);
    const held = y.dataSync();
    const copy = held.slice();
    y.dispose();
    // Kernels with outputs of the same size and other values: each would take a free buffer.
    const noise = () => Array.from({ length: 3 }, (_, i) => tf.mul(x, i + 2));
    const first = noise();
    t.same(held, copy, 'the dataSync array is unchanged');
    const p = tf.relu(x);
    const top = tf.slice(p, [0, 0], [4, 1024]);
    const topCopy = top.dataSync().slice();
    p.dispose();
    const second = noise();
    t.same(top.dataSync(), topCopy, "the slice's values are unchanged after its parent's buffer was given back");
    tf.dispose([...first, ...second, top]);
  });

  t.test('SGD writes in place, except once after the weights were read out', async (t) => {
    const w = tf.variable(tf.randomNormal([64, 100]));
    const v = tf.variable(tf.zeros([64, 100]));
    const g = tf.randomNormal([64, 100]);
    const attrs = { momentum: 0.9, lrScaled: 0.1, decayLr: 0 };
    const step = () => tf.tidy(() => t.ok(sgdMomentumStep(w, v, g, attrs)));
    step();
    const before = storage(w);
    step();
    t.equal(storage(w), before, 'in place');
    const held = w.dataSync();
    const copy = held.slice();
    step();
    t.same(held, copy, 'the array dataSync gave is not written');
    t.not(storage(w), before, 'out of place once');
    const after = storage(w);
    step();
    t.equal(storage(w), after, 'in place again');
    tf.dispose([w, v, g]);
  });
});
