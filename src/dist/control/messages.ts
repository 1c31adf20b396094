/**
 * Control-plane messages between the coordinator (ROUTER) and the workers and join agents
 * (DEALER): an enum of
 * message types, one interface per type, msgpackr encoding, and runtime validation so that a
 * malformed, unknown or mismatched message becomes a ProtocolError naming what was wrong
 * (instead of an undefined field crashing later). Gradients never travel here: they use the
 * raw-float32 data plane (dist/ring/zmq-ring.ts).
 *
 * Also the weights checksum that ranks exchange to prove their replicas are still identical.
 */
import { Packr } from 'msgpackr';
import { ProtocolError } from '../../core/errors';

/**
 * Bump when a message's fields change; Hello and Join carry it and the coordinator compares
 * (hosts of a multi-host run may have different builds installed).
 */
export const PROTOCOL_VERSION = 6;

export enum MessageType {
  /** worker -> coordinator: started; here is my ring endpoint. */
  Hello = 'hello',
  /** coordinator -> worker: rank, world size, frozen config, neighbour's ring endpoint. */
  Config = 'config',
  /** worker -> coordinator: ring connected and backend started (sent before the initial weights broadcast). */
  Ready = 'ready',
  /** worker -> coordinator: one step done: its images and timings. */
  StepReport = 'stepReport',
  /** worker -> coordinator: weights checksum at a step, compared across ranks. */
  Checksum = 'checksum',
  /** worker -> coordinator: still alive (sent while no step report is due). */
  Heartbeat = 'heartbeat',
  /** worker -> coordinator: failed; the coordinator stops every rank. */
  Error = 'error',
  /** coordinator -> worker: stop now (finished, or another rank failed). */
  Shutdown = 'shutdown',
  /** worker -> coordinator: finished all steps, sockets closed next. */
  Done = 'done',
  /** join agent -> coordinator: another host offers its workers (multi-host runs). */
  Join = 'join',
  /** coordinator -> join agent: every worker is present; your ranks and the frozen config. */
  Welcome = 'welcome',
  /** coordinator -> join agent: the run is over, or the join is refused. */
  Dismiss = 'dismiss',
  /** join agent -> coordinator: one of its workers exited. */
  WorkerExit = 'workerExit',
  /** join agent -> coordinator: this host cannot take part (e.g. its dataset is missing). */
  HostError = 'hostError',
}

export interface HelloMessage {
  type: MessageType.Hello;
  rank: number;
  protocolVersion: number;
  pid: number;
  host: string;
  /** Where this rank's ring socket is bound (port filled in). */
  dataEndpoint: string;
  /** Multi-host runs: where its cross-ring socket is bound (the hierarchical plane), else null. */
  crossEndpoint: string | null;
  /** Why shared memory cannot run on this rank's host (shmUnavailableReason), or null: it can. */
  shmUnavailable: string | null;
}

/**
 * The data plane the coordinator chose for one rank of a multi-host run (every rank must
 * agree, so it is decided centrally): hierarchical, with the rank's place in it and the next
 * member of its cross ring, or the flat ring, with the reason.
 */
export type PlaneAssignment =
  | {
      kind: 'hierarchical';
      localRank: number;
      localSize: number;
      hostIndex: number;
      hosts: number;
      crossNextEndpoint: string;
    }
  | { kind: 'zmq'; why: string };

export interface ConfigMessage {
  type: MessageType.Config;
  rank: number;
  worldSize: number;
  /** rank+1's dataEndpoint. */
  nextEndpoint: string;
  /** The frozen TrainConfig; validated by src/core/config.ts, opaque here. */
  config: Record<string, unknown>;
  /** Multi-host runs: the data plane the coordinator chose; null on one host (each rank chooses alike). */
  plane: PlaneAssignment | null;
}
export interface ReadyMessage {
  type: MessageType.Ready;
  rank: number;
}
export interface StepReportMessage {
  type: MessageType.StepReport;
  rank: number;
  epoch: number;
  step: number;
  /** The step's time without the data wait (its compute, copies, all-reduce and update). */
  stepMs: number;
  /** Images the step trained on, over all ranks (the count rode the all-reduce). */
  images: number;
  /** Each part of the step's time on this rank. */
  timingsMs: Record<StepTiming, number>;
  /** This worker process's peak resident memory so far (the benchmark's memory per worker). */
  peakRssMb: number;
  /** Bytes this rank put on the ring during the step (after --wire-dtype encoding). */
  wireBytes: number;
}

