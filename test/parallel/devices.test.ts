// Device discovery and assignment, with GPU discovery faked at the edge (no GPU in CI).
import t from 'tap';
import { describeDevices, parseCudaVisible, parseNvidiaSmi, resolveDevices } from '../../src/parallel/devices';

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
  t.same(resolveDevices({ ...base, devices: 'cpu:3' }, gpus(8), 2), { kind: 'cpu', worldSize: 3, gpuIds: [], note: null });
  t.equal(resolveDevices({ ...base, devices: '1' }, gpus(1), 2).kind, 'gpu');
  t.match(describeDevices(resolveDevices({ ...base, devices: '1' }, gpus(1), 2)), /single process/);
  t.equal(resolveDevices({ ...base, devices: '2', backend: 'wasm' }, gpus(0), 2).note, null, 'an explicit CPU backend needs no GPU note');
  for (const bad of ['0', 'two', 'cpu:0', '-1']) t.throws(() => resolveDevices({ ...base, devices: bad }, gpus(0), 2), { name: 'ConfigError' }, bad);
});
