// The restart policy on its own (no processes): which failures restart, how they are counted,
// what each restart event says, and the error after the last one.
import t from 'tap';
import { ConfigError, WorkerExitedError, WorkerLostError } from '../../../src/core/errors';
import {
  describeRestart,
  runWithRestarts,
  type ResumePoint,
  type RestartEvent,
} from '../../../src/dist/launch/restarts';

const lost = (rank: number, epoch: number, step: number) =>
  new WorkerLostError(`worker rank ${rank} was killed by SIGKILL at epoch ${epoch}, step ${step}`, rank, epoch, step);

/** Attempts that fail with `failures` in turn, then finish; records what each resumed from. */
function scripted(failures: Error[]) {
  const resumedFrom: (string | null)[] = [];
  const attempt = async (resume: ResumePoint | null) => {
    resumedFrom.push(resume?.file ?? null);
    const next = failures.shift();
    if (next) throw next;
    return { finished: true };
  };
  return { attempt, resumedFrom };
}

const point = (globalStep: number): ResumePoint => ({
  file: `step-${globalStep}.ckpt`,
  epoch: 0,
  stepInEpoch: globalStep,
  globalStep,
});

t.test('lost workers restart from the newest checkpoint, each restart recorded', async (t) => {
  const { attempt, resumedFrom } = scripted([lost(1, 1, 3), lost(0, 1, 5)]);
  const checkpoints = [point(2), point(4)];
  const events: RestartEvent[] = [];
  const result = await runWithRestarts({
    maxRestarts: 3,
    attempt,
    newestCheckpoint: () => checkpoints.shift() ?? null,
    onRestart: (e) => events.push(e),
    now: () => 42,
  });
  t.same(result, { finished: true });
  t.same(
    resumedFrom,
    [null, 'step-2.ckpt', 'step-4.ckpt'],
    'the first attempt as configured, then each newest checkpoint',
  );
  t.same(
    events.map((e) => [e.restart, e.rank, e.epoch, e.step, e.sameStepAgain, e.resumeFrom?.globalStep]),
    [
      [1, 1, 1, 3, false, 2],
      [2, 0, 1, 5, false, 4],
    ],
  );
  t.match(
    describeRestart(events[0]),
    /^restart 1 of 3: worker rank 1 was killed by SIGKILL at epoch 1, step 3; continuing from step-2\.ckpt \(epoch 1, step 2, global step 2\)$/,
  );
});

t.test('a failure at the same step again counts, and the last one ends the run with its cause', async (t) => {
  const { attempt } = scripted([lost(1, 2, 7), lost(1, 2, 7), lost(1, 2, 7)]);
  const events: RestartEvent[] = [];
  await t.rejects(
    runWithRestarts({ maxRestarts: 2, attempt, newestCheckpoint: () => null, onRestart: (e) => events.push(e) }),
    {
      name: 'WorkerLostError',
      message: 'worker rank 1 was killed by SIGKILL at epoch 2, step 7 (gave up after 2 restart(s), --max-restarts 2)',
    },
  );
  t.same(
    events.map((e) => e.sameStepAgain),
    [false, true],
  );
  t.match(describeRestart(events[1]), /\(again at the same step\); continuing from the start \(no checkpoint yet\)$/);
});

t.test('--max-restarts 0, and failures a restart would meet again, end the run at once unchanged', async (t) => {
  const first = lost(1, 1, 1);
  await t.rejects(
    runWithRestarts({
      maxRestarts: 0,
      attempt: scripted([first]).attempt,
      newestCheckpoint: () => null,
      onRestart: () => t.fail('no restart'),
    }),
    first,
  );
  for (const err of [
    new WorkerExitedError('worker rank 0 failed: DataError: x'),
    new ConfigError('bad'),
    new Error('bug'),
  ]) {
    await t.rejects(
      runWithRestarts({
        maxRestarts: 3,
        attempt: scripted([err]).attempt,
        newestCheckpoint: () => null,
        onRestart: () => t.fail('no restart'),
      }),
      err,
    );
  }
});
