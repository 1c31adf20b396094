// The training benchmark's arithmetic and tables, on hand-made step reports.
import t from 'tap';
import { stepReportMessage } from '../../src/dist/control/messages';
import type { StepReport } from '../../src/train/trainer';
import {
  breakdownTable,
  fusionBytes,
  mergeTrainResults,
  repImagesPerSec,
  sampleOf,
  scalingEfficiency,
  stepBreakdown,
  throughputOf,
  throughputTable,
  trainMarkdown,
  peakRssPerWorkerMb,
  type StepSample,
  type TrainRow,
} from '../../bench/train-stats';

const parts = (computeMs: number, reduceMs = 0) => ({ dataWaitMs: 1, computeMs, copyMs: 2, reduceMs, updateMs: 3 });
const sample = (
  rank: number,
  step: number,
  atMs: number,
  images = 64,
  computeMs = 100,
  reduceMs = 0,
  peakRssMb = 500,
): StepSample => ({ rank, step, atMs, images, partsMs: parts(computeMs, reduceMs), peakRssMb });

t.test('a step report survives the trip through the StepReport message', async (t) => {
  const report: StepReport = {
    epoch: 0,
    step: 7,
    stepsInEpoch: 10,
    sums: { count: 64, lossSum: 128, top1Correct: 6, top5Correct: 30 },
    timings: { dataWaitMs: 5, computeMs: 40, copyMs: 3, reduceMs: 20, updateMs: 2 },
    wireBytes: 1234,
  };
  const m = stepReportMessage(1, report);
  t.equal(m.stepMs, 65, 'stepMs: compute + copy + reduce + update');
  t.ok(m.peakRssMb > 10, `the reporting process's peak RSS rides along: ${m.peakRssMb.toFixed(0)} MB`);
  t.same(sampleOf(m, 1234), {
    rank: 1,
    step: 7,
    atMs: 1234,
    images: 64,
    partsMs: report.timings,
    peakRssMb: m.peakRssMb,
    wireBytes: 1234,
  });
});

t.test('peak RSS per worker: the largest any rank reported', async (t) => {
  t.equal(
    peakRssPerWorkerMb([
      sample(0, 1, 0, 64, 100, 0, 900),
      sample(1, 1, 0, 64, 100, 0, 1200),
      sample(0, 2, 0, 64, 100, 0, 950),
    ]),
    1200,
  );
  t.equal(peakRssPerWorkerMb([]), 0);
});

t.test('repetitions run from the end of one step to the end of another', async (t) => {
  // warm-up 1, 2 repetitions of 2 steps: steps 2-3 (1000 -> 3000 ms), steps 4-5 (3000 -> 4000 ms)
  const samples = [
    sample(0, 1, 1000),
    sample(0, 2, 2500),
    sample(0, 3, 3000),
    sample(0, 4, 3500),
    sample(0, 5, 4000),
    sample(1, 5, 9999),
  ];
  t.same(repImagesPerSec(samples, { warmupSteps: 1, stepsPerRep: 2, reps: 2 }), [64, 128]);
  t.throws(() => repImagesPerSec(samples, { warmupSteps: 1, stepsPerRep: 2, reps: 3 }), /no step 6/);
  t.throws(() => repImagesPerSec(samples, { warmupSteps: 0, stepsPerRep: 1, reps: 1 }), /warmupSteps/);
  t.same(throughputOf([3, 1, 2]), { repImagesPerSec: [3, 1, 2], imagesPerSec: 2 });
});

t.test('the breakdown averages measured steps over ranks, and its parts add up to the step', async (t) => {
  const samples = [
    sample(0, 1, 0),
    sample(0, 2, 200, 64, 100, 40),
    sample(0, 3, 400, 64, 120, 20),
    sample(1, 1, 0),
    sample(1, 2, 220, 64, 140, 10),
    sample(1, 3, 400, 64, 100, 30),
  ];
  const b = stepBreakdown(samples, { warmupSteps: 1, stepsPerRep: 1, reps: 2 });
  t.equal(b.stepMs, 200);
  t.same(b.partsMs, { dataWaitMs: 1, computeMs: 115, copyMs: 2, reduceMs: 25, updateMs: 3 });
  t.equal(b.otherMs, 200 - (1 + 115 + 2 + 25 + 3));
  t.equal(b.reduceLastInMs, 15, 'per step, the rank that arrived last: min(40, 10), min(20, 30)');
});

t.test('scaling efficiency is n-worker img/s over n times 1-worker img/s', async (t) => {
  t.equal(scalingEfficiency(100, 150, 2), 0.75);
  t.equal(scalingEfficiency(100, 200, 2), 1);
  t.equal(scalingEfficiency(10, 10, 1), 1);
});

