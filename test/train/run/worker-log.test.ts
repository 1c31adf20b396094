// workers.jsonl stays cheap: every hello, a heartbeat per rank at most every 5 s, and step
// timings only at the steps steps.jsonl logs; the run directory is made on the first line
// (workers say hello before rank 0 makes it).
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { MessageType, type StepReportMessage } from '../../../src/dist/control/messages';
import { WORKERS_FILE, parseWorkersJsonl } from '../../../src/train/run/run-log';
import { HEARTBEAT_RECORD_MS, WorkerLog } from '../../../src/train/run/worker-log';
import { tempDir } from '../../data/fixtures/images';

const report = (rank: number, step: number): StepReportMessage => ({
  type: MessageType.StepReport,
  rank,
  epoch: 0,
  step,
  stepMs: 10,
  images: 12,
  peakRssMb: 100,
  wireBytes: 0,
  timingsMs: { dataWaitMs: 1, computeMs: 5, copyMs: 1, reduceMs: 2, updateMs: 1 },
});

t.test('hellos always, heartbeats thinned per rank, step timings at the logged steps', async (t) => {
  const runDir = path.join(tempDir(t, 'alexnet-worker-log-'), 'not-yet-made');
  const log = new WorkerLog(runDir, 3);
  log.seen({ kind: 'hello', rank: 0, host: 'a', pid: 1, timeMs: 0 });
  log.seen({ kind: 'hello', rank: 1, host: 'b', pid: 2, timeMs: 0 });
  for (let s = 0; s <= 12_000; s += 1000) {
    log.seen({ kind: 'heartbeat', rank: 0, timeMs: s });
    log.seen({ kind: 'heartbeat', rank: 1, timeMs: s + 500 });
  }
  for (let step = 1; step <= 7; step++) log.step(report(0, step), 20_000 + step);
  const records = parseWorkersJsonl(fs.readFileSync(path.join(runDir, WORKERS_FILE), 'utf8'));
  t.same(
    records.filter((r) => r.kind === 'hello').map((r) => r.rank),
    [0, 1],
  );
  const beats = (rank: number) => records.filter((r) => r.kind === 'heartbeat' && r.rank === rank).map((r) => r.timeMs);
  t.same(
    beats(0),
    [HEARTBEAT_RECORD_MS, 2 * HEARTBEAT_RECORD_MS],
    'one per 5 s of rank 0 (its hello at 0 counts as one)',
  );
  t.same(beats(1), [5500, 10_500], 'rank 1 on its own clock');
  const steps = records.filter((r) => r.kind === 'step');
  t.same(
    steps.map((r) => (r.kind === 'step' ? [r.epoch, r.step, r.timingsMs.reduceMs] : null)),
    [
      [1, 3, 2],
      [1, 6, 2],
    ],
    'steps 3 and 6 of --log-every 3, epoch 1-based',
  );
});

t.test('--log-every 0: no step timings', async (t) => {
  const lines: unknown[] = [];
  const log = new WorkerLog(tempDir(t, 'alexnet-worker-log-'), 0, (_dir, r) => lines.push(r));
  log.step(report(0, 1));
  log.step(report(0, 10));
  t.same(lines, []);
});
