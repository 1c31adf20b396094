/**
 * Data pipeline throughput: BatchLoader (decode + resize + random crop + flip + PCA lighting +
 * mean/std, into Float32Array batches of 64), pinned to 1 and to 2 cores with taskset, on
 *   - 500x375 JPEGs -> 256 -> 224 crops (the paper's ImageNet pipeline; the JPEG addon, and
 *     sharp alone as where the addon is not built),
 *   - the same JPEGs `data prepare`d to 256x256,
 *   - 28x28 gray PNGs as `make data` writes them -> 32 -> 28 crops (the default run; decoded in JS).
 * The reference is PIL/torchvision with the same transforms in one process on one core
 * (bench/data_torchvision.py), run side by side when Debian's python3-torchvision is installed.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/data.js [--images 256] [--png-images 8192] [--epochs 3] [--rounds 3]
 *       [--out data-bench.json] [--no-torch]
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
import { decodeFile } from '../src/data/decode/decode';
import { BatchLoader } from '../src/data/loader';
import { encodePng } from '../src/data/decode/png';
import { IMAGENET_STATS } from '../src/data/stats';
import { formatTable } from '../src/core/text-format';
import { benchScript, flagValue, median, runPythonJson, writeNoisyJpegs } from './harness';

/** PIL/torchvision img/s on one process of this machine, measured once (docs/benchmarks.md, "Data pipeline"): used when torchvision cannot run. */
const TORCHVISION_REFERENCE = 560;
/** One input set and its transform, run by our loader and by torchvision alike. */
interface Pipeline {
  name: string;
  dir: string;
  ext: '.jpg' | '.png';
  resizeSize: number;
  cropSize: number;
  /** Decode every JPEG with sharp, as where the JPEG addon is not built (the addon's A/B). */
  sharpOnly?: boolean;
}

export interface Row {
  pipeline: string;
  /** The input whose PIL/torchvision figure this row is compared with (absent in older results). */
  reference?: string;
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

/** `count` 28x28 gray PNGs written as `make data` writes Fashion-MNIST (smooth shapes plus noise). */
function ensureSmallPngs(dir: string, count: number): void {
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < count; i++) {
    const file = path.join(dir, `${String(i).padStart(5, '0')}.png`);
    if (existsSync(file)) continue;
    const gray = new Uint8Array(28 * 28);
    for (let p = 0; p < gray.length; p++) {
      const x = p % 28;
      const y = Math.floor(p / 28);
      gray[p] = Math.max(
        0,
        Math.min(255, Math.round(120 + 100 * Math.sin((x + i) / 4) * Math.cos(y / 5)) + ((p * 7919 + i) % 23)),
      );
    }
    writeFileSync(file, encodePng(gray, 28, 28, 1));
  }
}

