/**
 * The hierarchical all-reduce of a multi-host run (docs/allreduce.md, "Hierarchical plane"):
 * H hosts with L ranks each, rank r = h * L + l. A host first sums in shared memory, then only
 * one ring per local index crosses the network:
 *
 *   1. shared-memory reduce-scatter among the host's L ranks: rank l gets the host's sum of
 *      segment l (segmentRange(n, L, l));
 *   2. ring all-reduce of that segment among the H ranks with the same l ("cross ring" l, ring
 *      position h). The L cross rings run at once, each carrying 1/L of the buffer, so a host
 *      puts 2(H-1)/H of the buffer on the network per step, not 2(N-1)/N per worker;
 *   3. shared-memory all-gather of the L segments.
 *
 * The sum order is fixed (the host's ring order, then the cross ring's), so every rank gets the
 * same bits and a run is reproducible; it is not the flat ring's order, so the bits differ from
 * a flat-ring run's in the last places.
 */
import { ConfigError } from '../../core/errors';
import { ringAllReduce, type CollectiveOptions } from '../ring/allreduce';
import { segmentRange } from '../ring/ring-schedule';
import type { RingTransport } from '../ring/transport';
import type { ShmCollectiveOptions } from './shm-group';

/** Where a rank sits in the hierarchy. */
export interface HierarchicalLayout {
  /** l: this rank's index on its host (its shared-memory rank and its cross ring). */
  localRank: number;
  /** L: ranks per host, the same on every host. */
  localSize: number;
  /** h: this host's index (its position in the cross ring). */
  hostIndex: number;
  /** H: number of hosts. */
  hosts: number;
}

/** The host's half of the collective: a ShmGroup over the host's L ranks. */
export interface HostGroup {
  reduceScatter(values: Float32Array, sizes: readonly number[], options: ShmCollectiveOptions): Float32Array;
  allGather(local: Float32Array, sizes: readonly number[], options: ShmCollectiveOptions): Float32Array;
}

/** The global rank at (hostIndex, localRank). */
export function globalRank(
  layout: Pick<HierarchicalLayout, 'localSize'>,
  hostIndex: number,
  localRank: number,
): number {
  return hostIndex * layout.localSize + localRank;
}

/** The layout of global rank `rank` with `localSize` ranks on each of `hosts` hosts. */
export function layoutOf(rank: number, localSize: number, hosts: number): HierarchicalLayout {
  if (!Number.isInteger(localSize) || localSize < 1 || !Number.isInteger(hosts) || hosts < 1)
    throw new ConfigError(`a hierarchy needs whole numbers of ranks per host and hosts, got ${localSize} x ${hosts}`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= localSize * hosts)
    throw new ConfigError(`rank ${rank} is not in a run of ${hosts} hosts x ${localSize} ranks`);
  return { localRank: rank % localSize, localSize, hostIndex: Math.floor(rank / localSize), hosts };
}

/** Global ranks of this rank's cross ring, by ring position (host index). */
export function crossRingRanks(layout: HierarchicalLayout): number[] {
  return Array.from({ length: layout.hosts }, (_, h) => globalRank(layout, h, layout.localRank));
}

/** The sizes of the host's L segments of an n-float buffer (segment l: cross ring l's share). */
export function hostSegmentSizes(length: number, localSize: number): number[] {
  return Array.from({ length: localSize }, (_, l) => {
    const r = segmentRange(length, localSize, l);
    return r.end - r.start;
  });
}

/** Global ranks of this rank's host, by shared-memory rank (local index). */
export function hostRanks(layout: HierarchicalLayout): number[] {
  return Array.from({ length: layout.localSize }, (_, l) => globalRank(layout, layout.hostIndex, l));
}

/**
 * `err` as the user must read it: a sub-group's ranks ("rank 1" = position 1 of `ranks`) become
 * the global ranks they are, and the message says which group it came from. The error class
 * (CommTimeoutError, ...) is kept.
 */
export function inGlobalRanks(err: unknown, ranks: readonly number[], group: string): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  const message = e.message.replace(/\b([Rr]ank) (\d+)\b/g, (whole, word: string, position: string) => {
    const global = ranks[Number(position)];
    return global === undefined ? whole : `${word} ${global}`;
  });
  const Class = e.constructor as new (message: string) => Error;
  const wrapped = new Class(`${group} (ranks ${ranks.join(', ')}): ${message}`);
  wrapped.name = e.name;
  return wrapped;
}

/**
 * Sums `values` over every rank of every host, in place (steps 1-3 above). `cross` is cross ring
 * `layout.localRank` at position `layout.hostIndex`, already in the wire dtype of `shmOptions`.
 * Every rank of the run calls it with the same length.
 */
export async function hierarchicalAllReduce(
  values: Float32Array,
  host: HostGroup,
  cross: RingTransport,
  layout: HierarchicalLayout,
  shmOptions: ShmCollectiveOptions,
  ringOptions: CollectiveOptions = {},
): Promise<void> {
  const sizes = hostSegmentSizes(values.length, layout.localSize);
  const inHost = <T>(work: () => T): T => {
    try {
      return work();
    } catch (err) {
      throw inGlobalRanks(err, hostRanks(layout), `host ${layout.hostIndex}'s shared memory`);
    }
  };
  const segment = inHost(() => host.reduceScatter(values, sizes, shmOptions));
  try {
    // `segment` is a fresh array nothing else holds: the ring may send from it without a copy.
    await ringAllReduce(segment, cross, layout.hostIndex, layout.hosts, ringOptions);
  } catch (err) {
    throw inGlobalRanks(err, crossRingRanks(layout), `cross ring ${layout.localRank}`);
  }
  values.set(inHost(() => host.allGather(segment, sizes, shmOptions)));
}
