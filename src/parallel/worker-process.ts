/**
 * Starting worker processes, the same way on every host: the coordinator starts its own host's
 * workers, a join agent (agent.ts) those of another host.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { env, type WorkerBootstrap } from '../config';

/** The compiled worker entry (workers always run the built JS, also when tests run from .ts). */
export function workerScript(): string {
  const here = __filename.endsWith('.ts') ? path.resolve(__dirname, '../../dist/src/parallel') : __dirname;
  return path.join(here, 'worker.js');
}

/** One worker process with its bootstrap (and GPU, if any) in its environment. */
export function spawnWorker(boot: WorkerBootstrap, gpuId: string | null): ChildProcess {
  return spawn(process.execPath, [workerScript()], {
    env: env.forWorker(boot, gpuId),
    stdio: ['ignore', 'inherit', 'inherit'],
  });
}

/** "exited with code 3" / "was killed by SIGKILL", as failure messages say it. */
export function describeExit(code: number | null, signal: string | null): string {
  return signal ? `was killed by ${signal}` : `exited with code ${code}`;
}