/** Worker mode: run the loader over `dir` for `epochs` epochs; print the median img/s of epochs 2.. as JSON. */
async function worker(p: Pipeline, epochs: number, concurrency: number): Promise<void> {
  const files = readdirSync(p.dir)
    .filter((f) => f.endsWith(p.ext))
    .sort();
  const samples = files.map((f, i) => ({ path: path.join(p.dir, f), label: i % 10 }));
  const loader = new BatchLoader({
    samples,
    resizeSize: p.resizeSize,
    cropSize: p.cropSize,
    globalBatchSize: 64,
    rank: 0,
    worldSize: 1,
    seed: 1,
    mode: 'train',
    stats: IMAGENET_STATS,
    decodeConcurrency: concurrency,
    prefetchBatches: 2,
    reuseImageBuffers: true, // as the trainer
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
function measure(p: Pipeline, cores: number, epochs: number): { imagesPerSec: number; cpuMsPerImage: number } {
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
      JSON.stringify(p),
      '--epochs',
      String(epochs),
      '--concurrency',
      String(threads),
    ],
    {
      encoding: 'utf8',
      env: {
        ...process.env,
        UV_THREADPOOL_SIZE: String(threads),
        ...(p.sharpOnly ? { ALEXNET_JPEG_ADDON: '/nonexistent/alexnet_jpeg.node' } : {}),
      },
    },
  );
  if (r.status !== 0) throw new Error(`worker failed: ${r.error?.message ?? r.stderr}`);
  return JSON.parse(r.stdout) as { imagesPerSec: number; cpuMsPerImage: number };
}

function torchvision(p: Pipeline, epochs: number): number | string {
  const r = runPythonJson<{ imagesPerSec: number }>(
    [
      benchScript('data_torchvision.py'),
      p.dir,
      '--ext',
      p.ext,
      '--resize',
      String(p.resizeSize),
      '--crop',
      String(p.cropSize),
      '--epochs',
      String(epochs),
    ],
    ['taskset', '-c', '0'],
  );
  return typeof r === 'string' ? `not run: ${r}` : r.imagesPerSec;
}

async function main(argv: string[]): Promise<void> {
  const epochs = Number(flag(argv, '--epochs', '3'));
  if (argv.includes('--worker')) {
    await worker(JSON.parse(flag(argv, '--worker', '')) as Pipeline, epochs, Number(flag(argv, '--concurrency', '4')));
    return;
  }
  const count = Number(flag(argv, '--images', '256'));
  const pngCount = Number(flag(argv, '--png-images', '8192'));
  const base = path.join(os.tmpdir(), `alexnet-bench-data-${count}`);
  const photos = path.join(base, '500x375');
  const prepared = path.join(base, 'prepared-256');
  const pngs = path.join(os.tmpdir(), `alexnet-bench-png-${pngCount}`);
  await writeNoisyJpegs(
    Array.from({ length: count }, (_, i) => path.join(photos, `${String(i).padStart(4, '0')}.jpg`)),
    500,
    375,
  );
  await ensurePrepared(photos, prepared);
  ensureSmallPngs(pngs, pngCount);
  const jpeg: Pipeline = {
    name: '500x375 JPEG -> 256 -> 224',
    dir: photos,
    ext: '.jpg',
    resizeSize: 256,
    cropSize: 224,
  };
  const png: Pipeline = { name: '28x28 PNG -> 32 -> 28', dir: pngs, ext: '.png', resizeSize: 32, cropSize: 28 };
  // Prepared JPEGs are another route to the same training input: compared with torchvision on the originals.
  const pipelines: { ours: Pipeline; reference: Pipeline }[] = [
    { ours: jpeg, reference: jpeg },
    { ours: { ...jpeg, name: '500x375 JPEG -> 256 -> 224, sharp only', sharpOnly: true }, reference: jpeg },
    { ours: { ...jpeg, name: 'prepared 256 JPEG -> 224', dir: prepared }, reference: jpeg },
    { ours: png, reference: png },
  ];
  // Rounds interleave the pipelines and the best round counts: on a shared machine, other
  // processes only ever make a run slower, so the fastest round is the least disturbed one.
  const rounds = Number(flag(argv, '--rounds', '3'));
  const best = new Map<string, Row>();
  const keep = (row: Row): void => {
    const key = `${row.pipeline}/${row.cores}`;
    if ((best.get(key)?.imagesPerSec ?? 0) < row.imagesPerSec) best.set(key, row);
  };
  const torch = new Map<string, number | string>();
  for (let round = 0; round < rounds; round++) {
    for (const { ours, reference } of pipelines) {
      if (ours === reference && !argv.includes('--no-torch')) {
        const r = torchvision(ours, epochs);
        if (typeof r === 'number') {
          keep({
            pipeline: `PIL/torchvision, ${ours.name}`,
            reference: ours.name,
            cores: 1,
            imagesPerSec: r,
            perCore: r,
            cpuMsPerImage: null,
          });
          torch.set(ours.name, Math.max(r, Number(torch.get(ours.name)) || 0));
        } else if (!torch.has(ours.name)) torch.set(ours.name, r);
      }
      for (const cores of [1, 2]) {
        const m = measure(ours, cores, epochs);
        keep({
          pipeline: `BatchLoader, ${ours.name}`,
          reference: reference.name,
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
    pngImages: pngCount,
    epochs,
    rounds,
    loadAverage: os.loadavg(),
    torchvision: argv.includes('--no-torch') ? 'skipped (--no-torch)' : (torch.get(jpeg.name) ?? 'not run'),
    references: Object.fromEntries(torch),
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
  /** 28x28 PNGs in the small-image pipeline (absent in results from before it existed). */
  pngImages?: number;
  epochs: number;
  rounds: number;
  loadAverage: number[];
  /** PIL/torchvision img/s on the 500x375 JPEGs, or why it did not run. */
  torchvision: number | string;
  /** PIL/torchvision img/s (or why not run) per input, keyed like Row.reference. */
  references?: Record<string, number | string>;
  rows: Row[];
}

/** The context line, the table, and a note when the reference did not run. */
export function dataMarkdown(r: DataBenchJson): string {
  const fallback = typeof r.torchvision === 'number' ? r.torchvision : TORCHVISION_REFERENCE;
  const referenceOf = (row: Row): number => {
    const measured = row.reference === undefined ? undefined : r.references?.[row.reference];
    return typeof measured === 'number' ? measured : fallback;
  };
  const table = formatTable(
    ['pipeline', 'cores', 'img/s', 'img/s per core', 'CPU ms/img', 'per core vs PIL/torchvision (same input)'],
    r.rows.map((x) => [
      x.pipeline,
      x.cores,
      x.imagesPerSec.toFixed(0),
      x.perCore.toFixed(0),
      x.cpuMsPerImage?.toFixed(2) ?? '-',
      `${(x.perCore / referenceOf(x)).toFixed(2)}x`,
    ]),
    ['left', 'right', 'right', 'right', 'right', 'right'],
  );
  const notRun = Object.entries(r.references ?? { '500x375 JPEG': r.torchvision }).filter(
    ([, v]) => typeof v !== 'number',
  );
  return [
    `${r.images} JPEGs and ${r.pngImages ?? 0} PNGs; random crop + flip + PCA lighting + normalise, batch 64, median of ${r.epochs - 1} epoch(s) after a warm-up, best of ${r.rounds} rounds; load average ${r.loadAverage[0].toFixed(2)}`,
    '',
    table,
    ...notRun.map(
      ([input, why]) =>
        `torchvision on ${input}: ${why}; compared with ${fallback.toFixed(0)} img/s instead (PIL/torchvision on 500x375 JPEGs${typeof r.torchvision === 'number' ? ', this run' : ', measured earlier'})`,
    ),
  ].join('\n');
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
