/**
 * Collectives of N ranks inside one process, over the in-memory ring (src/dist/ring/transport.ts)
 * and the real ring algorithms (src/dist/ring/allreduce.ts): what the comm thread does, without
 * a thread or a socket, for in-process tests of the gradient-sync strategies. The blocking
 * calls (hybrid's gathers inside the backward pass) need a second thread to make progress, so
 * they work here only for a world of one.
 */
import type { WireDtype } from '../../src/core/config';
import { sharedFloats, type SyncCollective } from '../../src/dist/collective';
import { broadcast, ringAllGather, ringAllReduce, ringReduceScatter } from '../../src/dist/ring/allreduce';
import { createInMemoryRing, type RingTransport } from '../../src/dist/ring/transport';

/** Every call a rank made, in order: what the strategies asked of the collective. */
export interface CollectiveCall {
  op: 'allReduce' | 'allReduceStart' | 'broadcast' | 'allGather' | 'reduceScatter';
  length: number;
  exact: boolean;
}

export class MemoryCollective implements SyncCollective {
  readonly calls: CollectiveCall[] = [];
  private started: Promise<void> = Promise.resolve();

  constructor(
    private readonly ring: RingTransport,
    readonly wireDtype: WireDtype = 'fp32',
  ) {}

  get rank(): number {
    return this.ring.rank;
  }

  get worldSize(): number {
    return this.ring.worldSize;
  }

  async allReduce(buffer: Float32Array, options: { exact?: boolean } = {}): Promise<void> {
    this.calls.push({ op: 'allReduce', length: buffer.length, exact: options.exact ?? false });
    await ringAllReduce(buffer, this.ring, this.rank, this.worldSize);
  }

  async broadcast(buffer: Float32Array, root: number): Promise<void> {
    this.calls.push({ op: 'broadcast', length: buffer.length, exact: true });
    await broadcast(buffer, this.ring, root);
  }

  allReduceStart(values: Float32Array): void {
    this.calls.push({ op: 'allReduceStart', length: values.length, exact: false });
    this.started = this.started.then(() => ringAllReduce(values, this.ring, this.rank, this.worldSize));
  }

  settle(): Promise<void> {
    return this.started;
  }

  async allGather(local: Float32Array, sizes: readonly number[], exact = false): Promise<Float32Array> {
    this.calls.push({ op: 'allGather', length: local.length, exact });
    return ringAllGather(local, sizes, this.ring);
  }

  allGatherSync(local: Float32Array, sizes: readonly number[], exact = false): Float32Array {
    this.oneRankOnly('allGatherSync');
    this.calls.push({ op: 'allGather', length: local.length, exact });
    if (sizes.length !== 1 || sizes[0] !== local.length)
      throw new Error(`allGatherSync: sizes ${sizes.join(',')} for ${local.length} values`);
    return local.slice();
  }

  reduceScatterSync(values: Float32Array, sizes: readonly number[]): Float32Array {
    this.oneRankOnly('reduceScatterSync');
    this.calls.push({ op: 'reduceScatter', length: values.length, exact: false });
    return values.slice(0, sizes[0]);
  }

  /** ringReduceScatter, for tests that need it at several ranks (async). */
  reduceScatter(values: Float32Array, sizes: readonly number[]): Promise<Float32Array> {
    return ringReduceScatter(values, sizes, this.ring);
  }

  allocate(length: number): Float32Array {
    return sharedFloats(length);
  }

  bytesSent(): number {
    return 0;
  }

  takeBlockedMs(): number {
    return 0;
  }

  private oneRankOnly(what: string): void {
    if (this.worldSize !== 1)
      throw new Error(`${what} blocks until the peers join: in one process it works for a world of one only`);
  }
}

/** One collective per rank, wired into a ring. */
export function memoryCollectives(worldSize: number, wireDtype: WireDtype = 'fp32'): MemoryCollective[] {
  return createInMemoryRing(worldSize).map((ring) => new MemoryCollective(ring, wireDtype));
}
