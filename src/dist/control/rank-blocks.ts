/**
 * Who gets which ranks in a multi-host run. The coordinator's own host holds ranks
 * 0 .. L-1 (so rank 0, which writes the run directory, is on the host the user started);
 * each joining host then gets the next block of consecutive ranks, in the order the hosts
 * joined. A host's workers are neighbours on the ring, so only one ring link per host crosses
 * the network. The result of training does not depend on which host holds which ranks: a
 * rank's data shard and dropout masks depend on its rank only.
 */
import { PROTOCOL_VERSION, type JoinMessage } from './messages';

export type HostOffer = Omit<JoinMessage, 'type'>;

export interface JoinedHost extends HostOffer {
  routingId: Uint8Array;
  firstRank: number;
}

/** "rank 2" or "ranks 2-3". */
export function describeRanks(firstRank: number, count: number): string {
  return count === 1 ? `rank ${firstRank}` : `ranks ${firstRank}-${firstRank + count - 1}`;
}

/** "gpu-2 (10.0.0.2, ranks 2-3)". */
export function describeHost(h: JoinedHost): string {
  return `${h.host} (${h.address}, ${describeRanks(h.firstRank, h.workers)})`;
}

const sameId = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

export class RankTable {
  private readonly joined: JoinedHost[] = [];

  constructor(
    readonly worldSize: number,
    readonly localWorkers: number,
  ) {}

  /** Ranks that still have no worker. */
  get missing(): number {
    return this.worldSize - this.localWorkers - this.joined.reduce((n, h) => n + h.workers, 0);
  }

  /** The joined hosts, in rank order. */
  get hosts(): readonly JoinedHost[] {
    return this.joined;
  }

  /**
   * Gives the host the next `offer.workers` ranks, or returns why it cannot join (said to the
   * host, so it names what to change).
   */
  admit(routingId: Uint8Array, offer: HostOffer): JoinedHost | string {
    if (offer.protocolVersion !== PROTOCOL_VERSION) {
      return `it speaks protocol ${offer.protocolVersion}, the coordinator ${PROTOCOL_VERSION}: install the same alexnet version on every host`;
    }
    if (this.byRoutingId(routingId) !== undefined) return 'this host has already joined';
    const missing = this.missing;
    if (missing === 0) return `the run already has all ${this.worldSize} workers`;
    if (offer.workers > missing) {
      return `it offers ${offer.workers} workers but the run needs only ${missing} more: start it with fewer --devices`;
    }
    const host: JoinedHost = { ...offer, routingId, firstRank: this.worldSize - missing };
    this.joined.push(host);
    return host;
  }

  byRoutingId(routingId: Uint8Array): JoinedHost | undefined {
    return this.joined.find((h) => sameId(h.routingId, routingId));
  }

  byRank(rank: number): JoinedHost | undefined {
    return this.joined.find((h) => rank >= h.firstRank && rank < h.firstRank + h.workers);
  }
}
