// The dashboard page (served by src/dashboard/server.ts; plain browser JavaScript, no build).
// It follows one run through server-sent events (a snapshot on connect, then one per change)
// and draws with uPlot, served from node_modules: nothing is fetched from anywhere else.
// Test hooks: #step holds the global step; each chart counts its points, series and draws in
// data-points, data-series and data-draws; each worker row carries data-rank.
'use strict';
(() => {
  const token = new URLSearchParams(location.search).get('token');
  /** A URL of this server, with the token when the page was opened with one. */
  const api = (p) => (token === null ? p : `${p}${p.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`);
  const $ = (id) => document.getElementById(id);
  const COLORS = ['#2f5fa8', '#d1495b', '#2a9d8f', '#e9a23b', '#7b4fa8', '#58657d', '#8ab17d', '#c05d9e'];
  const ENDED = new Set(['finished', 'stopped', 'failed', 'gone']);
  const PARTS = [
    ['dataWaitMs', 'data wait'],
    ['computeMs', 'compute'],
    ['copyMs', 'copy-out'],
    ['reduceMs', 'all-reduce'],
    ['skewWaitMs', 'skew wait'],
    ['updateMs', 'update'],
  ];
  /** Seconds without news from a running run (or a worker) before the page says so. */
  const STALE_SEC = 30;

  const finite = (x) => typeof x === 'number' && Number.isFinite(x);
  const num = (x, digits = 4) => (finite(x) ? Number(x.toPrecision(digits)).toString() : '–');
  const ms = (x) => (finite(x) ? x.toFixed(1) : '–');
  const pct = (x) => (finite(x) ? `${(100 * x).toFixed(2)}%` : '–');
  const clock = (t) => new Date(t).toLocaleString();
  function duration(sec) {
    if (!finite(sec)) return '–';
    const s = Math.round(sec);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  const ago = (t) => (finite(t) && t > 0 ? `${duration((Date.now() - t) / 1000)} ago` : '–');
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  /** One uPlot chart; rebuilt when its series change, otherwise given new data. */
  class Chart {
    constructor(id, title, opts = {}) {
      this.el = $(id);
      this.title = title;
      this.opts = opts;
      this.plot = null;
      this.key = '';
    }

    set(series, data) {
      const key = series.map((s) => s.label).join('|');
      if (this.plot !== null && key !== this.key) {
        this.plot.destroy();
        this.plot = null;
      }
      this.key = key;
      if (this.plot === null) {
        const box = this.el;
        this.plot = new uPlot(
          {
            title: this.title,
            width: Math.max(320, box.clientWidth - 10),
            height: this.opts.height || 220,
            scales: { x: { time: Boolean(this.opts.time) } },
            axes: [{ label: this.opts.xLabel }, { label: this.opts.yLabel, size: 60 }],
            series: [
              { label: this.opts.xLabel || 'x' },
              ...series.map((s, i) => ({
                label: s.label,
                stroke: s.color || COLORS[i % COLORS.length],
                width: 1.5,
                spanGaps: true,
                points: { show: Boolean(s.points), size: 7 },
              })),
            ],
            hooks: { draw: [() => (box.dataset.draws = String(Number(box.dataset.draws) + 1))] },
          },
          data,
          box,
        );
      } else this.plot.setData(data);
      this.el.dataset.points = String(data[0].length);
      this.el.dataset.series = String(series.length);
    }
  }

  const charts = {
    loss: new Chart('chart-loss', 'Loss', { xLabel: 'epochs', yLabel: 'loss' }),
    error: new Chart('chart-error', 'Top-1 and top-5 error', { xLabel: 'epochs', yLabel: 'error' }),
    lr: new Chart('chart-lr', 'Learning rate', { xLabel: 'epochs', yLabel: 'lr' }),
    ips: new Chart('chart-ips', 'Images/s', { xLabel: 'epochs', yLabel: 'img/s' }),
    breakdown: new Chart('chart-breakdown', 'Step breakdown (ms)', {
      xLabel: 'time',
      yLabel: 'ms',
      time: true,
      height: 240,
    }),
    overlay: new Chart('chart-overlay', 'Runs compared', { xLabel: 'epochs', yLabel: '', height: 260 }),
  };

  const state = { run: null, snap: null, source: null, lost: false, runs: [], overlay: new Set() };

  function renderStatus() {
    const st = state.snap && state.snap.status;
    const box = $('status');
    let text;
    let cls;
    if (st && ENDED.has(st.state)) {
      cls = st.state;
      const when = st.endedMs ? ` at ${clock(st.endedMs)}` : '';
      text = {
        finished: `run ended: finished${when}`,
        stopped: `run ended: stopped (Ctrl-C)${when}; continue it with --resume`,
        failed: `run ended: failed${when}: ${st.message || ''}`,
        gone: `the trainer went away: ${st.message || ''}`,
      }[st.state];
    } else if (state.lost) {
      cls = 'lost';
      text = 'the trainer went away: the dashboard does not answer (retrying)';
    } else if (!st) {
      cls = '';
      text = 'connecting…';
    } else if (st.state === 'running') {
      const quiet = (Date.now() - st.lastUpdateMs) / 1000;
      cls = quiet > STALE_SEC * 4 ? 'unknown' : 'running';
      text = `running · last update ${ago(st.lastUpdateMs)}`;
    } else {
      cls = 'unknown';
      text = `state unknown: ${st.message || ''}`;
    }
    box.textContent = text;
    box.className = `status ${cls}`;
  }

  function renderCards(snap) {
    const p = snap.progress;
    $('step').textContent = p ? String(p.globalStep) : '0';
    $('epoch').textContent = p ? `${p.epoch} of ${p.totalEpochs ?? '?'} · step ${p.step}/${p.stepsPerEpoch}` : '–';
    $('lr').textContent = p ? num(p.lr) : '–';
    $('ips').textContent = p && finite(p.imagesPerSec) ? p.imagesPerSec.toFixed(1) : '–';
    $('eta').textContent = ENDED.has(snap.status.state) ? 'ended' : p ? duration(p.etaSec) : '–';
    $('bad-count').textContent = String(snap.badFiles.count);
    $('test').textContent = snap.test ? `top-1 ${pct(snap.test.top1Error)} · top-5 ${pct(snap.test.top5Error)}` : '–';
  }

  function renderCurves(snap) {
    const s = snap.steps;
    const e = snap.epochs;
    charts.loss.set(
      [{ label: 'train loss' }, { label: 'val loss', points: true }],
      uPlot.join([
        [s.epochs, s.loss],
        [e.epoch, e.valLoss],
      ]),
    );
    charts.error.set(
      [
        { label: 'train top-1' },
        { label: 'train top-5' },
        { label: 'val top-1', points: true },
        { label: 'val top-5', points: true },
      ],
      uPlot.join([
        [s.epochs, s.top1Error, s.top5Error],
        [e.epoch, e.valTop1Error, e.valTop5Error],
      ]),
    );
    charts.lr.set([{ label: 'lr' }], [s.epochs, s.lr]);
    charts.ips.set([{ label: 'img/s' }], [s.epochs, s.imagesPerSec]);
  }

  function renderWorkers(snap) {
    const body = $('workers').tBodies[0];
    body.replaceChildren(
      ...snap.workers.map((w) => {
        const row = el('tr');
        row.dataset.rank = String(w.rank);
        if (snap.status.state === 'running' && Date.now() - w.lastSeenMs > STALE_SEC * 1000) row.className = 'stale';
        const r = w.recent || {};
        const cells = [
          w.rank,
          w.host ?? '–',
          w.pid ?? '–',
          ago(w.lastSeenMs),
          w.restarts,
          w.epoch === null ? '–' : `${w.epoch} / ${w.step}`,
          ...PARTS.map(([k]) => ms(r[k])),
        ];
        cells.forEach((c, i) => row.append(el('td', c, i === 1 || i === 3 ? 'text' : '')));
        return row;
      }),
    );
    $('restarts').replaceChildren(...snap.restarts.map((r) => el('li', r)));
  }

  function renderBreakdown(snap) {
    const select = $('breakdown-rank');
    const ranks = snap.breakdown.map((b) => String(b.rank));
    if ([...select.options].map((o) => o.value).join() !== ranks.join()) {
      const keep = select.value;
      select.replaceChildren(...ranks.map((r) => el('option', r)));
      if (ranks.includes(keep)) select.value = keep;
    }
    const b = snap.breakdown.find((x) => String(x.rank) === select.value);
    if (b)
      charts.breakdown.set(
        PARTS.map(([, label]) => ({ label })),
        [b.timeSec, ...PARTS.map(([k]) => b.parts[k])],
      );
  }

  function table(rows, header) {
    const t = el('table');
    if (header) {
      const head = el('thead');
      head.append(rowOf(header, 'th'));
      t.append(head);
    }
    const body = el('tbody');
    rows.forEach((r) => body.append(rowOf(r, 'td')));
    t.append(body);
    return t;
  }
  function rowOf(cells, tag) {
    const row = el('tr');
    cells.forEach((c, i) => row.append(el(tag, c, i === 0 ? 'text' : '')));
    return row;
  }

  function renderEvals(snap) {
    const box = $('evals');
    if (snap.evals.length === 0) return;
    box.replaceChildren(
      ...snap.evals.flatMap((ev) => {
        const matrix = table(
          ev.matrix.map((row, i) => [ev.classes[i], ...row]),
          ['true \\ predicted', ...ev.predictedColumns],
        );
        matrix.className = 'confusion';
        // Shade each cell by its share of the true class's images.
        [...matrix.tBodies[0].rows].forEach((tr, i) => {
          const total = ev.matrix[i].reduce((a, b) => a + b, 0) || 1;
          [...tr.cells]
            .slice(1)
            .forEach((td, j) => (td.style.background = `rgba(47, 95, 168, ${(0.85 * ev.matrix[i][j]) / total})`));
        });
        const [header, ...rows] = ev.perClass;
        return [
          el('h3', ev.name),
          matrix,
          el('p', ''),
          header ? table(rows, header) : el('p', 'no per-class.csv', 'note'),
        ];
      }),
    );
  }

  function renderBadFiles(snap) {
    const { count, shown } = snap.badFiles;
    $('bad-summary').textContent =
      count === 0
        ? 'None.'
        : `${count} file(s) could not be used${count > shown.length ? ` (the last ${shown.length} shown)` : ''}:`;
    $('bad-files').replaceChildren(table(shown.map((b) => [b.file, b.reason])).tBodies[0]);
  }

  /** The compared runs are fetched again at most this often while the followed one changes. */
  const OVERLAY_EVERY_MS = 3000;
  let overlayAt = 0;

  function render(snap) {
    state.snap = snap;
    if (state.overlay.has(snap.name) && Date.now() - overlayAt > OVERLAY_EVERY_MS) {
      overlayAt = Date.now();
      void renderOverlay().catch(() => undefined);
    }
    state.lost = false;
    renderStatus();
    renderCards(snap);
    renderCurves(snap);
    renderWorkers(snap);
    renderBreakdown(snap);
    renderEvals(snap);
    renderBadFiles(snap);
    $('config').textContent = snap.config ? JSON.stringify(snap.config, null, 2) : 'not written yet';
  }

  function follow(name) {
    if (state.source) state.source.close();
    state.run = name;
    state.snap = null;
    location.hash = encodeURIComponent(name);
    const source = new EventSource(api(`api/runs/${encodeURIComponent(name)}/events`));
    source.addEventListener('snapshot', (ev) => render(JSON.parse(ev.data)));
    // The server stops (a trainer that finished): what it sent last stands.
    source.addEventListener('bye', () => {
      source.close();
      state.lost = true;
      renderStatus();
    });
    source.onerror = () => {
      state.lost = true;
      renderStatus();
    };
    state.source = source;
  }

  const OVERLAY_FROM_EPOCHS = { valTop1Error: true, valLoss: true };

  async function renderOverlay() {
    const metric = $('overlay-metric').value;
    const names = state.runs.map((r) => r.name).filter((n) => state.overlay.has(n));
    if (names.length === 0) return;
    const snaps = await Promise.all(
      names.map((n) => fetch(api(`api/runs/${encodeURIComponent(n)}?max=300`)).then((r) => (r.ok ? r.json() : null))),
    );
    const tables = snaps
      .filter(Boolean)
      .map((s) =>
        OVERLAY_FROM_EPOCHS[metric] ? [s.epochs.epoch, s.epochs[metric]] : [s.steps.epochs, s.steps[metric]],
      );
    if (tables.length === 0) return;
    charts.overlay.set(
      snaps.filter(Boolean).map((s) => ({ label: s.name, points: Boolean(OVERLAY_FROM_EPOCHS[metric]) })),
      uPlot.join(tables),
    );
  }

  function renderRunChoices() {
    const select = $('run');
    if ([...select.options].map((o) => o.value).join() !== state.runs.map((r) => r.name).join()) {
      select.replaceChildren(...state.runs.map((r) => el('option', r.name)));
      select.value = state.run;
    }
    $('overlay-runs').replaceChildren(
      ...state.runs.map((r) => {
        const label = el('label');
        const box = el('input');
        box.type = 'checkbox';
        box.checked = state.overlay.has(r.name);
        box.onchange = () => {
          if (box.checked) state.overlay.add(r.name);
          else state.overlay.delete(r.name);
          void renderOverlay();
        };
        label.append(box, ` ${r.name} (${r.state})`);
        return label;
      }),
    );
  }

  async function loadRuns() {
    const res = await fetch(api('api/runs'));
    if (!res.ok) return;
    state.runs = await res.json();
    if (state.run === null && state.runs.length > 0) {
      const wanted = decodeURIComponent(location.hash.slice(1));
      const running = state.runs.find((r) => r.state === 'running');
      const first = state.runs.find((r) => r.name === wanted) || running || state.runs[state.runs.length - 1];
      state.overlay.add(first.name);
      follow(first.name);
    }
    renderRunChoices();
  }

  $('run').onchange = () => follow($('run').value);
  $('breakdown-rank').onchange = () => state.snap && renderBreakdown(state.snap);
  $('overlay-metric').onchange = () => void renderOverlay();
  // The ages ("3 s ago") move on between events.
  setInterval(() => {
    renderStatus();
    if (state.snap) renderWorkers(state.snap);
  }, 1000);
  // New runs appear in the list; compared runs that still train move on.
  setInterval(
    () =>
      void loadRuns()
        .then(renderOverlay)
        .catch(() => undefined),
    5000,
  );
  void loadRuns()
    .then(renderOverlay)
    .catch(() => renderStatus());
})();
