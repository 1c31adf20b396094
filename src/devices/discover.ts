/**
 * Which devices a run uses: CUDA GPUs (from CUDA_VISIBLE_DEVICES or `nvidia-smi -L`) where
 * tfjs-node-gpu is installed, else Vulkan GPUs (for the webgpu backend), or CPU-simulated devices
 * (one wasm worker per core). World size 1 is the single-process path. GPU discovery is
 * injectable so tests can fake it at this edge.
 *
 * GPU ids: a CUDA index ('0'), or 'vulkan:' and how the worker's Vulkan loader is pinned to its
 * GPU (gpuEnvironment): a PCI tag, unique even among identical GPUs ('vulkan:pci-0000_65_00_0'),
 * a vendor:device pair where the driver gives no PCI bus ('vulkan:10de:2330'), or 'vulkan:any'
 * (`--devices webgpu:N`: every worker on whatever adapter Dawn picks, software ones too).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { env, type BackendChoice, type TrainConfig } from '../core/config';
import { ConfigError } from '../core/errors';
import { isSoftwareAdapter, webgpuDeviceCount, type GpuAdapterInfo } from './gpu';

export interface DeviceAssignment {
  kind: 'gpu' | 'cpu';
  worldSize: number;
  /** GPU ids, one per rank (gpu kind only): CUDA indices or 'vulkan:...' (see the file's header). */
  gpuIds: string[];
  /** A one-line explanation when the request could not be met as asked. */
  note: string | null;
}

/** What decides how GPUs are discovered: the run's --backend and --allow-software-gpu. */
export interface DeviceRequest {
  backend: BackendChoice;
  /** Software Vulkan devices (lavapipe) count as GPUs (only with the webgpu backend). */
  allowSoftwareGpu?: boolean;
}

/** GPU ids for a run (CUDA or Vulkan discovery, see discoverGpus). */
export type GpuDiscovery = (request: DeviceRequest) => string[];

/** Parses CUDA_VISIBLE_DEVICES: '' or '-1' hide every GPU; undefined says nothing. */
export function parseCudaVisible(value: string | undefined): string[] | null {
  if (value === undefined) return null;
  const ids = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
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

function discoverCudaGpus(): string[] {
  const visible = parseCudaVisible(env.cudaVisibleDevices());
  if (visible !== null) return visible;
  try {
    return parseNvidiaSmi(
      execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] }),
    );
  } catch {
    return []; // no driver, no nvidia-smi: no GPU
  }
}

/** Whether tfjs-node-gpu is installed (its CUDA devices are then the GPUs; loading it is left to the workers). */
function tfjsNodeGpuInstalled(): boolean {
  try {
    require.resolve('@tensorflow/tfjs-node-gpu');
    return true;
  } catch {
    return false;
  }
}

/**
 * CUDA GPUs for node-gpu (asked for, or auto where tfjs-node-gpu is installed), Vulkan GPUs for
 * webgpu (asked for, or auto without tfjs-node-gpu, which cannot be had on most machines today).
 */
export const discoverGpus: GpuDiscovery = ({ backend, allowSoftwareGpu }) => {
  if (backend === 'node-gpu' || (backend !== 'webgpu' && tfjsNodeGpuInstalled())) return discoverCudaGpus();
  return vulkanGpuIds(discoverVulkanDevices(), backend === 'webgpu' && allowSoftwareGpu === true);
};

/** One Vulkan physical device, as Mesa's device-select layer lists it. */
export interface VulkanDevice {
  index: number;
  /** Hex, as the layer prints them ('10de', '2330'). */
  vendorId: string;
  deviceId: string;
  name: string;
  /** 'discrete GPU', 'integrated GPU', 'virtual GPU', 'CPU' or 'other'. */
  type: string;
  /** 'pci-0000_65_00_0' (DRI_PRIME's form), or null where the driver gives no PCI bus. */
  pciTag: string | null;
}

/**
 * Parses the device-select layer's list (`MESA_VK_DEVICE_SELECT=list`, on stderr):
 *   GPU 0: 10de:2330 "NVIDIA H100 80GB HBM3" discrete GPU 0000:65:00.0
 */
export function parseVulkanDeviceList(text: string): VulkanDevice[] {
  const line =
    /^\s*GPU (\d+): ([0-9a-f]+):([0-9a-f]+) "(.*)" (discrete GPU|integrated GPU|virtual GPU|CPU|other)(?: ([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-9a-f]))?\s*$/i;
  return text.split('\n').flatMap((l) => {
    const m = line.exec(l);
    if (m == null) return [];
    const [, index, vendorId, deviceId, name, type, domain, bus, dev, fn] = m;
    const pciTag = domain === undefined ? null : `pci-${domain}_${bus}_${dev}_${fn}`;
    return [{ index: Number(index), vendorId, deviceId, name, type, pciTag }];
  });
}

/** The GPUs (software devices only when allowed) as ids that pin a worker to each (where it can be). */
export function vulkanGpuIds(devices: readonly VulkanDevice[], allowSoftware = false): string[] {
  return devices
    .filter((d) => allowSoftware || d.type !== 'CPU')
    .map((d) => `vulkan:${d.pciTag ?? (d.vendorId === '' ? 'any' : `${d.vendorId}:${d.deviceId}`)}`);
}

/**
 * Vulkan's devices, through Dawn in a child process with Mesa's device-select layer in list
 * mode (it prints every physical device with its PCI bus, then exits). No `webgpu` package or
 * no Vulkan loader: no devices. Without the layer (mesa-vulkan-drivers ships it; NVIDIA's
 * driver does not) the child goes on to print Dawn's own adapter: one device then, a hardware
 * one, that cannot be pinned (vendorId '').
 */
