/**
 * Data-plane addresses for the ZeroMQ ring: a private ipc:// directory on one host (the
 * default), tcp://127.0.0.1 for a single host without unix sockets, and tcp on a real
 * interface for several hosts. Also the checks that turn a bad or busy address into a
 * ConfigError that names it, before ZeroMQ would fail obscurely (or, for ipc, silently
 * steal the path: libzmq unlinks an existing socket file when it binds).
 */
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError } from '../../core/errors';

/** sun_path is 108 bytes on Linux including the terminating NUL. */
export const MAX_IPC_PATH_BYTES = 107;

export type RingAddressKind = 'ipc' | 'tcp';

/**
 * Creates a fresh directory for the ring's ipc sockets, readable by this user only (0700), so
 * that other local users can neither connect to our sockets nor inject data.
 */
export function createIpcRingDir(parentDir: string = os.tmpdir()): string {
  const dir = fs.mkdtempSync(path.join(parentDir, 'alexnet-ring-'));
  fs.chmodSync(dir, 0o700);
  return dir;
}

/** Removes a directory made by createIpcRingDir (after every socket in it is closed). */
export function removeIpcRingDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Where rank `rank` binds in an ipc ring directory. */
export function ipcRingAddress(dir: string, rank: number): string {
  return `ipc://${path.join(dir, `rank-${rank}.sock`)}`;
}

/**
 * Where the `index`-th ring socket of a host binds over tcp (index: the rank on one host, the
 * local worker index in a multi-host run). `host` is an interface address of that machine.
 * Port 0 means "any free port": the bound endpoint is then read back from the transport and
 * sent to the neighbour over the control plane.
 */
export function tcpRingAddress(host: string, basePort: number, index: number): string {
  return tcpAddress(host, basePort === 0 ? '*' : basePort + index);
}

/** tcp://host:port, with an IPv6 host in brackets. */
export function tcpAddress(host: string, port: number | '*'): string {
  return `tcp://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export interface ParsedAddress {
  kind: RingAddressKind;
  /** Socket file for ipc, host for tcp. */
  where: string;
  /** tcp port, '*' for any; empty for ipc. */
  port: string;
}

/** Splits and validates an address; the error says what is wrong with it. */
export function parseRingAddress(address: string): ParsedAddress {
  const ipc = /^ipc:\/\/(.+)$/.exec(address);
  if (ipc !== null) {
    const file = ipc[1];
    if (Buffer.byteLength(file) > MAX_IPC_PATH_BYTES) {
      throw new ConfigError(
        `ipc address ${address} is ${Buffer.byteLength(file)} bytes long; unix sockets allow ` +
          `${MAX_IPC_PATH_BYTES}. Use a shorter temp dir (TMPDIR).`,
      );
    }
    return { kind: 'ipc', where: file, port: '' };
  }
  const tcp = TCP_ADDRESS.exec(address);
  if (tcp !== null) {
    if (tcp[2] !== '*' && Number(tcp[2]) > 65535) {
      throw new ConfigError(`tcp address ${address}: port ${tcp[2]} is above 65535`);
    }
    return { kind: 'tcp', where: tcp[1], port: tcp[2] };
  }
  throw new ConfigError(`ring address ${JSON.stringify(address)} is not ipc://<path> or tcp://<host>:<port|*>`);
}

const TCP_ADDRESS = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\*|\d{1,5})$/;

export interface TcpEndpoint {
  /** Without IPv6 brackets. */
  host: string;
  /** 0 for "any free port" (written 0 or *). */
  port: number;
}

/** Parses tcp://<host>:<port> given as option `what`; the error names the option. */
export function parseTcpEndpoint(address: string, what: string): TcpEndpoint {
  const tcp = TCP_ADDRESS.exec(address);
  const port = tcp === null ? NaN : tcp[2] === '*' ? 0 : Number(tcp[2]);
  if (tcp === null || port > 65535) {
    throw new ConfigError(`${what} ${JSON.stringify(address)} is not tcp://<host>:<port> (port 0-65535)`);
  }
  return { host: tcp[1].replace(/^\[(.*)\]$/, '$1'), port };
}

/** 127.0.0.0/8, ::1 and 'localhost': reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Fails with a ConfigError unless `host` is an IP address of one of this machine's
 * interfaces (ZeroMQ binds interfaces, and a neighbour on another host must be able to dial
 * the address we advertise: so no host names, no 0.0.0.0).
 */
export function checkLocalAddress(host: string, what: string, interfaces = os.networkInterfaces()): void {
  if (net.isIP(host) === 0) {
    throw new ConfigError(`${what} ${host} is not an IP address: give one of this host's interface addresses`);
  }
  if (host === '0.0.0.0' || host === '::') {
    throw new ConfigError(
      `${what} ${host} is every interface: give the one address the other hosts reach this host at`,
    );
  }
  const own = Object.values(interfaces).flatMap((list) => (list ?? []).map((i) => i.address));
  if (!isLoopbackHost(host) && !own.includes(host)) {
    throw new ConfigError(`${what} ${host} is not an address of this host (its addresses: ${own.join(', ')})`);
  }
}

/**
 * The local address this machine would use to reach `host`: the default ring address of a
 * joining host (the interface that routes to the coordinator). A connected UDP socket makes
 * the kernel choose the route; no packet is sent.
 */
export function localAddressTowards(host: string, port: number): Promise<string> {
  const family = net.isIP(host) === 6 ? 'udp6' : 'udp4';
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket(family);
    socket.once('error', (err) => {
      socket.close();
      reject(new ConfigError(`cannot find a route to ${host}: ${err.message}. Give --ring-host`));
    });
    socket.connect(port === 0 ? 9 : port, host, () => {
      const { address } = socket.address();
      socket.close();
      resolve(address);
    });
  });
}

/** True when something accepts connections on the unix socket at `file`. */
function unixSocketAnswers(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(file);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/**
 * Fails with a ConfigError if `address` cannot be bound: an ipc path whose directory is
 * missing or whose socket already answers (a live process owns it; a stale file left by a
 * crash is fine, ZeroMQ replaces it). tcp conflicts are reported by bindError() instead.
 */
export async function checkBindable(address: string): Promise<void> {
  const parsed = parseRingAddress(address);
  if (parsed.kind !== 'ipc') return;
  const dir = path.dirname(parsed.where);
  if (!fs.existsSync(dir)) {
    throw new ConfigError(`ipc address ${address}: directory ${dir} does not exist`);
  }
  if (fs.existsSync(parsed.where) && (await unixSocketAnswers(parsed.where))) {
    throw new ConfigError(
      `ipc address ${address} is already in use by another process. Stop it or use ` + 'another directory.',
    );
  }
}

/** Turns ZeroMQ's bind failure into a ConfigError that names the address and the cause. */
export function bindError(address: string, err: unknown): Error {
  const code = err instanceof Error ? (err as Error & { code?: string }).code : undefined;
  if (code === 'EADDRINUSE') {
    return new ConfigError(`address ${address} is already in use. Pick another port (or port 0 for any free one).`);
  }
  if (code === 'EADDRNOTAVAIL' || code === 'ENODEV') {
    return new ConfigError(
      `address ${address} is not an interface of this machine (${code}). Bind to one of ` +
        "this host's own addresses.",
    );
  }
  const detail = err instanceof Error ? err.message : String(err);
  return new ConfigError(`cannot bind ${address}: ${detail}`);
}
