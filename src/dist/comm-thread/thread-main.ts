/**
 * The communication thread of a worker process (see comm-thread.ts for why it exists): it owns
 * the ZeroMQ ring and runs the collectives one request at a time, in the order they were
 * posted, which is the same order on every rank. Each finished request is answered on the
 * reply port and then counted in the shared `completed` word, so the main thread can block
 * on it (Atomics.wait) in the middle of a backward pass, or await it (Atomics.waitAsync).
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import { broadcast, ringAllGather, ringAllReduce, ringReduceScatter } from '../ring/allreduce';
import type { CommRequest, CommReply, CommThreadData, SharedView } from './requests';
import { WireCodecTransport, useWireKernels, type WireDtype } from '../ring/wire-codec';
import { ZmqRingTransport, bindRingSockets, type BoundRingSockets } from '../ring/zmq-ring';
import { hierarchicalAllReduce, type HierarchicalLayout } from '../shm/hierarchical';
import { shmAddonPath, shmUnavailableReason } from '../shm/addon';
import { ShmGroup } from '../shm/shm-group';

// Loaded outside a worker thread (the architecture tests load every module): nothing to serve.
const data = (workerData ?? null) as CommThreadData | null;
let codec = 'js';
let completed: Int32Array<ArrayBufferLike> = new Int32Array(1);
let stats: Float64Array<ArrayBufferLike> = new Float64Array(1);
let ring: ZmqRingTransport | null = null;
/** The ring as it carries fp32 always (counts, keys, weights), and in the run's wire dtype; both count bytes. */
let exact: WireCodecTransport | null = null;
let wire: WireCodecTransport | null = null;
/** The ranks of this host in shared memory, once the main thread chose it (data-plane.ts): the collectives run there. */
let shm: ShmGroup | null = null;
/** The cross-ring socket, bound at start in a multi-host run; placed in a ring by useHierarchical, else closed unused. */
let crossBound: BoundRingSockets | null = null;
/** The hierarchical plane, once chosen: the host's group and this rank's cross ring (both dtypes, both count bytes). */
let hier: {
  host: ShmGroup;
  layout: HierarchicalLayout;
  ring: ZmqRingTransport;
  exact: WireCodecTransport;
  wire: WireCodecTransport;
} | null = null;
let wireDtype: WireDtype = 'fp32';
/** The first failure: the ring is broken after it, so every later request fails the same way. */
let broken: { name: string; message: string } | null = null;
let queue: Promise<void> = Promise.resolve();

function view(v: SharedView): Float32Array {
  return new Float32Array(v.buffer, v.byteOffset, v.length);
}

function transports(): { exact: WireCodecTransport; wire: WireCodecTransport } {
  if (exact === null || wire === null) throw new Error('comm thread: a collective before the ring was connected');
  return { exact, wire };
}

