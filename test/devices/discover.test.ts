// Device discovery and assignment, with GPU discovery faked at the edge (no GPU in CI).
import t from 'tap';
import { autoOrder, backendRequest } from '../../src/backend/select';
import {
  describeDevices,
  discoverVulkanDevices,
  gpuEnvironment,
  parseCudaVisible,
  parseNvidiaSmi,
  parseVulkanDeviceList,
  unlistedAdapter,
  resolveDevices,
  vulkanGpuIds,
  type DeviceRequest,
} from '../../src/devices/discover';
import { readWorkerBootstrap, workerEnvironment } from '../../src/dist/control/worker-env';

const base = { devices: 'auto', strictDevices: false, backend: 'auto' as const };
const gpus = (n: number) => () => Array.from({ length: n }, (_, i) => String(i));

t.test('parsing CUDA_VISIBLE_DEVICES and nvidia-smi -L', async (t) => {
  t.equal(parseCudaVisible(undefined), null);
  t.same(parseCudaVisible(''), []);
  t.same(parseCudaVisible('-1'), []);
  t.same(parseCudaVisible('2, 3'), ['2', '3']);
  t.same(parseNvidiaSmi('GPU 0: NVIDIA H100 (UUID: GPU-a)\nGPU 1: NVIDIA H100 (UUID: GPU-b)\n'), ['0', '1']);
  t.same(parseNvidiaSmi('NVIDIA-SMI has failed'), []);
});

t.test('auto: every GPU, else one CPU-simulated device per core', async (t) => {
  t.same(resolveDevices(base, gpus(4), 2), { kind: 'gpu', worldSize: 4, gpuIds: ['0', '1', '2', '3'], note: null });
  t.same(resolveDevices(base, gpus(0), 2), { kind: 'cpu', worldSize: 2, gpuIds: [], note: null });
});

t.test('GPUS=N with too few GPUs: one line, then N simulated devices; strict: an error', async (t) => {
  const d = resolveDevices({ ...base, devices: '2' }, gpus(1), 2);
  t.equal(d.kind, 'cpu');
  t.equal(d.worldSize, 2);
  t.match(d.note, /2 GPU\(s\) asked for but only 1 GPU\(s\) were found/);
  t.throws(() => resolveDevices({ ...base, devices: '2', strictDevices: true }, gpus(0), 2), { name: 'ConfigError' });
  t.same(resolveDevices({ ...base, devices: '2' }, gpus(3), 2).gpuIds, ['0', '1']);
});

t.test('cpu:N, one device, and bad requests', async (t) => {
  t.same(resolveDevices({ ...base, devices: 'cpu:3' }, gpus(8), 2), {
    kind: 'cpu',
    worldSize: 3,
    gpuIds: [],
    note: null,
  });
  t.equal(resolveDevices({ ...base, devices: '1' }, gpus(1), 2).kind, 'gpu');
  t.match(describeDevices(resolveDevices({ ...base, devices: '1' }, gpus(1), 2)), /single process/);
  t.equal(
    resolveDevices({ ...base, devices: '2', backend: 'wasm' }, gpus(0), 2).note,
    null,
    'an explicit CPU backend needs no GPU note',
  );
  for (const bad of ['0', 'two', 'cpu:0', '-1'])
    t.throws(() => resolveDevices({ ...base, devices: bad }, gpus(0), 2), { name: 'ConfigError' }, bad);
});

// Vulkan discovery and pinning: the device-select layer's list is faked here (identical GPUs,
// no GPU here); the real list on lavapipe is read in the last test.
const H100_LIST = [
  'selectable devices:',
  '  GPU 0: 10de:2330 "NVIDIA H100 80GB HBM3" discrete GPU 0000:18:00.0',
  '  GPU 1: 10de:2330 "NVIDIA H100 80GB HBM3" discrete GPU 0000:2a:00.0',
  '  GPU 2: 10005:0 "llvmpipe (LLVM 15.0.6, 256 bits)" CPU',
].join('\n');

t.test(
  'the Vulkan device list: identical GPUs told apart by PCI bus, software devices only when allowed',
  async (t) => {
    const devices = parseVulkanDeviceList(H100_LIST);
    t.equal(devices.length, 3);
    t.same(devices[1], {
      index: 1,
      vendorId: '10de',
      deviceId: '2330',
      name: 'NVIDIA H100 80GB HBM3',
      type: 'discrete GPU',
      pciTag: 'pci-0000_2a_00_0',
    });
    t.equal(devices[2].pciTag, null);
    t.same(vulkanGpuIds(devices), ['vulkan:pci-0000_18_00_0', 'vulkan:pci-0000_2a_00_0']);
    t.same(vulkanGpuIds(devices, true), ['vulkan:pci-0000_18_00_0', 'vulkan:pci-0000_2a_00_0', 'vulkan:10005:0']);
    t.same(parseVulkanDeviceList('ERROR: [Loader Message] no ICD\n'), []);
  },
);

