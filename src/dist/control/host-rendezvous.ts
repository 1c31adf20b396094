/**
 * The coordinator's side of a multi-host run (`train --rendezvous`): it admits join agents of
 * other hosts into rank blocks (rank-blocks.ts), waits until every rank has a host, welcomes
 * each agent with its ranks and the frozen config, and dismisses them at the end. Refused
 * handshakes (peers without the cluster key) are logged, rate-limited.
 */
import type { TrainConfig } from '../../core/config';
import { CommTimeoutError } from '../../core/errors';
import type { Logger } from '../../core/log';
import type { ClusterConfig } from './cluster-config';
import type { CoordinatorControl } from './sockets';
import type { CurveKeys } from '../security/curve-auth';
import { MessageType, type JoinMessage } from './messages';
import { RankTable, describeHost, describeRanks, type JoinedHost } from './rank-blocks';

/** How often "waiting for N more workers" is repeated while hosts join. */
const JOIN_PROGRESS_EVERY_MS = 15_000;
/** At most one warning per reason per this interval about refused (keyless or wrong-key) peers. */
const REFUSAL_LOG_EVERY_MS = 10_000;

/** A multi-host run as the coordinator runs it: the options and the cluster key. */
export interface ClusterPlan extends ClusterConfig {
  keys: CurveKeys;
}

/** Waits until `done()` holds, failing early with the coordinator's first failure. */
export type WaitUntil = (done: () => boolean, deadline: { ms: number; error: () => Error }) => Promise<void>;

export class HostRendezvous {
  private readonly table: RankTable;
  private refusedPeers = 0;
  /** When each reason was last logged: a flood of one kind must not hide another kind. */
  private readonly lastRefusalLogMs = new Map<string, number>();

  constructor(
    private readonly cluster: ClusterPlan,
    /** Workers on the coordinator's own host: ranks 0 .. localWorkers - 1. */
    private readonly localWorkers: number,
    private readonly control: CoordinatorControl,
    private readonly log: Logger,
  ) {
    this.table = new RankTable(cluster.worldSize, localWorkers);
  }

  get hosts(): readonly JoinedHost[] {
    return this.table.hosts;
  }

  hostOf(routingId: Uint8Array): JoinedHost | undefined {
    return this.table.byRoutingId(routingId);
  }

  /** Keyless or wrong-key peers never get a message through; say so, without flooding the log. */
  watchRefusals(address: string): void {
    this.control.watchRefusals((why) => {
      this.refusedPeers++;
      const now = Date.now();
      if (now - (this.lastRefusalLogMs.get(why) ?? -Infinity) < REFUSAL_LOG_EVERY_MS) return;
      this.lastRefusalLogMs.set(why, now);
      this.log.warn(`refused a connection to ${address}: ${why} (${this.refusedPeers} refused so far)`);
    });
  }

  /** Waits until joined hosts fill every rank the coordinator's host does not hold. */
  async gather(address: string, until: WaitUntil): Promise<void> {
    const { table, cluster } = this;
    const progress = () => {
      if (table.missing > 0)
        this.log.info(
          `waiting for ${table.missing} more worker(s) to join at ${address} (on each other host: alexnet join ${address} --key-file <this run's key file>)`,
        );
    };
    progress();
    const timer = setInterval(progress, JOIN_PROGRESS_EVERY_MS);
    try {
      await until(() => table.missing === 0, {
        ms: cluster.joinTimeoutSec * 1000,
        error: () =>
          new CommTimeoutError(
            `rendezvous: only ${cluster.worldSize - table.missing} of ${cluster.worldSize} workers joined at ${address} within ${cluster.joinTimeoutSec} s. ` +
              `Start 'alexnet join ${address} --key-file <the same key file>' on the other hosts`,
          ),
      });
    } finally {
      clearInterval(timer);
    }
  }

  /** A join agent offers its host's workers: admitted into the next rank block, or dismissed. */
  onJoin(routingId: Uint8Array, m: JoinMessage): void {
    const admitted = this.table.admit(routingId, m);
    if (typeof admitted === 'string') {
      this.log.warn(`refused host ${m.host} (${m.address}, pid ${m.pid}): ${admitted}`);
      void this.control.send(routingId, {
        type: MessageType.Dismiss,
        reason: `the coordinator refused this host: ${admitted}`,
        failed: true,
        rejoin: false,
      });
      return;
    }
    this.log.info(`host ${describeHost(admitted)} joined with ${m.workers} worker(s)`);
  }

  /** Every rank has a host now: tells each agent its ranks (and the config) so it starts them. */
  async welcome(config: TrainConfig): Promise<void> {
    for (const host of this.table.hosts) {
      await this.control.send(host.routingId, {
        type: MessageType.Welcome,
        firstRank: host.firstRank,
        worldSize: this.cluster.worldSize,
        config: config as unknown as Record<string, unknown>,
      });
    }
    this.log.info(
      `all ${this.cluster.worldSize} workers present: this host ${describeRanks(0, this.localWorkers)}; ${this.table.hosts.map(describeHost).join('; ')}`,
    );
  }

  /**
   * The run (or this attempt of it) is over: each agent stops its workers (at once when it
   * failed); with `rejoin` the run restarts and each agent joins it again.
   */
  dismissAll(reason: string, failed: boolean, rejoin = false): void {
    for (const host of this.table.hosts)
      void this.control
        .send(host.routingId, { type: MessageType.Dismiss, reason, failed, rejoin })
        .catch(() => undefined);
  }
}
