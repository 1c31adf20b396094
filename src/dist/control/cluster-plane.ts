/**
 * The data plane of a multi-host run, as the coordinator hands it to each rank in its Config:
 * every rank must run the same plane, so it is chosen once (chooseClusterPlane) from what the
 * hellos said, and each rank is told its place in it.
 */
import { ProtocolError } from '../../core/errors';
import type { Transport } from '../../core/config';
import { chooseClusterPlane, type DataPlane } from '../comm-thread/data-plane';
import { crossRingRanks, layoutOf } from '../shm/hierarchical';
import type { PlaneAssignment } from './messages';

/**
 * Each rank's assignment: for the hierarchical plane its layout and the cross-ring endpoint of
 * the next host's rank with the same local index; else the flat ring and why.
 */
export function planeAssignments(plane: DataPlane, crossEndpoints: readonly (string | null)[]): PlaneAssignment[] {
  if (plane.kind !== 'hierarchical') {
    const why = plane.kind === 'zmq' ? plane.why : 'one host';
    return crossEndpoints.map(() => ({ kind: 'zmq', why }));
  }
  return crossEndpoints.map((_, rank) => {
    const layout = layoutOf(rank, plane.localSize, plane.hosts);
    const next = crossRingRanks(layout)[(layout.hostIndex + 1) % plane.hosts];
    const endpoint = crossEndpoints[next];
    if (endpoint === null || endpoint === undefined)
      throw new ProtocolError(`rank ${next} said hello without a cross-ring endpoint, in a multi-host run`);
    return { kind: 'hierarchical', ...layout, crossNextEndpoint: endpoint };
  });
}

/** What the coordinator knows of one rank from its hello. */
export interface RankHello {
  crossEndpoint: string | null;
  shmUnavailable: string | null;
}

/**
 * Every rank's assignment in a run of hosts with `hostSizes` workers each (rank order), from the
 * ranks' hellos; ConfigError for --transport shm where the hierarchical plane cannot run.
 */
export function clusterPlanes(
  transport: Transport,
  hostSizes: readonly number[],
  hellos: readonly RankHello[],
): PlaneAssignment[] {
  const plane = chooseClusterPlane(
    transport,
    hostSizes,
    hellos.map((h) => h.shmUnavailable),
  );
  return planeAssignments(
    plane,
    hellos.map((h) => h.crossEndpoint),
  );
}

/** The plane a rank runs, from its assignment (for its start-up line). */
export function planeOf(assignment: PlaneAssignment): DataPlane {
  return assignment.kind === 'zmq'
    ? { kind: 'zmq', why: assignment.why }
    : { kind: 'hierarchical', localSize: assignment.localSize, hosts: assignment.hosts };
}
