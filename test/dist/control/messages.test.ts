import { pack } from 'msgpackr';
import t from 'tap';
import { ProtocolError } from '../../../src/core/errors';
import {
  ControlMessage,
  MessageType,
  PROTOCOL_VERSION,
  decodeMessage,
  encodeMessage,
  validateMessage,
  weightsChecksum,
} from '../../../src/dist/control/messages';

const samples: ControlMessage[] = [
  {
    type: MessageType.Hello,
    rank: 1,
    protocolVersion: PROTOCOL_VERSION,
    pid: 1234,
    host: 'node-a',
    dataEndpoint: 'ipc:///tmp/alexnet-ring-x/rank-1.sock',
    crossEndpoint: null,
    shmUnavailable: null,
  },
  {
    type: MessageType.Hello,
    rank: 3,
    protocolVersion: PROTOCOL_VERSION,
    pid: 1235,
    host: 'node-b',
    dataEndpoint: 'tcp://10.0.0.2:5601',
    crossEndpoint: 'tcp://10.0.0.2:5603',
    shmUnavailable: 'alexnet_shm.node not built (make shm)',
  },
  {
    type: MessageType.Config,
    rank: 1,
    worldSize: 2,
    nextEndpoint: 'tcp://10.0.0.2:5601',
    config: { batchSize: 128, lr: 0.01, nested: { a: [1, 2] } },
    plane: {
      kind: 'hierarchical',
      localRank: 1,
      localSize: 2,
      hostIndex: 0,
      hosts: 2,
      crossNextEndpoint: 'tcp://10.0.0.3:5603',
    },
  },
  {
    type: MessageType.Config,
    rank: 1,
    worldSize: 3,
    nextEndpoint: 'tcp://10.0.0.2:5601',
    config: {},
    plane: { kind: 'zmq', why: '--transport zmq' },
  },
  { type: MessageType.Config, rank: 0, worldSize: 1, nextEndpoint: '', config: {}, plane: null },
  { type: MessageType.Ready, rank: 0 },
  {
    type: MessageType.StepReport,
    rank: 1,
    epoch: 3,
    step: 100,
    stepMs: 2712.5,
    images: 64,
    timingsMs: { dataWaitMs: 1.5, computeMs: 2000, copyMs: 300, reduceMs: 400, updateMs: 11 },
    peakRssMb: 3950.5,
    wireBytes: 14_300_000,
  },
  { type: MessageType.Checksum, rank: 1, step: 100, checksum: 'deadbeef'.repeat(4) },
  { type: MessageType.Heartbeat, rank: 0, timeMs: 1_700_000_000_000 },
  {
    type: MessageType.Error,
    rank: 1,
    name: 'CommTimeoutError',
    message: 'rank 1: no data from rank 0 within 60000 ms',
    stack: null,
  },
  { type: MessageType.Shutdown, reason: 'rank 1 failed' },
  { type: MessageType.Done, rank: 0, steps: 1000, result: { epochs: 90, top1Error: 0.4 } },
  { type: MessageType.Done, rank: 1, steps: 1000, result: null },
  {
    type: MessageType.Join,
    protocolVersion: PROTOCOL_VERSION,
    host: 'node-b',
    address: '10.0.0.2',
    pid: 4321,
    workers: 2,
  },
  { type: MessageType.Welcome, firstRank: 2, worldSize: 4, config: { batchSize: 128 } },
  { type: MessageType.Dismiss, reason: 'finished', failed: false, rejoin: false },
  { type: MessageType.WorkerExit, rank: 2, code: 3, signal: null },
  { type: MessageType.WorkerExit, rank: 3, code: null, signal: 'SIGKILL' },
  { type: MessageType.HostError, name: 'ConfigError', message: 'dataset /data does not exist on node-b' },
];

t.test('every message type round-trips', async (t) => {
  const seen = new Set(samples.map((m) => m.type));
  t.equal(seen.size, Object.values(MessageType).length, 'a sample for every type');
  for (const message of samples) t.same(decodeMessage(encodeMessage(message)), message, message.type);
});

