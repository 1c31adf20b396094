/**
 * Bounded concurrency for decodes. More sharp jobs in flight than libuv has threads only
 * queues them inside sharp and holds their input buffers in memory.
 */

/** libuv's default thread-pool size; set UV_THREADPOOL_SIZE before Node starts to change the real pool. */
export const DEFAULT_DECODE_CONCURRENCY = 4;

/** A counting semaphore: run(fn) waits for a free slot. */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly limit: number) {
    if (!(Number.isInteger(limit) && limit >= 1))
      throw new RangeError(`concurrency must be an integer >= 1, got ${limit}`);
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    // A finishing job hands its slot straight to the next waiter, so a newcomer can never
    // slip in between and exceed the limit.
    if (this.active < this.limit) this.active += 1;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active -= 1;
    }
  }
}

/** Map with at most `limit` calls in flight; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const limiter = new Limiter(limit);
  return Promise.all(items.map((item, i) => limiter.run(() => fn(item, i))));
}
