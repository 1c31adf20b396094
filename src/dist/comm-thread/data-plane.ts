/**
 * Which data plane carries a worker's collectives: shared memory between the ranks of one host
 * (dist/shm: no socket, no kernel copy), or the ZeroMQ ring (ipc on one host, tcp across hosts).
 * Chosen by every rank from the same inputs, so all ranks choose alike: the run's --transport,
 * whether the coordinator put every rank on this host (it then hands out a segment prefix), and
 * whether the shared-memory addon loads here.
 */
import type { Transport } from '../../core/config';
import { ConfigError } from '../../core/errors';

export type DataPlane = { kind: 'shm' } | { kind: 'zmq'; why: string };

/**
 * `oneHost`: every rank runs on this host (the coordinator then hands out a segment prefix).
 * `unavailable`: why shared memory cannot run here, or null (shmUnavailableReason).
 * `--transport shm` where it cannot run is an error, not a silent fallback.
 */
export function chooseDataPlane(transport: Transport, oneHost: boolean, unavailable: () => string | null): DataPlane {
  if (transport === 'zmq') return { kind: 'zmq', why: '--transport zmq' };
  if (!oneHost) {
    if (transport === 'shm')
      throw new ConfigError(
        '--transport shm needs every worker on one host, and this run spans hosts: use --transport auto (shared memory where it can run) or zmq',
      );
    return { kind: 'zmq', why: 'the workers run on several hosts' };
  }
  const reason = unavailable();
  if (reason !== null) {
    if (transport === 'shm') throw new ConfigError(`--transport shm: shared memory cannot run here: ${reason}`);
    return { kind: 'zmq', why: reason };
  }
  return { kind: 'shm' };
}

/** The start-up line that says which plane runs, and why not shared memory where it does not. */
export function describeDataPlane(plane: DataPlane, worldSize: number): string {
  if (plane.kind === 'shm') return `data plane: shared memory between the ${worldSize} workers of this host`;
  return `data plane: the ZeroMQ ring (not shared memory: ${plane.why})`;
}
