/**
 * Dawn's node bindings wait for GPU work (a readback's mapAsync, a queue's work done) by
 * polling: while any such promise is pending, each poll schedules the next one with the global
 * `setImmediate`. A process waiting on the GPU therefore keeps a core at 100%, which it takes
 * from the data loader's decode threads, from another worker on the same machine and, on
 * Mesa's software device, from the threads doing the GPU's work itself.
 *
 * `installPolitePolling` wraps the global `setImmediate` so that Dawn's polls run back to back
 * for the first SPIN_MS of a wait (a short wait costs no latency) and every SLEEP_MS after
 * that (a long wait costs no CPU, and a millisecond or two of latency). Other callers'
 * immediates pass through untouched. Dawn's other native callback through setImmediate (a
 * rejected promise's) looks the same and is treated the same: it runs at most SLEEP_MS late.
 * A poll that sleeps returns a Timeout, not an Immediate; clearImmediate is wrapped to cancel
 * either. docs/webgpu.md ("Waiting for the GPU") has the numbers.
 */

/** How long a wait polls back to back before it sleeps between polls, in ms. */
export const SPIN_MS = 1;
/** The pause between polls once a wait has outlasted SPIN_MS, in ms (timers' resolution). */
export const SLEEP_MS = 1;

/**
 * The delay before the next poll of a wait that began `waitedMs` ago: null runs it as an
 * immediate (at once, after I/O), a number as a timer of that many ms.
 */
export function nextPollDelay(waitedMs: number, spinMs = SPIN_MS, sleepMs = SLEEP_MS): number | null {
  return waitedMs < spinMs ? null : sleepMs;
}

/**
 * Dawn's poll callback: a native function with no name and no parameters (a Napi::Function
 * made from a lambda). A bound function is native too, but named "bound …". Were a later
 * dawn.node to pass something else, its polls would pass through unchanged: the old spinning,
 * not a failure (the webgpu tests check that the polls are caught).
 */
export function looksLikeDawnPoll(callback: unknown): boolean {
  return (
    typeof callback === 'function' &&
    callback.name === '' &&
    callback.length === 0 &&
    Function.prototype.toString.call(callback).endsWith('{ [native code] }')
  );
}

/** What the wrapper has done in this process: polls seen, and of those, how many slept first. */
export interface PollStats {
  polls: number;
  sleeps: number;
}

const stats: PollStats = { polls: 0, sleeps: 0 };
let installed = false;

/** A copy of the counts since installPolitePolling. */
export function pollStats(): PollStats {
  return { ...stats };
}

type ImmediateFn = (callback: (...args: unknown[]) => void, ...args: unknown[]) => unknown;
type ClearFn = (handle: unknown) => void;

/**
 * Wraps globalThis.setImmediate once per process (Dawn looks it up on every poll). A poll
 * scheduled from inside a poll continues its wait; one scheduled from anywhere else starts a
 * new wait, which spins again.
 */
export function installPolitePolling(isDawnPoll: (callback: unknown) => boolean = looksLikeDawnPoll): void {
  if (installed) return;
  installed = true;
  const immediate = globalThis.setImmediate as unknown as ImmediateFn;
  const clearImmediate = globalThis.clearImmediate as unknown as ClearFn;
  /** The timers handed out in place of immediates: clearImmediate cancels them as timers. */
  const sleeping = new WeakSet<object>();
  let waitStart = 0;
  let insidePoll = false;
  const polite = function (this: unknown, callback: (...args: unknown[]) => void, ...args: unknown[]): unknown {
    if (!isDawnPoll(callback)) return immediate.call(this, callback, ...args);
    const now = performance.now();
    if (!insidePoll) waitStart = now;
    stats.polls++;
    const poll = () => {
      insidePoll = true;
      try {
        callback(...args);
      } finally {
        insidePoll = false;
      }
    };
    const delay = nextPollDelay(now - waitStart);
    if (delay === null) return immediate(poll);
    stats.sleeps++;
    const timer = setTimeout(poll, delay);
    sleeping.add(timer);
    return timer;
  };
  // Keeps setImmediate's extras (util.promisify's custom form) where code looks for them.
  Object.assign(polite, globalThis.setImmediate);
  globalThis.setImmediate = polite as unknown as typeof globalThis.setImmediate;
  // Node's clearImmediate given a Timeout would corrupt its count of pending immediates.
  globalThis.clearImmediate = ((handle: unknown) =>
    typeof handle === 'object' && handle !== null && sleeping.has(handle)
      ? clearTimeout(handle as NodeJS.Timeout)
      : clearImmediate(handle)) as typeof globalThis.clearImmediate;
}
