// The per-kernel benchmark's arithmetic on hand-made profiler records: FLOPs from shapes, and
// which layer and pass each kernel call is.
import t from 'tap';
import {
  convFlops,
  fcLayersVersusAlone,
  kernelRows,
  matMulFlops,
  mergeRows,
  stepVersusAlone,
  type KernelCall,
} from '../../bench/kernels';
import { fcLayersOf, mergeProbeResults, probeLines, type ProbeResult } from '../../bench/onednn-probe';
import { layerShapes } from '../../src/model/alexnet';
import { buildSpec } from '../../src/model/presets';

const call = (name: string, inputShapes: number[][], outputShapes: number[][], ms = 1): KernelCall => ({
  name,
  inputShapes,
  outputShapes,
  ms,
});

t.test('FLOPs from shapes', async (t) => {
  t.equal(
    matMulFlops(
      call(
        'BatchMatMul',
        [
          [32, 9216],
          [9216, 4096],
        ],
        [[32, 4096]],
      ),
    ),
    2 * 32 * 9216 * 4096,
  );
  t.equal(
    matMulFlops(
      call(
        'BatchMatMul',
        [
          [1, 32, 4096],
          [1, 32, 10],
        ],
        [[1, 4096, 10]],
      ),
    ),
    2 * 32 * 4096 * 10,
    'batch dims of 1 change nothing',
  );
  // conv2 of the paper: 27x27x256 outputs, 5x5 kernels over 48 channels (2 groups of 96).
  t.equal(convFlops([32, 27, 27, 256], [5, 5, 48, 256]), 2 * 32 * 27 * 27 * 256 * 5 * 5 * 48);
});

t.test("a step's calls are named by layer and pass", async (t) => {
  const fcs = fcLayersOf(layerShapes(buildSpec('paper'), 1000));
  t.same(
    fcs.map((f) => `${f.name} ${f.weight.join('x')}`),
    ['fc6 9216x4096', 'fc7 4096x4096', 'fc8 4096x1000'],
  );
  const calls = [
    call('AlexnetConvLayer', [[32, 227, 227, 3], [11, 11, 3, 96], [96]], [[32, 55, 55, 96]]),
    call('AlexnetConvLayer', [[32, 27, 27, 96], [5, 5, 48, 256], [256]], [[32, 27, 27, 256]]),
    call(
      'BatchMatMul',
      [
        [32, 4096],
        [4096, 4096],
      ],
      [[32, 4096]],
    ),
    call(
      'BatchMatMul',
      [
        [32, 4096],
        [4096, 4096],
      ],
      [[32, 4096]],
    ),
    call(
      'BatchMatMul',
      [
        [32, 4096],
        [32, 4096],
      ],
      [[4096, 4096]],
    ),
    call(
      'AlexnetConvLayerGrad',
      [
        [32, 27, 27, 96],
        [5, 5, 48, 256],
        [32, 27, 27, 256],
        [32, 27, 27, 256],
      ],
      [[32, 27, 27, 96], [5, 5, 48, 256], [256]],
    ),
    call(
      'AlexnetConvLayerGrad',
      [
        [32, 227, 227, 3],
        [11, 11, 3, 96],
        [32, 55, 55, 96],
        [32, 55, 55, 96],
      ],
      [[0], [11, 11, 3, 96], [96]],
    ),
    call('forward', [[32, 227, 227, 3]], [[32, 55, 55, 96]], 30),
    call('fusedMatMul__op', [[32, 4096]], [[32, 10]], 5),
    call('Add', [[5]], [[5]], 0.25),
    call('Add', [[5]], [[5]], 0.5),
    call('AlexnetLrnMaxPool', [[32, 55, 55, 96]], [[32, 27, 27, 96]]),
  ];
  const rows = mergeRows(kernelRows(calls, 2, fcs));
  t.same(
    rows.map((r) => r.label),
    [
      'conv1 fwd',
      'conv2 fwd',
      'fc7 fwd',
      'fc7 dx',
      'fc7 dW',
      'conv2 bwd (data + weights)',
      'conv1 bwd (weights)',
      'Add',
      'LRN + MaxPool',
    ],
    'scopes around kernels (forward, __op) are not counted again',
  );
  const conv2 = convFlops([32, 27, 27, 256], [5, 5, 48, 256]) / 1e9;
  t.equal(rows[5].gflop, 2 * conv2, 'backward data and weights: twice the forward');
  t.equal(rows[6].gflop, convFlops([32, 55, 55, 96], [11, 11, 3, 96]) / 1e9, 'conv1: weights only');
  t.equal(rows[7].ms, 0.75, 'same-label calls summed');
});

