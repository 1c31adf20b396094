/**
 * Checkpoints: one self-describing binary file, written atomically (temp file, fsync, rename;
 * checkpoint-store.ts writes them), so a crash or Ctrl-C mid-write leaves the previous one intact.
 *
 * Layout: MAGIC | u32 header length | JSON header | float32 tensors back to back.
 * The header holds the frozen config (like nanoGPT), the position (epoch, step), the schedule
 * and optimizer state, the RNG seed, the table of tensors and a SHA-256 of the tensor bytes,
 * so a truncated or damaged file is refused on load instead of training on garbage.
 */
import { createHash, webcrypto } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TRAIN_DEFAULTS, validateTrainConfig, type TrainConfig } from '../../core/config';
import { CheckpointError } from '../../core/errors';
import type { MetricSums } from '../metrics';
import type { OptimizerState } from '../optimizer';
import type { ScheduleState } from '../schedule';

const MAGIC = Buffer.from('ALEXNETCKPT1\n');
export const LAST_CHECKPOINT = 'last.ckpt';
export const BEST_CHECKPOINT = 'best.ckpt';

interface TensorEntry {
  name: string;
  shape: number[];
  /** Offset in float32 elements into the data section. */
  offset: number;
  length: number;
}

export interface EpochSoFar {
  sums: MetricSums;
  skipped: number;
}

export interface TrainingPosition {
  /** The next epoch to run (0-based) and how many of its steps are already done. */
  epoch: number;
  stepInEpoch: number;
  /** Optimizer steps since the start of the run. */
  globalStep: number;
}

export interface CheckpointContents {
  config: TrainConfig;
  classes: string[];
  position: TrainingPosition;
  schedule: ScheduleState;
  bestValTop1Error: number;
  /** Every random choice derives from (seed, epoch, step): this is the whole RNG state. */
  rng: { seed: number };
  /**
   * The current epoch's training metric sums and skipped images up to `position`, so a resumed
   * epoch's record counts every step of it (absent in older checkpoints: counted from the resume).
   */
  epochSoFar?: EpochSoFar;
  weights: { name: string; shape: number[]; data: Float32Array }[];
  optimizer: OptimizerState;
}

interface Header extends Omit<CheckpointContents, 'weights' | 'optimizer'> {
  version: 1;
  /** Hex SHA-256 of the tensor section (absent in checkpoints written before it was added). */
  dataSha256?: string;
  /** Bytes in the tensor section. */
  dataBytes?: number;
  weights: TensorEntry[];
  optimizer: { name: OptimizerState['name']; iterations: number; slots: Record<string, TensorEntry[]> };
}

/** JSON has no Infinity/NaN (they become null): keep them as tagged strings, e.g. the schedule's "no best yet". */
const NON_FINITE = new Map<string, number>([
  ['__Infinity__', Infinity],
  ['__-Infinity__', -Infinity],
  ['__NaN__', NaN],
]);
function replaceNonFinite(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) ? `__${value}__` : value;
}
function reviveNonFinite(_key: string, value: unknown): unknown {
  return typeof value === 'string' && NON_FINITE.has(value) ? NON_FINITE.get(value) : value;
}

/**
 * A checkpoint's tensors copied into one buffer (training may change them right after) with
 * the header that describes them, not yet hashed: the part of writing a checkpoint that
 * training must wait for.
 */
export interface CheckpointSnapshot {
  header: Omit<Header, 'dataSha256' | 'dataBytes'>;
  data: Buffer;
}

export function snapshotCheckpoint(c: CheckpointContents): CheckpointSnapshot {
  const blobs: Float32Array[] = [];
  let offset = 0;
  const entry = (name: string, shape: number[], data: Float32Array): TensorEntry => {
    blobs.push(data);
    const e = { name, shape, offset, length: data.length };
    offset += data.length;
    return e;
  };
  const weights = c.weights.map((w) => entry(w.name, w.shape, w.data));
  // Slots exist for the trained params only (a frozen layer has none): each entry is named by its param.
  const slotParams = c.optimizer.params ?? c.weights.map((w) => w.name);
  const shapeOf = new Map(c.weights.map((w) => [w.name, w.shape]));
  const slots: Record<string, TensorEntry[]> = {};
  for (const [slot, arrays] of Object.entries(c.optimizer.slots)) {
    slots[slot] = arrays.map((a, i) => entry(`${slotParams[i]}/${slot}`, shapeOf.get(slotParams[i]) ?? [a.length], a));
  }
  const data = Buffer.alloc(offset * 4);
  let at = 0;
  for (const b of blobs) {
    Buffer.from(b.buffer, b.byteOffset, b.byteLength).copy(data, at);
    at += b.byteLength;
  }
  const header = {
    ...c,
    version: 1 as const,
    weights,
    optimizer: { name: c.optimizer.name, iterations: c.optimizer.iterations, slots },
  };
  return { header, data };
}

/** MAGIC | header length | header, for a snapshot whose tensor bytes hash to `digest`. */
function headerBytes(s: CheckpointSnapshot, digest: string): Buffer {
  const header: Header = { ...s.header, dataSha256: digest, dataBytes: s.data.length };
  const json = Buffer.from(JSON.stringify(header, replaceNonFinite));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  return Buffer.concat([MAGIC, len, json]);
}

/**
 * A snapshot's file contents, as [header, tensors] (written one after the other, not copied
 * together). The SHA-256 runs on libuv's threads (WebCrypto), off the training loop's thread.
 */
export async function encodeSnapshot(s: CheckpointSnapshot): Promise<Buffer[]> {
  const digest = Buffer.from(await webcrypto.subtle.digest('SHA-256', s.data)).toString('hex');
  return [headerBytes(s, digest), s.data];
}

