/**
 * Peak memory of training steps at one batch size, for the activation factors of
 * src/train/memory.ts: run it at two batch sizes and divide the difference of the peaks by the
 * difference of the sizes (one process per size: the peak is the process's high-water mark).
 *
 *   node dist/bench/memory-probe.js --backend native --batch 32
 *   node dist/bench/memory-probe.js --backend wasm --batch 64 --micro-batch 32
 *
 * Prints one JSON line: the backend, the batch, the micro-batch, the peak RSS before the first
 * step and after two (MiB), the wasm heap's size, each step's seconds, and what memory.ts
 * estimates for the batch.
 */
import * as tf from '@tensorflow/tfjs';
import yargs from 'yargs';
import { initBackend } from '../src/backend/select';
import { BACKEND_CHOICES, PRESET_NAMES, TRAIN_DEFAULTS } from '../src/core/config';
import type { Batch } from '../src/data/loader';
import { mulberry32 } from '../src/data/rng';
import { createAlexNet } from '../src/model/alexnet';
import { buildSpec } from '../src/model/presets';
import { stepMemory } from '../src/train/memory';
import { Optimizer } from '../src/train/optimizer';
import { trainStep } from '../src/train/step';

const CLASSES = 1000;

function wasmHeapBytes(): number {
  const backend = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
  return backend.wasm?.HEAPU8?.length ?? 0;
}

async function main(): Promise<void> {
  const args = yargs(process.argv.slice(2))
    .option('backend', { choices: BACKEND_CHOICES, default: 'wasm' as const })
    .option('preset', { choices: PRESET_NAMES, default: 'paper' as const })
    .option('batch', { type: 'number', default: 8 })
    .option('micro-batch', { type: 'number', default: 0 })
    .strict()
    .parseSync();
  const info = await initBackend(args.backend, false);
  const spec = buildSpec(args.preset, TRAIN_DEFAULTS.model);
  const model = createAlexNet(spec, CLASSES, 1);
  const optimizer = new Optimizer(
    { name: 'sgd', momentum: 0.9, weightDecay: 5e-4, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
    model.params,
  );
  const n = args.batch;
  const rng = mulberry32(1);
  const s = spec.inputSize;
  const batch: Batch = {
    images: Float32Array.from({ length: n * s * s * 3 }, () => rng.nextFloat() - 0.5),
    labels: Int32Array.from({ length: n }, (_, i) => i % CLASSES),
    count: n,
    skipped: 0,
    index: 0,
    globalPlanned: n,
    cropsPerImage: 1,
    sampleIndices: Int32Array.from({ length: n }, (_, i) => i),
  };
  const peakMiB = () => process.resourceUsage().maxRSS / 1024;
  const before = peakMiB();
  const stepSec: number[] = [];
  for (let step = 0; step < 2; step++) {
    const t0 = performance.now();
    await trainStep(model, optimizer, batch, {
      lr: 0.01,
      dropoutSeed: step,
      stopVote: false,
      microBatch: args['micro-batch'],
    });
    stepSec.push((performance.now() - t0) / 1000);
  }
  const estimate = stepMemory(spec, CLASSES, info.active, 1);
  console.log(
    JSON.stringify({
      backend: info.active,
      preset: args.preset,
      batch: n,
      microBatch: args['micro-batch'],
      peakBeforeMiB: Math.round(before),
      peakMiB: Math.round(peakMiB()),
      stepSec,
      // The wasm heap only grows: its size after the steps is their peak inside the 4 GiB.
      wasmHeapMiB: info.active === 'wasm' ? Math.round(wasmHeapBytes() / 2 ** 20) : null,
      estimateMiB: Math.round(
        (estimate.fixedBytes + Math.min(n, args['micro-batch'] || n) * estimate.bytesPerImage) / 2 ** 20,
      ),
    }),
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