t.test(
  "without the device-select layer: Dawn's hardware adapter is one unpinned GPU, a software one none",
  async (t) => {
    const nvidia = unlistedAdapter(
      JSON.stringify({
        vendor: 'nvidia',
        architecture: 'hopper',
        device: '',
        description: 'NVIDIA H100 80GB HBM3',
        isFallbackAdapter: false,
      }),
    );
    t.same(vulkanGpuIds(nvidia), ['vulkan:any']);
    t.same(
      unlistedAdapter(
        JSON.stringify({
          vendor: 'mesa',
          architecture: '',
          device: 'llvmpipe',
          description: 'llvmpipe: Mesa 25.0.7',
          isFallbackAdapter: false,
        }),
      ),
      [],
    );
    t.same(unlistedAdapter(''), [], 'no adapter at all');
  },
);

t.test('each worker is pinned through the environment its Vulkan loader reads', async (t) => {
  t.same(gpuEnvironment('vulkan:pci-0000_2a_00_0'), {
    CUDA_VISIBLE_DEVICES: '',
    DRI_PRIME: 'pci-0000_2a_00_0',
    MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1',
  });
  t.same(gpuEnvironment('vulkan:10005:0'), {
    CUDA_VISIBLE_DEVICES: '',
    MESA_VK_DEVICE_SELECT: '10005:0',
    MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1',
  });
  t.same(gpuEnvironment('vulkan:any'), { CUDA_VISIBLE_DEVICES: '' });
  t.same(gpuEnvironment('1'), { CUDA_VISIBLE_DEVICES: '1', TF_FORCE_GPU_ALLOW_GROWTH: 'true' });
  t.same(gpuEnvironment(null), { CUDA_VISIBLE_DEVICES: '' });
  const boot = {
    controlAddress: 'ipc:///x',
    rank: 1,
    worldSize: 2,
    deviceKind: 'gpu' as const,
    ringAddress: 'ipc:///y',
    keyFile: null,
    shmPrefix: null,
    crossRingAddress: null,
  };
  const env = workerEnvironment(boot, 'vulkan:pci-0000_2a_00_0', { PATH: '/bin' });
  t.equal(env.DRI_PRIME, 'pci-0000_2a_00_0', 'the worker environment carries the pin');
  t.same(readWorkerBootstrap(env), boot, 'and the bootstrap reads back');
  const local = { ...boot, shmPrefix: 'alexnet-0123456789abcdef0123456789abcdef' };
  t.equal(
    readWorkerBootstrap(workerEnvironment(local, null, {})).shmPrefix,
    local.shmPrefix,
    'the shared-memory prefix travels',
  );
});

t.test('auto and counts on Vulkan GPUs; webgpu:N on whatever adapter exists', async (t) => {
  const vulkan = (request: DeviceRequest) =>
    vulkanGpuIds(parseVulkanDeviceList(H100_LIST), request.backend === 'webgpu' && request.allowSoftwareGpu === true);
  t.same(resolveDevices(base, vulkan, 2), {
    kind: 'gpu',
    worldSize: 2,
    gpuIds: ['vulkan:pci-0000_18_00_0', 'vulkan:pci-0000_2a_00_0'],
    note: null,
  });
  t.equal(
    resolveDevices({ ...base, backend: 'webgpu', allowSoftwareGpu: true }, vulkan, 2).worldSize,
    3,
    'the software device counts when allowed',
  );
  const shared = resolveDevices({ ...base, devices: 'webgpu:3' }, gpus(0), 2);
  t.same(shared, { kind: 'gpu', worldSize: 3, gpuIds: ['vulkan:any', 'vulkan:any', 'vulkan:any'], note: null });
  t.match(describeDevices(shared), /3 webgpu worker\(s\) sharing whatever adapter Dawn picks/);
  t.throws(() => resolveDevices({ ...base, devices: 'webgpu:0' }, gpus(0), 2), { name: 'ConfigError' });
});

t.test('the backend each device asks for', async (t) => {
  const config = { backend: 'auto' as const, devices: 'auto', threads: 1, allowSoftwareGpu: false };
  t.same(backendRequest({ ...config, devices: 'webgpu:2' }, 'gpu'), {
    choice: 'webgpu',
    options: { cpuDevice: false, threads: 1, allowSoftwareGpu: true },
  });
  t.same(backendRequest(config, 'gpu'), {
    choice: 'auto',
    options: { cpuDevice: false, threads: 1, allowSoftwareGpu: false },
  });
  t.same(
    backendRequest({ ...config, backend: 'webgpu' }, 'cpu').choice,
    'auto',
    'a CPU-simulated device runs a CPU backend',
  );
  t.same(autoOrder(true), ['node-gpu', 'webgpu', 'node', 'native', 'wasm', 'cpu'], 'webgpu right after node-gpu');
  t.same(autoOrder(false), ['node', 'native', 'wasm', 'cpu']);
});

t.test('discovery on this machine: the real device-select list, parsed', async (t) => {
  const devices = discoverVulkanDevices();
  // No assumption about what is here, only that what is listed is well formed.
  for (const d of devices) t.match(d, { index: Number, vendorId: /^[0-9a-f]+$/, name: String, type: /GPU|CPU|other/ });
  t.pass(`Vulkan devices here: ${devices.map((d) => `${d.name} (${d.type})`).join(', ') || 'none'}`);
});
