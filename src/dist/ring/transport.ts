/**
 * The data-plane interface a rank uses to talk to its two ring neighbours, and an in-memory
 * implementation that runs several ranks inside one process (unit tests, and the reference the
 * ZeroMQ transport is checked against).
 *
 * Ownership rules (they mirror ZeroMQ's zero-copy sends, see docs/allreduce.md, "Zero-copy rules"):
 * - `send(chunk)` resolves when the chunk is queued, NOT when rank+1 has it. The transport may
 *   read `chunk`'s memory until then, so the caller must not write to it until the algorithm
 *   knows the peer has received it.
 * - `recv()` returns an array the caller owns: it may change it and pass it to `send()`.
 */
import { CommTimeoutError } from '../../core/errors';
import { assertInt, mod } from './ring-schedule';

export interface RingTransport {
  /** This rank, 0 .. worldSize-1. */
  readonly rank: number;
  /** Number of ranks in the ring. */
  readonly worldSize: number;
  /** Queues `chunk` for rank+1 (see the ownership rules above). */
  send(chunk: Float32Array): Promise<void>;
  /**
   * The next chunk from rank-1, in the order it was sent. Rejects with CommTimeoutError when
   * nothing arrives within `timeoutMs`.
   */
  recv(timeoutMs: number): Promise<Float32Array>;
  /** Releases sockets and timers. Idempotent. Pending and later calls reject. */
  close(): Promise<void>;
  /**
   * Rounds `values` in place to what this transport delivers (a 16-bit wire format rounds;
   * absent: delivered exactly). A rank that keeps its own copy of a value it also sends calls
   * this, so that its copy is bit-identical to what the other ranks receive.
   */
  quantize?(values: Float32Array): void;
}

/** The CommTimeoutError every transport raises, so messages read the same everywhere. */
export function recvTimeoutError(rank: number, worldSize: number, timeoutMs: number, where: string): CommTimeoutError {
  const peer = mod(rank - 1, worldSize);
  return new CommTimeoutError(
    `rank ${rank}: no data from rank ${peer} within ${timeoutMs} ms (${where}). ` +
      `Rank ${peer} is probably dead, hung or unreachable: check its log and exit code.`,
  );
}

/** Thrown when a transport is used after close(): a bug in the caller, not a peer problem. */
export function closedTransportError(rank: number): Error {
  return new Error(`rank ${rank}: ring transport used after close()`);
}

interface Waiter {
  resolve(chunk: Float32Array): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

interface Queued {
  /** The sender's own memory: copied only on delivery, like a zero-copy socket. */
  view: Float32Array;
  /** Copy taken at send time, only when hazard checking is on. */
  snapshot: Float32Array | null;
}

export interface InMemoryRingOptions {
  /**
   * Copy each chunk at send time and compare it with the sender's memory at delivery: a
   * difference means the sender overwrote a buffer the peer did not have yet (the ZeroMQ
   * zero-copy hazard), and the receive rejects. Costs one copy per chunk; on by default.
   */
  checkSendHazards?: boolean;
  /**
   * Deliver each chunk after a random 0..maxDelayMs wait, so senders run ahead of receivers and
   * a premature overwrite has time to happen. Default 0 (deliver on the next receive).
   */
  maxDelayMs?: number;
}

/** Several ranks in one process, linked by queues. Chunks are copied when delivered. */
class InMemoryRingTransport implements RingTransport {
  private readonly inbox: Queued[] = [];
  private waiter: Waiter | null = null;
  private closed = false;
  /** Serialises deliveries so a random delay never reorders chunks. */
  private delivery: Promise<void> = Promise.resolve();
  /** Set by createInMemoryRing once every rank exists. */
  next: InMemoryRingTransport | null = null;

  constructor(
    readonly rank: number,
    readonly worldSize: number,
    private readonly options: Required<InMemoryRingOptions>,
  ) {}

  async send(chunk: Float32Array): Promise<void> {
    if (this.closed) throw closedTransportError(this.rank);
    const snapshot = this.options.checkSendHazards ? chunk.slice() : null;
    // A closed peer drops what it is sent, like a dead process: the sender only notices
    // through its own receive timing out.
    if (this.next !== null && !this.next.closed) this.next.deliver({ view: chunk, snapshot });
  }

  async recv(timeoutMs: number): Promise<Float32Array> {
    if (this.closed) throw closedTransportError(this.rank);
    if (this.waiter !== null) throw new Error(`rank ${this.rank}: concurrent recv() calls`);
    const item = this.inbox.shift();
    if (item !== undefined) return this.take(item);
    return new Promise<Float32Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(recvTimeoutError(this.rank, this.worldSize, timeoutMs, 'in-memory ring'));
      }, timeoutMs);
      this.waiter = { resolve, reject, timer };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.inbox.length = 0;
    const waiter = this.waiter;
    this.waiter = null;
    if (waiter !== null) {
      clearTimeout(waiter.timer);
      waiter.reject(closedTransportError(this.rank));
    }
  }

  private deliver(item: Queued): void {
    const delayMs = this.options.maxDelayMs > 0 ? Math.random() * this.options.maxDelayMs : 0;
    const push = (): void => {
      if (this.closed) return;
      const waiter = this.waiter;
      if (waiter === null) {
        this.inbox.push(item);
        return;
      }
      this.waiter = null;
      clearTimeout(waiter.timer);
      try {
        waiter.resolve(this.take(item));
      } catch (err) {
        waiter.reject(err as Error);
      }
    };
    // Delivery is always asynchronous, as on a socket; a delay keeps FIFO order because every
    // chunk goes through the same promise chain.
    this.delivery = this.delivery.then(
      () =>
        new Promise<void>((resolve) => {
          const run = (): void => (push(), resolve());
          if (delayMs > 0) setTimeout(run, delayMs);
          else setImmediate(run);
        }),
    );
  }

  private take(item: Queued): Float32Array {
    const copy = item.view.slice();
    if (item.snapshot !== null && !sameBits(item.snapshot, copy)) {
      throw new Error(
        `rank ${this.rank}: rank ${mod(this.rank - 1, this.worldSize)} overwrote a sent chunk ` +
          'before it was delivered (zero-copy hazard)',
      );
    }
    return copy;
  }
}

/** Bitwise equality, so -0/+0 and NaN payloads count as changes. */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

/** One transport per rank, wired into a ring: rank r sends to (r+1) % worldSize. */
export function createInMemoryRing(worldSize: number, options: InMemoryRingOptions = {}): RingTransport[] {
  assertInt('worldSize', worldSize, 1);
  const resolved: Required<InMemoryRingOptions> = {
    checkSendHazards: options.checkSendHazards ?? true,
    maxDelayMs: options.maxDelayMs ?? 0,
  };
  const ranks = Array.from({ length: worldSize }, (_, rank) => new InMemoryRingTransport(rank, worldSize, resolved));
  ranks.forEach((t, rank) => (t.next = ranks[mod(rank + 1, worldSize)] ?? null));
  return ranks;
}
