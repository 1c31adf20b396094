/**
 * A decode thread of DecodePool (src/data/decode-pool.ts): reads and decodes the files of each
 * request in order and answers with their results. Reads block this thread only.
 */
import { parentPort } from 'node:worker_threads';
import { decodeFileBlocking } from './decode';
import type { DecodeReply, DecodeRequest } from './decode-pool';

if (!parentPort) throw new Error('decode-worker.ts runs as a worker thread of DecodePool');
const port = parentPort;

port.on('message', (request: DecodeRequest) => {
  void (async () => {
    const results = [];
    for (const file of request.files) results.push(await decodeFileBlocking(file, request.opts));
    const reply: DecodeReply = { id: request.id, results };
    port.postMessage(reply);
  })();
});
