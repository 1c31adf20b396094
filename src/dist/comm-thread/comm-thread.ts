/**
 * A worker's ring, run on a thread of its own, as a Collective that can also be called
 * synchronously. Two things need that:
 * - the hybrid mode's gathers and scatters sit inside the forward and backward pass, and
 *   tfjs's autodiff (tf.variableGrads) runs the whole pass as one synchronous call: a
 *   collective there must block until it is done, and it can only finish while the main thread
 *   blocks if another thread drives the sockets;
 * - overlapping the all-reduce with the backward pass: gradients handed over from inside the
 *   backward pass are reduced while the main thread computes the rest of it.
 *
 * The thread (thread-main.ts) serves requests in the order they are posted, which is the
 * same on every rank, so the ring's messages match up as they do without a thread. Large
 * buffers (the fusion buffer) live in shared memory and are reduced where they are; small ones
 * (activations) are copied through the message ports.
 */
import * as path from 'node:path';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { CommTimeoutError, ConfigError, ProtocolError, WorkerExitedError } from '../../core/errors';
import { sharedFloats, type SyncCollective } from '../collective';
import type { CommReply, CommRequest, SharedView } from './requests';
import type { CurveKeys } from '../security/curve-auth';
import type { WireDtype } from '../ring/wire-codec';
import type { ShmGroup } from '../shm/shm-group';
import type { HierarchicalLayout } from '../shm/hierarchical';

export interface CommThreadOptions {
  rank: number;
  worldSize: number;
  bindAddress: string;
  /**
   * Multi-host runs: where the cross-ring socket binds (the hierarchical plane's ring between
   * hosts). Bound at start so its endpoint can go in the hello; unused if the plane is flat.
   */
  crossBindAddress?: string | null;
  curve?: CurveKeys | null;
  /** How long a peer may stay silent inside a collective (the thread's receive timeout). */
  timeoutMs: number;
  chunkBytes?: number;
}

/** How long an exiting process waits for the thread to close its sockets. */
const ABORT_WAIT_MS = 2000;
/** How long a blocked main thread waits beyond the thread's own receive timeout. */
const WAIT_MARGIN_MS = 30_000;
/** Poll interval of a blocked wait: lets a dead thread be noticed. */
const WAIT_SLICE_MS = 1000;

function threadScript(): string {
  // Tests run this module from src/ (TypeScript); the thread always runs the compiled file.
  const dir = __filename.endsWith('.ts') ? path.resolve(__dirname, '../../../dist/src/dist/comm-thread') : __dirname;
  return path.join(dir, 'thread-main.js');
}

const ERROR_CLASSES: Record<string, new (message: string) => Error> = {
  CommTimeoutError,
  ProtocolError,
  ConfigError,
  WorkerExitedError,
};

function rebuildError(error: { name: string; message: string }): Error {
  const Class = ERROR_CLASSES[error.name];
  if (Class) return new Class(error.message);
  const e = new Error(error.message);
  e.name = error.name;
  return e;
}

function sharedView(values: Float32Array): SharedView | null {
  if (!(values.buffer instanceof SharedArrayBuffer)) return null;
  return { buffer: values.buffer, byteOffset: values.byteOffset, length: values.length };
}

/**
 * Runs `work` on `values` as the thread sees them: in place when they are in shared memory (the
 * fusion buffer), else on a shared copy written back afterwards (small buffers: tails, tests).
 */
async function inSharedMemory(values: Float32Array, work: (view: SharedView) => Promise<unknown>): Promise<void> {
  const shared = sharedView(values);
  if (shared !== null) {
    await work(shared);
    return;
  }
  const copy = sharedFloats(values.length);
  copy.set(values);
  await work(sharedView(copy) as SharedView);
  values.set(copy);
}

type WaitAsync = (
  array: Int32Array,
  index: number,
  value: number,
  timeoutMs: number,
) => { async: false; value: string } | { async: true; value: Promise<string> };