export function discoverVulkanDevices(): VulkanDevice[] {
  let entry: string;
  try {
    entry = require.resolve('webgpu');
  } catch {
    return [];
  }
  const url = `file://${path.resolve(entry)}`;
  const script = [
    `import(${JSON.stringify(url)})`,
    ".then((m) => m.create(['backend=vulkan']).requestAdapter({ powerPreference: 'high-performance' }))",
    '.then((a) => { if (a) { const i = a.info; process.stdout.write(JSON.stringify({ vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description, isFallbackAdapter: i.isFallbackAdapter === true })); } process.exit(0); }, () => process.exit(1))',
  ].join('');
  // The layer exits the process right after printing: read its stderr whatever the status.
  const child = spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8',
    timeout: 20_000,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MESA_VK_DEVICE_SELECT: 'list' },
  });
  const listed = parseVulkanDeviceList(child.stderr ?? '');
  if (listed.length > 0) return listed;
  return unlistedAdapter(child.stdout ?? '');
}

/** Dawn's adapter as one unpinnable device, when it is a hardware one. */
export function unlistedAdapter(stdout: string): VulkanDevice[] {
  let info: GpuAdapterInfo;
  try {
    info = JSON.parse(stdout) as GpuAdapterInfo;
  } catch {
    return [];
  }
  if (isSoftwareAdapter(info)) return [];
  return [
    { index: 0, vendorId: '', deviceId: '', name: info.description || info.device, type: 'discrete GPU', pciTag: null },
  ];
}

export function cpuCount(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

/** Turns --devices / --strict-devices (and GPUS=N from make) into a device list. */
export function resolveDevices(
  config: Pick<TrainConfig, 'devices' | 'strictDevices'> & DeviceRequest,
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
  const webgpuCount = webgpuDeviceCount(request);
  if (webgpuCount !== null) {
    if (webgpuCount < 1) throw new ConfigError(`--devices ${request}: need at least 1 device`);
    return {
      kind: 'gpu',
      worldSize: webgpuCount,
      gpuIds: Array.from({ length: webgpuCount }, () => SHARED_ADAPTER),
      note: null,
    };
  }
  // A CPU backend asked for explicitly means CPU devices, whatever GPUs exist.
  const gpus = config.backend === 'wasm' || config.backend === 'cpu' ? [] : discover(config);
  if (request === 'auto') {
    if (gpus.length > 0) return { kind: 'gpu', worldSize: gpus.length, gpuIds: gpus, note: null };
    return { kind: 'cpu', worldSize: Math.max(1, cores), gpuIds: [], note: null };
  }
  if (!/^\d+$/.test(request) || Number(request) < 1) {
    throw new ConfigError(`--devices must be 'auto', a count >= 1, 'cpu:N' or 'webgpu:N'; got '${request}'`);
  }
  const n = Number(request);
  if (config.backend === 'wasm' || config.backend === 'cpu')
    return { kind: 'cpu', worldSize: n, gpuIds: [], note: null };
  if (gpus.length >= n) return { kind: 'gpu', worldSize: n, gpuIds: gpus.slice(0, n), note: null };
  const found = gpus.length === 0 ? 'no GPU was found' : `only ${gpus.length} GPU(s) were found`;
  if (config.strictDevices) throw new ConfigError(`${n} GPU(s) asked for but ${found} (--strict-devices)`);
  return {
    kind: 'cpu',
    worldSize: n,
    gpuIds: [],
    note: `${n} GPU(s) asked for but ${found}: using ${n} CPU-simulated device(s) instead`,
  };
}

/** "2 GPU(s) [0, 1]", "2 webgpu worker(s) on one adapter" or "2 CPU-simulated device(s)". */
export function describeDeviceList(d: DeviceAssignment): string {
  if (d.kind === 'cpu') return `${d.worldSize} CPU-simulated device(s)`;
  if (d.gpuIds.length > 1 && d.gpuIds.every((id) => id === SHARED_ADAPTER))
    return `${d.worldSize} webgpu worker(s) sharing whatever adapter Dawn picks (software ones too)`;
  return `${d.worldSize} GPU(s) [${d.gpuIds.join(', ')}]`;
}

/** `--devices webgpu:N`: every worker on the adapter Dawn picks, no pinning. */
const SHARED_ADAPTER = 'vulkan:any';

/**
 * The environment that gives a worker its GPU, and only it. CUDA: CUDA_VISIBLE_DEVICES
 * (tfjs-node-gpu has no in-process device choice). Vulkan: Mesa's device-select layer, an
 * implicit layer that the Vulkan loader runs for every application, whatever the driver (it
 * ships in mesa-vulkan-drivers): DRI_PRIME=pci-... picks the device on that PCI bus (unique
 * even among identical GPUs, which Dawn's own `adapter=NAME` cannot tell apart) or
 * MESA_VK_DEVICE_SELECT=vid:did a model, and MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1 hides
 * every other device from the process. CUDA is hidden from Vulkan workers either way.
 */
export function gpuEnvironment(gpuId: string | null): Record<string, string> {
  if (gpuId === null) return { CUDA_VISIBLE_DEVICES: '' };
  if (!gpuId.startsWith('vulkan:')) return { CUDA_VISIBLE_DEVICES: gpuId, TF_FORCE_GPU_ALLOW_GROWTH: 'true' };
  const device = gpuId.slice('vulkan:'.length);
  if (device === 'any') return { CUDA_VISIBLE_DEVICES: '' };
  const pick = device.startsWith('pci-') ? 'DRI_PRIME' : 'MESA_VK_DEVICE_SELECT';
  return { CUDA_VISIBLE_DEVICES: '', [pick]: device, MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1' };
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