t.test("the probe's layer lines carry the addon's conv parameters and the FC shapes", async (t) => {
  const lines = probeLines(buildSpec('paper'), 1000, 32).map((l) => l.split('\t'));
  t.same(lines[0], ['conv', 'conv1 fwd', 'conv1 bwd (weights)', '32 227 227 3 55 55 96 11 11 4 4 0 0 0 0 1 1 0']);
  t.same(lines[1].slice(1, 3), ['conv2 fwd', 'conv2 bwd (data + weights)']);
  t.match(lines[1][3], /^32 27 27 96 27 27 256 5 5 1 1 2 2 2 2 2 1 1$/, 'conv2: grouped, padded 2, input gradient');
  t.same(lines.slice(5), [
    ['fc', 'fc6 fwd', 'fc6 dx', 'fc6 dW', '32 9216 4096 1'],
    ['fc', 'fc7 fwd', 'fc7 dx', 'fc7 dW', '32 4096 4096 1'],
    ['fc', 'fc8 fwd', 'fc8 dx', 'fc8 dW', '32 4096 1000 0'],
  ]);
});

t.test('the whole step against oneDNN alone counts only the rows with a figure', async (t) => {
  const rows = [
    { label: 'conv1 fwd', ms: 20, gflop: 2 },
    { label: 'fc6 fwd', ms: 10, gflop: 1 },
    { label: 'LRN', ms: 5, gflop: 0 },
  ];
  const alone = new Map([
    ['conv1 fwd', { gflops: 200, how: 'any', oursGflops: 100 }],
    ['fc6 fwd', { gflops: 200, how: 'sgemm', oursGflops: 200 }],
  ]);
  t.same(stepVersusAlone(rows, alone), { oursMs: 30, aloneMs: 15, aloneOursMs: 25 });
  const constants = new Map([['conv1 fwd', { gflops: 100, how: 'constant', oursGflops: null }]]);
  t.same(stepVersusAlone(rows, constants), { oursMs: 20, aloneMs: 20, aloneOursMs: null });
});

t.test('probe runs merge to the fastest figures of any run', async (t) => {
  const run = (bestMs: number, oursMs: number, wayMs: number): ProbeResult => ({
    oneDNN: '2.6.3',
    isa: 'avx2',
    threads: 1,
    reps: 1,
    rows: {
      'fc6 fwd': {
        gflop: 2,
        best: { how: 'sgemm', ms: bestMs, gflops: 2000 / bestMs },
        ours: { how: 'matmul', ms: oursMs, gflops: 2000 / oursMs },
        ways: { sgemm: bestMs, matmul: oursMs, other: wayMs },
      },
    },
  });
  const merged = mergeProbeResults([run(10, 20, 30), run(8, 25, 28), run(12, 18, 40)]);
  t.equal(merged.reps, 3);
  t.equal(merged.rows['fc6 fwd'].best.ms, 8);
  t.equal(merged.rows['fc6 fwd'].ours.ms, 18);
  t.same(merged.rows['fc6 fwd'].ways, { sgemm: 8, matmul: 18, other: 28 });
});

t.test('an FC layer as a whole: its three products against the faster single weight layout', async (t) => {
  // fc6: plain ways 40 + 30 + 20 = 90 ms, blocked 30 + 45 + 35 = 110 ms; fc7 has no dW row.
  const probeRow = (plainMs: number, blockedMs: number) => ({
    gflop: 1,
    best: { how: 'inner_product(any)', ms: Math.min(plainMs, blockedMs), gflops: 1 },
    ours: { how: 'sgemm', ms: plainMs, gflops: 1 },
    ways: { 'inner_product(any)': blockedMs, sgemm: plainMs },
  });
  const probe: ProbeResult = {
    oneDNN: '2.6.3',
    isa: 'avx512_core',
    threads: 1,
    reps: 1,
    rows: {
      'fc6 fwd': probeRow(40, 30),
      'fc6 dx': probeRow(30, 45),
      'fc6 dW': probeRow(20, 35),
      'fc7 fwd': probeRow(10, 8),
      'fc7 dx': probeRow(10, 8),
    },
  };
  const rows = [
    { label: 'fc6 fwd', ms: 50, gflop: 1 },
    { label: 'fc6 dx', ms: 35, gflop: 1 },
    { label: 'fc6 dW', ms: 15, gflop: 1 },
    { label: 'fc7 fwd', ms: 12, gflop: 1 },
    { label: 'fc7 dx', ms: 12, gflop: 1 },
    { label: 'fc7 dW', ms: 12, gflop: 1 },
  ];
  const fcs = [
    { name: 'fc6', weight: [9216, 4096] as [number, number] },
    { name: 'fc7', weight: [4096, 4096] as [number, number] },
  ];
  t.same(fcLayersVersusAlone(rows, probe, fcs), [{ name: 'fc6', oursMs: 100, plainMs: 90, blockedMs: 110 }]);
});
