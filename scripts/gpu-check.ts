/**
 * The TypeScript half of scripts/gpu-check.sh (run that, not this):
 *
 *   node dist/scripts/gpu-check.js adapters           # Vulkan devices, Dawn's adapter; exit 3 with no hardware GPU
 *   node dist/scripts/gpu-check.js pin                # KEY=VALUE lines pinning a process to the first hardware GPU
 *   node dist/scripts/gpu-check.js table train.json   # the one summary table of a bench/train.js --backend webgpu run
 */
import * as fs from 'node:fs';
import { describeAdapter, probeAdapter } from '../src/backend/webgpu/backend';
import { discoverVulkanDevices, gpuEnvironment, vulkanGpuIds } from '../src/devices/discover';
import { formatTable } from '../src/core/text-format';
import type { TrainBenchJson } from '../bench/train-stats';

/** Exit status of `adapters` when there is no hardware GPU (the shell script tells it from a failure). */
const NO_HARDWARE = 3;

async function adapters(): Promise<number> {
  const devices = discoverVulkanDevices();
  const rows = devices.map((d) => [d.index, d.name, d.type, `${d.vendorId}:${d.deviceId}`, d.pciTag ?? '-']);
  process.stdout.write(`${formatTable(['#', 'Vulkan device', 'type', 'vendor:device', 'PCI tag (pin)'], rows)}\n`);
  if (devices.length === 0)
    process.stdout.write(
      "(no list: Mesa's device-select layer is missing, apt-get install mesa-vulkan-drivers, or there is no Vulkan driver)\n",
    );
  const adapter = await probeAdapter();
  process.stdout.write(
    `Dawn's adapter: ${adapter === null ? 'none' : describeAdapter(adapter)}; binding limit ${adapter === null ? '-' : `${(adapter.maxBindingBytes / 2 ** 20).toFixed(0)} MiB`}\n`,
  );
  return vulkanGpuIds(devices).length > 0 || (adapter !== null && !adapter.software) ? 0 : NO_HARDWARE;
}

function pin(): number {
  const [first] = vulkanGpuIds(discoverVulkanDevices());
  if (first === undefined) return NO_HARDWARE;
  for (const [key, value] of Object.entries(gpuEnvironment(first))) process.stdout.write(`${key}=${value}\n`);
  return 0;
}

/** img/s, scaling against 1 worker, and a step split into compute, readback, all-reduce. */
function table(file: string): number {
  const result = JSON.parse(fs.readFileSync(file, 'utf8')) as TrainBenchJson;
  const one = result.rows.find((r) => r.workers === 1);
  const ms = (x: number) => x.toFixed(1);
  const rows = result.rows.map((r) => {
    const parts = r.ours.breakdown.partsMs;
    const scaling = one === undefined ? '-' : (r.ours.imagesPerSec / (r.workers * one.ours.imagesPerSec)).toFixed(2);
    return [
      r.preset,
      r.workers,
      r.batchPerWorker,
      r.ours.imagesPerSec.toFixed(1),
      scaling,
      ms(r.ours.breakdown.stepMs),
      ms(parts.computeMs),
      ms(parts.copyMs),
      ms(parts.reduceMs),
      ms(parts.updateMs),
    ];
  });
  process.stdout.write(`${result.machine}\n${result.command}\n`);
  process.stdout.write(
    `${formatTable(['preset', 'workers', 'batch/worker', 'img/s', 'scaling eff.', 'step ms', 'compute ms', 'readback ms', 'all-reduce ms', 'update ms'], rows)}\n`,
  );
  return 0;
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'adapters') return adapters();
  if (argv[0] === 'pin') return pin();
  if (argv[0] === 'table' && argv[1] !== undefined) return table(argv[1]);
  process.stderr.write('usage: gpu-check.js adapters | pin | table <train.json>\n');
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`gpu-check: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
