/**
 * The dashboard's HTTP server (node:http, no framework): a read-only page over the runs of one
 * folder, live through server-sent events.
 *
 *   GET /                          the page (index.html)
 *   GET /static/<asset>            the page's script and style, uPlot from node_modules
 *   GET /api/runs                  the runs: name, state, last update
 *   GET /api/runs/<name>           one run's snapshot (run-reader.ts), ?max=<points per curve>
 *   GET /api/runs/<name>/events    server-sent events: the snapshot now, then again on every change
 *
 * Safety: a run name is looked up among the folder's own subfolders, never joined into a path,
 * so `..`, encoded slashes and absolute paths name no run (404); static assets come from a
 * fixed table. With a token (any address but loopback), every request needs `?token=`: 401
 * without, 403 with a wrong one. On loopback the Host header must name loopback too, so a web
 * page elsewhere cannot read the dashboard through DNS rebinding. Nothing here writes a file.
 */
import { timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { ConfigError } from '../core/errors';
import { projectRoot } from '../core/project-root';
import { dashboardUrl, isLoopback, type DashboardFlags } from './options';
import { RUN_MARKERS, RunReader } from './run-reader';

export interface DashboardServerOptions {
  /** The folder whose subfolders are runs. */
  runsRoot: string;
  /** Serve only this run of the folder (`train --dashboard`: the run being trained). */
  onlyRun?: string;
  host: string;
  port: number;
  token: string | null;
  /** How often the run files are checked for changes. */
  pollMs?: number;
  /** Points per curve in a snapshot (the default when a request gives no ?max). */
  maxPoints?: number;
}

const DEFAULT_POLL_MS = 1000;
const DEFAULT_MAX_POINTS = 600;
/** A comment line now and then keeps proxies and the browser from closing an idle stream. */
const KEEPALIVE_MS = 15_000;

/** The page's files: in src/ (tsc does not copy them to dist/), found from src/ and from dist/src/ alike. */
function pageDir(): string {
  return path.join(projectRoot(__dirname), 'src', 'dashboard', 'page');
}

/** The only files the server sends, by the name the page asks for. */
function staticAssets(): Record<string, { file: string; type: string }> {
  const uplot = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
  const page = pageDir();
  return {
    'app.js': { file: path.join(page, 'app.js'), type: 'text/javascript; charset=utf-8' },
    'app.css': { file: path.join(page, 'app.css'), type: 'text/css; charset=utf-8' },
    'uPlot.iife.min.js': { file: path.join(uplot, 'uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
    'uPlot.min.css': { file: path.join(uplot, 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
  };
}

/** One server-sent event: a name and one line of JSON (JSON.stringify writes no newline). */
export function sseFrame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** The request's path as segments, each percent-decoded once; null when one does not decode. */
export function pathSegments(url: string): string[] | null {
  const pathname = url.split('?')[0];
  try {
    return pathname
      .split('/')
      .filter((s) => s !== '')
      .map((s) => decodeURIComponent(s));
  } catch {
    return null;
  }
}

/** Who may read: the token when there is one, loopback Host headers on a loopback address. */
export function authorize(
  url: URL,
  hostHeader: string | undefined,
  token: string | null,
  boundHost: string,
): 200 | 401 | 403 {
  if (token === null) {
    const name = (hostHeader ?? '').replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
    return isLoopback(boundHost) && !isLoopback(name) ? 403 : 200;
  }
  const given = url.searchParams.get('token');
  if (given === null) return 401;
  const [a, b] = [Buffer.from(given), Buffer.from(token)];
  return a.length === b.length && timingSafeEqual(a, b) ? 200 : 403;
}

interface Stream {
  res: http.ServerResponse;
  reader: RunReader;
  maxPoints: number;
  /** The reader's version this stream last got. */
  sentVersion: number;
}

export class DashboardServer {
  private readonly server: http.Server;
  private readonly readers = new Map<string, RunReader>();
  private readonly streams = new Set<Stream>();
  private readonly assets = staticAssets();
  private poll: NodeJS.Timeout | null = null;
  private keepalive: NodeJS.Timeout | null = null;
  private url: string | null = null;

  constructor(private readonly options: DashboardServerOptions) {
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  /** Listens; resolves with the URL to open (the real port when it was 0, the token when there is one). */
  async start(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const port = (this.server.address() as AddressInfo).port;
    this.poll = setInterval(() => this.broadcastChanges(), this.options.pollMs ?? DEFAULT_POLL_MS);
    this.keepalive = setInterval(() => this.streams.forEach((s) => s.res.write(': keep-alive\n\n')), KEEPALIVE_MS);
    this.poll.unref();
    this.keepalive.unref();
    this.url = dashboardUrl(this.options.host, port, this.options.token);
    return this.url;
  }

  /**
   * Sends every open page the runs' last state (a trainer that is about to exit has just
   * written its end record), ends the streams and stops listening.
   */
  async close(): Promise<void> {
    if (this.poll) clearInterval(this.poll);
    if (this.keepalive) clearInterval(this.keepalive);
    this.broadcastChanges();
    for (const s of this.streams) s.res.end(sseFrame('bye', { reason: 'the dashboard server stopped' }));
    this.streams.clear();
    // close() ends idle connections and waits for busy ones: a second for them to finish, then cut.
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const cut = setTimeout(() => this.server.closeAllConnections(), 1000);
    await closed;
    clearTimeout(cut);
  }

  /** The run names: subfolders of the runs folder that hold a run's files (or only the one run). */
  runNames(): string[] {
    const { runsRoot, onlyRun } = this.options;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(runsRoot, { withFileTypes: true });
    } catch {
      return [];
    }
    return entries
      .filter((d) => d.isDirectory() && !d.name.startsWith('.') && (onlyRun === undefined || d.name === onlyRun))
      .filter((d) => onlyRun !== undefined || RUN_MARKERS.some((f) => fs.existsSync(path.join(runsRoot, d.name, f))))
      .map((d) => d.name)
      .sort();
  }

  /** The reader of a run named by a request: only an exact name from runNames(), never a path. */
  private reader(name: string): RunReader | null {
    if (!this.runNames().includes(name)) return null;
    let reader = this.readers.get(name);
    if (reader === undefined) {
      reader = new RunReader(name, path.join(this.options.runsRoot, name));
      this.readers.set(name, reader);
    }
    reader.refresh();
    return reader;
  }

  /** Sends each stream its run's snapshot when the run changed since the stream's last one (whoever read the change). */
  private broadcastChanges(): void {
    for (const reader of new Set([...this.streams].map((s) => s.reader))) reader.refresh();
    for (const s of this.streams) if (s.reader.version !== s.sentVersion) this.sendSnapshot(s);
  }

  private sendSnapshot(s: Stream): void {
    s.sentVersion = s.reader.version;
    s.res.write(sseFrame('snapshot', s.reader.snapshot(s.maxPoints)));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader(
      'Content-Security-Policy',
      "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
    );
    if (req.method !== 'GET' && req.method !== 'HEAD') return this.fail(res, 405, 'read-only: GET only');
    const auth = authorize(url, req.headers.host, this.options.token, this.options.host);
    if (auth !== 200)
      return this.fail(res, auth, auth === 401 ? 'this dashboard needs the token of its printed URL' : 'refused');
    // Segments of the raw path: the URL parser would already have resolved '..' and '%2e%2e'.
    const segments = pathSegments(req.url ?? '/');
    if (segments === null) return this.fail(res, 404, 'not found');
    const maxPoints = Math.max(
      2,
      Math.min(100_000, Number(url.searchParams.get('max')) || (this.options.maxPoints ?? DEFAULT_MAX_POINTS)),
    );
    const [first, second, third, fourth, ...rest] = segments;
    if (first === undefined) return this.sendPage(res);
    if (first === 'static' && second !== undefined && third === undefined && Object.hasOwn(this.assets, second))
      return this.sendAsset(res, second);
    if (first !== 'api' || second !== 'runs' || rest.length > 0) return this.fail(res, 404, 'not found');
    if (third === undefined) return this.sendJson(res, this.runList());
    const reader = this.reader(third);
    if (reader === null) return this.fail(res, 404, 'no such run');
    if (fourth === undefined) return this.sendJson(res, reader.snapshot(maxPoints));
    if (fourth === 'events') return this.openStream(req, res, reader, maxPoints);
    return this.fail(res, 404, 'not found');
  }

  private runList(): { name: string; state: string; lastUpdateMs: number }[] {
    return this.runNames().flatMap((name) => {
      const reader = this.reader(name);
      if (reader === null) return [];
      const { status } = reader.snapshot(2);
      return [{ name, state: status.state, lastUpdateMs: status.lastUpdateMs }];
    });
  }

  private openStream(req: http.IncomingMessage, res: http.ServerResponse, reader: RunReader, maxPoints: number): void {
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive' });
    // retry: the browser reconnects after 2 s when the stream drops (a dashboard that restarts).
    res.write('retry: 2000\n');
    const stream: Stream = { res, reader, maxPoints, sentVersion: -1 };
    this.sendSnapshot(stream);
    this.streams.add(stream);
    req.on('close', () => this.streams.delete(stream));
  }

  private sendPage(res: http.ServerResponse): void {
    const html = fs.readFileSync(path.join(pageDir(), 'index.html'), 'utf8');
    // The assets need the token too; it is only written into a page for a request that had it.
    const query = this.options.token === null ? '' : `?token=${this.options.token}`;
    this.send(res, 200, 'text/html; charset=utf-8', html.replaceAll('{{QUERY}}', query));
  }

  private sendAsset(res: http.ServerResponse, name: string): void {
    const asset = this.assets[name];
    this.send(res, 200, asset.type, fs.readFileSync(asset.file));
  }

  private sendJson(res: http.ServerResponse, value: unknown): void {
    this.send(res, 200, 'application/json; charset=utf-8', JSON.stringify(value));
  }

  private fail(res: http.ServerResponse, status: number, message: string): void {
    this.send(res, status, 'text/plain; charset=utf-8', `${message}\n`);
  }

  private send(res: http.ServerResponse, status: number, type: string, body: string | Buffer): void {
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }
}

/** Starts a dashboard server and returns it with its URL; an address it cannot listen at is a ConfigError. */
export async function startDashboard(
  options: DashboardServerOptions,
  flags: DashboardFlags,
): Promise<{ server: DashboardServer; url: string }> {
  const server = new DashboardServer(options);
  try {
    return { server, url: await server.start() };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE')
      throw new ConfigError(
        `--${flags.port} ${options.port}: the port is in use; choose another, or 0 for any free port`,
      );
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN')
      throw new ConfigError(`--${flags.host} ${options.host}: not an address of this host`);
    if (code === 'EACCES')
      throw new ConfigError(
        `--${flags.port} ${options.port}: not allowed to listen there (ports below 1024 need root)`,
      );
    throw err;
  }
}
