/**
 * The ranks of one host as a group over shared memory: the data plane that replaces the ZeroMQ
 * ring between local ranks (docs/allreduce.md has the ring; this is its one-host shortcut).
 *
 * - `ShmGroup.create` maps the group's control segment (sync words, one staging area per
 *   rank): rank 0 creates it, the others attach by its agreed name, all within `timeoutMs`.
 * - `allocate(length)` is collective and gives this rank `length` floats in a segment that
 *   every rank maps: the fusion buffer lives there, so backward's copy-out writes straight into
 *   it and the all-reduce reads and writes the peers' buffers where they are.
 * - The collectives block the calling thread (the comm thread, in a worker) inside one native
 *   call each, and give the same bits as ringAllReduce, broadcast, ringAllGather and
 *   ringReduceScatter (src/dist/ring/allreduce.ts) over the same N ranks, 16-bit wire rounding
 *   included. Arrays outside a segment travel through the staging areas in chunks.
 *
 * Every rank must call the collectives in the same order with the same lengths; a mismatch is
 * a ProtocolError before any memory is touched, a dead peer a CommTimeoutError naming it.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { isMainThread } from 'node:worker_threads';
import { ConfigError } from '../../core/errors';
import type { WireDtype } from '../ring/wire-codec';
import { SegmentKind, ShmDtype, loadShmAddon, native, shmAddonPath, type ShmAddon } from './addon';

/** Bumped whenever the segment layout or the collectives' protocol changes. */
export const SHM_PROTOCOL_VERSION = 1;
/** Default staging area per rank: a 1 MB tail or activation goes through in one chunk. */
export const DEFAULT_STAGING_BYTES = 4 << 20;

const PREFIX_PATTERN = /^alexnet-[0-9a-f]{32}$/;

export interface ShmGroupOptions {
  rank: number;
  worldSize: number;
  /** `alexnet-<32 hex>` (newShmPrefix), the same on every rank: segment names derive from it. */
  prefix: string;
  /** How long to wait for a peer: to attach, or inside a collective. */
  timeoutMs: number;
  /** Each rank's staging area in bytes (arrays outside a segment move through it in chunks). */
  stagingBytes?: number;
  /** The addon file (default: dist/native/alexnet_shm.node). */
  addonFile?: string;
  /** Tests only: the protocol version this rank claims. */
  protocolVersion?: number;
}

/** What a comm thread needs to run the group's collectives: post it, then ShmGroup.fromHandle. */
export interface ShmGroupHandle {
  rank: number;
  worldSize: number;
  prefix: string;
  timeoutMs: number;
  addonFile: string;
  control: SharedArrayBuffer;
}

export interface ShmCollectiveOptions {
  /** The ring's wire dtype, whose rounding is reproduced (default fp32). */
  wireDtype?: WireDtype;
  /** fp32 whatever the wire dtype (counts, metric sums), as the comm thread's exact ring. */
  exact?: boolean;
}

/** A fresh unguessable prefix for a run's segments (the coordinator hands it to its workers). */
export function newShmPrefix(): string {
  return `alexnet-${randomBytes(16).toString('hex')}`;
}

/** Segment names of a prefix: the control segment, then one per allocation. */
export function segmentName(prefix: string, allocation: number | 'control'): string {
  return `/${prefix}-${allocation === 'control' ? 'c' : `a${allocation}`}`;
}

/**
 * Removes whatever is left of a run's segments (a rank killed between creating a segment and
 * the last rank attaching). Segments are unlinked once every rank attached, so after a normal
 * start this finds nothing; the coordinator calls it when the run ends.
 */
export function sweepSegments(prefix: string, dir = '/dev/shm'): string[] {
  if (!PREFIX_PATTERN.test(prefix)) throw new ConfigError(`not a shared-memory prefix: '${prefix}'`);
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => n.startsWith(`${prefix}-`));
  } catch {
    return [];
  }
  for (const n of names) fs.rmSync(`${dir}/${n}`, { force: true });
  return names;
}

