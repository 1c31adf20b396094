/**
 * Data pipeline throughput: BatchLoader (sharp decode + resize 256 + random 224 crop + flip +
 * PCA lighting + mean/std, into Float32Array batches of 64) on 500x375 JPEGs, pinned to 1 and
 * to 2 cores with taskset, plus the same on `data prepare`d 256x256 JPEGs. The reference is
 * PIL/torchvision in one process on one core (bench/data_torchvision.py), run side by side when
 * Debian's python3-torchvision is installed.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/data.js [--images 256] [--epochs 3] [--rounds 3] [--out data-bench.json] [--no-torch]
 *
 * Each measurement is a fresh process; its first epoch is a warm-up (page cache, JIT, libvips
 * caches), the median of the remaining epochs is taken, and the best of --rounds interleaved
 * rounds is reported. UV_THREADPOOL_SIZE is set per run
 * (2 threads per core), since libuv's pool bounds how many sharp jobs run at once.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { decodeFile } from '../src/data/decode';
import { BatchLoader } from '../src/data/loader';
import { DatasetStats } from '../src/data/stats';
import { formatTable } from '../src/core/text-format';
import { benchScript, flagValue, median, runPythonJson, writeNoisyJpegs } from './harness';

/** PIL/torchvision img/s on one process of this machine, measured once (docs/benchmarks.md, "Data pipeline"): used when torchvision cannot run. */
const TORCHVISION_REFERENCE = 560;
/** ImageNet's published RGB statistics ([0, 1] units), so the lighting/normalisation path runs. */
const IMAGENET_STATS: DatasetStats = {
  meanRgb: [0.485, 0.456, 0.406],
  stdRgb: [0.229, 0.224, 0.225],
  eigenvalues: [0.2175, 0.0188, 0.0045],
  eigenvectors: [
    [-0.5675, 0.7192, 0.4009],
    [-0.5808, -0.0045, -0.814],
    [-0.5836, -0.6948, 0.4203],
  ],
  imageCount: 1,
};

export interface Row {
  pipeline: string;
  cores: number;
  imagesPerSec: number;
  perCore: number;
  cpuMsPerImage: number | null;
}

function flag(argv: string[], name: string, fallback: string): string {
  return flagValue(argv, name) ?? fallback;
}

/** The same images as `data prepare --size 256` stores them. */
async function ensurePrepared(src: string, dst: string): Promise<void> {
  mkdirSync(dst, { recursive: true });
  for (const name of readdirSync(src).filter((f) => f.endsWith('.jpg'))) {
    const out = path.join(dst, name);
    if (existsSync(out)) continue;
    const r = await decodeFile(path.join(src, name), { sizePx: 256 });
    if (!r.ok) throw new Error(`${name}: ${r.reason}`);
    await sharp(r.pixels, { raw: { width: 256, height: 256, channels: 3 } })
      .jpeg({ quality: 90 })
      .toFile(out);
  }
}

/** Worker mode: run the loader over `dir` for `epochs` epochs; print the median img/s of epochs 2.. as JSON. */
async function worker(dir: string, epochs: number, concurrency: number): Promise<void> {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.jpg'))
    .sort();
  const samples = files.map((f, i) => ({ path: path.join(dir, f), label: i % 10 }));
  const loader = new BatchLoader({
    samples,
    resizeSize: 256,
    cropSize: 224,
    globalBatchSize: 64,
    rank: 0,
    worldSize: 1,
    seed: 1,
    mode: 'train',
    stats: IMAGENET_STATS,
    decodeConcurrency: concurrency,
    prefetchBatches: 2,
  });
  const rates: number[] = [];
  const cpuMs: number[] = [];
  for (let epoch = 0; epoch < epochs; epoch++) {
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    let images = 0;
    for await (const batch of loader.epoch(epoch)) images += batch.count;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(c0);
    if (epoch > 0) {
      rates.push(images / seconds);
      cpuMs.push((cpu.user + cpu.system) / 1000 / images);
    }
  }
  process.stdout.write(JSON.stringify({ imagesPerSec: median(rates), cpuMsPerImage: median(cpuMs) }));
}

/** Run this script in worker mode pinned to the first `cores` CPUs. */
function measure(dir: string, cores: number, epochs: number): { imagesPerSec: number; cpuMsPerImage: number } {
  const threads = 2 * cores;
  const self = __filename.endsWith('.ts')
    ? [require.resolve('ts-node/dist/bin.js'), '--transpile-only', __filename]
    : [__filename];
  const cpus = Array.from({ length: cores }, (_, i) => i).join(',');
  const r = spawnSync(
    'taskset',
    [
      '-c',
      cpus,
      process.execPath,
      ...self,
      '--worker',
      dir,
      '--epochs',
      String(epochs),
      '--concurrency',
      String(threads),
    ],
    {
      encoding: 'utf8',
      env: { ...process.env, UV_THREADPOOL_SIZE: String(threads) },
    },
  );
  if (r.status !== 0) throw new Error(`worker failed: ${r.error?.message ?? r.stderr}`);
  return JSON.parse(r.stdout) as { imagesPerSec: number; cpuMsPerImage: number };
}

