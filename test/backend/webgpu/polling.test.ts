// The polite polling wrapper around setImmediate (src/backend/webgpu/polling.ts), without Dawn:
// a JS callback stands in for Dawn's poll (marked, and told apart by an injected predicate),
// re-arming itself through the global setImmediate as Dawn's does while work is pending.
import t from 'tap';
import { promisify } from 'node:util';
import {
  SLEEP_MS,
  SPIN_MS,
  installPolitePolling,
  looksLikeDawnPoll,
  nextPollDelay,
  pollStats,
} from '../../../src/backend/webgpu/polling';

const DAWN = Symbol('a stand-in for Dawn poll');
type Poll = (() => void) & { [DAWN]?: true };
installPolitePolling((callback) => typeof callback === 'function' && DAWN in callback);

/** The kind of handle setImmediate returned: 'Immediate' or 'Timeout'. */
const kind = (handle: unknown): string => (handle as object).constructor.name;

/**
 * A wait like Dawn's: polls that re-arm themselves until `ms` have passed since the first.
 * Resolves with each poll's time and the kind of handle each re-arm got.
 */
function dawnLikeWait(ms: number): Promise<{ times: number[]; handles: string[] }> {
  return new Promise((resolve) => {
    const times: number[] = [];
    const handles: string[] = [];
    const poll: Poll = () => {
      times.push(performance.now());
      if (times[times.length - 1] - times[0] >= ms) return resolve({ times, handles });
      handles.push(kind(setImmediate(poll)));
    };
    poll[DAWN] = true;
    handles.push(kind(setImmediate(poll)));
  });
}

t.test('nextPollDelay: immediates within the spin budget, timers after it', async (t) => {
  t.equal(nextPollDelay(0), null);
  t.equal(nextPollDelay(SPIN_MS - 0.01), null);
  t.equal(nextPollDelay(SPIN_MS), SLEEP_MS);
  t.equal(nextPollDelay(5_000), SLEEP_MS);
  t.equal(nextPollDelay(3, 5, 2), null, 'the budget and the pause are parameters');
  t.equal(nextPollDelay(6, 5, 2), 2);
});

t.test("Dawn's poll is told apart from other callbacks", async (t) => {
  t.notOk(
    looksLikeDawnPoll(() => undefined),
    'a JS function',
  );
  t.notOk(
    looksLikeDawnPoll(function named() {}),
    'a named JS function',
  );
  t.notOk(looksLikeDawnPoll(Math.max), 'a named native function');
  t.notOk(looksLikeDawnPoll((() => undefined).bind(null)), 'a bound function ("bound …")');
  t.notOk(looksLikeDawnPoll(undefined), 'not a function');
});

t.test('a long wait polls back to back for SPIN_MS, then every SLEEP_MS', async (t) => {
  const before = pollStats();
  const { times, handles } = await dawnLikeWait(40);
  const after = pollStats();
  t.equal(after.polls - before.polls, handles.length, 'every poll went through the wrapper');
  t.equal(handles[0], 'Immediate', 'the first poll of a wait runs at once');
  const firstTimer = handles.indexOf('Timeout');
  if (firstTimer < 0) {
    // Only if the process stalled for the whole 40 ms within the first millisecond.
    t.comment(`no timer: the wait ended within its spin budget (${handles.length} polls)`);
    return;
  }
  t.ok(firstTimer > 0, `then timers (from poll ${firstTimer} of ${handles.length})`);
  const timers = handles.slice(firstTimer);
  t.ok(
    timers.every((h) => h === 'Timeout'),
    'and only timers once the budget is spent',
  );
  t.equal(after.sleeps - before.sleeps, timers.length, 'the sleeps are counted');
  // How many immediates fit in the budget depends on the machine; the timers are held to the
  // clock. One gap can be short (libuv dates a timer from the loop's cached clock), but a chain
  // of timers is due SLEEP_MS apart, so their number and mean gap are bounded.
  const timed = times.slice(firstTimer);
  const span = timed[timed.length - 1] - times[firstTimer - 1];
  t.ok(
    timers.length <= Math.ceil(span / SLEEP_MS) + 2,
    `${timers.length} timer polls over ${span.toFixed(1)} ms, not one per loop turn`,
  );
  if (timed.length > 1) {
    const meanGap = (timed[timed.length - 1] - timed[0]) / (timed.length - 1);
    t.ok(meanGap >= SLEEP_MS * 0.9, `the later polls come every ${meanGap.toFixed(2)} ms (timers of ${SLEEP_MS} ms)`);
  }
});

t.test('clearImmediate cancels a poll that sleeps, and still cancels plain immediates', async (t) => {
  const ran: string[] = [];
  // A wait past its budget: its next poll is a timer, cancelled before it fires.
  const cancelled = await new Promise<string>((resolve) => {
    const started = performance.now();
    const poll: Poll = () => {
      if (performance.now() - started < SPIN_MS * 2) return void setImmediate(poll);
      const late: Poll = () => ran.push('cancelled poll');
      late[DAWN] = true;
      const handle = setImmediate(late);
      clearImmediate(handle);
      resolve(kind(handle));
    };
    poll[DAWN] = true;
    setImmediate(poll);
  });
  t.equal(cancelled, 'Timeout', 'the poll was a sleeping one');
  clearImmediate(setImmediate(() => ran.push('cancelled immediate')));
  await new Promise((resolve) => setImmediate(() => resolve(ran.push('later immediate'))));
  await new Promise((resolve) => setTimeout(resolve, SLEEP_MS * 5));
  t.same(ran, ['later immediate'], 'neither cancelled callback ran, and the next immediate did');
});

t.test('a new wait spins again; other immediates pass through, arguments and all', async (t) => {
  await dawnLikeWait(5);
  const { handles } = await dawnLikeWait(0);
  t.same(handles, ['Immediate'], 'a wait begun outside a poll starts with an immediate');

  const before = pollStats();
  const seen = await new Promise<unknown[]>((resolve) => {
    const handle = setImmediate((...args: unknown[]) => resolve(args), 'a', 2);
    t.equal(kind(handle), 'Immediate');
  });
  t.same(seen, ['a', 2], 'arguments reach the callback');
  t.same(pollStats(), before, 'not counted as a poll');
  t.equal(await promisify(setImmediate)('value'), 'value', "util.promisify's form still works");
});
