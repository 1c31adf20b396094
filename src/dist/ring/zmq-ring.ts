/**
 * The ZeroMQ RingTransport: rank r binds a PULL socket (receives from rank r-1) and connects
 * a PUSH socket to rank r+1's PULL. Data frames are raw float32 bytes, one chunk per message,
 * no msgpack. Setup is two-phase so that ephemeral tcp ports work:
 *
 *   const t = await ZmqRingTransport.bind({ rank, worldSize, bindAddress });
 *   // publish t.endpoint (control plane), learn rank+1's endpoint, then:
 *   await t.connect(nextEndpoint);   // hello handshake with both neighbours
 *
 * Zero-copy: ZeroMQ sends any buffer over 128 bytes without copying, and `send()` resolves
 * before the peer has the bytes; received messages over 128 bytes are handed to us without a
 * copy too. This transport adds no copies and no acks: the collectives in allreduce.ts are
 * written so that no sent memory is overwritten before the peer provably has it (see there).
 * That keeps the data path at the kernel's two copies per byte, which is the bottleneck.
 */
import * as zmq from 'zeromq';
import { ConfigError, ProtocolError, WorkerExitedError } from '../../core/errors';
import {
  CurveKeys,
  applyCurveClient,
  applyCurveServer,
  startZapHandler,
  validateCurveKeys,
} from '../security/curve-auth';
import { bindError, checkBindable, parseRingAddress } from './ring-address';
import { assertInt, mod } from './ring-schedule';
import { RingTransport, closedTransportError, recvTimeoutError } from './transport';

export interface ZmqRingOptions {
  /** This rank, 0 .. worldSize-1. */
  rank: number;
  /** Number of ranks in the ring. */
  worldSize: number;
  /** Where this rank's receiving socket binds: ipc://<path>, tcp://<host>:<port|*>. */
  bindAddress: string;
  /** Encrypt and authenticate with CURVE (see dist/security/curve-auth.ts); plain when absent. */
  curve?: CurveKeys;
  /**
   * Kernel socket buffer size in bytes (SO_SNDBUF / SO_RCVBUF), capped by the kernel's
   * net.core.[rw]mem_max. Larger than the 208 KiB default because that is faster over ipc
   * (docs/allreduce.md, "Performance").
   */
  socketBufferBytes?: number;
  /** How long close() waits for rank+1 to receive our last chunks, in ms (see close()). */
  lingerMs?: number;
}

/**
 * Control frames on a ring link, [magic, version, rank, worldSize]: HELLO proves the wiring
 * before any data flows; BYE drains the ring on close. Both are only expected when no data
 * is in flight (before the first and after the last collective).
 */
const HELLO_MAGIC = 0x52494e47; // 'RING'
const BYE_MAGIC = 0x42594521; // 'BYE!'
const PROTOCOL_WORDS_VERSION = 1;
const CONTROL_WORDS = 4;

export const DEFAULT_SOCKET_BUFFER_BYTES = 4 << 20;
export const DEFAULT_LINGER_MS = 2_000;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30_000;

function errorCode(err: unknown): string | undefined {
  return err instanceof Error ? (err as Error & { code?: string }).code : undefined;
}

function checkPosition(rank: number, worldSize: number): void {
  assertInt('worldSize', worldSize, 2);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new ConfigError(`rank must be in [0, ${worldSize}), got ${rank}`);
  }
}

interface RingSockets {
  endpoint: string;
  pull: zmq.Pull;
  push: zmq.Push;
  zap: zmq.Router | null;
  lingerMs: number;
}

/**
 * A ring member's sockets, bound but not yet in a ring: the receiving socket listens at
 * `endpoint`. ZmqRingTransport.fromBound takes them over (once); close() frees them if never.
 */
export class BoundRingSockets {
  private sockets: RingSockets | null;

  constructor(sockets: RingSockets) {
    this.sockets = sockets;
  }

  /** The address actually bound (the port filled in for tcp://host:*). */
  get endpoint(): string {
    if (this.sockets === null) throw new Error('bound ring sockets used after they were taken or closed');
    return this.sockets.endpoint;
  }

  /** Hands the sockets over to a transport, which owns (and closes) them from now on. */
  take(): RingSockets {
    const sockets = this.sockets;
    if (sockets === null) throw new Error('bound ring sockets placed in a ring twice, or after close()');
    this.sockets = null;
    return sockets;
  }

  /** Closes sockets no transport took (a flat-ring run never uses the cross socket). */
  close(): void {
    const sockets = this.sockets;
    this.sockets = null;
    if (sockets === null) return;
    sockets.push.linger = 0;
    sockets.pull.close();
    sockets.push.close();
    sockets.zap?.close();
  }
}

