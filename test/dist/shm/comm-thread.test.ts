/**
 * The group works from a worker thread, as the comm thread will use it: the segment is a real
 * SharedArrayBuffer, posted like any other, and the thread reduces the main thread's buffer in
 * place (the addon is context-aware and its mappings are per process).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { shmUnavailableReason } from '../../../src/dist/shm/addon';
import { newShmPrefix } from '../../../src/dist/shm/shm-group';
import { projectRoot } from '../../../src/core/project-root';
import { PLAIN_NODE } from './fixtures/processes';
import { ringAllReduce } from '../../../src/dist/ring/allreduce';
import { createInMemoryRing } from '../../../src/dist/ring/transport';
import { WireCodecTransport } from '../../../src/dist/ring/wire-codec';

const SCRIPT = path.join(projectRoot(__dirname), 'dist/test/dist/shm/fixtures/thread-rank.js');
const unavailable =
  shmUnavailableReason() ?? (fs.existsSync(SCRIPT) ? null : `${SCRIPT} not built (npx tsc -p tsconfig.json)`);

function runRank(rank: number, prefix: string): Promise<{ reply: string; bits: number[] }> {
  const child = spawn(process.execPath, [SCRIPT, String(rank), '2', prefix], {
    ...PLAIN_NODE,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return new Promise((resolve, reject) =>
    child.on('exit', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out) as { reply: string; bits: number[] });
      } catch {
        reject(new Error(`rank ${rank} printed: ${out}`));
      }
    }),
  );
}

t.test(
  'a worker thread reduces the segment in place, with the ring bits',
  { skip: unavailable ?? false },
  async (t) => {
    const prefix = newShmPrefix();
    const [r0, r1] = await Promise.all([runRank(0, prefix), runRank(1, prefix)]);
    t.equal(r0.reply, 'reduced');
    t.equal(r1.reply, 'reduced');
    // The same sum through the ring: inputs (rank + 1) * (i + 0.1), bf16 on the wire.
    const inputs = [0, 1].map((rank) => Float32Array.from({ length: 1001 }, (_, i) => (rank + 1) * (i + 0.1)));
    const rings = createInMemoryRing(2).map((x) => new WireCodecTransport(x, 'bf16'));
    await Promise.all([0, 1].map((r) => ringAllReduce(inputs[r], rings[r], r, 2)));
    t.same(r0.bits, Array.from(new Uint32Array(inputs[0].buffer)), 'rank 0: the ring bits');
    t.same(r1.bits, Array.from(new Uint32Array(inputs[1].buffer)), 'rank 1: the ring bits');
  },
);

t.test('process.exit does not wait for a thread blocked in a collective', { skip: unavailable ?? false }, async (t) => {
  const script = path.join(projectRoot(__dirname), 'dist/test/dist/shm/fixtures/exit-rank.js');
  const started = Date.now();
  const child = spawn(process.execPath, [script], { ...PLAIN_NODE, stdio: 'ignore' });
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) =>
    child.on('exit', (c, s) => resolve([c, s])),
  );
  clearTimeout(timer);
  t.equal(signal, null, 'not killed');
  t.equal(code, 3, 'its own exit code');
  t.ok(Date.now() - started < 10_000, `exited in ${Date.now() - started} ms (the collective's timeout is 60 s)`);
});