async function run(data: CommThreadData, request: CommRequest): Promise<Omit<CommReply, 'id'>> {
  const options = { timeoutMs: data.timeoutMs, ...(data.chunkBytes ? { chunkBytes: data.chunkBytes } : {}) };
  switch (request.op) {
    case 'bind':
      ring = await ZmqRingTransport.bind({
        rank: data.rank,
        worldSize: data.worldSize,
        bindAddress: data.bindAddress,
        ...(data.curve ? { curve: data.curve } : {}),
      });
      if (data.crossBindAddress !== null)
        crossBound = await bindRingSockets({
          bindAddress: data.crossBindAddress,
          ...(data.curve ? { curve: data.curve } : {}),
        });
      return { endpoint: ring.endpoint, codec, ...(crossBound ? { crossEndpoint: crossBound.endpoint } : {}) };
    case 'connect':
      if (ring === null) throw new Error('comm thread: connect before bind');
      await ring.connect(request.next);
      exact = new WireCodecTransport(ring, 'fp32');
      wire = new WireCodecTransport(ring, request.wireDtype);
      wireDtype = request.wireDtype;
      return {};
    case 'useShm':
      shm = ShmGroup.fromHandle(request.handle);
      return {};
    case 'useHierarchical': {
      if (crossBound === null) throw new Error('comm thread: a hierarchical plane without a bound cross-ring socket');
      const { layout } = request;
      const cross = ZmqRingTransport.fromBound(crossBound, layout.hostIndex, layout.hosts);
      crossBound = null;
      hier = {
        host: ShmGroup.fromHandle(request.handle),
        layout,
        ring: cross,
        exact: new WireCodecTransport(cross, 'fp32'),
        wire: new WireCodecTransport(cross, wireDtype),
      };
      await cross.connect(request.crossNext);
      return {};
    }
    case 'allReduce': {
      if (hier) {
        const exactSum = request.exact;
        const shmOptions = { wireDtype, exact: exactSum };
        const cross = exactSum ? hier.exact : hier.wire;
        await hierarchicalAllReduce(view(request.buffer), hier.host, cross, hier.layout, shmOptions, options);
        return {};
      }
      // Shared memory: one blocking call, with the ring's sum order and rounding (docs/shm.md).
      if (shm) {
        shm.allReduce(view(request.buffer), { wireDtype, exact: request.exact });
        return {};
      }
      const t = transports();
      const transport = request.exact ? t.exact : t.wire;
      await ringAllReduce(view(request.buffer), transport, data.rank, data.worldSize, options);
      return {};
    }
    case 'broadcast':
      if (shm) {
        shm.broadcast(view(request.buffer), request.root);
        return {};
      }
      await broadcast(view(request.buffer), transports().exact, request.root, options);
      return {};
    case 'allGather': {
      if (shm) return { values: shm.allGather(request.local, request.sizes, { wireDtype, exact: request.exact }) };
      const t = transports();
      return { values: await ringAllGather(request.local, request.sizes, request.exact ? t.exact : t.wire, options) };
    }
    case 'reduceScatter':
      if (shm) return { values: shm.reduceScatter(request.values, request.sizes, { wireDtype }) };
      return { values: await ringReduceScatter(request.values, request.sizes, transports().wire, options) };
    case 'close':
      crossBound?.close();
      await Promise.all([ring?.close(), hier?.ring.close()]);
      return {};
  }
}

/** Bytes put on every ring so far (shared memory puts none on a wire). */
function bytesSent(): number {
  return (exact?.bytesSent ?? 0) + (wire?.bytesSent ?? 0) + (hier?.exact.bytesSent ?? 0) + (hier?.wire.bytesSent ?? 0);
}

function serve(data: CommThreadData, port: MessagePort, replies: MessagePort): void {
  port.on('message', (request: CommRequest) => {
    queue = queue.then(async () => {
      let reply: CommReply;
      if (broken !== null && request.op !== 'close') {
        reply = { id: request.id, error: broken };
      } else {
        try {
          reply = { id: request.id, ...(await run(data, request)) };
        } catch (err) {
          const e = err instanceof Error ? err : new Error(String(err));
          broken = { name: e.name, message: e.message };
          reply = { id: request.id, error: broken };
        }
      }
      stats[0] = bytesSent();
      // Results are fresh arrays that nothing else holds: moved, not copied.
      replies.postMessage(reply, reply.values ? [reply.values.buffer as ArrayBuffer] : []);
      Atomics.add(completed, 0, 1);
      Atomics.notify(completed, 0);
      if (request.op === 'close') port.close();
    });
  });
}

/**
 * The process is exiting: close the sockets now, even in the middle of a collective (the
 * request queue would only get to it after the collective's timeout).
 */
function serveAbort(data: CommThreadData, port: MessagePort): void {
  const aborted = new Int32Array(data.aborted);
  port.on('message', () => {
    try {
      ring?.abort();
      hier?.ring.abort();
      crossBound?.close();
    } finally {
      Atomics.store(aborted, 0, 1);
      Atomics.notify(aborted, 0);
      port.close();
    }
  });
}

if (parentPort !== null && data !== null) {
  // The 16-bit wire conversions come from the shared-memory addon (g++ only), where it loads.
  const unavailable = shmUnavailableReason();
  codec = unavailable === null ? useWireKernels(shmAddonPath()) : `js (${unavailable})`;
  completed = new Int32Array(data.completed);
  stats = new Float64Array(data.stats);
  serve(data, data.requests, data.replies);
  serveAbort(data, data.abort);
}
