/**
 * How many cores this process may use. A launcher that starts several worker processes on one
 * host gives each its share through the environment, so that per-process thread pools (the
 * decode threads of src/data/decode/decode-pool.ts) add up to the machine instead of a multiple of it.
 */
import * as os from 'node:os';

export const CORES_ENV = 'ALEXNET_CORES';

/** The environment entry giving each of `processes` processes on this host its share (at least 1). */
export function coreShareEnvironment(processes: number): Record<string, string> {
  return { [CORES_ENV]: String(Math.max(1, Math.floor(os.availableParallelism() / Math.max(1, processes)))) };
}

/** This process's cores: its launcher's share, else every core it may run on (CPU affinity counted). */
export function coresOfThisProcess(env: NodeJS.ProcessEnv = process.env): number {
  const share = Number(env[CORES_ENV]);
  return Number.isInteger(share) && share >= 1 ? share : os.availableParallelism();
}
