// The dashboard server over a runs folder written by hand with the run's own writers: who may
// read (token, Host header), run names that are never paths (traversal gets 404), the
// server-sent events' framing and live updates, the reader's tailing, and that nothing is
// ever written.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { buildDashboardConfig, dashboardUrl, TRAIN_DASHBOARD_FLAGS } from '../../src/dashboard/options';
import { LineTail, evalView, parseCsv, runState } from '../../src/dashboard/run-reader';
import { DashboardServer, authorize, pathSegments, sseFrame } from '../../src/dashboard/server';
import { ConfigError } from '../../src/core/errors';
import {
  appendRunEvent,
  appendStepRecord,
  appendWorkerRecord,
  writeRunInfo,
  type RunInfo,
  type StepRecord,
} from '../../src/train/run/run-log';
import { tempDir } from '../data/fixtures/images';

const root = tempDir(t, 'alexnet-dashboard-');
const runs = path.join(root, 'runs');
const runDir = path.join(runs, 'run-a');
/** Beside the runs folder: what a traversal would reach. */
const secretDir = path.join(root, 'secret');

const info: RunInfo = {
  config: { epochs: 2, preset: 'small' },
  startedMs: 1000,
  pid: process.pid,
  host: 'this-host',
  worldSize: 2,
};
const stepRecord = (n: number): StepRecord => ({
  epoch: 1,
  step: n,
  globalStep: n,
  epochs: n / 10,
  lr: 0.01,
  train: { loss: 2 / n, top1Error: 0.5, top5Error: 0.1, count: 12 },
  stepsPerEpoch: 10,
  timeMs: 1000 + n * 100,
});

writeRunInfo(runDir, info);
for (let n = 1; n <= 3; n++) appendStepRecord(runDir, stepRecord(n));
appendWorkerRecord(runDir, { kind: 'hello', rank: 0, host: 'this-host', pid: 11, timeMs: 1000 });
appendWorkerRecord(runDir, { kind: 'hello', rank: 1, host: 'other-host', pid: 12, timeMs: 1000 });
appendWorkerRecord(runDir, {
  kind: 'step',
  rank: 1,
  epoch: 1,
  step: 3,
  timingsMs: { dataWaitMs: 1, computeMs: 5, copyMs: 1, reduceMs: 9, updateMs: 1 },
  timeMs: 1300,
});
fs.writeFileSync(path.join(runDir, 'bad-files.tsv'), 'train/x/broken.png\tnot an image\n');
fs.mkdirSync(path.join(runDir, 'eval-test'));
fs.writeFileSync(path.join(runDir, 'eval-test', 'confusion.csv'), 'true \\ predicted,"a,1",b\n"a,1",3,1\nb,0,4\n');
fs.writeFileSync(path.join(runDir, 'eval-test', 'per-class.csv'), 'class,images\n"a,1",4\nb,4\n');
writeRunInfo(secretDir, { ...info, config: { secret: 'do not serve' } });
fs.mkdirSync(path.join(runs, 'not-a-run'));

/** Every file under `dir` with its size and modification time: a dashboard must leave this as it was. */
function tree(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true, recursive: true })
    .map((d) => {
      const file = path.join(d.parentPath, d.name);
      const s = fs.statSync(file);
      return `${path.relative(dir, file)} ${s.size} ${s.mtimeMs}`;
    })
    .sort();
}

