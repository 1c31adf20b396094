/**
 * Decoding on worker threads, as PyTorch's DataLoader workers do: the training thread only
 * crops and normalises. Each thread reads files with blocking reads, which for small files
 * cost a fraction of Node's asynchronous ones on the main thread (several libuv round trips per
 * file), and decodes plain PNGs in JS; other formats go to sharp from the thread, so a slow disk
 * or a large JPEG never holds up the training step's thread either.
 *
 * One pool per process, started on first use. Threads keep the process alive only while they
 * have work (ref/unref), so a finished run exits without closing the pool.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { coresOfThisProcess } from '../../core/cores';
import type { DecodeOptions, DecodeResult } from './decode';

export interface DecodeRequest {
  id: number;
  files: string[];
  opts: DecodeOptions;
}

export interface DecodeReply {
  id: number;
  results: DecodeResult[];
}

/** The compiled thread script; absent when running from TypeScript sources (ts-node). */
const WORKER_SCRIPT = path.join(__dirname, 'decode-worker.js');

/**
 * Threads by default: one per core of this process (its launcher's share when several workers
 * share the host), up to 4 (beyond that the disk or sharp's own pool limits).
 */
export function defaultDecodeThreads(): number {
  return Math.min(4, coresOfThisProcess());
}

interface Thread {
  worker: Worker;
  pending: Map<number, { resolve: (r: DecodeResult[]) => void; reject: (e: Error) => void }>;
}

export class DecodePool {
  private readonly threads: Thread[] = [];
  private nextId = 0;
  private nextThread = 0;
  private failure: Error | null = null;

  /** Whether decode threads can run here (the compiled script exists). */
  static available(): boolean {
    return fs.existsSync(WORKER_SCRIPT);
  }

  constructor(readonly size: number) {
    if (!(Number.isInteger(size) && size >= 1)) throw new RangeError(`decode threads must be >= 1, got ${size}`);
  }

  /**
   * Decode `files`, results in input order. The files are split into contiguous runs, one per
   * thread, so a batch is spread over every thread.
   */
  async decode(files: readonly string[], opts: DecodeOptions): Promise<DecodeResult[]> {
    if (files.length === 0) return [];
    const per = Math.ceil(files.length / this.size);
    const runs = Math.ceil(files.length / per); // 5 files on 4 threads: 3 runs of 2, 2 and 1
    const parts = await Promise.all(
      Array.from({ length: runs }, (_, k) => this.send(files.slice(k * per, (k + 1) * per), opts)),
    );
    return parts.flat();
  }

  /** Stop the threads (pending requests are rejected). */
  async close(): Promise<void> {
    const threads = this.threads.splice(0);
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }

  private send(files: string[], opts: DecodeOptions): Promise<DecodeResult[]> {
    if (this.failure) return Promise.reject(this.failure);
    const thread = this.thread(this.nextThread++ % this.size);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (thread.pending.size === 0) thread.worker.ref();
      thread.pending.set(id, { resolve, reject });
      const request: DecodeRequest = { id, files, opts };
      thread.worker.postMessage(request);
    });
  }

  private thread(index: number): Thread {
    const existing = this.threads[index];
    if (existing) return existing;
    const worker = new Worker(WORKER_SCRIPT);
    const thread: Thread = { worker, pending: new Map() };
    worker.unref();
    worker.on('message', (reply: DecodeReply) => {
      const waiter = thread.pending.get(reply.id);
      thread.pending.delete(reply.id);
      if (thread.pending.size === 0) worker.unref();
      waiter?.resolve(reply.results);
    });
    // A thread that dies is a bug (bad data never throws): fail what it holds and every later request.
    const fail = (err: Error): void => {
      this.failure ??= new Error(`a decode thread stopped: ${err.message}`);
      for (const waiter of thread.pending.values()) waiter.reject(this.failure);
      thread.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (thread.pending.size > 0) fail(new Error(`exit code ${code}`));
    });
    this.threads[index] = thread;
    return thread;
  }
}

let shared: DecodePool | null = null;

/** The process's pool, or null where threads cannot run (then decode on the main thread). */
export function sharedDecodePool(): DecodePool | null {
  if (!DecodePool.available()) return null;
  shared ??= new DecodePool(defaultDecodeThreads());
  return shared;
}
