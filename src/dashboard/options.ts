/**
 * Where the dashboard listens and who may read it: `train --dashboard [port] --dashboard-host`
 * and `alexnet dashboard <runs> --port --host`, validated into one frozen config.
 *
 * Loopback by default. Any other address is a deliberate choice (its own flag) and gets a
 * random token: the printed URL carries it, and every request without it is refused, so a
 * dashboard on a shared network shows a run only to whoever was given the URL.
 */
import { randomBytes } from 'node:crypto';
import { ConfigError } from '../core/errors';
import { deepFreeze, FieldReader, type CliArgs } from '../core/field-reader';

export interface DashboardConfig {
  host: string;
  /** 0: any free port (the bound one is printed). */
  port: number;
  /** Required in every request's `token` query parameter; null on a loopback address. */
  token: string | null;
}

export const DASHBOARD_DEFAULTS = deepFreeze({ host: '127.0.0.1', port: 6060 } as const);

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host);
}

/** The flags one command names its two options with. */
export interface DashboardFlags {
  port: string;
  host: string;
}

export const TRAIN_DASHBOARD_FLAGS: DashboardFlags = { port: 'dashboard', host: 'dashboard-host' };
export const DASHBOARD_COMMAND_FLAGS: DashboardFlags = { port: 'port', host: 'host' };

/**
 * The dashboard's config from parsed options; null when `train` was given no --dashboard. The
 * port flag may come without a value (`--dashboard`, yargs gives ''): the default port.
 */
export function buildDashboardConfig(
  args: CliArgs,
  flags: DashboardFlags,
  newToken: () => string = () => randomBytes(16).toString('hex'),
): Readonly<DashboardConfig> | null {
  const portArg = args[flags.port];
  const hostArg = args[flags.host];
  if (portArg == null) {
    if (hostArg != null) throw new ConfigError(`--${flags.host} only applies with --${flags.port}`);
    return null;
  }
  const reader = new FieldReader(args, (key) => `--${key}`);
  const port = portArg === '' ? DASHBOARD_DEFAULTS.port : reader.count(flags.port, true);
  if (port > 65535) throw new ConfigError(`--${flags.port} must be a port 0-65535 (0: any free port), got ${port}`);
  const host = hostArg == null ? DASHBOARD_DEFAULTS.host : reader.string(flags.host);
  return deepFreeze({ host, port, token: isLoopback(host) ? null : newToken() });
}

/** The address to open: with the token where one is required. */
export function dashboardUrl(host: string, port: number, token: string | null): string {
  const shown = host.includes(':') ? `[${host}]` : host;
  return `http://${shown}:${port}/${token === null ? '' : `?token=${token}`}`;
}