/** A raw GET (the path exactly as given: fetch() would resolve '..' first). */
function get(
  port: number,
  rawPath: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: rawPath, method, headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function started(
  t: Test,
  token: string | null,
  onlyRun?: string,
): Promise<{ server: DashboardServer; port: number }> {
  const server = new DashboardServer({ runsRoot: runs, host: '127.0.0.1', port: 0, token, pollMs: 100, onlyRun });
  const url = await server.start();
  t.teardown(() => server.close());
  return { server, port: Number(new URL(url).port) };
}

t.test(
  'options: loopback by default without a token; another host gets one; bad values are one-line errors',
  async (t) => {
    t.same(buildDashboardConfig({}, TRAIN_DASHBOARD_FLAGS), null, 'no --dashboard: no server');
    t.same(
      buildDashboardConfig({ dashboard: '' }, TRAIN_DASHBOARD_FLAGS),
      { host: '127.0.0.1', port: 6060, token: null },
      'bare --dashboard: the default port',
    );
    t.same(buildDashboardConfig({ dashboard: '0' }, TRAIN_DASHBOARD_FLAGS)?.port, 0);
    t.same(
      buildDashboardConfig({ dashboard: '0', 'dashboard-host': '0.0.0.0' }, TRAIN_DASHBOARD_FLAGS, () => 'tok'),
      { host: '0.0.0.0', port: 0, token: 'tok' },
    );
    t.match(
      buildDashboardConfig({ dashboard: '0', 'dashboard-host': '10.1.2.3' }, TRAIN_DASHBOARD_FLAGS)?.token,
      /^[0-9a-f]{32}$/,
      'a random 128-bit token',
    );
    t.throws(() => buildDashboardConfig({ 'dashboard-host': '0.0.0.0' }, TRAIN_DASHBOARD_FLAGS), ConfigError);
    t.throws(
      () => buildDashboardConfig({ dashboard: '70000' }, TRAIN_DASHBOARD_FLAGS),
      /--dashboard must be a port 0-65535/,
    );
    t.throws(() => buildDashboardConfig({ dashboard: 'abc' }, TRAIN_DASHBOARD_FLAGS), /--dashboard must be a number/);
    t.equal(dashboardUrl('10.1.2.3', 80, 'tok'), 'http://10.1.2.3:80/?token=tok');
    t.equal(dashboardUrl('::1', 80, null), 'http://[::1]:80/');
  },
);

t.test(
  'authorize: the token when there is one (401 without, 403 wrong); on loopback, loopback Host headers only',
  async (t) => {
    const url = (q: string) => new URL(`http://x/api/runs${q}`);
    t.equal(authorize(url(''), 'h:1', 'secret', '0.0.0.0'), 401);
    t.equal(authorize(url('?token=wrong'), 'h:1', 'secret', '0.0.0.0'), 403);
    t.equal(authorize(url('?token=secre'), 'h:1', 'secret', '0.0.0.0'), 403, 'a prefix is not the token');
    t.equal(authorize(url('?token=secret'), 'h:1', 'secret', '0.0.0.0'), 200);
    t.equal(authorize(url(''), '127.0.0.1:6060', null, '127.0.0.1'), 200);
    t.equal(authorize(url(''), 'localhost:6060', null, '127.0.0.1'), 200);
    t.equal(authorize(url(''), '[::1]:6060', null, '127.0.0.1'), 200);
    t.equal(
      authorize(url(''), 'evil.example:6060', null, '127.0.0.1'),
      403,
      'DNS rebinding: a foreign Host on loopback',
    );
  },
);

t.test('server with a token: every request without it is refused, the page and its assets carry it', async (t) => {
  const { port } = await started(t, 'f00d');
  for (const p of ['/', '/static/app.js', '/api/runs', '/api/runs/run-a', '/api/runs/run-a/events']) {
    t.equal((await get(port, p)).status, 401, `${p} without the token`);
    t.equal((await get(port, `${p}?token=bad`)).status, 403, `${p} with a wrong token`);
  }
  const page = await get(port, '/?token=f00d');
  t.equal(page.status, 200);
  t.match(page.body, 'static/app.js?token=f00d', 'the page asks for its script with the token');
  t.equal((await get(port, '/static/uPlot.iife.min.js?token=f00d')).status, 200, 'uPlot, from node_modules');
  t.equal((await get(port, '/api/runs?token=f00d', {}, 'POST')).status, 405, 'read-only');
});

t.test('run names are never paths: traversal, encoded slashes and absolute paths get 404', async (t) => {
  const { port } = await started(t, null);
  const list = JSON.parse((await get(port, '/api/runs')).body) as { name: string }[];
  t.same(
    list.map((r) => r.name),
    ['run-a'],
    'a folder without run files is not listed',
  );
  t.equal((await get(port, '/api/runs/run-a')).status, 200, 'the run itself is served');
  const attempts = [
    '/api/runs/..',
    '/api/runs/../secret',
    '/api/runs/%2e%2e',
    '/api/runs/%2E%2E/secret',
    '/api/runs/..%2fsecret',
    '/api/runs/..%2Fsecret/events',
    '/api/runs/%2e%2e%2fsecret',
    '/api/runs/run-a%2f..%2f..%2fsecret',
    `/api/runs/${encodeURIComponent(secretDir)}`,
    `/api/runs/${encodeURIComponent(runDir)}`,
    `/api/runs/%2f${encodeURIComponent(secretDir.slice(1))}`,
    '/api/runs/not-a-run',
    '/api/runs/.',
    '/api/runs/%00',
    '/api/runs/%zz',
    '/static/..%2f..%2fpackage.json',
    '/static/../../package.json',
    '/static/%2e%2e%2fserver.ts',
    '/etc/passwd',
    '//etc/passwd',
    `/${secretDir}/run.json`,
  ];
  for (const p of attempts) {
    const res = await get(port, p);
    t.equal(res.status, 404, p);
    t.notMatch(res.body, 'do not serve', `${p}: nothing of the secret`);
  }
});

t.test('a served run: snapshot with curves, workers, bad files, eval and config', async (t) => {
  const { port } = await started(t, null);
  const snap = JSON.parse((await get(port, '/api/runs/run-a')).body);
  t.equal(snap.status.state, 'running', 'no end record, and its pid (this process) runs');
  t.same(snap.steps.epochs, [0.1, 0.2, 0.3]);
  t.equal(snap.progress.globalStep, 3);
  t.same(
    snap.workers.map((w: { rank: number; host: string }) => [w.rank, w.host]),
    [
      [0, 'this-host'],
      [1, 'other-host'],
    ],
  );
  t.equal(snap.workers[1].recent.reduceMs, 9);
  t.same(snap.badFiles, { count: 1, shown: [{ file: 'train/x/broken.png', reason: 'not an image' }] });
  t.same(snap.evals[0].classes, ['a,1', 'b']);
  t.same(snap.evals[0].matrix, [
    [3, 1],
    [0, 4],
  ]);
  t.same(snap.config, info.config);
  t.equal(JSON.parse((await get(port, '/api/runs/run-a?max=2')).body).steps.epochs.length, 2, '?max downsamples');
});

/** Reads server-sent events off a stream until `count` frames have come. */
function readFrames(
  t: Test,
  port: number,
  rawPath: string,
  count: number,
  onFrame: (n: number) => void,
): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: rawPath }, (res) => {
      t.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8');
      let text = '';
      const frames: string[] = [];
      res.on('data', (d: Buffer) => {
        text += d.toString();
        let end: number;
        while ((end = text.indexOf('\n\n')) >= 0) {
          const frame = text.slice(0, end);
          text = text.slice(end + 2);
          if (!frame.includes('event:')) continue;
          frames.push(frame);
          onFrame(frames.length);
          if (frames.length === count) {
            req.destroy();
            resolve(frames);
          }
        }
      });
    });
    req.on('error', (err) => (err.message.includes('socket hang up') ? undefined : reject(err)));
  });
}

