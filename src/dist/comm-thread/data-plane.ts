/**
 * Which data plane carries a worker's collectives: shared memory between the ranks of one host
 * (dist/shm: no socket, no kernel copy), or the ZeroMQ ring (ipc on one host, tcp across hosts).
 * Chosen by every rank from the same inputs, so all ranks choose alike: the run's --transport,
 * whether the coordinator put every rank on this host (it then hands out a segment prefix), and
 * whether the shared-memory addon loads here.
 */
import type { Transport } from '../../core/config';
import { ConfigError } from '../../core/errors';

/** The planes of a run on one host. */
export type HostPlane = { kind: 'shm' } | { kind: 'zmq'; why: string };
export type DataPlane =
  | HostPlane
  /** Multi-host runs: shared memory inside each host, cross rings between hosts (dist/shm/hierarchical.ts). */
  | { kind: 'hierarchical'; localSize: number; hosts: number };

/**
 * `oneHost`: every rank runs on this host (the coordinator then hands out a segment prefix).
 * `unavailable`: why shared memory cannot run here, or null (shmUnavailableReason).
 * `--transport shm` where it cannot run is an error, not a silent fallback.
 */
export function chooseDataPlane(transport: Transport, oneHost: boolean, unavailable: () => string | null): HostPlane {
  if (transport === 'zmq') return { kind: 'zmq', why: '--transport zmq' };
  // A multi-host run's plane comes from the coordinator (chooseClusterPlane); this is a fallback.
  if (!oneHost) {
    if (transport === 'shm')
      throw new ConfigError('--transport shm across hosts needs the coordinator to choose the hierarchical plane');
    return { kind: 'zmq', why: 'the workers run on several hosts' };
  }
  const reason = unavailable();
  if (reason !== null) {
    if (transport === 'shm') throw new ConfigError(`--transport shm: shared memory cannot run here: ${reason}`);
    return { kind: 'zmq', why: reason };
  }
  return { kind: 'shm' };
}

/**
 * Why the hierarchical plane cannot run a multi-host run, or null. `hostSizes`: workers per host
 * in rank order; `unavailable`: each rank's shmUnavailableReason, from its hello.
 */
function hierarchyBlocker(hostSizes: readonly number[], unavailable: readonly (string | null)[]): string | null {
  if (hostSizes.some((s) => s !== hostSizes[0]))
    return `the hosts run different numbers of workers (${hostSizes.join(', ')}); the hierarchical plane needs the same number on each`;
  if (hostSizes[0] < 2) return 'one worker per host: no host has ranks to share memory between';
  const rank = unavailable.findIndex((u) => u !== null);
  if (rank >= 0) return `shared memory cannot run on rank ${rank}'s host: ${unavailable[rank]}`;
  return null;
}

/**
 * The coordinator's choice for a multi-host run (every rank must run the same plane, so it is
 * made once, centrally): hierarchical where every host has the same L >= 2 workers and shared
 * memory runs on each, else the flat ring. `--transport shm` means hierarchical here, and is a
 * ConfigError where it cannot run.
 */
export function chooseClusterPlane(
  transport: Transport,
  hostSizes: readonly number[],
  unavailable: readonly (string | null)[],
): DataPlane {
  if (transport === 'zmq') return { kind: 'zmq', why: '--transport zmq' };
  const why = hierarchyBlocker(hostSizes, unavailable);
  if (why === null) return { kind: 'hierarchical', localSize: hostSizes[0], hosts: hostSizes.length };
  if (transport === 'shm')
    throw new ConfigError(`--transport shm across hosts means the hierarchical plane, which cannot run: ${why}`);
  return { kind: 'zmq', why };
}

/** The start-up line that says which plane runs, and why not shared memory where it does not. */
export function describeDataPlane(plane: DataPlane, worldSize: number): string {
  if (plane.kind === 'shm') return `data plane: shared memory between the ${worldSize} workers of this host`;
  if (plane.kind === 'hierarchical')
    return (
      `data plane: hierarchical (shared memory inside each of ${plane.hosts} hosts x ${plane.localSize} workers, ` +
      `${plane.localSize} ZeroMQ cross rings of ${plane.hosts} between hosts)`
    );
  return `data plane: the ZeroMQ ring (not shared memory: ${plane.why})`;
}
