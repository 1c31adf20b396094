/**
 * Buffer reuse for the 'native' backend: the Float32Arrays its kernels write are taken from a
 * pool of buffers that earlier tensors of the same size gave back, and a parameter whose storage
 * no one else can see is updated in place.
 *
 * Why: tfjs never writes a tensor twice, so every kernel output is a fresh Float32Array whose
 * page faults are paid on first touch, over a gigabyte a paper step (docs/measurements.md,
 * "Buffer reuse"). The sizes repeat every step, so the buffers a step frees are exactly the
 * ones the next step needs.
 *
 * The rule: a buffer is never written while anything else can still read it. So the pool only
 * recycles (or lets the optimizer overwrite) buffers it handed out itself that never left the
 * backend: one handed to JavaScript (`readSync`, `read`) or that became another tensor's storage
 * has "escaped" and is never reused or written; the rest go back to the pool when their one
 * tensor is disposed. Buffers the pool did not make (tf.tensor data, stock kernels' outputs) are
 * left alone. Pooled buffers are not zeroed: every native kernel writes its whole output (the
 * kernel tests' `poison` fills reused ones with NaN). A kernel's scratch bytes that outlive the
 * call (a max pool's argmax workspace, read by its gradient) are pooled by the same rule: bound to
 * one output tensor, reused once it is disposed (`scratchFor`). More in docs/architecture.md,
 * "Backends".
 */
import type { DataId, TensorInfo } from '@tensorflow/tfjs';

/** tfjs-backend-cpu's tensor storage: each tensor id's values and reference count. */
export interface CpuDataStorage {
  get(dataId: DataId): { values?: unknown; refCount: number } | undefined;
  has(dataId: DataId): boolean;
}

/** The part of tfjs-backend-cpu's MathBackendCPU the pool hooks into. */
export interface PooledCpuBackend {
  data: CpuDataStorage;
  write(values: unknown, shape: number[], dtype: string): DataId;
  move(dataId: DataId, values: unknown, shape: number[], dtype: string, refCount: number): void;
  readSync(dataId: DataId): unknown;
  read(dataId: DataId): Promise<unknown>;
  disposeData(dataId: DataId, force?: boolean): boolean;
}

export interface StoragePoolOptions {
  /** Most bytes kept for reuse; a buffer given back beyond it is left to the garbage collector. */
  maxPooledBytes: number;
  /** Smaller buffers are not pooled: malloc serves them without page faults. */
  minPooledElements: number;
}

const DEFAULTS: StoragePoolOptions = { maxPooledBytes: 1 << 30, minPooledElements: 4096 };

interface Owned {
  /** The one Float32Array over the buffer that the pool handed out. */
  array: Float32Array;
  /** Tensor ids whose storage it is (0: free or not yet written; more than 1 means escaped). */
  live: number;
  escaped: boolean;
}

export class StoragePool {
  readonly options: StoragePoolOptions;
  /** Every buffer the pool made, by its ArrayBuffer (weak: a dropped buffer leaves no trace). */
  private readonly owned = new WeakMap<ArrayBufferLike, Owned>();
  private readonly free = new Map<number, Float32Array[]>();
  /** Scratch byte buffers waiting for reuse, by length (see scratchFor). */
  private readonly freeScratch = new Map<number, Uint8Array[]>();
  /** The scratch buffer bound to each live tensor id that has one. */
  private readonly scratchOf = new Map<DataId, Uint8Array>();
  private pooledBytes = 0;
  /** Fill every reused buffer with NaN (tests: a kernel that does not write its whole output shows). */
  poison = false;
  /** Buffers and scratch buffers given back to the pool so far (the tests read it). */
  readonly stats = { released: 0, scratchReleased: 0 };

  constructor(options: Partial<StoragePoolOptions> = {}) {
    this.options = { ...DEFAULTS, ...options };
  }

  /** A Float32Array of `length` elements for a kernel to fill completely (contents undefined). */
  take(length: number): Float32Array {
    if (length < this.options.minPooledElements) return new Float32Array(length);
    const reused = this.free.get(length)?.pop();
    if (reused !== undefined) {
      this.pooledBytes -= reused.byteLength;
      if (this.poison) reused.fill(NaN);
      return reused;
    }
    const array = new Float32Array(length);
    this.owned.set(array.buffer, { array, live: 0, escaped: false });
    return array;
  }

  /**
   * Scratch bytes a kernel fills and a later kernel reads, living as long as the tensor `dataId`
   * (a max pool's argmax workspace, kept for its gradient): they come back for reuse when that tensor
   * is disposed. Without this a training step allocated megabytes of them, and V8 answers
   * external memory that grows so with garbage collections that stall the step's threads
   * (docs/measurements.md, "Collections between kernels"). Contents undefined: the kernel writes
   * them whole.
   */
  scratchFor(dataId: DataId, byteLength: number): Uint8Array {
    const reused = this.freeScratch.get(byteLength)?.pop();
    if (reused !== undefined) this.pooledBytes -= byteLength;
    const bytes = reused ?? new Uint8Array(byteLength);
    if (reused !== undefined && this.poison) bytes.fill(0xff);
    this.scratchOf.set(dataId, bytes);
    return bytes;
  }

