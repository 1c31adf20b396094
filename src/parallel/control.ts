/**
 * The control plane's sockets: a worker's DEALER and the coordinator's ROUTER, with the two
 * rules zeromq.js imposes made safe once here: one send in flight per socket (sends are queued
 * in order) and one receive loop per socket (messages are dispatched to a handler).
 */
import * as zmq from 'zeromq';
import { decodeMessage, encodeMessage, type ControlMessage } from './protocol';

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

/** Worker side: one DEALER connected to the coordinator's ROUTER. */
export class WorkerControl {
  private readonly socket = new zmq.Dealer({ linger: 2000 });
  private readonly queue = new SendQueue();

  constructor(address: string) {
    this.socket.connect(address);
  }

  send(message: ControlMessage): Promise<void> {
    const bytes = encodeMessage(message);
    return this.queue.run(() => this.socket.send(bytes));
  }

  /** Test hook: bytes that are not a control message. */
  sendRaw(bytes: Uint8Array): Promise<void> {
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
  private readonly socket = new zmq.Router({ linger: 500, mandatory: false });
  private readonly queue = new SendQueue();

  async bind(address: string): Promise<void> {
    await this.socket.bind(address);
  }

  send(routingId: Uint8Array, message: ControlMessage): Promise<void> {
    const bytes = encodeMessage(message);
    return this.queue.run(() => this.socket.send([routingId, bytes]));
  }

  async listen(onMessage: (routingId: Uint8Array, m: ControlMessage) => void, onFault: (routingId: Uint8Array, err: Error) => void): Promise<void> {
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
  }
}