t.test(
  'server-sent events: history on connect, then a new snapshot when the run appends; the end is told',
  async (t) => {
    t.equal(
      sseFrame('snapshot', { a: 'x\ny' }),
      'event: snapshot\ndata: {"a":"x\\ny"}\n\n',
      'one data line: JSON escapes newlines',
    );
    const { port } = await started(t, null, 'run-a');
    const frames = await readFrames(t, port, '/api/runs/run-a/events', 3, (n) => {
      if (n === 1) appendStepRecord(runDir, stepRecord(4));
      if (n === 2) appendRunEvent(runDir, { event: 'end', status: 'finished', timeMs: 5000 });
    });
    const data = frames.map((f) => {
      const lines = f.split('\n');
      t.same(
        lines.map((l) => l.split(':')[0]).filter((k) => k !== 'retry'),
        ['event', 'data'],
        'event and data lines',
      );
      return JSON.parse(lines.find((l) => l.startsWith('data: '))!.slice(6));
    });
    t.same(
      data.map((d) => d.progress.globalStep),
      [3, 4, 4],
      'the history, then the appended step',
    );
    t.same(
      data.map((d) => d.status.state),
      ['running', 'running', 'finished'],
      'then the end',
    );
  },
);

t.test('the server wrote nothing: every file of the runs folder is as it was', async (t) => {
  const before = tree(root);
  const { server, port } = await started(t, null);
  for (const p of ['/', '/api/runs', '/api/runs/run-a', '/api/runs/../secret', '/static/app.css']) await get(port, p);
  await server.close();
  t.same(tree(root), before);
});

t.test('the reader tails: only complete lines, from where it stopped; a rewritten file is read again', async (t) => {
  const file = path.join(root, 'tail.jsonl');
  fs.writeFileSync(file, '{"a":1}\n{"b":');
  const tail = new LineTail(file);
  t.same(tail.read(), { text: '{"a":1}\n', reset: false });
  t.equal(tail.read(), null, 'half a line is not read');
  fs.appendFileSync(file, '2}\n');
  t.same(tail.read(), { text: '{"b":2}\n', reset: false });
  fs.writeFileSync(file, '{"c":3}\n');
  t.same(tail.read(), { text: '{"c":3}\n', reset: true });
  t.equal(new LineTail(path.join(root, 'missing')).read(), null);
});

t.test('run state: ended by its end record, gone when its process is, running otherwise', async (t) => {
  const end = { event: 'end', status: 'failed', timeMs: 2000, message: 'boom' } as const;
  t.same(
    runState(info, end, () => true, 'this-host'),
    { state: 'failed', message: 'boom' },
  );
  t.same(
    runState({ ...info, startedMs: 3000 }, end, () => true, 'this-host').state,
    'running',
    'resumed after that end',
  );
  t.match(
    runState(info, null, () => false, 'this-host'),
    { state: 'gone', message: /no longer running/ },
  );
  t.equal(runState(info, null, () => false, 'another-host').state, 'running', 'another host: not judged by pid');
  t.equal(runState(null, null, () => true, 'this-host').state, 'unknown');
});

t.test('CSV and eval views: quoted fields, doubled quotes, CRLF', async (t) => {
  t.same(parseCsv('a,"b,c","d ""e"""\r\n1,2,3\n'), [
    ['a', 'b,c', 'd "e"'],
    ['1', '2', '3'],
  ]);
  t.same(parseCsv('x,y'), [['x', 'y']], 'no final newline');
  t.equal(evalView('eval-test', null, null), null);
  t.same(pathSegments('/api/runs/a%2Fb?x=1'), ['api', 'runs', 'a/b']);
  t.equal(pathSegments('/%zz'), null);
});
