// The memory estimate and the micro-batch it picks: pure functions, no tensors allocated.
import t from 'tap';
import { TRAIN_DEFAULTS } from '../../src/core/config';
import { ConfigError } from '../../src/core/errors';
import { buildSpec } from '../../src/model/presets';
import {
  activationElements,
  chooseMicroBatch,
  GIB,
  memoryBudget,
  microBatchSizes,
  stepMemory,
  WASM_HEAP_BYTES,
  type StepMemory,
} from '../../src/train/memory';

const paper = buildSpec('paper', TRAIN_DEFAULTS.model);
const small = buildSpec('small', TRAIN_DEFAULTS.model);
const machine = (totalGiB: number, freeGiB: number, localWorkers = 1) => ({
  totalBytes: totalGiB * GIB,
  freeBytes: freeGiB * GIB,
  localWorkers,
});

t.test('activation elements: the input plus every layer output, by hand for the paper net', async (t) => {
  // 227x227x3 input; conv1 55x55x96 (+ LRN), pool 27x27x96; conv2 27x27x256 (+ LRN), pool 13x13x256;
  // conv3, conv4 13x13x384; conv5 13x13x256, pool 6x6x256; fc6, fc7 4096; fc8 1000.
  const byHand =
    227 * 227 * 3 +
    2 * 55 * 55 * 96 +
    27 * 27 * 96 +
    2 * 27 * 27 * 256 +
    13 * 13 * 256 +
    2 * 13 * 13 * 384 +
    13 * 13 * 256 +
    6 * 6 * 256 +
    4096 * 2 +
    1000;
  t.equal(activationElements(paper, 1000), byHand);
  t.ok(activationElements(small, 10) < activationElements(paper, 10) / 10);
});

t.test('fixed bytes grow with the optimizer state; bytes per image with the backend factor', async (t) => {
  const sgd = stepMemory(paper, 1000, 'native', 1);
  const adam = stepMemory(paper, 1000, 'native', 2);
  t.ok(adam.fixedBytes > sgd.fixedBytes);
  t.ok(sgd.fixedBytes > 6 * 4 * 60e6 && sgd.fixedBytes < 6 * 4 * 63e6, '~61M parameters, 6 copies');
  t.ok(
    stepMemory(paper, 1000, 'wasm', 1).fixedBytes > sgd.fixedBytes,
    'the wasm heap holds more parameter copies than native',
  );
});

t.test('the budget: the wasm heap caps wasm, the machine share caps the others', async (t) => {
  t.equal(memoryBudget('wasm', machine(64, 60)).bytes, WASM_HEAP_BYTES);
  t.match(memoryBudget('wasm', machine(64, 60)).source, /4 GiB wasm heap/);
  t.equal(memoryBudget('wasm', machine(4, 2)).bytes, 2 * GIB, 'a small machine caps wasm below its heap');
  t.equal(memoryBudget('native', machine(64, 60)).bytes, 60 * GIB);
  t.equal(memoryBudget('native', machine(64, 60, 4)).bytes, 15 * GIB, 'split over the local workers');
  t.equal(memoryBudget('cpu', machine(8, 60)).bytes, 8 * GIB, 'never more than the total');
  t.equal(memoryBudget('node-gpu', machine(64, 60)).bytes, Infinity);
  const gpu = chooseMicroBatch(
    128,
    0,
    stepMemory(paper, 1000, 'node-gpu', 1),
    memoryBudget('node-gpu', machine(64, 60)),
  );
  t.equal(gpu.size, 128);
  t.match(
    gpu.reason,
    /^micro-batch 128: the worker's whole share \(~[\d.]+ GiB for 128 images, GPU memory is not estimated\)$/,
  );
});

t.test('the paper recipe on wasm is cut into micro-batches; on a big native machine it fits whole', async (t) => {
  const wasm = chooseMicroBatch(128, 0, stepMemory(paper, 1000, 'wasm', 1), memoryBudget('wasm', machine(23, 20)));
  // Measured: the heap reached 3433 MiB of 4096 at batch 64; 128 crashed. At most 43 plans for 80%.
  t.equal(wasm.size, 43, 'three even micro-batches, 43 + 43 + 42');
  t.match(wasm.reason, /micro-batch \d+ of 128 images per worker: the whole share does not fit .*4 GiB wasm heap/);
  const native = chooseMicroBatch(
    128,
    0,
    stepMemory(paper, 1000, 'native', 1),
    memoryBudget('native', machine(23, 20)),
  );
  t.equal(native.size, 128);
  t.match(native.reason, /micro-batch 128: the worker's whole share/);
  const twoWorkers = chooseMicroBatch(
    64,
    0,
    stepMemory(paper, 1000, 'native', 1),
    memoryBudget('native', machine(6, 5, 2)),
  );
  t.ok(twoWorkers.size < 64 && twoWorkers.size >= 8, `2 native workers on a 6 GiB machine: ${twoWorkers.size} of 64`);
  t.equal(
    chooseMicroBatch(
      10,
      0,
      { activationElements: 1, bytesPerImage: 1, fixedBytes: 0 },
      { bytes: 7 / 0.8, source: 'test' },
    ).size,
    5,
    '10 by at most 7: 5 + 5',
  );
});

t.test('--micro-batch forces a size (capped at the share); the small preset fits whole', async (t) => {
  const memory = stepMemory(paper, 1000, 'wasm', 1);
  const budget = memoryBudget('wasm', machine(23, 20));
  t.equal(chooseMicroBatch(128, 16, memory, budget).size, 16);
  t.match(chooseMicroBatch(128, 16, memory, budget).reason, /--micro-batch 16/);
  t.equal(chooseMicroBatch(6, 16, memory, budget).size, 6);
  t.equal(chooseMicroBatch(128, 0, stepMemory(small, 10, 'wasm', 1), budget).size, 128);
  t.equal(
    chooseMicroBatch(0, 0, stepMemory(small, 10, 'wasm', 1), budget).size,
    1,
    'an empty share still gets a valid size',
  );
});

t.test('one image that does not fit is a ConfigError that says so', async (t) => {
  const huge: StepMemory = { activationElements: 1, bytesPerImage: 2 * GIB, fixedBytes: 2 * GIB };
  t.throws(() => chooseMicroBatch(128, 0, huge, memoryBudget('wasm', machine(64, 60))), ConfigError);
  t.throws(
    () => chooseMicroBatch(128, 0, huge, memoryBudget('wasm', machine(64, 60))),
    /one image does not fit this backend's memory: a step needs ~4.0 GiB at 1 image .* 4 GiB wasm heap/,
  );
  const justFits: StepMemory = { activationElements: 1, bytesPerImage: GIB, fixedBytes: GIB };
  t.equal(chooseMicroBatch(128, 0, justFits, memoryBudget('native', machine(64, 2.6))).size, 1);
});

t.test('micro-batch sizes cover the share in order', async (t) => {
  t.same(microBatchSizes(10, 4), [4, 4, 2]);
  t.same(microBatchSizes(6, 2), [2, 2, 2]);
  t.same(microBatchSizes(3, 8), [3]);
  t.same(microBatchSizes(0, 8), []);
  t.throws(() => microBatchSizes(4, 0), RangeError);
});
