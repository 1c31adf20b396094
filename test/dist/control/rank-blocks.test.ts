// Multi-host bookkeeping without sockets: which host gets which ranks, and the address checks
// behind --rendezvous and --ring-host.
import * as os from 'node:os';
import t from 'tap';
import { ConfigError } from '../../../src/core/errors';
import type { Logger } from '../../../src/core/log';
import type { CoordinatorControl } from '../../../src/dist/control/sockets';
import { HostRendezvous, type ClusterPlan } from '../../../src/dist/control/host-rendezvous';
import { PROTOCOL_VERSION } from '../../../src/dist/control/messages';
import { RankTable, describeHost, type HostOffer, type JoinedHost } from '../../../src/dist/control/rank-blocks';
import {
  checkLocalAddress,
  isLoopbackHost,
  localAddressTowards,
  parseTcpEndpoint,
  tcpRingAddress,
} from '../../../src/dist/ring/ring-address';

const offer = (host: string, workers: number): HostOffer => ({
  protocolVersion: PROTOCOL_VERSION,
  host,
  address: `10.0.0.${host.length}`,
  pid: 100,
  workers,
});
const id = (n: number): Uint8Array => Uint8Array.of(0, n);

t.test('hosts get consecutive rank blocks after the coordinator host, in join order', async (t) => {
  const table = new RankTable(6, 2);
  t.equal(table.missing, 4);
  const b = table.admit(id(1), offer('host-b', 1)) as JoinedHost;
  const c = table.admit(id(2), offer('host-cc', 3)) as JoinedHost;
  t.equal(b.firstRank, 2);
  t.equal(c.firstRank, 3);
  t.equal(table.missing, 0);
  t.equal(describeHost(c), 'host-cc (10.0.0.7, ranks 3-5)');
  t.equal(describeHost(b), 'host-b (10.0.0.6, rank 2)');
  t.equal(table.byRank(4), c);
  t.equal(table.byRank(1), undefined, "ranks 0-1 are the coordinator host's");
  t.equal(table.byRoutingId(id(1)), b);
});

t.test('a host that does not fit is refused with the reason', async (t) => {
  const table = new RankTable(4, 1);
  t.match(table.admit(id(1), offer('big', 4)), /offers 4 workers but the run needs only 3 more/);
  t.match(
    table.admit(id(1), { ...offer('old', 1), protocolVersion: PROTOCOL_VERSION - 1 }),
    /protocol .* same alexnet version on every host/,
  );
  t.type(table.admit(id(1), offer('b', 1)), 'object');
  t.match(table.admit(id(1), offer('b', 1)), /already joined/);
  t.type(table.admit(id(2), offer('c', 2)), 'object');
  t.match(table.admit(id(3), offer('d', 1)), /already has all 4 workers/);
  t.equal(table.hosts.length, 2, 'refused hosts hold no ranks');
});

t.test('tcp endpoints, loopback and local-address checks', async (t) => {
  t.same(parseTcpEndpoint('tcp://10.0.0.1:29500', '--rendezvous'), { host: '10.0.0.1', port: 29500 });
  t.same(parseTcpEndpoint('tcp://[fd00::2]:0', '--rendezvous'), { host: 'fd00::2', port: 0 });
  t.same(parseTcpEndpoint('tcp://head-node:*', 'x'), { host: 'head-node', port: 0 });
  t.throws(() => parseTcpEndpoint('10.0.0.1:29500', '--rendezvous'), {
    constructor: ConfigError,
    message: /--rendezvous "10.0.0.1:29500" is not tcp:/,
  });
  t.throws(() => parseTcpEndpoint('tcp://10.0.0.1:70000', 'x'), ConfigError);
  t.equal(tcpRingAddress('fd00::2', 29600, 1), 'tcp://[fd00::2]:29601');
  t.ok(
    isLoopbackHost('127.0.0.1') && isLoopbackHost('127.1.2.3') && isLoopbackHost('::1') && isLoopbackHost('localhost'),
  );
  t.notOk(isLoopbackHost('10.0.0.1') || isLoopbackHost('128.0.0.1'));

  const interfaces: ReturnType<typeof os.networkInterfaces> = {
    lo: [
      {
        address: '127.0.0.1',
        netmask: '255.0.0.0',
        family: 'IPv4',
        mac: '00:00:00:00:00:00',
        internal: true,
        cidr: '127.0.0.1/8',
      },
    ],
    eth0: [
      {
        address: '10.0.0.2',
        netmask: '255.255.255.0',
        family: 'IPv4',
        mac: '02:00:00:00:00:01',
        internal: false,
        cidr: '10.0.0.2/24',
      },
    ],
  };
  t.doesNotThrow(() => checkLocalAddress('10.0.0.2', '--ring-host', interfaces));
  t.doesNotThrow(() => checkLocalAddress('127.0.0.5', '--ring-host', interfaces), 'all of 127/8 is this host');
  t.throws(
    () => checkLocalAddress('10.0.0.9', '--ring-host', interfaces),
    /--ring-host 10.0.0.9 is not an address of this host \(its addresses: 127.0.0.1, 10.0.0.2\)/,
  );
  t.throws(() => checkLocalAddress('0.0.0.0', '--rendezvous host', interfaces), /every interface/);
  t.throws(() => checkLocalAddress('head-node', '--rendezvous host', interfaces), /not an IP address/);
  t.equal(await localAddressTowards('127.0.0.1', 29500), '127.0.0.1', 'the interface that routes to the coordinator');
});

t.test(
  'refusals are logged at most once per reason per interval: a flood of one kind hides no other kind',
  async (t) => {
    let refuse: (why: string) => void = () => undefined;
    const control = {
      watchRefusals: (onRefused: (why: string) => void) => void (refuse = onRefused),
    } as unknown as CoordinatorControl;
    const warnings: string[] = [];
    const log: Logger = {
      info: () => undefined,
      warn: (line) => warnings.push(line),
      debug: () => undefined,
      result: () => undefined,
    };
    const cluster = {
      rendezvous: 'tcp://10.0.0.1:0',
      worldSize: 2,
      keyFile: '/k',
      ringHost: '10.0.0.1',
      ringPort: 0,
      joinTimeoutSec: 1,
      rejoinTimeoutSec: 1,
    } as ClusterPlan;
    new HostRendezvous(cluster, 1, control, log).watchRefusals('tcp://10.0.0.1:5000');
    refuse('the peer hung up during the handshake');
    refuse('the peer hung up during the handshake');
    refuse('it has no CURVE key');
    refuse('the peer hung up during the handshake');
    t.same(warnings, [
      'refused a connection to tcp://10.0.0.1:5000: the peer hung up during the handshake (1 refused so far)',
      'refused a connection to tcp://10.0.0.1:5000: it has no CURVE key (3 refused so far)',
    ]);
  },
);
