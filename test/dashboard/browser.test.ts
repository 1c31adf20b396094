// The dashboard in a real browser: a short 2-worker training run (the compiled CLI, as a user
// runs it) with `--dashboard 0`, its page opened in Debian's chromium through playwright-core.
// The step counter advances, the loss chart redraws with more points, the worker table lists
// both ranks, a screenshot is kept; after Ctrl-C the page says the run ended. Then
// `alexnet dashboard` serves the finished run and a copy, overlaid on one chart.
// `make test` installs chromium and playwright-core where it can (scripts/ensure-browser.sh);
// where neither is there, this test skips, loudly.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import {
  METRICS_FILE,
  RUN_FILE,
  WORKERS_FILE,
  parseMetricsJsonl,
  parseRunInfo,
  parseWorkersJsonl,
} from '../../src/train/run/run-log';
import { tempDir } from '../data/fixtures/images';
import { makeStripeDataset } from '../helpers/stripes';

const CHROMIUM = process.env['ALEXNET_CHROMIUM'] ?? '/usr/bin/chromium';
/** Where the screenshot is kept (tap's own folder, not committed); ALEXNET_DASHBOARD_SCREENSHOT overrides. */
const SCREENSHOT = process.env['ALEXNET_DASHBOARD_SCREENSHOT'] ?? path.resolve('.tap', 'dashboard', 'live-run.png');
/** The flags that work on these machines (FINDINGS.md): no sandbox as root, nothing tried on the network. */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

type Playwright = typeof import('playwright-core');

function loadPlaywright(): Playwright | null {
  try {
    return require('playwright-core') as Playwright;
  } catch {
    return null;
  }
}

const playwright = loadPlaywright();
const missing = [
  fs.existsSync(CHROMIUM) ? null : `no browser at ${CHROMIUM}`,
  playwright === null ? 'playwright-core is not installed' : null,
].filter((m) => m !== null);