function row(workers: number, ours: number, torch: number | string, reduceMs = 0): TrainRow {
  const breakdown = {
    stepMs: 1000,
    partsMs: { dataWaitMs: 0, computeMs: 900, copyMs: 10, reduceMs, updateMs: 10 },
    otherMs: 80 - reduceMs,
    reduceLastInMs: reduceMs / 2,
  };
  return {
    preset: 'small',
    workers,
    batchPerWorker: 32,
    params: 249_995, // fusion buffer of exactly 1,000,000 bytes
    plan: { warmupSteps: 1, stepsPerRep: 1, reps: 3 },
    loadAverage: [1, 2],
    ours: {
      ...throughputOf([ours, ours - 1, ours + 1]),
      breakdown,
      samples: [],
      backend: 'wasm',
      maxRssMb: 100,
      workerPeakRssMb: 3072,
      command: 'alexnet train ...',
    },
    torch: typeof torch === 'string' ? torch : { ...throughputOf([torch]), params: 249_995, torch: '1.13', blas: [] },
  };
}

t.test('the throughput table: ratio to PyTorch, scaling against the 1-worker row', async (t) => {
  const lines = throughputTable([row(1, 50, 100), row(2, 80, 150)]).split('\n');
  t.equal(lines.length, 4);
  t.match(
    lines[2],
    /\| small +\| wasm +\| +1 \| +32 \| +50\.00 \(49\.00-51\.00\) \| +100\.0 \(100\.0-100\.0\) \| +0\.50x \| +- \| +- \| +3\.00 GiB \| +1\.0-2\.0 \|/,
  );
  t.match(lines[3], /\| +0\.53x \| +0\.80 \| +0\.75 \|/);
  const noTorch = throughputTable([row(1, 50, 'not run: no torch'), row(2, 80, 'not run: no torch')]).split('\n');
  t.match(noTorch[3], /\| +not run \| +- \| +0\.80 \| +- \|/);
});

t.test(
  'two passes merge: each backend scales against its own 1-worker row; a pass without PyTorch borrows its figure',
  async (t) => {
    const json = (rows: ReturnType<typeof row>[], command: string) => ({
      date: '2030-01-01',
      machine: '2 x cpu',
      command,
      classes: 10,
      torchNote: null,
      rows,
    });
    const native = json(
      [
        { ...row(1, 100, 50), backend: 'native' },
        { ...row(2, 180, 90), backend: 'native' },
      ],
      'a',
    );
    const wasm = json([row(1, 20, 'not run: skipped'), row(2, 30, 'not run: skipped')], 'b');
    const merged = mergeTrainResults([native, wasm]);
    t.equal(merged.command, 'a`, then `b');
    const lines = throughputTable(merged.rows).split('\n');
    t.match(lines[3], /\| small +\| native +\| +2 \|.*\| +2\.00x \| +0\.90 \|/, 'native: 180 / (2 x 100)');
    t.match(
      lines[5],
      /\| small +\| wasm +\| +2 \|.*\| +90\.00 \(90\.00-90\.00\) \| +0\.33x \| +0\.75 \|/,
      'wasm: 30 / (2 x 20), against the borrowed 90 img/s',
    );
  },
);

t.test('the breakdown table: the wait for a slower rank, and bus bandwidth from the last rank in', async (t) => {
  t.equal(fusionBytes(249_995), 1_000_000);
  const lines = breakdownTable([row(1, 50, 100), row(2, 80, 150, 1)]).split('\n');
  t.match(lines[2], /\| +0\.0 \| +- \| +10\.0 \| +80\.0 \| +- \|$/, 'one worker: no all-reduce');
  // all-reduce 1 ms on average, 0.5 ms for the last rank in: 1 MB in 0.5 ms between 2 ranks
  // is busbw = 2e9 B/s * 2(2-1)/2
  t.match(lines[3], /\| +1000\.0 \| +0\.0 \| +900\.0 \| +10\.0 \| +1\.0 \| +0\.5 \| +10\.0 \| +79\.0 \| +2\.00 \|$/);
});

t.test('the markdown report holds the command, both tables and what the reference used', async (t) => {
  const md = trainMarkdown(
    {
      date: '2030-01-01',
      machine: '2 x cpu',
      command: 'node dist/bench/train.js --quick',
      classes: 10,
      torchNote: null,
      rows: [row(1, 50, 100), row(2, 80, 150)],
    },
    '###',
  );
  t.match(md, /^### training throughput \(2 x cpu; 2030-01-01\)/);
  t.match(md, /`node dist\/bench\/train\.js --quick`/);
  t.match(md, /PyTorch 1\.13, 1 thread per process/);
  t.match(md, /load average 1\.00-2\.00/);
  t.equal(md.split('\n').filter((l: string) => l.startsWith('| small')).length, 4);
});
