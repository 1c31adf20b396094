/**
 * One rank of the all-reduce benchmark's `shm` transport, forked by bench/allreduce.ts:
 * argv rank, worldSize, prefix. Joins the shared-memory group, allocates the largest size once,
 * and times an in-place all-reduce of a view of it per size (gradients already in the buffer
 * to sums readable in it, the fusion buffer's case). Replies as bench/allreduce-worker.ts does.
 */
import { ShmGroup } from '../src/dist/shm/shm-group';
import type { ParentCommand, WorkerReply } from './allreduce-worker';

const TIMEOUT_MS = 120_000;

function main(): void {
  const [rank, worldSize, prefix] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]];
  const reply = (r: WorkerReply): void => void process.send?.(r);
  process.once('message', (m: ParentCommand) => {
    try {
      if (m.kind !== 'run') throw new Error(`expected run, got ${m.kind}`);
      const group = ShmGroup.create({ rank, worldSize, prefix, timeoutMs: TIMEOUT_MS });
      const buffer = group.allocate(Math.max(...m.sizesBytes.map((b) => Math.max(1, Math.floor(b / 4)))));
      for (const sizeBytes of m.sizesBytes) {
        const values = buffer.subarray(0, Math.max(1, Math.floor(sizeBytes / 4)));
        const repMs: number[] = [];
        let correct = true;
        let cpuUs = 0;
        for (let rep = 0; rep < m.warmup + m.reps; rep++) {
          values.fill(rank + 1);
          group.barrier(); // start together
          const cpuBefore = process.cpuUsage();
          const started = performance.now();
          group.allReduce(values);
          if (rep >= m.warmup) {
            repMs.push(performance.now() - started);
            const cpu = process.cpuUsage(cpuBefore);
            cpuUs += cpu.user + cpu.system;
          }
          const want = (worldSize * (worldSize + 1)) / 2;
          correct &&= values[0] === want && values[values.length - 1] === want;
        }
        reply({ kind: 'timings', rank, sizeBytes, repMs, cpuMsPerRep: cpuUs / 1e3 / m.reps, correct });
      }
      group.close();
      reply({ kind: 'finished', rank });
    } catch (err) {
      reply({ kind: 'failed', rank, message: err instanceof Error ? err.message : String(err) });
    } finally {
      setTimeout(() => process.connected && process.disconnect(), 100);
    }
  });
}

main();