export class CommThread implements SyncCollective {
  /** Set by connect(): the ranks agree on it through the run's config. */
  wireDtype: WireDtype = 'fp32';
  private nextId = 1;
  private readonly replies = new Map<number, CommReply>();
  private readonly started: number[] = [];
  private exited: Error | null = null;
  private blockedMs = 0;
  private readonly waitLimitMs: number;
  endpoint = '';
  /** Where the cross-ring socket is bound (crossBindAddress given), else null. */
  crossEndpoint: string | null = null;
  /** Which 16-bit conversions the thread uses: 'native', or 'js' with the reason. */
  codec = 'js';

  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    private readonly worker: Worker,
    private readonly requests: MessagePort,
    private readonly replyPort: MessagePort,
    private readonly completed: Int32Array,
    private readonly abortPort: MessagePort,
    private readonly aborted: Int32Array,
    private readonly stats: Float64Array,
    options: CommThreadOptions,
  ) {
    this.waitLimitMs = options.timeoutMs + WAIT_MARGIN_MS;
    worker.on('error', (err) => (this.exited = err));
    worker.on('exit', (code) => {
      this.exited ??= new WorkerExitedError(`rank ${this.rank}: the communication thread exited (code ${code})`);
      process.off('exit', this.abortOnExit);
    });
    process.on('exit', this.abortOnExit);
  }

  /**
   * On process exit (process.exit anywhere, an uncaught exception, the end of main): the
   * thread closes its sockets first. A ZeroMQ socket still receiving on a worker thread when
   * the process exits aborts the process (zeromq.js issue #411: SIGABRT instead of the exit
   * code). Runs synchronously, as 'exit' listeners must.
   */
  private readonly abortOnExit = (): void => {
    if (this.exited !== null) return;
    this.abortPort.postMessage('exit');
    Atomics.wait(this.aborted, 0, 0, ABORT_WAIT_MS);
  };

  /** Starts the thread and binds the ring's receiving socket (publish `endpoint`, then connect). */
  static async start(options: CommThreadOptions): Promise<CommThread> {
    const requests = new MessageChannel();
    const replies = new MessageChannel();
    const abort = new MessageChannel();
    const completed = new SharedArrayBuffer(4);
    const aborted = new SharedArrayBuffer(4);
    const stats = new SharedArrayBuffer(8);
    const worker = new Worker(threadScript(), {
      workerData: {
        rank: options.rank,
        worldSize: options.worldSize,
        bindAddress: options.bindAddress,
        crossBindAddress: options.crossBindAddress ?? null,
        curve: options.curve ?? null,
        timeoutMs: options.timeoutMs,
        chunkBytes: options.chunkBytes ?? null,
        completed,
        requests: requests.port2,
        replies: replies.port2,
        abort: abort.port2,
        aborted,
        stats,
      },
      transferList: [requests.port2, replies.port2, abort.port2],
    });
    const thread = new CommThread(
      options.rank,
      options.worldSize,
      worker,
      requests.port1,
      replies.port1,
      new Int32Array(completed),
      abort.port1,
      new Int32Array(aborted),
      new Float64Array(stats),
      options,
    );
    try {
      const bound = await thread.call({ op: 'bind' });
      thread.endpoint = bound.endpoint ?? '';
      thread.crossEndpoint = bound.crossEndpoint ?? null;
      thread.codec = bound.codec ?? 'js';
    } catch (err) {
      await worker.terminate();
      throw err;
    }
    return thread;
  }

  /** The ranks of this host in shared memory (useSharedMemory), or null: the ring. */
  private shm: ShmGroup | null = null;

  /** Connects to rank + 1's endpoint; values then travel in `wireDtype`. */
  async connect(next: string, wireDtype: WireDtype = 'fp32'): Promise<void> {
    await this.call({ op: 'connect', next, wireDtype });
    this.wireDtype = wireDtype;
  }

  /**
   * From now on the collectives run in `group` (every rank of the run is in it), after the
   * requests already posted. Buffers from allocate() are then reduced in the segment in place.
   */
  async useSharedMemory(group: ShmGroup): Promise<void> {
    await this.call({ op: 'useShm', handle: group.handle });
    this.shm = group;
  }

  /**
   * From now on all-reduces are hierarchical (dist/shm/hierarchical.ts): sums in `host` (this host's
   * ranks), then over cross ring `layout.localRank`, whose next member is bound at `crossNext`.
   * Broadcasts, gathers and scatters stay on the flat ring. Buffers from allocate() then live in
   * the host's segment. Resolves once the cross ring's hellos went round.
   */
  async useHierarchical(host: ShmGroup, layout: HierarchicalLayout, crossNext: string): Promise<void> {
    await this.call({ op: 'useHierarchical', handle: host.handle, layout, crossNext });
    this.shm = host;
  }

  allocate(length: number): Float32Array {
    return this.shm ? this.shm.allocate(length) : sharedFloats(length);
  }

  async allReduce(buffer: Float32Array, options: { exact?: boolean } = {}): Promise<void> {
    await inSharedMemory(buffer, (view) => this.call({ op: 'allReduce', buffer: view, exact: options.exact ?? false }));
  }

  async broadcast(buffer: Float32Array, root: number): Promise<void> {
    await inSharedMemory(buffer, (view) => this.call({ op: 'broadcast', buffer: view, root }));
  }

  async allGather(local: Float32Array, sizes: readonly number[], exact = false): Promise<Float32Array> {
    return (await this.call({ op: 'allGather', local, sizes: [...sizes], exact })).values as Float32Array;
  }

  async reduceScatter(values: Float32Array, sizes: readonly number[]): Promise<Float32Array> {
    return (await this.call({ op: 'reduceScatter', values, sizes: [...sizes] })).values as Float32Array;
  }

  allGatherSync(local: Float32Array, sizes: readonly number[], exact = false): Float32Array {
    return this.callSync({ op: 'allGather', local, sizes: [...sizes], exact }).values as Float32Array;
  }

  reduceScatterSync(values: Float32Array, sizes: readonly number[]): Float32Array {
    return this.callSync({ op: 'reduceScatter', values, sizes: [...sizes] }).values as Float32Array;
  }

  allReduceStart(values: Float32Array): void {
    const shared = sharedView(values);
    if (shared === null) throw new Error('allReduceStart needs values in shared memory (sharedFloats)');
    this.started.push(this.post({ op: 'allReduce', buffer: shared, exact: false }));
  }

  async settle(): Promise<void> {
    const ids = this.started.splice(0);
    // Every started request is collected, so a failure does not leave stale replies behind.
    let failure: unknown = null;
    for (const id of ids) {
      try {
        await this.waitAsync(id);
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== null) throw failure;
  }

  bytesSent(): number {
    return this.stats[0];
  }

  async close(): Promise<void> {
    if (this.exited === null) {
      await this.call({ op: 'close' }).catch(() => undefined);
    }
    process.off('exit', this.abortOnExit);
    await this.worker.terminate();
  }

  private post(body: DistributiveOmit<CommRequest, 'id'>): number {
    if (this.exited !== null) throw this.exited;
    const id = this.nextId++;
    this.requests.postMessage({ ...body, id } as CommRequest);
    return id;
  }

  private call(body: DistributiveOmit<CommRequest, 'id'>): Promise<CommReply> {
    return this.waitAsync(this.post(body));
  }

  takeBlockedMs(): number {
    const ms = this.blockedMs;
    this.blockedMs = 0;
    return ms;
  }

  private callSync(body: DistributiveOmit<CommRequest, 'id'>): CommReply {
    const started = performance.now();
    try {
      return this.blockingWait(this.post(body));
    } finally {
      this.blockedMs += performance.now() - started;
    }
  }

  private blockingWait(id: number): CommReply {
    const deadline = Date.now() + this.waitLimitMs;
    for (;;) {
      const done = Atomics.load(this.completed, 0);
      if (done >= id) return this.take(id);
      const left = deadline - Date.now();
      if (left <= 0) throw this.stuck(id);
      Atomics.wait(this.completed, 0, done, Math.min(left, WAIT_SLICE_MS));
    }
  }

  private async waitAsync(id: number): Promise<CommReply> {
    const deadline = Date.now() + this.waitLimitMs;
    const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;
    for (;;) {
      const done = Atomics.load(this.completed, 0);
      if (done >= id) return this.take(id);
      if (this.exited !== null) throw this.exited;
      const left = deadline - Date.now();
      if (left <= 0) throw this.stuck(id);
      const waited = waitAsync(this.completed, 0, done, Math.min(left, WAIT_SLICE_MS));
      if (waited.async) await waited.value;
    }
  }

  /** The reply to request `id`, which has completed; replies to others are kept for later. */
  private take(id: number): CommReply {
    for (let m = receiveMessageOnPort(this.replyPort); m !== undefined; m = receiveMessageOnPort(this.replyPort)) {
      const reply = m.message as CommReply;
      this.replies.set(reply.id, reply);
    }
    const reply = this.replies.get(id);
    if (reply === undefined)
      throw new Error(`rank ${this.rank}: the communication thread finished request ${id} without answering it`);
    this.replies.delete(id);
    if (reply.error !== undefined) throw rebuildError(reply.error);
    return reply;
  }

  private stuck(id: number): Error {
    return (
      this.exited ??
      new CommTimeoutError(
        `rank ${this.rank}: collective ${id} did not finish within ${this.waitLimitMs / 1000} s (the communication thread is stuck)`,
      )
    );
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
