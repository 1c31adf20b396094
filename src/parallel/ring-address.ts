/**
 * Data-plane addresses for the ZeroMQ ring: a private ipc:// directory on one host (the
 * default), tcp://127.0.0.1 for a single host without unix sockets, and tcp on a real
 * interface for several hosts. Also the checks that turn a bad or busy address into a
 * ConfigError that names it, before ZeroMQ would fail obscurely (or, for ipc, silently
 * steal the path: libzmq unlinks an existing socket file when it binds).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError } from '../errors';

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
 * Where rank `rank` binds over tcp. `host` is an interface address of that rank's machine
 * (127.0.0.1 on one host). Port 0 means "any free port": the bound endpoint is then read back
 * from the transport and sent to the neighbour over the control plane.
 */
export function tcpRingAddress(host: string, basePort: number, rank: number): string {
  const port = basePort === 0 ? '*' : String(basePort + rank);
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
  const tcp = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\*|\d{1,5})$/.exec(address);
  if (tcp !== null) {
    if (tcp[2] !== '*' && Number(tcp[2]) > 65535) {
      throw new ConfigError(`tcp address ${address}: port ${tcp[2]} is above 65535`);
    }
    return { kind: 'tcp', where: tcp[1], port: tcp[2] };
  }
  throw new ConfigError(
    `ring address ${JSON.stringify(address)} is not ipc://<path> or tcp://<host>:<port|*>`,
  );
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
      `ipc address ${address} is already in use by another process. Stop it or use ` +
        'another directory.',
    );
  }
}

/** Turns ZeroMQ's bind failure into a ConfigError that names the address and the cause. */
export function bindError(address: string, err: unknown): Error {
  const code = err instanceof Error ? (err as Error & { code?: string }).code : undefined;
  if (code === 'EADDRINUSE') {
    return new ConfigError(
      `address ${address} is already in use. Pick another port (or port 0 for any free one).`,
    );
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
