/**
 * Starting and watching this host's worker processes, the same way on every host: the
 * coordinator starts its own host's workers, a join agent (agent.ts) those of another host.
 * Each worker gets its bootstrap (and its GPU, if any) in its environment (dist/control/worker-env.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import type { DeviceAssignment } from '../../devices/discover';
import { coreShareEnvironment } from '../../core/cores';
import { TEST_WORKER_SCRIPT_ENV, workerEnvironment, type WorkerBootstrap } from '../control/worker-env';

/** What both the coordinator and a join agent say on the first Ctrl-C. */
export const COORDINATED_STOP_MESSAGE =
  'Ctrl-C: all workers stop after the same step; rank 0 saves a checkpoint (Ctrl-C again to kill)';

/**
 * The compiled worker entry (workers always run the built JS, also when tests run from .ts).
 * Tests may name a fixture worker instead (one that injects faults), through the environment.
 */
export function workerScript(): string {
  const fixture = process.env[TEST_WORKER_SCRIPT_ENV];
  if (fixture) return fixture;
  const distSrc = __filename.endsWith('.ts')
    ? path.resolve(__dirname, '../../../dist/src')
    : path.resolve(__dirname, '../..');
  return path.join(distSrc, 'worker-main.js');
}

/** Signals a process gets from its own faulty machine code, not from someone else. */
const CRASH_SIGNALS = new Set(['SIGSEGV', 'SIGBUS', 'SIGILL', 'SIGFPE', 'SIGABRT']);

/**
 * "exited with code 3" / "was killed by SIGKILL" / "crashed with SIGSEGV (...)", as failure
 * messages say it. A crash signal comes from native code (JavaScript cannot fault like that), so
 * it says where to look.
 */
export function describeExit(code: number | null, signal: string | null): string {
  if (signal !== null && CRASH_SIGNALS.has(signal)) {
    return `crashed with ${signal} (a fault in native code: the native backend's oneDNN addon, a tfjs backend or Node itself; rerun with --backend wasm to tell them apart)`;
  }
  return signal ? `was killed by ${signal}` : `exited with code ${code}`;
}

export interface LocalWorker {
  rank: number;
  child: ChildProcess;
  exited: boolean;
  exitCode: number | null;
  signal: string | null;
}

/** Where this host's workers connect and bind. */
export interface LocalWorkerPlan {
  devices: DeviceAssignment;
  /** This host's workers are ranks firstRank .. firstRank + devices.worldSize - 1. */
  firstRank: number;
  worldSize: number;
  controlAddress: string;
  /** The ring address of this host's i-th worker. */
  ringAddress: (localIndex: number) => string;
  keyFile: string | null;
  /** This host's shared-memory prefix for this attempt, or null (dist/control/worker-env.ts). */
  shmPrefix: string | null;
  /** Multi-host runs: the cross-ring address of this host's i-th worker; null on one host. */
  crossRingAddress: ((localIndex: number) => string) | null;
}

/** This host's worker processes: started together, each exit reported, killed together. */
export class LocalWorkers {
  readonly workers: LocalWorker[] = [];

  constructor(private readonly onExit: (w: LocalWorker) => void) {}

  /** Starts one worker per device of the plan. */
  start(plan: LocalWorkerPlan): void {
    const { devices } = plan;
    for (let i = 0; i < devices.worldSize; i++) {
      const rank = plan.firstRank + i;
      const boot: WorkerBootstrap = {
        controlAddress: plan.controlAddress,
        rank,
        worldSize: plan.worldSize,
        deviceKind: devices.kind,
        ringAddress: plan.ringAddress(i),
        keyFile: plan.keyFile,
        shmPrefix: plan.shmPrefix,
        crossRingAddress: plan.crossRingAddress?.(i) ?? null,
      };
      const child = spawn(process.execPath, [workerScript()], {
        env: {
          ...workerEnvironment(boot, devices.kind === 'gpu' ? devices.gpuIds[i] : null),
          ...coreShareEnvironment(devices.worldSize),
        },
        stdio: ['ignore', 'inherit', 'inherit'],
      });
      const w: LocalWorker = { rank, child, exited: false, exitCode: null, signal: null };
      child.on('exit', (code, signal) => {
        Object.assign(w, { exited: true, exitCode: code, signal });
        this.onExit(w);
      });
      this.workers.push(w);
    }
  }

  /** "pids 123, 124": tests and users find the processes by this line. */
  describePids(): string {
    return `pids ${this.workers.map((w) => w.child.pid).join(', ')}`;
  }

  get allExited(): boolean {
    return this.workers.every((w) => w.exited);
  }

  /** Sends `signal` to every worker still running (SIGINT: a coordinated stop; SIGKILL: now). */
  signalAll(signal: NodeJS.Signals): void {
    for (const w of this.workers) if (!w.exited) w.child.kill(signal);
  }

  /** Kills every worker still running and waits until each has exited. */
  async killAll(): Promise<void> {
    this.signalAll('SIGKILL');
    while (!this.allExited) await new Promise((r) => setTimeout(r, 20));
  }
}