function torchvision(dir: string, epochs: number): number | string {
  const r = runPythonJson<{ imagesPerSec: number }>(
    [benchScript('data_torchvision.py'), dir, '--epochs', String(epochs)],
    ['taskset', '-c', '0'],
  );
  return typeof r === 'string' ? `not run: ${r}` : r.imagesPerSec;
}

async function main(argv: string[]): Promise<void> {
  const epochs = Number(flag(argv, '--epochs', '3'));
  if (argv.includes('--worker')) {
    await worker(flag(argv, '--worker', ''), epochs, Number(flag(argv, '--concurrency', '4')));
    return;
  }
  const count = Number(flag(argv, '--images', '256'));
  const base = path.join(os.tmpdir(), `alexnet-bench-data-${count}`);
  const photos = path.join(base, '500x375');
  const prepared = path.join(base, 'prepared-256');
  await writeNoisyJpegs(
    Array.from({ length: count }, (_, i) => path.join(photos, `${String(i).padStart(4, '0')}.jpg`)),
    500,
    375,
  );
  await ensurePrepared(photos, prepared);
  // Rounds interleave the pipelines and the best round counts: on a shared machine, other
  // processes only ever make a run slower, so the fastest round is the least disturbed one.
  const rounds = Number(flag(argv, '--rounds', '3'));
  const best = new Map<string, Row>();
  const keep = (row: Row): void => {
    const key = `${row.pipeline}/${row.cores}`;
    if ((best.get(key)?.imagesPerSec ?? 0) < row.imagesPerSec) best.set(key, row);
  };
  let torch: number | string = argv.includes('--no-torch') ? 'skipped (--no-torch)' : 'not run';
  for (let round = 0; round < rounds; round++) {
    if (!argv.includes('--no-torch')) {
      const r = torchvision(photos, epochs);
      if (typeof r === 'number')
        keep({ pipeline: 'PIL/torchvision, 500x375 JPEG', cores: 1, imagesPerSec: r, perCore: r, cpuMsPerImage: null });
      torch = typeof r === 'number' ? Math.max(r, typeof torch === 'number' ? torch : 0) : r;
    }
    for (const [name, dir] of [
      ['sharp BatchLoader, 500x375 JPEG', photos],
      ['sharp BatchLoader, prepared 256 JPEG', prepared],
    ] as const) {
      for (const cores of [1, 2]) {
        const m = measure(dir, cores, epochs);
        keep({
          pipeline: name,
          cores,
          imagesPerSec: m.imagesPerSec,
          perCore: m.imagesPerSec / cores,
          cpuMsPerImage: m.cpuMsPerImage,
        });
      }
    }
  }
  const result: DataBenchJson = {
    images: count,
    epochs,
    rounds,
    loadAverage: os.loadavg(),
    torchvision: torch,
    rows: [...best.values()],
  };
  console.log(dataMarkdown(result));
  const out = flag(argv, '--out', '');
  if (out) {
    writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
    console.log(`wrote ${out}`);
  }
}

export interface DataBenchJson {
  images: number;
  epochs: number;
  rounds: number;
  loadAverage: number[];
  /** PIL/torchvision img/s, or why it did not run. */
  torchvision: number | string;
  rows: Row[];
}

/** The context line, the table, and a note when the reference did not run. */
export function dataMarkdown(r: DataBenchJson): string {
  const ref = typeof r.torchvision === 'number' ? r.torchvision : TORCHVISION_REFERENCE;
  const table = formatTable(
    ['pipeline', 'cores', 'img/s', 'img/s per core', 'CPU ms/img', `per core vs torchvision ${ref.toFixed(0)}`],
    r.rows.map((x) => [
      x.pipeline,
      x.cores,
      x.imagesPerSec.toFixed(0),
      x.perCore.toFixed(0),
      x.cpuMsPerImage?.toFixed(2) ?? '-',
      `${(x.perCore / ref).toFixed(2)}x`,
    ]),
    ['left', 'right', 'right', 'right', 'right', 'right'],
  );
  return [
    `${r.images} images, 256 -> random 224 crop + flip + PCA lighting + normalise, batch 64, median of ${r.epochs - 1} epoch(s) after a warm-up, best of ${r.rounds} rounds; load average ${r.loadAverage[0].toFixed(2)}`,
    '',
    table,
    ...(typeof r.torchvision === 'number'
      ? []
      : [`torchvision: ${r.torchvision}; compared with the ${TORCHVISION_REFERENCE} img/s measured earlier instead`]),
  ].join('\n');
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