if (missing.length > 0 || playwright === null) {
  const line = '!'.repeat(78);
  process.stderr.write(
    `\n${line}\n!! SKIPPED: the dashboard's browser test (${missing.join('; ')}).\n!! Run scripts/ensure-browser.sh (apt chromium as root, npm playwright-core) to run it.\n${line}\n`,
  );
  t.plan(0, `dashboard browser test skipped: ${missing.join('; ')}`);
} else {
  const { chromium } = playwright;
  t.test(
    'a live 2-worker run in chromium: the step counter advances, the chart redraws, both ranks listed; the end is shown',
    async (t) => {
      const root = tempDir(t, 'alexnet-browser-');
      const data = await makeStripeDataset(path.join(root, 'data'), { train: 40, val: 4, test: 2 });
      const runDir = path.join(root, 'runs', 'live');
      const args = [
        'dist/src/cli.js',
        'train',
        '--data',
        data,
        '--preset',
        'small',
        '--init',
        'he',
        '--batch-size',
        '12',
        '--lr',
        '0.01',
        '--dropout',
        '0',
        '--backend',
        'wasm',
        '--epochs',
        '40',
        '--log-every',
        '1',
        '--devices',
        'cpu:2',
        '--run-dir',
        runDir,
        '--dashboard',
        '0',
      ];
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      t.teardown(() => void child.kill('SIGKILL'));

      const until = async <T>(
        what: string,
        probe: () => Promise<T | null> | T | null,
        timeoutMs = 30_000,
      ): Promise<T> => {
        const started = Date.now();
        for (;;) {
          const value = await probe();
          if (value !== null) return value;
          if (Date.now() - started > timeoutMs)
            throw new Error(`timed out waiting for ${what}; trainer output:\n${output}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      const url = await until(
        'the dashboard line',
        () => /^dashboard: (http:\/\/127\.0\.0\.1:\d+\/)$/m.exec(output)?.[1] ?? null,
      );
      t.pass(`the trainer printed ${url}`);

      const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
      t.teardown(() => browser.close());
      const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
      const pageErrors: string[] = [];
      page.on('pageerror', (err) => pageErrors.push(String(err)));
      const requests: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      await page.goto(url);

      /** The page's status line once it matches `pattern`. */
      const untilStatus = (pattern: RegExp, timeoutMs?: number): Promise<string> =>
        until(
          `the status to match ${pattern}`,
          async () => {
            const text = (await page.textContent('#status')) ?? '';
            return pattern.test(text) ? text : null;
          },
          timeoutMs,
        );
      const reading = async () => ({
        step: Number(await page.textContent('#step')),
        points: Number(await page.getAttribute('#chart-loss', 'data-points')),
        draws: Number(await page.getAttribute('#chart-loss', 'data-draws')),
      });
      const first = await until('a first step on the page', async () => {
        const r = await reading();
        return r.step > 0 && r.points > 0 ? r : null;
      });
      const later = await until('the page to follow the run', async () => {
        const r = await reading();
        return r.step >= first.step + 3 && r.points > first.points && r.draws > first.draws ? r : null;
      });
      t.ok(later.step > first.step, `step counter advanced: ${first.step} -> ${later.step}`);
      t.ok(later.points > first.points, `the loss chart has more points: ${first.points} -> ${later.points}`);
      t.ok(later.draws > first.draws, `and was redrawn: ${first.draws} -> ${later.draws} draws`);

      const ranks = await until('both ranks in the worker table', async () => {
        const r = await page.$$eval('#workers tbody tr', (rows) => rows.map((row) => row.getAttribute('data-rank')));
        return r.length === 2 ? r : null;
      });
      t.same(ranks, ['0', '1'], 'the worker table lists every rank');
      t.match(await page.textContent('#status'), /running/);
      fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      t.comment(`screenshot of the live page: ${SCREENSHOT}`);
      t.ok(fs.statSync(SCREENSHOT).size > 10_000, 'a screenshot was written');

      child.kill('SIGINT');
      t.equal(await exited, 130, 'Ctrl-C: the run stops after a step and saves a checkpoint');
      const status = await untilStatus(/run ended: stopped/, 10_000);
      t.pass(`the page says: ${status}`);
      // What the page read: the files the run wrote for it.
      const runInfo = parseRunInfo(fs.readFileSync(path.join(runDir, RUN_FILE), 'utf8'));
      t.match(
        runInfo,
        { pid: child.pid, worldSize: 2, config: { epochs: 40 } },
        'run.json: who trains, and the config',
      );
      const events = parseMetricsJsonl(fs.readFileSync(path.join(runDir, METRICS_FILE), 'utf8')).events;
      t.match(events[events.length - 1], { event: 'end', status: 'stopped' }, 'metrics.jsonl ends with the end record');
      const workers = parseWorkersJsonl(fs.readFileSync(path.join(runDir, WORKERS_FILE), 'utf8'));
      t.same(
        [...new Set(workers.filter((r) => r.kind === 'hello').map((r) => r.rank))].sort(),
        [0, 1],
        'workers.jsonl: both ranks said hello',
      );
      t.ok(
        workers.filter((r) => r.kind === 'step').length >= 2 * later.step - 2,
        'and their step timings at every logged step',
      );
      t.same(pageErrors, [], 'no script error on the page');
      t.same(
        requests.filter((r) => !r.startsWith(url) && !r.startsWith('data:')),
        [],
        'nothing fetched from anywhere but the dashboard',
      );

      // The finished run and a copy of it, served by `alexnet dashboard`, overlaid on one chart.
      fs.cpSync(runDir, path.join(root, 'runs', 'copy'), { recursive: true });
      const server = spawn(process.execPath, ['dist/src/cli.js', 'dashboard', path.join(root, 'runs'), '--port', '0'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      t.teardown(() => void server.kill('SIGKILL'));
      let serverOut = '';
      server.stdout.on('data', (d: Buffer) => (serverOut += d.toString()));
      const folderUrl = await until(
        'alexnet dashboard to listen',
        () => /^dashboard: (http\S+)$/m.exec(serverOut)?.[1] ?? null,
      );
      await page.goto(`${folderUrl}#live`);
      await until('both runs listed', async () => ((await page.$$('#overlay-runs input')).length === 2 ? true : null));
      // The run list and the selected run's snapshot are separate fetches: the status reads
      // "connecting…" until the second one lands, so wait for it as for the live run above.
      const finished = await untilStatus(/run ended: stopped/);
      t.pass(`a finished run, read from its files: ${finished}`);
      await page.click('#overlay-runs label:has-text("copy") input');
      const series = await until('two runs on the compare chart', async () =>
        (await page.getAttribute('#chart-overlay', 'data-series')) === '2' ? 2 : null,
      );
      t.equal(series, 2, 'two runs overlaid on one chart, chosen on the page');
      server.kill('SIGINT');
    },
  );
}