/** The parts of a step a StepReport times, in the order they happen. */
export const STEP_TIMINGS = ['dataWaitMs', 'computeMs', 'copyMs', 'reduceMs', 'updateMs'] as const;
export type StepTiming = (typeof STEP_TIMINGS)[number];

/** What a worker knows of one step when it reports it (the training loop's step report). */
export interface StepFacts {
  epoch: number;
  step: number;
  /** Summed over every rank's images of the step. */
  sums: { count: number };
  timings: Record<StepTiming, number>;
  /** Bytes this rank sent on the ring during the step (absent: none, one process). */
  wireBytes?: number;
}

/**
 * One step's report: what the coordinator watches (the step, its time: a hung worker is one
 * silent for 3x its slowest step) and what the training benchmark times (images, each part).
 */
export function stepReportMessage(rank: number, r: StepFacts): StepReportMessage {
  return {
    type: MessageType.StepReport,
    rank,
    epoch: r.epoch,
    step: r.step,
    stepMs: r.timings.computeMs + r.timings.copyMs + r.timings.reduceMs + r.timings.updateMs,
    images: r.sums.count,
    timingsMs: Object.fromEntries(STEP_TIMINGS.map((name) => [name, r.timings[name]])) as Record<StepTiming, number>,
    // getrusage's high-water mark: one syscall, made in the worker that reports the step.
    peakRssMb: process.resourceUsage().maxRSS / 1024,
    wireBytes: r.wireBytes ?? 0,
  };
}

export interface ChecksumMessage {
  type: MessageType.Checksum;
  rank: number;
  step: number;
  checksum: string;
}
export interface HeartbeatMessage {
  type: MessageType.Heartbeat;
  rank: number;
  timeMs: number;
}
export interface ErrorMessage {
  type: MessageType.Error;
  rank: number;
  /** Error class name, e.g. 'CommTimeoutError'. */
  name: string;
  message: string;
  stack: string | null;
}
export interface ShutdownMessage {
  type: MessageType.Shutdown;
  reason: string;
}
export interface DoneMessage {
  type: MessageType.Done;
  rank: number;
  steps: number;
  /** Rank 0's TrainResult as plain data (epochs, test metrics); null on other ranks. */
  result: Record<string, unknown> | null;
}

export interface JoinMessage {
  type: MessageType.Join;
  protocolVersion: number;
  /** The agent's host name and the address its workers' ring sockets bind (for messages). */
  host: string;
  address: string;
  pid: number;
  /** How many workers this host brings: it gets that many consecutive ranks. */
  workers: number;
}
export interface WelcomeMessage {
  type: MessageType.Welcome;
  /** This host's workers are ranks firstRank .. firstRank + workers - 1. */
  firstRank: number;
  worldSize: number;
  /** The frozen TrainConfig, so the agent can check its dataset before starting workers. */
  config: Record<string, unknown>;
}
export interface DismissMessage {
  type: MessageType.Dismiss;
  reason: string;
  /** The run failed (or the join was refused): stop the workers now, they may be stuck. */
  failed: boolean;
  /** The run restarts from its newest checkpoint (--max-restarts): join it again once the workers are gone. */
  rejoin: boolean;
}
export interface WorkerExitMessage {
  type: MessageType.WorkerExit;
  rank: number;
  code: number | null;
  signal: string | null;
}
export interface HostErrorMessage {
  type: MessageType.HostError;
  name: string;
  message: string;
}

export type ControlMessage =
  | HelloMessage
  | ConfigMessage
  | ReadyMessage
  | StepReportMessage
  | ChecksumMessage
  | HeartbeatMessage
  | ErrorMessage
  | ShutdownMessage
  | DoneMessage
  | JoinMessage
  | WelcomeMessage
  | DismissMessage
  | WorkerExitMessage
  | HostErrorMessage;