/** Creates a ring member's sockets and binds the receiving one; ConfigError if the address is bad/busy. */
export async function bindRingSockets(options: Omit<ZmqRingOptions, 'rank' | 'worldSize'>): Promise<BoundRingSockets> {
  const { bindAddress, curve } = options;
  await checkBindable(bindAddress);
  if (curve !== undefined) validateCurveKeys(curve);
  const bufferBytes = options.socketBufferBytes ?? DEFAULT_SOCKET_BUFFER_BYTES;
  // A context per transport: each needs its own ZAP handler, and tests run several ranks
  // in one process.
  const context = new zmq.Context();
  const zap = curve === undefined ? null : await startZapHandler(context, curve.allowedClientKeys);
  // High-water marks 0 (unlimited): a collective never has more than one buffer in flight,
  // and a bounded queue could block every rank in send() at once (a ring deadlock).
  const pull = new zmq.Pull({ context, receiveHighWaterMark: 0, linger: 0 });
  const push = new zmq.Push({ context, sendHighWaterMark: 0 });
  const lingerMs = options.lingerMs ?? DEFAULT_LINGER_MS;
  push.linger = lingerMs;
  pull.receiveBufferSize = bufferBytes;
  push.sendBufferSize = bufferBytes;
  if (curve !== undefined) {
    applyCurveServer(pull, curve);
    applyCurveClient(push, curve);
  }
  try {
    await pull.bind(bindAddress);
  } catch (err) {
    pull.close();
    push.close();
    zap?.close();
    throw bindError(bindAddress, err);
  }
  return new BoundRingSockets({ endpoint: pull.lastEndpoint ?? bindAddress, pull, push, zap, lingerMs });
}