export function encodeCheckpoint(c: CheckpointContents): Buffer {
  const s = snapshotCheckpoint(c);
  return Buffer.concat([headerBytes(s, sha256(s.data)), s.data]);
}

const HEADER_START = MAGIC.length + 4;

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** The JSON header's length, after checking the magic bytes. */
function headerLength(prefix: Buffer, file: string): number {
  if (prefix.length < HEADER_START || !prefix.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new CheckpointError(`${file} is not an alexnet checkpoint (bad magic bytes)`);
  }
  return prefix.readUInt32LE(MAGIC.length);
}

function parseHeader(json: Buffer, file: string): Header {
  let header: Header;
  try {
    header = JSON.parse(json.toString('utf8'), reviveNonFinite) as Header;
  } catch {
    throw new CheckpointError(`${file} is corrupt: its header is not valid JSON (truncated file?)`);
  }
  return { ...header, config: checkpointConfig(header.config, file) };
}

/**
 * The config saved in a checkpoint, validated like any config received from elsewhere. Fields
 * that a checkpoint of an older version lacks take today's defaults (their behaviour then).
 */
function checkpointConfig(saved: unknown, file: string): TrainConfig {
  if (saved === null || typeof saved !== 'object')
    throw new CheckpointError(`${file} is corrupt: its header holds no training config`);
  try {
    return validateTrainConfig({ ...TRAIN_DEFAULTS, runDir: path.dirname(path.resolve(file)), ...saved }, file);
  } catch (err) {
    throw new CheckpointError(err instanceof Error ? err.message : String(err));
  }
}

export function decodeCheckpoint(bytes: Buffer, file: string): CheckpointContents {
  const jsonLen = headerLength(bytes, file);
  const header = parseHeader(bytes.subarray(HEADER_START, HEADER_START + jsonLen), file);
  const dataStart = HEADER_START + jsonLen;
  const section = bytes.subarray(dataStart);
  if (header.dataBytes !== undefined && section.length !== header.dataBytes) {
    throw new CheckpointError(`${file} is truncated: ${section.length} of ${header.dataBytes} tensor bytes`);
  }
  if (header.dataSha256 !== undefined && sha256(section) !== header.dataSha256) {
    throw new CheckpointError(`${file} is corrupt: its tensor bytes do not match the checksum in its header`);
  }
  // Copy into an aligned buffer: Float32Array views need 4-byte alignment.
  const data = new Float32Array(bytes.length - dataStart >= 0 ? (bytes.length - dataStart) >> 2 : 0);
  Buffer.from(data.buffer).set(bytes.subarray(dataStart, dataStart + data.length * 4));
  const read = (e: TensorEntry): Float32Array => {
    if (e.offset + e.length > data.length)
      throw new CheckpointError(`${file} is truncated: tensor ${e.name} runs past the end`);
    return data.subarray(e.offset, e.offset + e.length);
  };
  const slots: Record<string, Float32Array[]> = {};
  let slotParams: string[] = [];
  for (const [slot, entries] of Object.entries(header.optimizer.slots)) {
    slots[slot] = entries.map(read);
    slotParams = entries.map((e) => e.name.slice(0, e.name.length - slot.length - 1));
  }
  return {
    config: header.config,
    classes: header.classes,
    position: header.position,
    schedule: header.schedule,
    bestValTop1Error: header.bestValTop1Error,
    rng: header.rng,
    epochSoFar: header.epochSoFar,
    weights: header.weights.map((e) => ({ name: e.name, shape: e.shape, data: read(e) })),
    optimizer: { name: header.optimizer.name, iterations: header.optimizer.iterations, slots, params: slotParams },
  };
}

/** Loads a checkpoint file, or `last.ckpt` inside a run directory. */
export function loadCheckpoint(fileOrRunDir: string): CheckpointContents {
  let file = fileOrRunDir;
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, LAST_CHECKPOINT);
  if (!fs.existsSync(file)) throw new CheckpointError(`no checkpoint at ${file}`);
  return decodeCheckpoint(fs.readFileSync(file), file);
}

export type CheckpointSummary = Omit<CheckpointContents, 'weights' | 'optimizer'>;

/**
 * The config, classes and position of a checkpoint without its tensors: reads only the header,
 * not the ~0.5 GB of weights and momentum a paper-sized checkpoint holds (the run report reads
 * it every epoch).
 */
export function readCheckpointSummary(file: string): CheckpointSummary {
  const fd = fs.openSync(file, 'r');
  try {
    const prefix = Buffer.alloc(HEADER_START);
    const jsonLen = headerLength(prefix.subarray(0, fs.readSync(fd, prefix, 0, HEADER_START, 0)), file);
    if (HEADER_START + jsonLen > fs.fstatSync(fd).size)
      throw new CheckpointError(`${file} is truncated inside its header`);
    const json = Buffer.alloc(jsonLen);
    fs.readSync(fd, json, 0, jsonLen, HEADER_START);
    const h = parseHeader(json, file);
    return {
      config: h.config,
      classes: h.classes,
      position: h.position,
      schedule: h.schedule,
      bestValTop1Error: h.bestValTop1Error,
      rng: h.rng,
    };
  } finally {
    fs.closeSync(fd);
  }
}

/** Refuses a checkpoint made for another network: the weights would not fit. */
export function checkCompatible(c: CheckpointContents, preset: string, classes: string[], file: string): void {
  if (c.config.preset !== preset) {
    throw new CheckpointError(`${file} was trained with --preset ${c.config.preset}, this run uses --preset ${preset}`);
  }
  if (c.classes.length !== classes.length) {
    throw new CheckpointError(`${file} has ${c.classes.length} classes, the dataset has ${classes.length}`);
  }
}