/** A field check: returns what is wrong with `value`, or null when it is fine. */
type FieldCheck = (value: unknown) => string | null;

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);

const rankField: FieldCheck = (v) => (Number.isInteger(v) && (v as number) >= 0 ? null : 'must be an integer >= 0');
const intField: FieldCheck = (v) => (Number.isInteger(v) ? null : 'must be an integer');
const numberField: FieldCheck = (v) => (typeof v === 'number' && Number.isFinite(v) ? null : 'must be a finite number');
const stringField: FieldCheck = (v) => (typeof v === 'string' ? null : 'must be a string');
const nullableString: FieldCheck = (v) => (v === null ? null : stringField(v));
const nullableInt: FieldCheck = (v) => (v === null ? null : intField(v));
const booleanField: FieldCheck = (v) => (typeof v === 'boolean' ? null : 'must be a boolean');
const countField: FieldCheck = (v) => (Number.isInteger(v) && (v as number) >= 1 ? null : 'must be an integer >= 1');
const objectField: FieldCheck = (v) => (isRecord(v) ? null : 'must be an object');

const PLANE_FIELDS: Record<string, FieldCheck> = {
  localRank: rankField,
  localSize: countField,
  hostIndex: rankField,
  hosts: countField,
  crossNextEndpoint: stringField,
};

const planeField: FieldCheck = (v) => {
  if (v === null) return null;
  if (!isRecord(v)) return 'must be null or a data-plane assignment';
  const fields: Record<string, FieldCheck> =
    v.kind === 'zmq' ? { why: stringField } : v.kind === 'hierarchical' ? PLANE_FIELDS : {};
  if (Object.keys(fields).length === 0) return `has an unknown kind ${JSON.stringify(v.kind)}`;
  for (const [name, check] of Object.entries(fields)) {
    const problem = check(v[name]);
    if (problem !== null) return `entry ${JSON.stringify(name)} ${problem}`;
  }
  const extra = Object.keys(v).find((k) => k !== 'kind' && !(k in fields));
  return extra === undefined ? null : `has an unexpected entry ${JSON.stringify(extra)}`;
};

const timingsField: FieldCheck = (v) => {
  if (!isRecord(v)) return 'must be an object of step timings';
  for (const name of STEP_TIMINGS)
    if (numberField(v[name]) !== null) return `entry ${JSON.stringify(name)} must be a finite number of ms`;
  const extra = Object.keys(v).find((k) => !(STEP_TIMINGS as readonly string[]).includes(k));
  return extra === undefined ? null : `has an unexpected entry ${JSON.stringify(extra)}`;
};

/** Every field of every message type, checked at compile time against the interfaces. */
type Schema<M> = { [F in Exclude<keyof M, 'type'>]-?: FieldCheck };
type Schemas = { [T in MessageType]: Schema<Extract<ControlMessage, { type: T }>> };

const SCHEMAS: Schemas = {
  [MessageType.Hello]: {
    rank: rankField,
    protocolVersion: intField,
    pid: intField,
    host: stringField,
    dataEndpoint: stringField,
    crossEndpoint: nullableString,
    shmUnavailable: nullableString,
  },
  [MessageType.Config]: {
    rank: rankField,
    worldSize: rankField,
    nextEndpoint: stringField,
    config: objectField,
    plane: planeField,
  },
  [MessageType.Ready]: { rank: rankField },
  [MessageType.StepReport]: {
    rank: rankField,
    epoch: rankField,
    step: rankField,
    stepMs: numberField,
    images: rankField,
    timingsMs: timingsField,
    peakRssMb: numberField,
    wireBytes: numberField,
  },
  [MessageType.Checksum]: { rank: rankField, step: rankField, checksum: stringField },
  [MessageType.Heartbeat]: { rank: rankField, timeMs: numberField },
  [MessageType.Error]: {
    rank: rankField,
    name: stringField,
    message: stringField,
    stack: nullableString,
  },
  [MessageType.Shutdown]: { reason: stringField },
  [MessageType.Done]: { rank: rankField, steps: rankField, result: (v) => (v === null ? null : objectField(v)) },
  [MessageType.Join]: {
    protocolVersion: intField,
    host: stringField,
    address: stringField,
    pid: intField,
    workers: countField,
  },
  [MessageType.Welcome]: { firstRank: rankField, worldSize: countField, config: objectField },
  [MessageType.Dismiss]: { reason: stringField, failed: booleanField, rejoin: booleanField },
  [MessageType.WorkerExit]: { rank: rankField, code: nullableInt, signal: nullableString },
  [MessageType.HostError]: { name: stringField, message: stringField },
};

