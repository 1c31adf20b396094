/**
 * The shared-memory addon (addon/shm_addon.cc, built by addon/build.sh into
 * dist/native/alexnet_shm.node): its functions as TypeScript sees them, where the file is, and
 * whether it is usable here. It is optional: where it is not, ranks on one host keep the
 * ZeroMQ ring, and `shmUnavailableReason` is the one line that says why.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CommTimeoutError, ConfigError, ProtocolError } from '../../core/errors';
import { projectRoot } from '../../core/project-root';
import type { WireKernels } from '../ring/wire-codec';

export const SHM_ADDON_FILE = 'dist/native/alexnet_shm.node';

/** Segment kinds in the header. */
export const SegmentKind = { control: 1, allocation: 2 } as const;
export type SegmentKind = (typeof SegmentKind)[keyof typeof SegmentKind];

/** The wire dtype as the addon numbers it. */
export const ShmDtype = { fp32: 0, fp16: 1, bf16: 2 } as const;
export type ShmDtype = (typeof ShmDtype)[keyof typeof ShmDtype];

export interface ShmAddon extends WireKernels {
  /** Rank 0: creates the segment (O_EXCL, 0600), returns once every rank attached (then it is unlinked). */
  create(
    name: string,
    version: number,
    worldSize: number,
    kind: SegmentKind,
    slotBytes: number,
    timeoutMs: number,
  ): SharedArrayBuffer;
  /** Other ranks: waits for the segment to exist and its header to be complete, checks it, maps it. */
  attach(
    name: string,
    version: number,
    worldSize: number,
    kind: SegmentKind,
    slotBytes: number,
    rank: number,
    timeoutMs: number,
  ): SharedArrayBuffer;
  /** Byte offset of `rank`'s slot in a segment. */
  slotOffset(segment: SharedArrayBuffer, rank: number): number;
  allReduce(control: SharedArrayBuffer, rank: number, values: Float32Array, dtype: ShmDtype, timeoutMs: number): void;
  broadcast(
    control: SharedArrayBuffer,
    rank: number,
    values: Float32Array,
    root: number,
    dtype: ShmDtype,
    timeoutMs: number,
  ): void;
  allGather(
    control: SharedArrayBuffer,
    rank: number,
    local: Float32Array,
    sizes: Uint32Array,
    out: Float32Array,
    dtype: ShmDtype,
    timeoutMs: number,
  ): void;
  reduceScatter(
    control: SharedArrayBuffer,
    rank: number,
    values: Float32Array,
    sizes: Uint32Array,
    out: Float32Array,
    dtype: ShmDtype,
    timeoutMs: number,
  ): void;
  barrier(control: SharedArrayBuffer, rank: number, timeoutMs: number): void;
  /** Every blocked and later wait of this process (any thread) throws within ~10 ms: the process is exiting. */
  abort(): void;
}

/** Where the addon is built (beside the oneDNN addon). */
/** The addon's file; ALEXNET_SHM_ADDON overrides it (a test runs without it, as where g++ is missing). */
export function shmAddonPath(): string {
  const override = process.env['ALEXNET_SHM_ADDON'];
  return override != null && override !== '' ? override : path.join(projectRoot(__dirname), SHM_ADDON_FILE);
}

/**
 * Why the shared-memory data plane cannot run here, in one line, or null when it can. Looks
 * only at the platform and the file, and loads the addon (a dlopen, once per process).
 */
export function shmUnavailableReason(file: string = shmAddonPath()): string | null {
  if (process.platform !== 'linux') return `shared memory needs Linux, this is ${process.platform}`;
  if (!fs.existsSync('/dev/shm')) return 'no /dev/shm';
  if (!fs.existsSync(file)) return `${path.basename(file)} not built (make shm)`;
  try {
    loadShmAddon(file);
    return null;
  } catch (err) {
    return `${path.basename(file)} does not load: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`;
  }
}

const loaded = new Map<string, ShmAddon>();

/** The addon (once per file and thread: each worker thread has its own module registry). */
export function loadShmAddon(file: string = shmAddonPath()): ShmAddon {
  const cached = loaded.get(file);
  if (cached !== undefined) return cached;
  // A computed require: the addon is a build output, and this also runs on the comm thread.
  const addon = require(file) as ShmAddon;
  loaded.set(file, addon);
  return addon;
}

interface NativeError {
  code?: string;
  message: string;
}

/** The addon's errors as the project's typed errors (timeouts name the rank waited for). */
export function typedError(err: unknown): Error {
  if (!(err instanceof Error)) return new Error(String(err));
  switch ((err as NativeError).code) {
    case 'SHM_TIMEOUT':
      return new CommTimeoutError(err.message);
    case 'SHM_PROTOCOL':
      return new ProtocolError(err.message);
    case 'SHM_CONFIG':
    case 'SHM_ACCESS':
      return new ConfigError(err.message);
    default:
      return err;
  }
}

/** Runs an addon call, rethrowing its errors typed. */
export function native<T>(call: () => T): T {
  try {
    return call();
  } catch (err) {
    throw typedError(err);
  }
}
