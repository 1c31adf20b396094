/**
 * A decode thread of DecodePool (src/data/decode/decode-pool.ts): reads and decodes the files of each
 * request and answers with their results, in order. Reads block this thread only. Two files are
 * in flight, so that while sharp decodes one on libuv's pool this thread reads the next: with
 * one, a thread per core left the cores idle between a JPEG's decode and the next read.
 */
import { parentPort } from 'node:worker_threads';
import { decodeFileBlocking } from './decode';
import type { DecodeReply, DecodeRequest } from './decode-pool';
import { mapLimit } from '../pool';

const IN_FLIGHT_PER_THREAD = 2;

if (!parentPort) throw new Error('decode-worker.ts runs as a worker thread of DecodePool');
const port = parentPort;

port.on('message', (request: DecodeRequest) => {
  void (async () => {
    const results = await mapLimit(request.files, IN_FLIGHT_PER_THREAD, (file) =>
      decodeFileBlocking(file, request.opts),
    );
    const reply: DecodeReply = { id: request.id, results };
    port.postMessage(reply);
  })();
});