  /** True if `values` is a pool buffer held by exactly one tensor and never seen outside: safe to overwrite. */
  exclusive(values: unknown): boolean {
    const o = this.ownedOf(values);
    return o !== null && o.array === values && o.live === 1 && !o.escaped;
  }

  /** Wraps the backend's storage methods so the pool sees every buffer come and go. */
  attach(backend: PooledCpuBackend): void {
    const write = backend.write.bind(backend);
    const move = backend.move.bind(backend);
    const readSync = backend.readSync.bind(backend);
    const disposeData = backend.disposeData.bind(backend);
    backend.write = (values, shape, dtype) => {
      this.stored(values);
      return write(values, shape, dtype);
    };
    backend.move = (dataId, values, shape, dtype, refCount) => {
      this.escape(values);
      move(dataId, values, shape, dtype, refCount);
    };
    backend.readSync = (dataId) => {
      const values = readSync(dataId);
      this.escape(backend.data.get(dataId)?.values);
      return values;
    };
    // The cpu backend's read() calls this.readSync, but do not rely on it.
    backend.read = async (dataId) => backend.readSync(dataId);
    backend.disposeData = (dataId, force) => {
      const values = backend.data.get(dataId)?.values;
      const disposed = disposeData(dataId, force);
      if (!backend.data.has(dataId)) {
        if (values !== undefined) this.dropped(values);
        this.scratchDropped(dataId);
      }
      return disposed;
    };
  }

  private ownedOf(values: unknown): Owned | null {
    if (!(values instanceof Float32Array)) return null;
    return this.owned.get(values.buffer) ?? null;
  }

  private escape(values: unknown): void {
    const o = this.ownedOf(values);
    if (o !== null) o.escaped = true;
  }

  /** A tensor id now holds `values`: fine once for the array handed out, an escape otherwise. */
  private stored(values: unknown): void {
    const o = this.ownedOf(values);
    if (o === null) return;
    o.live++;
    if (o.array !== values || o.live > 1) this.escape(values);
  }

  /** The tensor id holding `values` is gone: a private buffer goes back to the pool. */
  private dropped(values: unknown): void {
    const o = this.ownedOf(values);
    if (o === null || o.array !== values) return;
    o.live--;
    if (o.live !== 0 || o.escaped) return;
    if (this.pooledBytes + o.array.byteLength > this.options.maxPooledBytes) return;
    const list = this.free.get(o.array.length) ?? [];
    list.push(o.array);
    this.free.set(o.array.length, list);
    this.pooledBytes += o.array.byteLength;
    this.stats.released++;
  }

  /** The tensor id a scratch buffer was bound to is gone: the buffer waits for the next kernel. */
  private scratchDropped(dataId: DataId): void {
    const bytes = this.scratchOf.get(dataId);
    if (bytes === undefined) return;
    this.scratchOf.delete(dataId);
    if (this.pooledBytes + bytes.byteLength > this.options.maxPooledBytes) return;
    const list = this.freeScratch.get(bytes.byteLength) ?? [];
    list.push(bytes);
    this.freeScratch.set(bytes.byteLength, list);
    this.pooledBytes += bytes.byteLength;
    this.stats.scratchReleased++;
  }

  /** Bytes currently waiting in the pool. */
  get idleBytes(): number {
    return this.pooledBytes;
  }
}

const pools = new WeakMap<object, StoragePool>();

/** Gives `backend` a pool (see StoragePool.attach); its kernels find it with poolOf. */
export function attachPool(backend: PooledCpuBackend, options: Partial<StoragePoolOptions> = {}): StoragePool {
  const pool = new StoragePool(options);
  pool.attach(backend);
  pools.set(backend, pool);
  return pool;
}

/** The pool of a backend instance, or null (the stock cpu backend has none). */
export function poolOf(backend: object): StoragePool | null {
  return pools.get(backend) ?? null;
}

/** The part of tfjs-backend-cpu's MathBackendCPU the native kernels use. */
export interface CpuStorageBackend {
  /** The tensors' storage. Kernels read it here, not through readSync: that hands a buffer to JS (see above). */
  data: Pick<CpuDataStorage, 'get'>;
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): TensorInfo;
}

/** A float32 tensor's storage, or null if it is not held as a Float32Array. */
export function storageOf(t: TensorInfo, backend: CpuStorageBackend): Float32Array | null {
  if (t.dtype !== 'float32') return null;
  const v = backend.data.get(t.dataId)?.values;
  return v instanceof Float32Array ? v : null;
}

/** A Float32Array of `length` for a kernel to fill completely: reused from the backend's pool where it has one. */
export function outputArray(backend: CpuStorageBackend, length: number): Float32Array {
  return poolOf(backend)?.take(length) ?? new Float32Array(length);
}