export class ZmqRingTransport implements RingTransport {
  private connected = false;
  private closed = false;
  /** Set when a receive failed: the ring is broken, so close() drops unsent chunks. */
  private broken = false;

  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    /** The address actually bound (the port filled in for tcp://host:*). */
    readonly endpoint: string,
    private readonly pull: zmq.Pull,
    private readonly push: zmq.Push,
    private readonly zap: zmq.Router | null,
    private readonly lingerMs: number,
  ) {}

  /** Creates the sockets and binds the receiving one; ConfigError if the address is bad/busy. */
  static async bind(options: ZmqRingOptions): Promise<ZmqRingTransport> {
    const { rank, worldSize } = options;
    checkPosition(rank, worldSize);
    return ZmqRingTransport.fromBound(await bindRingSockets(options), rank, worldSize);
  }

  /**
   * Places sockets bound earlier (bindRingSockets) in a ring as `rank` of `worldSize`: for a
   * ring whose members are only known after the bind (the hierarchical plane's cross rings,
   * whose endpoints travel in the worker's hello, before the config says who is in them).
   */
  static fromBound(bound: BoundRingSockets, rank: number, worldSize: number): ZmqRingTransport {
    checkPosition(rank, worldSize);
    const { endpoint, pull, push, zap, lingerMs } = bound.take();
    return new ZmqRingTransport(rank, worldSize, endpoint, pull, push, zap, lingerMs);
  }

  /**
   * Connects to rank+1's endpoint and exchanges hellos: sends ours, then waits for rank-1's.
   * Resolves once both links carry traffic; CommTimeoutError if rank-1 never says hello.
   */
  async connect(nextEndpoint: string, timeoutMs = DEFAULT_HANDSHAKE_TIMEOUT_MS): Promise<void> {
    if (this.closed) throw closedTransportError(this.rank);
    if (this.connected) throw new Error(`rank ${this.rank}: connect() called twice`);
    parseRingAddress(nextEndpoint);
    try {
      this.push.connect(nextEndpoint);
    } catch (err) {
      throw new ConfigError(`rank ${this.rank}: cannot connect to ${nextEndpoint}: ${String(err)}`);
    }
    this.connected = true;
    await this.push.send(this.controlFrame(HELLO_MAGIC));
    const frame = await this.receiveFrame(timeoutMs, 'hello from the previous rank');
    try {
      this.checkHello(frame);
    } catch (err) {
      this.broken = true;
      throw err;
    }
  }

  async send(chunk: Float32Array): Promise<void> {
    if (this.closed) throw closedTransportError(this.rank);
    if (!this.connected) throw new Error(`rank ${this.rank}: send() before connect()`);
    // A view, not a copy: see the zero-copy note at the top of this file.
    await this.push.send(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  }

  async recv(timeoutMs: number): Promise<Float32Array> {
    const frame = await this.receiveFrame(timeoutMs, this.endpoint);
    if (this.isControlFrame(frame, BYE_MAGIC)) {
      this.broken = true;
      const prev = mod(this.rank - 1, this.worldSize);
      throw new WorkerExitedError(
        `rank ${this.rank}: rank ${prev} closed its ring connection while rank ${this.rank} ` +
          `still expected data: rank ${prev} stopped early (failed?). Check its log.`,
      );
    }
    if (frame.byteLength % 4 !== 0) {
      this.broken = true;
      throw new ProtocolError(
        `rank ${this.rank}: received ${frame.byteLength} bytes from rank ` +
          `${mod(this.rank - 1, this.worldSize)}, not a whole number of float32s`,
      );
    }
    if (frame.byteOffset % 4 === 0) {
      return new Float32Array(frame.buffer, frame.byteOffset, frame.byteLength / 4);
    }
    // ZeroMQ may place mid-sized messages at any offset of its receive arena.
    const aligned = new Float32Array(frame.byteLength / 4);
    new Uint8Array(aligned.buffer).set(frame);
    return aligned;
  }

  /**
   * Closes the sockets. On a healthy ring this is collective: it first waits (up to lingerMs)
   * until rank+1 has received everything we sent, because our last chunks are sent zero-copy
   * from JS memory, and a process that exits while ZeroMQ still reads that memory sends
   * garbage or dies with libzmq's "Bad address" assertion (2 of ~23 benchmark runs before this
   * drain existed, 0 of ~18 after).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.connected && !this.broken) await this.drain(this.lingerMs).catch(() => undefined);
    this.closed = true;
    // Only small, copied frames can still be queued now; after a failure there is no one to
    // deliver to, so do not make process exit wait.
    this.push.linger = this.broken ? 0 : this.lingerMs;
    this.pull.close();
    this.push.close();
    this.zap?.close();
  }

  /**
   * Closes the sockets at once, without the BYE drain: the process is exiting (see
   * dist/comm-thread/comm-thread.ts). A receive in progress rejects. Synchronous.
   */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    this.broken = true;
    this.push.linger = 0;
    this.pull.close();
    this.push.close();
    this.zap?.close();
  }

  /**
   * Every rank sends a small BYE, then forwards the BYEs of the others. Our own BYE coming back
   * means rank+1 forwarded it, so it had received all our earlier frames (a link is FIFO).
   * Each rank sends its own BYE before forwarding any, so by the time ours returns we have
   * forwarded everyone else's. Stray data frames (from a failed collective) are dropped.
   */
  private async drain(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    await this.push.send(this.controlFrame(BYE_MAGIC));
    for (;;) {
      const remainingMs = Math.max(1, Math.round(deadline - performance.now()));
      const frame = await this.receiveFrame(remainingMs, 'closing');
      if (!this.isControlFrame(frame, BYE_MAGIC)) continue;
      if (frame.readUInt32LE(8) === this.rank) return;
      await this.push.send(Buffer.from(frame)); // a copy: 12 bytes, ZeroMQ copies it anyway
    }
  }

  /** True for rank-1's control frame with `magic` (a data chunk matches with odds ~2^-128). */
  private isControlFrame(frame: Buffer, magic: number): boolean {
    return (
      frame.byteLength === CONTROL_WORDS * 4 &&
      frame.readUInt32LE(0) === magic &&
      frame.readUInt32LE(4) === PROTOCOL_WORDS_VERSION &&
      frame.readUInt32LE(12) === this.worldSize
    );
  }

  /** [magic, version, rank, worldSize] as little-endian uint32s. */
  private controlFrame(magic: number): Buffer {
    const frame = Buffer.alloc(CONTROL_WORDS * 4);
    [magic, PROTOCOL_WORDS_VERSION, this.rank, this.worldSize].forEach((word, i) => frame.writeUInt32LE(word, i * 4));
    return frame;
  }

  private async receiveFrame(timeoutMs: number, where: string): Promise<Buffer> {
    if (this.closed) throw closedTransportError(this.rank);
    if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs must be > 0, got ${timeoutMs}`);
    if (this.pull.receiveTimeout !== timeoutMs) this.pull.receiveTimeout = timeoutMs;
    let frames: Buffer[];
    try {
      frames = await this.pull.receive();
    } catch (err) {
      if (this.closed) throw closedTransportError(this.rank);
      this.broken = true;
      if (errorCode(err) === 'EAGAIN') {
        throw recvTimeoutError(this.rank, this.worldSize, timeoutMs, where);
      }
      throw err;
    }
    if (frames.length !== 1) {
      this.broken = true;
      throw new ProtocolError(`rank ${this.rank}: expected a single-frame message, got ${frames.length} frames`);
    }
    return frames[0];
  }

  private checkHello(frame: Buffer): void {
    const prev = mod(this.rank - 1, this.worldSize);
    const words =
      frame.byteLength === CONTROL_WORDS * 4
        ? Array.from({ length: CONTROL_WORDS }, (_, i) => frame.readUInt32LE(i * 4))
        : [];
    const [magic, version, sender, worldSize] = words;
    if (magic !== HELLO_MAGIC || version !== PROTOCOL_WORDS_VERSION) {
      throw new ProtocolError(
        `rank ${this.rank}: the first message on ${this.endpoint} is not a ring hello ` +
          `(version ${PROTOCOL_WORDS_VERSION}); another program or version is connected`,
      );
    }
    if (sender !== prev || worldSize !== this.worldSize) {
      throw new ProtocolError(
        `rank ${this.rank}: hello from rank ${sender} of ${worldSize}, expected rank ${prev} ` +
          `of ${this.worldSize}: the ring addresses are wired wrongly`,
      );
    }
  }
}