t.test('malformed messages are ProtocolErrors that say what is wrong', async (t) => {
  const bad: [unknown, RegExp][] = [
    [[1, 2], /not an object/],
    [{ type: 'gradients' }, /unknown control message type "gradients"/],
    [{ rank: 0 }, /unknown control message type undefined/],
    [{ type: 'ready' }, /'ready': field 'rank' is missing/],
    [{ type: 'ready', rank: -1 }, /'ready': field 'rank' must be an integer >= 0/],
    [{ type: 'ready', rank: 0.5 }, /field 'rank' must be an integer/],
    [{ type: 'ready', rank: 0, extra: 1 }, /unexpected field 'extra'/],
    [{ type: 'heartbeat', rank: 0, timeMs: 'now' }, /'timeMs' must be a finite number/],
    [{ type: 'checksum', rank: 0, step: 1, checksum: 5 }, /'checksum' must be a string/],
    [
      {
        type: 'stepReport',
        rank: 0,
        epoch: 0,
        step: 0,
        stepMs: 1,
        images: 2,
        timingsMs: { dataWaitMs: 1, computeMs: 1, copyMs: 1, reduceMs: 1 },
      },
      /entry "updateMs" must be a finite number of ms/,
    ],
    [
      { type: 'config', rank: 0, worldSize: 2, nextEndpoint: 'x', config: {}, plane: null, curve: null },
      /unexpected field 'curve'/,
    ],
    [
      { type: 'config', rank: 0, worldSize: 2, nextEndpoint: 'x', config: {}, plane: { kind: 'ring' } },
      /'plane' has an unknown kind "ring"/,
    ],
    [
      {
        type: 'config',
        rank: 0,
        worldSize: 2,
        nextEndpoint: 'x',
        config: {},
        plane: { kind: 'hierarchical', localRank: 0, localSize: 0, hostIndex: 0, hosts: 2, crossNextEndpoint: 'x' },
      },
      /'plane' entry "localSize" must be an integer >= 1/,
    ],
    [{ type: 'config', rank: 0, worldSize: 2, nextEndpoint: 'x', config: [] }, /'config' must be an object/],
    [
      { type: 'join', protocolVersion: 2, host: 'b', address: 'x', pid: 1, workers: 0 },
      /'workers' must be an integer >= 1/,
    ],
    [{ type: 'dismiss', reason: 'r', failed: 'yes', rejoin: false }, /'failed' must be a boolean/],
    [{ type: 'dismiss', reason: 'r', failed: true }, /'rejoin' is missing/],
    [{ type: 'workerExit', rank: 1, code: 1.5, signal: null }, /'code' must be an integer/],
    [{ type: 'error', rank: 0, name: 'E', message: 'm' }, /'stack' is missing/],
  ];
  for (const [value, pattern] of bad) {
    t.throws(() => decodeMessage(pack(value)), pattern, JSON.stringify(value));
    t.throws(() => validateMessage(value), ProtocolError);
  }
  const truncated = encodeMessage(samples[0]).subarray(0, 10);
  t.throws(() => decodeMessage(truncated), /control message of 10 bytes is not msgpack/);
  const trailing = Buffer.concat([encodeMessage(samples[3]), Buffer.of(1)]);
  t.throws(() => decodeMessage(trailing), /not msgpack/, 'trailing bytes');
  t.throws(() => decodeMessage(Uint8Array.of(0xc1)), ProtocolError, 'reserved byte');
  t.throws(() => decodeMessage(new Uint8Array(0)), ProtocolError);
  // The sender validates too, so a bug fails where it is.
  t.throws(() => encodeMessage({ type: MessageType.Ready, rank: -3 }), ProtocolError);
});

t.test('weightsChecksum sees every bit and nothing else', async (t) => {
  const w = Float32Array.from({ length: 1003 }, (_, i) => Math.sin(i));
  const base = weightsChecksum(w);
  t.match(base, /^[0-9a-f]{32}$/);
  t.equal(weightsChecksum(w.slice()), base, 'same bits, same checksum');
  for (const index of [0, 1, 2, 3, 500, 1001, 1002]) {
    const v = w.slice();
    const bits = new Uint32Array(v.buffer);
    bits[index] ^= 1; // flip the lowest mantissa bit
    t.not(weightsChecksum(v), base, `one bit of element ${index}`);
  }
  t.not(weightsChecksum(Float32Array.of(0)), weightsChecksum(Float32Array.of(-0)), '+0 vs -0');
  t.not(weightsChecksum(new Float32Array(4)), weightsChecksum(new Float32Array(8)), 'length');
  t.equal(weightsChecksum(w.subarray(3, 10)), weightsChecksum(w.slice(3, 10)), 'views');
});
