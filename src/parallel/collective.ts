/**
 * What the training loop needs from the data-parallel layer, and nothing more: who this rank
 * is, a sum over all ranks, and a copy from one rank to all. The loop (src/train) sees only
 * this interface; the ring over ZeroMQ (or an in-memory ring in tests) implements it.
 */
import { broadcast, ringAllReduce, type CollectiveOptions } from './allreduce';
import type { RingTransport } from './transport';

export interface Collective {
  readonly rank: number;
  readonly worldSize: number;
  /**
   * Sums `buffer` element-wise over all ranks, in place; identical result on every rank.
   * `exact`: in fp32 even when gradients travel in a 16-bit wire dtype (counts, metric sums).
   */
  allReduce(buffer: Float32Array, options?: { exact?: boolean }): Promise<void>;
  /** Copies rank `root`'s buffer into every rank's buffer. */
  broadcast(buffer: Float32Array, root: number): Promise<void>;
}

/** The ring all-reduce and broadcast over `ring`, as a Collective. */
export function ringCollective(ring: RingTransport, rank: number, worldSize: number, options: CollectiveOptions = {}): Collective {
  return {
    rank,
    worldSize,
    allReduce: (buffer) => ringAllReduce(buffer, ring, rank, worldSize, options),
    broadcast: (buffer, root) => broadcast(buffer, ring, root, options),
  };
}
