// --devices auto on CPU: one worker per core or one worker with a thread per core, from the
// all-reduce's share of a step against what threads lose.
import t from 'tap';
import type { ParallelMode } from '../../src/core/config';
import { forwardFlopsPerImage } from '../../src/model/alexnet';
import { buildSpec } from '../../src/model/presets';
import { chooseCpuLayout, dataParallelOverhead, type CpuCosts } from '../../src/train/cpu-layout';
import { wireBytesPerStep } from '../../src/train/wire-bytes';

/** What data mode's ring sends per worker for `params` parameters over `n` workers. */
const ringBytes = (params: number, n: number) => (4 * params * 2 * (n - 1)) / n;

const costs: CpuCosts = {
  coreTrainFlopsPerSec: 100e9,
  allReduceBytesPerSec: 1e9,
  stepOverheadSec: 0,
  skewFraction: 0,
  threadEfficiency: 0.8,
};

t.test(
  "the data-parallel overhead: bytes over bandwidth, fixed costs and skew against one worker's compute",
  async (t) => {
    // 2 workers: 4 x 1e6 bytes x 2(2-1)/2 = 4 MB at 1 GB/s = 4 ms; 32 images x 3 x 1e9 FLOPs at 100 GFLOP/s = 960 ms.
    t.ok(
      Math.abs(
        dataParallelOverhead(
          { cores: 2, globalBatch: 64, wireBytes: ringBytes(1e6, 2), forwardFlopsPerImage: 1e9 },
          costs,
        ) -
          4 / 960,
      ) < 1e-12,
    );
    // 4 workers move 2(4-1)/4 = 1.5x the buffer; each computes 16 images.
    t.ok(
      Math.abs(
        dataParallelOverhead(
          { cores: 4, globalBatch: 64, wireBytes: ringBytes(1e6, 4), forwardFlopsPerImage: 1e9 },
          costs,
        ) -
          6 / 480,
      ) < 1e-12,
    );
    const fixed = { ...costs, stepOverheadSec: 0.096, skewFraction: 0.1 };
    t.ok(
      Math.abs(
        dataParallelOverhead(
          { cores: 2, globalBatch: 64, wireBytes: ringBytes(1e6, 2), forwardFlopsPerImage: 1e9 },
          fixed,
        ) -
          (4 / 960 + 0.1 + 0.1),
      ) < 1e-12,
    );
  },
);

t.test('threads above the threshold (1 - e) / e, one worker per core below it', async (t) => {
  const at = (params: number) =>
    chooseCpuLayout({ cores: 2, globalBatch: 64, wireBytes: ringBytes(params, 2), forwardFlopsPerImage: 1e9 }, costs);
  // threshold 0.25 of 960 ms = 240 ms of all-reduce = 60M parameters
  t.match(at(61e6), { workers: 1, threadsPerWorker: 2 });
  t.match(at(59e6), { workers: 2, threadsPerWorker: 1 });
  t.match(
    at(61e6).reason,
    /^1 worker with 2 oneDNN threads: sending 244\.0 MB per worker every step would add ~25% .* lose ~25%/,
  );
  t.match(
    chooseCpuLayout({ cores: 1, globalBatch: 64, wireBytes: ringBytes(61e6, 1), forwardFlopsPerImage: 1e9 }, costs),
    { workers: 1, threadsPerWorker: 1 },
  );
});

t.test(
  'with the measured costs, as measured: threads for both presets at 32 images per core, workers for the paper at 64',
  async (t) => {
    const layout = (preset: 'small' | 'paper', classes: number, batch: number, mode: ParallelMode = 'data') => {
      const spec = buildSpec(preset);
      const wire = wireBytesPerStep({
        spec,
        numClasses: classes,
        mode,
        dtype: 'fp32',
        worldSize: 2,
        batchPerWorker: batch / 2,
      });
      return chooseCpuLayout({
        cores: 2,
        globalBatch: batch,
        wireBytes: wire.total,
        forwardFlopsPerImage: forwardFlopsPerImage(spec, classes),
      });
    };
    t.equal(layout('small', 10, 64).workers, 1);
    t.equal(layout('paper', 1000, 64).workers, 1);
    t.equal(layout('paper', 1000, 128).workers, 2);
    // Hybrid mode sends 14 MB instead of 244: workers win for the paper preset already at 32 per core.
    t.equal(layout('paper', 1000, 64, 'hybrid').workers, 2);
  },
);