function dtypeOf(options: ShmCollectiveOptions): ShmDtype {
  if (options.exact === true) return ShmDtype.fp32;
  const wire = options.wireDtype ?? 'fp32';
  return ShmDtype[wire];
}

function checkSizes(sizes: readonly number[], worldSize: number): Uint32Array {
  if (sizes.length !== worldSize) throw new ConfigError(`${sizes.length} segment sizes for ${worldSize} ranks`);
  for (const s of sizes) {
    if (!Number.isInteger(s) || s < 0 || s > 0xffffffff)
      throw new RangeError(`segment sizes must be whole numbers >= 0, got ${s}`);
  }
  return Uint32Array.from(sizes);
}

const abortOnExit = new Set<ShmAddon>();

export class ShmGroup {
  private allocations = 0;

  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    private readonly prefix: string,
    private readonly timeoutMs: number,
    private readonly addonFile: string,
    private readonly addon: ShmAddon,
    private readonly version: number,
    private control: SharedArrayBuffer | null,
    /** Only the group made by create() allocates: allocation names are counted there. */
    private readonly canAllocate: boolean,
  ) {}

  /**
   * Joins the group (blocks until the control segment is mapped by this rank; rank 0 waits
   * for every rank). Throws ConfigError for bad options or no room, ProtocolError for another
   * version or shape, CommTimeoutError when a peer does not come.
   */
  static create(options: ShmGroupOptions): ShmGroup {
    const { rank, worldSize, prefix, timeoutMs } = options;
    if (!Number.isInteger(worldSize) || worldSize < 1 || worldSize > 64)
      throw new ConfigError(`worldSize must be 1..64, got ${worldSize}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize)
      throw new ConfigError(`rank must be in [0, ${worldSize}), got ${rank}`);
    if (!PREFIX_PATTERN.test(prefix))
      throw new ConfigError(`shared-memory prefix must be alexnet-<32 hex digits>, got '${prefix}'`);
    if (!(timeoutMs > 0)) throw new ConfigError(`timeoutMs must be > 0, got ${timeoutMs}`);
    const stagingBytes = options.stagingBytes ?? DEFAULT_STAGING_BYTES;
    if (!Number.isInteger(stagingBytes) || stagingBytes < 64 || stagingBytes % 4 !== 0)
      throw new ConfigError(`stagingBytes must be a multiple of 4, >= 64, got ${stagingBytes}`);
    const addonFile = options.addonFile ?? shmAddonPath();
    const addon = native(() => loadShmAddon(addonFile));
    const version = options.protocolVersion ?? SHM_PROTOCOL_VERSION;
    const group = new ShmGroup(rank, worldSize, prefix, timeoutMs, addonFile, addon, version, null, true);
    // process.exit waits for worker threads: one blocked in a collective would hold the exit
    // for the whole timeout. 'exit' listeners run first, so the waits are released from here.
    if (isMainThread && !abortOnExit.has(addon)) {
      abortOnExit.add(addon);
      process.on('exit', () => addon.abort());
    }
    group.control = group.map(segmentName(prefix, 'control'), SegmentKind.control, stagingBytes);
    return group;
  }

  /** The group as a comm thread rebuilds it: same segments, no new mapping. */
  static fromHandle(handle: ShmGroupHandle): ShmGroup {
    const addon = native(() => loadShmAddon(handle.addonFile));
    return new ShmGroup(
      handle.rank,
      handle.worldSize,
      handle.prefix,
      handle.timeoutMs,
      handle.addonFile,
      addon,
      SHM_PROTOCOL_VERSION,
      handle.control,
      false,
    );
  }

  /** What to post to the comm thread (a SharedArrayBuffer shares the mapping, it is not copied). */
  get handle(): ShmGroupHandle {
    return {
      rank: this.rank,
      worldSize: this.worldSize,
      prefix: this.prefix,
      timeoutMs: this.timeoutMs,
      addonFile: this.addonFile,
      control: this.ctl(),
    };
  }

  /**
   * `length` zeroed floats of this rank in a new segment that every rank maps. Collective:
   * every rank calls it in the same order with the same length (else a ProtocolError). Arrays
   * in it (and their subarrays, at the same offset on every rank) are reduced without copies.
   */
  allocate(length: number): Float32Array {
    if (!Number.isInteger(length) || length < 0)
      throw new RangeError(`allocate: length must be a whole number >= 0, got ${length}`);
    this.ctl();
    if (!this.canAllocate)
      throw new Error(
        `rank ${this.rank}: allocate() on a group rebuilt from its handle: allocate where ShmGroup.create ran, then post the arrays`,
      );
    const name = segmentName(this.prefix, this.allocations++);
    const segment = this.map(name, SegmentKind.allocation, length * 4);
    const offset = native(() => this.addon.slotOffset(segment, this.rank));
    return new Float32Array(segment, offset, length);
  }

  /** Sums `values` over all ranks in place (ringAllReduce's bits). */
  allReduce(values: Float32Array, options: ShmCollectiveOptions = {}): void {
    const control = this.ctl();
    native(() => this.addon.allReduce(control, this.rank, values, dtypeOf(options), this.timeoutMs));
  }

  /** Copies `root`'s values into every rank's (same length everywhere); `broadcast`'s bits. */
  broadcast(values: Float32Array, root: number, options: ShmCollectiveOptions = {}): void {
    if (!Number.isInteger(root) || root < 0 || root >= this.worldSize)
      throw new ConfigError(`broadcast root must be a rank in [0, ${this.worldSize}), got ${root}`);
    const control = this.ctl();
    native(() => this.addon.broadcast(control, this.rank, values, root, dtypeOf(options), this.timeoutMs));
  }

  /** Every rank's `local` (sizes[rank] values) in rank order; ringAllGather's bits. */
  allGather(local: Float32Array, sizes: readonly number[], options: ShmCollectiveOptions = {}): Float32Array {
    const control = this.ctl();
    const checked = checkSizes(sizes, this.worldSize);
    if (local.length !== checked[this.rank])
      throw new ConfigError(
        `rank ${this.rank}: all-gather of ${local.length} values, but its segment holds ${checked[this.rank]}`,
      );
    const out = new Float32Array(checked.reduce((a, b) => a + b, 0));
    native(() => this.addon.allGather(control, this.rank, local, checked, out, dtypeOf(options), this.timeoutMs));
    return out;
  }

  /** This rank's segment (sizes[rank] values) of the sum of every rank's `values`; ringReduceScatter's bits. */
  reduceScatter(values: Float32Array, sizes: readonly number[], options: ShmCollectiveOptions = {}): Float32Array {
    const control = this.ctl();
    const checked = checkSizes(sizes, this.worldSize);
    const total = checked.reduce((a, b) => a + b, 0);
    if (values.length !== total)
      throw new ConfigError(
        `rank ${this.rank}: reduce-scatter of ${values.length} values, but the segments add up to ${total}`,
      );
    const out = new Float32Array(checked[this.rank]);
    native(() => this.addon.reduceScatter(control, this.rank, values, checked, out, dtypeOf(options), this.timeoutMs));
    return out;
  }

  /** Returns once every rank called it. */
  barrier(): void {
    const control = this.ctl();
    native(() => this.addon.barrier(control, this.rank, this.timeoutMs));
  }

  /**
   * Drops this object's reference to the segments: they are unmapped once no array in any
   * thread uses them (garbage collection). Their names are gone already; nothing to unlink.
   */
  close(): void {
    this.control = null;
  }

  private ctl(): SharedArrayBuffer {
    if (this.control === null) throw new Error(`rank ${this.rank}: shared-memory group used after close()`);
    return this.control;
  }

  private map(name: string, kind: SegmentKind, slotBytes: number): SharedArrayBuffer {
    const { addon, version, worldSize, rank, timeoutMs } = this;
    if (rank === 0) return native(() => addon.create(name, version, worldSize, kind, slotBytes, timeoutMs));
    return native(() => addon.attach(name, version, worldSize, kind, slotBytes, rank, timeoutMs));
  }
}
