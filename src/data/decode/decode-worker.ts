/**
 * A decode thread of DecodePool (src/data/decode/decode-pool.ts): reads and decodes the files of each
 * request and answers with their results, in order. Reads block this thread only. Two files are
 * in flight, so that while sharp decodes one on libuv's pool this thread reads the next: with
 * one, a thread per core left the cores idle between a JPEG's decode and the next read.
 */
import { parentPort } from 'node:worker_threads';
import { DecodeResult, decodeFileBlocking } from './decode';
import type { DecodeReply, DecodeRequest } from './decode-pool';
import { mapLimit } from '../pool';

const IN_FLIGHT_PER_THREAD = 2;

/**
 * The pixel buffers to move to the loader's thread rather than copy (a 256 px square is 192 KiB):
 * those whose array spans its whole buffer, so nothing else is moved along.
 */
function ownBuffers(results: readonly DecodeResult[]): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const r of results) {
    const { buffer, byteOffset, byteLength } = r.ok ? r.pixels : new Uint8Array(0);
    if (byteLength > 0 && byteOffset === 0 && byteLength === buffer.byteLength && buffer instanceof ArrayBuffer)
      buffers.add(buffer);
  }
  return [...buffers];
}

if (!parentPort) throw new Error('decode-worker.ts runs as a worker thread of DecodePool');
const port = parentPort;

port.on('message', (request: DecodeRequest) => {
  void (async () => {
    const results = await mapLimit(request.files, IN_FLIGHT_PER_THREAD, (file) =>
      decodeFileBlocking(file, request.opts),
    );
    const reply: DecodeReply = { id: request.id, results };
    try {
      port.postMessage(reply, ownBuffers(results));
    } catch {
      // sharp's buffers are external memory, which Node 21+ refuses to transfer (Node 20 copies
      // them): a batch holding one is copied whole. Node checks the list before moving anything.
      port.postMessage(reply);
    }
  })();
});
