// --devices auto on CPU: one worker per core or one worker with a thread per core, from the
// all-reduce's share of a step against what threads lose.
import t from 'tap';
import { forwardFlopsPerImage } from '../../src/model/alexnet';
import { buildSpec } from '../../src/model/presets';
import {
  CPU_COSTS,
  chooseCpuLayout,
  dataParallelOverhead,
  layoutForThreads,
  type CpuCosts,
  type PlaneKind,
} from '../../src/train/cpu-layout';
import { wireBytesPerStep } from '../../src/train/wire-bytes';

/** What data mode's ring sends per worker for `params` parameters over `n` workers. */
const ringBytes = (params: number, n: number) => (4 * params * 2 * (n - 1)) / n;

const costs: CpuCosts = {
  coreTrainFlopsPerSec: 100e9,
  allReduceBytesPerSec: 1e9,
  stepOverheadSec: 0,
  skewFraction: 0,
  threadEfficiency: 0.8,
  concurrentSlowdown: 1,
};

t.test(
  "the data-parallel overhead: bytes over bandwidth, fixed costs and skew against one worker's compute",
  async (t) => {
    // 2 workers: 4 x 1e6 bytes x 2(2-1)/2 = 4 MB at 1 GB/s = 4 ms; 32 images x 3 x 1e9 FLOPs at 100 GFLOP/s = 960 ms.
    t.ok(
      Math.abs(
        dataParallelOverhead(
          { cores: 2, globalBatch: 64, wireBytes: ringBytes(1e6, 2), forwardFlopsPerImage: 1e9, plane: 'zmq' },
          costs,
        ) -
          4 / 960,
      ) < 1e-12,
    );
    // 4 workers move 2(4-1)/4 = 1.5x the buffer; each computes 16 images.
    t.ok(
      Math.abs(
        dataParallelOverhead(
          { cores: 4, globalBatch: 64, wireBytes: ringBytes(1e6, 4), forwardFlopsPerImage: 1e9, plane: 'zmq' },
          costs,
        ) -
          6 / 480,
      ) < 1e-12,
    );
    const fixed = { ...costs, stepOverheadSec: 0.096, skewFraction: 0.1 };
    t.ok(
      Math.abs(
        dataParallelOverhead(
          { cores: 2, globalBatch: 64, wireBytes: ringBytes(1e6, 2), forwardFlopsPerImage: 1e9, plane: 'zmq' },
          fixed,
        ) -
          (4 / 960 + 0.1 + 0.1),
      ) < 1e-12,
    );
  },
);

t.test('threads above the threshold (1 - e) / e, one worker per core below it', async (t) => {
  const at = (params: number) =>
    chooseCpuLayout(
      { cores: 2, globalBatch: 64, wireBytes: ringBytes(params, 2), forwardFlopsPerImage: 1e9, plane: 'zmq' },
      costs,
    );
  // threshold 0.25 of 960 ms = 240 ms of all-reduce = 60M parameters
  t.match(at(61e6), { workers: 1, threadsPerWorker: 2 });
  t.match(at(59e6), { workers: 2, threadsPerWorker: 1 });
  t.match(
    at(61e6).reason,
    /^1 worker with 2 oneDNN threads: 2 workers would each take ~25% longer .* 244\.0 MB per step through the ZeroMQ ring\), 2 threads in one process lose ~25%/,
  );
  t.match(
    chooseCpuLayout(
      { cores: 1, globalBatch: 64, wireBytes: ringBytes(61e6, 1), forwardFlopsPerImage: 1e9, plane: 'zmq' },
      costs,
    ),
    { workers: 1, threadsPerWorker: 1 },
  );
});

t.test('interference between worker processes counts against them', async (t) => {
  const input = { cores: 2, globalBatch: 64, wireBytes: 0, forwardFlopsPerImage: 1e9, plane: 'shm' as const };
  t.ok(
    Math.abs(dataParallelOverhead(input, { ...costs, concurrentSlowdown: 1.5 }) - 0.5) < 1e-12,
    'half again as long',
  );
  t.ok(
    Math.abs(dataParallelOverhead(input, { ...costs, concurrentSlowdown: 1.5, skewFraction: 0.1 }) - 0.65) < 1e-12,
    'the skew on top of it',
  );
  t.equal(
    chooseCpuLayout(input, { ...costs, concurrentSlowdown: 1.2 }).workers,
    2,
    'within what threads lose: workers',
  );
  t.equal(
    chooseCpuLayout(input, { ...costs, concurrentSlowdown: 1.3 }).workers,
    1,
    'beyond it: threads, with nothing to send',
  );
});

t.test(
  'with the measured costs: threads on the 2-core machines; shared memory tips the paper preset where cores are independent',
  async (t) => {
    const layout = (preset: 'small' | 'paper', classes: number, batch: number, plane: PlaneKind, slowdown?: number) => {
      const spec = buildSpec(preset);
      const wire = wireBytesPerStep({
        spec,
        numClasses: classes,
        mode: 'data',
        dtype: 'fp32',
        worldSize: 2,
        batchPerWorker: batch / 2,
      });
      const input = {
        cores: 2,
        globalBatch: batch,
        wireBytes: wire.total,
        forwardFlopsPerImage: forwardFlopsPerImage(spec, classes),
        plane,
      };
      return chooseCpuLayout(input, {
        ...CPU_COSTS[plane],
        concurrentSlowdown: slowdown ?? CPU_COSTS[plane].concurrentSlowdown,
      });
    };
    // Measured: a paper step's forward+backward took 2x as long beside a second worker; threads won (53.5 vs 31.0 img/s).
    for (const plane of ['zmq', 'shm'] as const) {
      t.equal(layout('small', 10, 64, plane).workers, 1, `small at 32 per core, ${plane}: threads`);
      t.equal(layout('paper', 1000, 64, plane).workers, 1, `paper at 32 per core, ${plane}: threads`);
      t.equal(layout('paper', 1000, 128, plane).workers, 1, `paper at 64 per core, ${plane}: threads`);
    }
    // Cores that compute independently: the data plane decides.
    t.equal(layout('paper', 1000, 64, 'zmq', 1).workers, 1, "the ring's 244 MB: still threads");
    t.equal(layout('paper', 1000, 64, 'shm', 1).workers, 2, 'shared memory: workers');
    t.equal(layout('small', 10, 64, 'shm', 1).workers, 1, "the small preset's short steps: threads");
  },
);

t.test('an explicit --threads: as many workers of that many threads as the cores hold', async (t) => {
  const cases: [cores: number, threads: number, workers: number][] = [
    [2, 2, 1],
    [8, 2, 4],
    [8, 3, 2],
    [2, 4, 1],
    [16, 1, 16],
  ];
  for (const [cores, threads, workers] of cases) {
    const layout = layoutForThreads(cores, threads);
    t.equal(layout.workers, workers, `${cores} cores, --threads ${threads}: ${workers} worker(s)`);
    t.equal(layout.threadsPerWorker, threads);
    t.ok(layout.workers * threads <= cores || layout.workers === 1, 'never more threads than cores, beyond one worker');
  }
  t.match(layoutForThreads(2, 4).reason, /more threads than the 2 cores/);
  t.match(
    layoutForThreads(8, 3).reason,
    /^2 worker\(s\) with 3 oneDNN threads each \(--threads 3; 6 of 8 cores busy\)$/,
  );
});
