/**
 * The control plane's sockets: a worker's (or join agent's) DEALER and the coordinator's
 * ROUTER, with the two rules zeromq.js imposes made safe once here: one send in flight per
 * socket (sends are queued in order) and one receive loop per socket (messages are dispatched
 * to a handler). In a multi-host run both sides use CURVE with the cluster key (dist/security/curve-auth.ts):
 * a peer without it fails the handshake, and its messages never reach a handler.
 */
import * as zmq from 'zeromq';
import { applyCurveClient, applyCurveServer, startZapHandler, type CurveKeys } from '../security/curve-auth';
import { decodeMessage, encodeMessage, type ControlMessage } from './messages';

/** Serialises sends: zeromq.js rejects a send while another is in progress on the socket. */
class SendQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run(send: () => Promise<void>): Promise<void> {
    const next = this.tail.then(send, send);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

export type ProtocolFault = (err: Error, raw: Uint8Array) => void;

/** Why a CURVE handshake failed, in words, or null if `event` is not a handshake failure. */
export function handshakeFailure(event: zmq.Event): string | null {
  if (event.type === 'handshake:error:auth') return 'its key is not the cluster key (refused by the allow-list)';
  if (event.type !== 'handshake:error:protocol' && event.type !== 'handshake:error:other') return null;
  const code = (event.error as Error & { code?: string }).code;
  if (code === 'ERR_ZMTP_MECHANISM_MISMATCH') return 'it has no CURVE key';
  if (code === 'ERR_ZMTP_CRYPTOGRAPHIC') return 'it does not hold the cluster key';
  // What a client sees when the server cannot decrypt its hello (another key) and hangs up.
  if (code === 'EPIPE' || code === 'ECONNRESET') return 'the peer hung up during the handshake';
  return `${event.error.message}${code ? ` (${code})` : ''}`;
}

/** Calls `onEvent` with every monitoring event of `socket` until it closes. */
async function watchEvents(socket: zmq.Socket, onEvent: (event: zmq.Event) => void): Promise<void> {
  try {
    for await (const event of socket.events) onEvent(event);
  } catch {
    // the socket closed while an event was pending
  }
}

export interface ConnectionHandlers {
  /** The CURVE handshake with the coordinator succeeded (also after a reconnect). */
  onConnected(): void;
  /** The coordinator (or whatever listens there) refused our handshake. */
  onRefused(why: string): void;
  /** The connection dropped; ZeroMQ reconnects by itself. */
  onDisconnected(): void;
}

export interface WorkerControlOptions {
  /** Be a CURVE client with these keys (multi-host runs). */
  curve?: CurveKeys | null;
  /** Send ZMTP pings this often (ms), so a coordinator host that vanished counts as a disconnect. */
  heartbeatMs?: number;
}

/** Worker (or join agent) side: one DEALER connected to the coordinator's ROUTER. */
export class WorkerControl {
  // Protected, not private: the fault-injecting fixture worker of the tests sends raw bytes.
  protected readonly socket = new zmq.Dealer({ linger: 2000 });
  protected readonly queue = new SendQueue();

  constructor(address: string, options: WorkerControlOptions = {}) {
    if (options.curve) applyCurveClient(this.socket, options.curve);
    if (options.heartbeatMs) {
      this.socket.heartbeatInterval = options.heartbeatMs;
      this.socket.heartbeatTimeout = 5 * options.heartbeatMs;
    }
    this.socket.connect(address);
  }

  /** Reports handshakes, refusals and disconnects of the link to the coordinator. */
  watchConnection(handlers: ConnectionHandlers): void {
    void watchEvents(this.socket, (event) => {
      const refused = handshakeFailure(event);
      if (refused !== null) handlers.onRefused(refused);
      else if (event.type === 'handshake') handlers.onConnected();
      else if (event.type === 'disconnect') handlers.onDisconnected();
    });
  }

  send(message: ControlMessage): Promise<void> {
    const bytes = encodeMessage(message);
    return this.queue.run(() => this.socket.send(bytes));
  }

  /** Receives until the socket closes; a malformed message is passed to onFault. */
  async listen(onMessage: (m: ControlMessage) => void, onFault: ProtocolFault): Promise<void> {
    try {
      for await (const [raw] of this.socket) {
        try {
          onMessage(decodeMessage(raw));
        } catch (err) {
          onFault(err as Error, raw);
        }
      }
    } catch (err) {
      if (!this.socket.closed) throw err;
    }
  }

  close(): void {
    if (!this.socket.closed) this.socket.close();
  }
}

/** Coordinator side: one ROUTER; peers are known by their routing id once they said hello. */
export class CoordinatorControl {
  private readonly socket: zmq.Router;
  private readonly queue = new SendQueue();
  private zap: zmq.Router | null = null;

  /** With `curve`, a CURVE server that admits only the cluster key (multi-host runs). */
  constructor(private readonly curve: CurveKeys | null = null) {
    // Its own context when secured: the ZAP handler is per context (see dist/security/curve-auth.ts).
    const context = curve ? new zmq.Context() : zmq.context;
    this.socket = new zmq.Router({ context, linger: 500, mandatory: false });
    if (curve) applyCurveServer(this.socket, curve);
  }

  /** Binds and returns the endpoint actually bound (a tcp port * filled in). */
  async bind(address: string): Promise<string> {
    if (this.curve && this.zap === null)
      this.zap = await startZapHandler(this.socket.context, this.curve.allowedClientKeys);
    await this.socket.bind(address);
    return this.socket.lastEndpoint ?? address;
  }

  /** Calls `onRefused` for every peer whose CURVE handshake failed (keyless, wrong key). */
  watchRefusals(onRefused: (why: string) => void): void {
    void watchEvents(this.socket, (event) => {
      const refused = handshakeFailure(event);
      if (refused !== null) onRefused(refused);
    });
  }

  send(routingId: Uint8Array, message: ControlMessage): Promise<void> {
    const bytes = encodeMessage(message);
    return this.queue.run(() => this.socket.send([routingId, bytes]));
  }

  async listen(
    onMessage: (routingId: Uint8Array, m: ControlMessage) => void,
    onFault: (routingId: Uint8Array, err: Error) => void,
  ): Promise<void> {
    try {
      for await (const [id, raw] of this.socket) {
        try {
          onMessage(id, decodeMessage(raw));
        } catch (err) {
          onFault(id, err as Error);
        }
      }
    } catch (err) {
      if (!this.socket.closed) throw err;
    }
  }

  close(): void {
    if (!this.socket.closed) this.socket.close();
    this.zap?.close();
  }
}