const MESSAGE_TYPES = new Set<string>(Object.values(MessageType));

function isMessageType(value: unknown): value is MessageType {
  return typeof value === 'string' && MESSAGE_TYPES.has(value);
}

/**
 * Checks that `value` is a well-formed ControlMessage; throws a ProtocolError naming the
 * message type and the first wrong field. Extra fields are rejected too: they mean the two
 * sides run different versions of this file.
 */
export function validateMessage(value: unknown): ControlMessage {
  if (!isRecord(value)) throw new ProtocolError('control message is not an object');
  const type = value.type;
  if (!isMessageType(type)) {
    throw new ProtocolError(`unknown control message type ${JSON.stringify(type)}`);
  }
  const schema: Record<string, FieldCheck> = SCHEMAS[type];
  for (const [field, check] of Object.entries(schema)) {
    const problem = field in value ? check(value[field]) : 'is missing';
    if (problem !== null) {
      throw new ProtocolError(`control message '${type}': field '${field}' ${problem}`);
    }
  }
  for (const field of Object.keys(value)) {
    if (field !== 'type' && !(field in schema)) {
      throw new ProtocolError(`control message '${type}': unexpected field '${field}'`);
    }
  }
  return value as unknown as ControlMessage;
}

// Plain msgpack maps (no msgpackr records), so any msgpack reader can decode a capture.
const packr = new Packr({ useRecords: false, mapsAsObjects: true });

/** Validates, then encodes: a bad message fails at the sender, where the bug is. */
export function encodeMessage(message: ControlMessage): Buffer {
  validateMessage(message);
  return packr.pack(message);
}

/** Decodes and validates one message; ProtocolError for bytes that are not one. */
export function decodeMessage(bytes: Uint8Array): ControlMessage {
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new ProtocolError(`control message of ${bytes.length} bytes is not msgpack: ${detail}`);
  }
  return validateMessage(value);
}

/**
 * A fingerprint of the exact bits of `weights` (so -0 vs +0 and NaN payloads count), as 32 hex
 * digits. Four interleaved FNV-1a lanes over 32-bit words: each step is a bijection of the lane
 * state, so any single changed word always changes the result. Not cryptographic: it guards
 * against diverged replicas, not attackers, and is faster than sha256 on a whole model
 * (docs/measurements.md, "Weights checksum").
 */
export function weightsChecksum(weights: Float32Array): string {
  const words = new Uint32Array(weights.buffer, weights.byteOffset, weights.length);
  const prime = 16777619;
  let h0 = 0x811c9dc5;
  let h1 = 0x050c5d1f;
  let h2 = 0x2545f491;
  let h3 = 0x9e3779b9;
  const n = words.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    h0 = Math.imul(h0 ^ words[i], prime);
    h1 = Math.imul(h1 ^ words[i + 1], prime);
    h2 = Math.imul(h2 ^ words[i + 2], prime);
    h3 = Math.imul(h3 ^ words[i + 3], prime);
  }
  for (; i < n; i++) h0 = Math.imul(h0 ^ words[i], prime);
  // Mix in the length so [x] and [x, 0-words...] differ in the tail-lane-free case.
  h1 = Math.imul(h1 ^ n, prime);
  return [h0, h1, h2, h3].map((h) => (h >>> 0).toString(16).padStart(8, '0')).join('');
}
