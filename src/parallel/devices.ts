/**
 * Which devices a run uses: CUDA GPUs (from CUDA_VISIBLE_DEVICES or `nvidia-smi -L`) or
 * CPU-simulated devices (one wasm worker per core). World size 1 is the single-process path.
 * GPU discovery is injectable so tests can fake it at this edge.
 */
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import { env, type TrainConfig } from '../config';
import { ConfigError } from '../errors';

export interface DeviceAssignment {
  kind: 'gpu' | 'cpu';
  worldSize: number;
  /** CUDA device ids, one per rank (gpu kind only). */
  gpuIds: string[];
  /** A one-line explanation when the request could not be met as asked. */
  note: string | null;
}

export type GpuDiscovery = () => string[];

/** Parses CUDA_VISIBLE_DEVICES: '' or '-1' hide every GPU; undefined says nothing. */
export function parseCudaVisible(value: string | undefined): string[] | null {
  if (value === undefined) return null;
  const ids = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (ids.length === 0 || ids[0] === '-1') return [];
  return ids;
}

/** Parses `nvidia-smi -L` ("GPU 0: NVIDIA H100 (UUID: ...)") into device indices. */
export function parseNvidiaSmi(output: string): string[] {
  return output
    .split('\n')
    .map((l) => /^GPU (\d+):/.exec(l.trim()))
    .filter((m): m is RegExpExecArray => m != null)
    .map((m) => m[1]);
}

export const discoverGpus: GpuDiscovery = () => {
  const visible = parseCudaVisible(env.cudaVisibleDevices());
  if (visible !== null) return visible;
  try {
    return parseNvidiaSmi(execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] }));
  } catch {
    return []; // no driver, no nvidia-smi: no GPU
  }
};

export function cpuCount(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

/** Turns --devices / --strict-devices (and GPUS=N from make) into a device list. */
export function resolveDevices(
  config: Pick<TrainConfig, 'devices' | 'strictDevices' | 'backend'>,
  discover: GpuDiscovery = discoverGpus,
  cores: number = cpuCount(),
): DeviceAssignment {
  const request = config.devices.trim();
  const cpuMatch = /^cpu:(\d+)$/.exec(request);
  if (cpuMatch) {
    const n = Number(cpuMatch[1]);
    if (n < 1) throw new ConfigError(`--devices ${request}: need at least 1 device`);
    return { kind: 'cpu', worldSize: n, gpuIds: [], note: null };
  }
  // A CPU backend asked for explicitly means CPU devices, whatever GPUs exist.
  const gpus = config.backend === 'wasm' || config.backend === 'cpu' ? [] : discover();
  if (request === 'auto') {
    if (gpus.length > 0) return { kind: 'gpu', worldSize: gpus.length, gpuIds: gpus, note: null };
    return { kind: 'cpu', worldSize: Math.max(1, cores), gpuIds: [], note: null };
  }
  if (!/^\d+$/.test(request) || Number(request) < 1) {
    throw new ConfigError(`--devices must be 'auto', a count >= 1 or 'cpu:N'; got '${request}'`);
  }
  const n = Number(request);
  if (config.backend === 'wasm' || config.backend === 'cpu') return { kind: 'cpu', worldSize: n, gpuIds: [], note: null };
  if (gpus.length >= n) return { kind: 'gpu', worldSize: n, gpuIds: gpus.slice(0, n), note: null };
  const found = gpus.length === 0 ? 'no GPU was found' : `only ${gpus.length} GPU(s) were found`;
  if (config.strictDevices) throw new ConfigError(`${n} GPU(s) asked for but ${found} (--strict-devices)`);
  return { kind: 'cpu', worldSize: n, gpuIds: [], note: `${n} GPU(s) asked for but ${found}: using ${n} CPU-simulated device(s) instead` };
}

/** "2 GPU(s) [0, 1]" or "2 CPU-simulated device(s)". */
export function describeDeviceList(d: DeviceAssignment): string {
  return d.kind === 'gpu' ? `${d.worldSize} GPU(s) [${d.gpuIds.join(', ')}]` : `${d.worldSize} CPU-simulated device(s)`;
}

/** The start-up line; `totalWorkers` counts the workers of all hosts in a multi-host run. */
export function describeDevices(d: DeviceAssignment, totalWorkers: number | null = null): string {
  const mode =
    totalWorkers !== null
      ? `${totalWorkers} worker processes on all hosts, ring all-reduce over ZeroMQ (tcp + CURVE)`
      : d.worldSize === 1
        ? 'single process'
        : `${d.worldSize} worker processes, ring all-reduce over ZeroMQ`;
  return `${d.note ? `${d.note}\n` : ''}devices: ${describeDeviceList(d)}${totalWorkers !== null ? ' on this host' : ''}; ${mode}`;
}
