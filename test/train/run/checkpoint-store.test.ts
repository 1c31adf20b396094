// Step checkpoints on real files, without a model: when one is due, how many are kept, what a
// storage fault (ENOSPC, EIO) leaves behind, and which checkpoint a restart or --resume loads
// when the newest is truncated or damaged.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { trainConfig } from '../../../src/core/config';
import { memoryLogger } from '../../../src/core/log';
import { temporaryPathFor, writeAtomicAsync } from '../../../src/core/atomic-write';
import { LAST_CHECKPOINT, loadCheckpoint, type CheckpointContents } from '../../../src/train/run/checkpoint';
import {
  CheckpointStore,
  CheckpointTimer,
  checkpointsToPrune,
  loadNewestCheckpoint,
  loadResume,
  stepCheckpointName,
} from '../../../src/train/run/checkpoint-store';
import { tempDir } from '../../data/fixtures/images';

function contents(runDir: string, globalStep: number, epoch = 0): CheckpointContents {
  const w = Float32Array.from({ length: 64 }, (_, i) => i * 0.5 + globalStep);
  return {
    config: trainConfig({ runDir, preset: 'small' }),
    classes: ['a', 'b', 'c'],
    position: { epoch, stepInEpoch: globalStep, globalStep },
    schedule: { lr: 0.01, drops: 0, bestError: Infinity, epochsSinceBest: 0 },
    bestValTop1Error: Infinity,
    rng: { seed: 0 },
    weights: [{ name: 'w', shape: [8, 8], data: w }],
    optimizer: { name: 'sgd', iterations: globalStep, slots: { velocity: [w.map((x) => x / 2)] } },
  };
}

/**
 * Storage faults. ENOSPC on the real write path: the temporary file writeAtomicAsync is about
 * to open is made a link to /dev/full, where every write fails with ENOSPC from the kernel.
 * EIO from a write hook that fails as a dying disk would.
 */
const faultyWrite: Record<'ENOSPC' | 'EIO', (file: string, chunks: readonly Buffer[]) => Promise<void>> = {
  ENOSPC: async (file, chunks) => {
    fs.symlinkSync('/dev/full', temporaryPathFor(file));
    await writeAtomicAsync(file, chunks);
  },
  EIO: async () => {
    throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
  },
};

t.test('the timer: every N steps, or M minutes since the last checkpoint', async (t) => {
  const timer = new CheckpointTimer(5, 0.5, 0);
  t.same(
    [1, 4, 5, 10].map((s) => timer.due(s, 1000)),
    [false, false, true, true],
  );
  t.ok(timer.due(3, 30_000), '30 s passed');
  timer.saved(30_000);
  t.notOk(timer.due(3, 59_000));
  t.ok(timer.due(3, 60_000));
  const off = new CheckpointTimer(0, 0, 0);
  t.notOk(off.due(5, 1e9), 'both off');
});

t.test('names sort by step; the newest K step checkpoints are kept (written in the background)', async (t) => {
  t.equal(stepCheckpointName(120), 'step-00000120.ckpt');
  const names = [
    stepCheckpointName(30),
    'last.ckpt',
    stepCheckpointName(4),
    'best.ckpt',
    stepCheckpointName(100),
    'x.tmp',
  ];
  t.same(checkpointsToPrune(names, 2), [stepCheckpointName(4)]);
  const dir = tempDir(t);
  const store = new CheckpointStore(dir, 2);
  for (const step of [2, 4, 6]) {
    const saved = await store.beginStep(contents(dir, step));
    t.ok(
      saved.snapshotMs >= 0 && saved.writeMs >= 0 && saved.bytes > 0,
      `step ${step}: ${saved.bytes} bytes, snapshot ${saved.snapshotMs.toFixed(2)} ms, write ${saved.writeMs.toFixed(2)} ms`,
    );
  }
  t.same(fs.readdirSync(dir).sort(), [stepCheckpointName(4), stepCheckpointName(6)]);
});

for (const code of ['ENOSPC', 'EIO'] as const) {
  t.test(`${code} while writing leaves the previous checkpoint intact and says so`, async (t) => {
    const dir = tempDir(t);
    await new CheckpointStore(dir, 3).save(LAST_CHECKPOINT, contents(dir, 4));
    const before = fs.readFileSync(path.join(dir, LAST_CHECKPOINT));
    const store = new CheckpointStore(dir, 3, faultyWrite[code]);
    await t.rejects(store.save(LAST_CHECKPOINT, contents(dir, 8)), {
      name: 'CheckpointError',
      message: new RegExp(
        `could not write checkpoint .*last\\.ckpt at global step 8: ${code}: .*; the previous checkpoint .*last\\.ckpt is intact`,
      ),
    });
    t.ok(fs.readFileSync(path.join(dir, LAST_CHECKPOINT)).equals(before), 'last.ckpt unchanged, byte for byte');
    t.equal(loadCheckpoint(dir).position.globalStep, 4);
    t.same(
      fs.readdirSync(dir).filter((n) => n.endsWith('.tmp')),
      [],
      'no temporary file (or link) left',
    );
  });
}

t.test('a truncated or damaged newest checkpoint is refused by name; the one before is used', async (t) => {
  const dir = tempDir(t);
  const store = new CheckpointStore(dir, 5);
  for (const step of [2, 4, 6]) await store.beginStep(contents(dir, step));
  const six = path.join(dir, stepCheckpointName(6));
  const four = path.join(dir, stepCheckpointName(4));
  fs.truncateSync(six, fs.statSync(six).size - 10);
  const bytes = fs.readFileSync(four);
  bytes[bytes.length - 3] ^= 0xff; // one flipped byte in the tensors
  fs.writeFileSync(four, bytes);
  const log = memoryLogger();
  const newest = loadNewestCheckpoint(dir, log);
  t.equal(newest?.file, path.join(dir, stepCheckpointName(2)));
  t.match(log.lines.join('\n'), new RegExp(`refusing checkpoint ${six}: .*truncated.*trying the previous one`));
  t.match(log.lines.join('\n'), new RegExp(`refusing checkpoint ${four}: .*corrupt: its tensor bytes do not match`));
  t.equal(loadResume(dir, memoryLogger()).file, path.join(dir, stepCheckpointName(2)), '--resume <run dir> too');
  t.throws(
    () => loadResume(six, memoryLogger()),
    { name: 'CheckpointError', message: new RegExp(`${six} is truncated`) },
    'a file named by --resume is not replaced',
  );
  t.equal(loadNewestCheckpoint(dir, log, Date.now() + 60_000), null, 'files older than the run are left out');
  const empty = tempDir(t);
  t.throws(() => loadResume(empty, memoryLogger()), /no usable checkpoint in/);
});

t.test('last.ckpt after an epoch end is newer than the step checkpoint of the same step', async (t) => {
  const dir = tempDir(t);
  const store = new CheckpointStore(dir, 5);
  await store.beginStep(contents(dir, 8, 1));
  await store.save(LAST_CHECKPOINT, contents(dir, 8, 2));
  t.equal(loadNewestCheckpoint(dir, memoryLogger())?.file, path.join(dir, LAST_CHECKPOINT));
});

t.test('the snapshot is taken at once: changing the tensors during the background write changes nothing', async (t) => {
  const dir = tempDir(t);
  const c = contents(dir, 3);
  const written = new CheckpointStore(dir, 3).beginStep(c);
  c.weights[0].data.fill(-1);
  await written;
  t.equal(
    loadCheckpoint(path.join(dir, stepCheckpointName(3))).weights[0].data[1],
    3.5,
    'the weights as they were at the snapshot',
  );
});
