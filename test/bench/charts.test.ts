// The benchmark charts: one panel per preset / world size, each series drawn.
import t from 'tap';
import { busbwChartSvg, sizeAxisValue, throughputChartSvg } from '../../bench/charts';
import type { Row } from '../../bench/allreduce';
import type { TrainRow } from '../../bench/train-stats';

function trainRow(preset: string, workers: number, ours: number, torch: number | string): TrainRow {
  const breakdown = {
    stepMs: 1,
    partsMs: { dataWaitMs: 0, computeMs: 1, copyMs: 0, reduceMs: 0, updateMs: 0 },
    otherMs: 0,
    reduceLastInMs: 0,
  };
  return {
    preset,
    workers,
    batchPerWorker: 32,
    params: 10,
    plan: { warmupSteps: 1, stepsPerRep: 1, reps: 1 },
    loadAverage: [0, 0],
    ours: {
      repImagesPerSec: [ours],
      imagesPerSec: ours,
      breakdown,
      samples: [],
      backend: 'wasm',
      maxRssMb: 1,
      command: '',
    },
    torch:
      typeof torch === 'string'
        ? torch
        : { repImagesPerSec: [torch], imagesPerSec: torch, params: 10, torch: '1.13', blas: [] },
  };
}

t.test('throughput chart: a panel per preset with ours, PyTorch and the ideal line', async (t) => {
  const svg = throughputChartSvg(
    [
      trainRow('small', 1, 50, 100),
      trainRow('small', 2, 80, 150),
      trainRow('paper', 1, 2, 'not run'),
      trainRow('paper', 2, 3, 'not run'),
    ],
    'title',
  );
  t.match(svg, /^<svg [^>]*width="840"/);
  t.match(svg, />small, batch 32\/worker</);
  t.match(svg, />paper, batch 32\/worker</);
  t.equal((svg.match(/<polyline/g) ?? []).length, 5, 'small: 3 lines; paper: ours and ideal (PyTorch not run)');
});

t.test('bus bandwidth chart: log2 KiB on x, a panel per world size', async (t) => {
  t.equal(sizeAxisValue(1024), 0);
  t.equal(sizeAxisValue(1 << 20), 10);
  const row = (transport: Row['transport'], ranks: number, bytes: number, busbwGBps: number): Row => ({
    transport,
    ranks,
    bytes,
    timeMs: 1,
    algbwGBps: busbwGBps,
    busbwGBps,
    cpuMsPerRank: 1,
    repMs: [1],
  });
  const svg = busbwChartSvg(
    [
      row('ipc', 2, 1024, 0.1),
      row('ipc', 2, 1 << 20, 1.5),
      row('gloo-tcp', 2, 1024, 0.05),
      row('gloo-tcp', 2, 1 << 20, 1.2),
      row('ipc', 3, 1024, 0.1),
      row('ipc', 3, 1 << 20, 1),
    ],
    't',
  );
  t.match(svg, />2 ranks</);
  t.match(svg, />3 ranks</);
  t.match(svg, />gloo \(tcp\)</);
  t.equal((svg.match(/<polyline/g) ?? []).length, 3);
});
