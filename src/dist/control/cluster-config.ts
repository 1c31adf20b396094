/**
 * The options of a multi-host run (README "Multi-host runs"): the coordinator host's
 * (`train --rendezvous ...`) and a joining host's (`alexnet join ...`), validated into frozen
 * configs. Addresses are checked against this host's interfaces here, before any socket opens.
 */
import * as path from 'node:path';
import { LOG_LEVELS, TRAIN_DEFAULTS, type LogLevel } from '../../core/config';
import { deepFreeze, FieldReader, type CliArgs } from '../../core/field-reader';
import { ConfigError } from '../../core/errors';
import { checkLocalAddress, parseTcpEndpoint, tcpAddress } from '../ring/ring-address';

/** The coordinator host's side of a multi-host run. */
export interface ClusterConfig {
  /** tcp://<this host's IP>:<port> where the control plane listens (port 0: any free port). */
  rendezvous: string;
  /** Workers on all hosts together. */
  worldSize: number;
  /** Absolute path of the cluster key file (`alexnet keygen`). */
  keyFile: string;
  /** Interface address this host's ring sockets bind (default: the rendezvous address). */
  ringHost: string;
  /** Port of this host's first ring socket, one more per local worker (0: any free port). */
  ringPort: number;
  /** How long the coordinator waits for the other hosts to join. */
  joinTimeoutSec: number;
  /** After a restart (--max-restarts), how long it waits for the hosts to join again. */
  rejoinTimeoutSec: number;
}

/** `alexnet join <rendezvous>`: another host's side of a multi-host run. */
export interface JoinConfig {
  /** tcp://<coordinator host>:<port>, as the coordinator printed it. */
  rendezvous: string;
  keyFile: string;
  /** This host's workers: 'auto', a GPU count or 'cpu:N', as for train. */
  devices: string;
  strictDevices: boolean;
  /** Interface address this host's ring sockets bind; null: the one that routes to the coordinator. */
  ringHost: string | null;
  ringPort: number;
  /** How long to wait for the coordinator and for the run to start. */
  joinTimeoutSec: number;
  /** How long the coordinator may stay disconnected before this host stops its workers. */
  coordinatorTimeoutSec: number;
  logLevel: LogLevel;
}

/** The defaults of both sides' options (the command line reads its defaults from here); a joining host's devices and log level are train's. */
export const CLUSTER_DEFAULTS = deepFreeze({
  ringPort: 0,
  joinTimeoutSec: 600,
  rejoinTimeoutSec: 300,
  // ZeroMQ reconnects a blip by itself; a coordinator gone this long has crashed or been killed.
  coordinatorTimeoutSec: 10,
  devices: TRAIN_DEFAULTS.devices,
  strictDevices: TRAIN_DEFAULTS.strictDevices,
  logLevel: TRAIN_DEFAULTS.logLevel,
} as const);

function flagReader(args: CliArgs): FieldReader {
  return new FieldReader(args, (key) => `--${key}`);
}

/** Why a run across hosts needs a key, for every option that would otherwise go without one. */
function requireKeyFile(args: CliArgs, what: string): string {
  const file = args['key-file'];
  if (file == null || file === '') {
    throw new ConfigError(
      `${what} needs --key-file: runs across hosts always use CURVE encryption and authentication ` +
        "(make a key with 'alexnet keygen --out cluster.key' and copy it to every host)",
    );
  }
  return path.resolve(String(file));
}

function portOption(args: CliArgs, key: string): number {
  if (args[key] == null) return CLUSTER_DEFAULTS.ringPort;
  const port = flagReader(args).count(key, true);
  if (port > 65535) throw new ConfigError(`--${key} must be a port 0-65535, got ${port}`);
  return port;
}

function joinTimeout(args: CliArgs): number {
  return args['join-timeout'] == null ? CLUSTER_DEFAULTS.joinTimeoutSec : flagReader(args).positive('join-timeout');
}

/** `train --rendezvous ...`: null when the run stays on this host. */
export function buildClusterConfig(args: CliArgs): Readonly<ClusterConfig> | null {
  const rendezvous = args['rendezvous'];
  if (rendezvous == null || rendezvous === '') {
    for (const key of ['world-size', 'key-file', 'ring-host', 'rejoin-timeout']) {
      if (args[key] != null) throw new ConfigError(`--${key} only applies to a multi-host run (with --rendezvous)`);
    }
    return null;
  }
  const address = String(rendezvous);
  const endpoint = parseTcpEndpoint(address, '--rendezvous');
  const keyFile = requireKeyFile(args, `--rendezvous ${address}`);
  checkLocalAddress(endpoint.host, '--rendezvous host');
  if (args['world-size'] == null)
    throw new ConfigError('--rendezvous needs --world-size: the number of workers on all hosts together');
  const worldSize = flagReader(args).count('world-size');
  if (worldSize < 2) throw new ConfigError(`--world-size must be >= 2 for a multi-host run, got ${worldSize}`);
  const ringHost = args['ring-host'] == null ? endpoint.host : String(args['ring-host']);
  checkLocalAddress(ringHost, '--ring-host');
  return deepFreeze({
    rendezvous: tcpAddress(endpoint.host, endpoint.port === 0 ? '*' : endpoint.port),
    worldSize,
    keyFile,
    ringHost,
    ringPort: portOption(args, 'ring-port'),
    joinTimeoutSec: joinTimeout(args),
    rejoinTimeoutSec:
      args['rejoin-timeout'] == null ? CLUSTER_DEFAULTS.rejoinTimeoutSec : flagReader(args).positive('rejoin-timeout'),
  });
}

/** `alexnet join <rendezvous>`: this host's options in another host's run. */
export function buildJoinConfig(args: CliArgs): Readonly<JoinConfig> {
  const rendezvous = String(args['rendezvous']);
  const endpoint = parseTcpEndpoint(rendezvous, 'the rendezvous address');
  if (endpoint.port === 0) throw new ConfigError(`${rendezvous}: give the port the coordinator printed, not 0`);
  const keyFile = requireKeyFile(args, `join ${rendezvous}`);
  const ringHost = args['ring-host'] == null ? null : String(args['ring-host']);
  if (ringHost !== null) checkLocalAddress(ringHost, '--ring-host');
  return deepFreeze({
    rendezvous,
    keyFile,
    devices: String(args['devices'] ?? CLUSTER_DEFAULTS.devices),
    strictDevices: Boolean(args['strict-devices'] ?? CLUSTER_DEFAULTS.strictDevices),
    ringHost,
    ringPort: portOption(args, 'ring-port'),
    joinTimeoutSec: joinTimeout(args),
    coordinatorTimeoutSec:
      args['coordinator-timeout'] == null
        ? CLUSTER_DEFAULTS.coordinatorTimeoutSec
        : flagReader(args).positive('coordinator-timeout'),
    logLevel: args['log-level'] == null ? CLUSTER_DEFAULTS.logLevel : flagReader(args).oneOf('log-level', LOG_LEVELS),
  });
}
