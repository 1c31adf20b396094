/**
 * Collective operations over a RingTransport, on plain Float32Arrays (no tfjs here):
 * - ringAllReduce: in-place sum, reduce-scatter (n-1 steps) + all-gather (n-1 steps),
 *   every segment cut into chunks so that sending, receiving and adding overlap;
 * - broadcast: one rank's buffer to every rank (initial weights), pipelined the same way;
 * - allReduceScalars: exact float64 sums of a few metrics, identical on every rank;
 * - ringAllGather / ringReduceScatter: the two halves of the all-reduce as collectives of their
 *   own, over segments of any sizes (one per rank), for the hybrid mode's activations.
 *
 * Zero-copy safety (ZeroMQ reads a sent buffer after `send()` resolved, until the peer has
 * it). The all-reduce never needs an ack or a defensive copy, by construction:
 * - partial sums live in the arrays `recv()` returned, which we own and never write again
 *   after passing them on: `partial += local; send(partial)`;
 * - the only chunks sent straight from the caller's buffer are this rank's own segment at
 *   reduce-scatter step 0. That segment is next written when its final value comes back in
 *   the all-gather, and that final value includes our contribution, which rank+1 could only
 *   add after receiving our chunk: so rank+1 has the bytes before we overwrite them, and
 *   before we return;
 * - the fully reduced owned segment goes out as the received array that holds it (it is
 *   also copied into the caller's buffer), so returning early never exposes a live buffer.
 * Broadcast's root sends from the caller's buffer, so it waits for a one-float token that
 * the last rank sends once it has everything (the ring's last hop leads back to the root).
 */
import { ConfigError, ProtocolError } from '../../core/errors';
import { addInPlace } from './reduce-kernel';
import type { RingTransport } from './transport';
import {
  ElemRange,
  allGatherRecvSegment,
  allReduceChunkElems,
  chunkElemsFor,
  chunkRanges,
  mod,
  reduceScatterRecvSegment,
  reduceScatterSendSegment,
  segmentRange,
} from './ring-schedule';

export interface CollectiveOptions {
  /**
   * Largest message in bytes. Smaller chunks start the pipeline sooner; larger ones cost
   * fewer messages. Default 1 MiB: raw ZeroMQ ipc moved 1-4 MiB messages fastest on the 2-core
   * machine, and a 122 MB segment still pipelines as ~120 chunks. Ranks must agree on it.
   */
  chunkBytes?: number;
  /**
   * How long one receive may wait, in ms. Must cover the slowest peer's compute before it
   * joins the collective, not just the transfer: a dead peer is reported after this long.
   */
  timeoutMs?: number;
}

export const DEFAULT_CHUNK_BYTES = 1 << 20;
export const DEFAULT_TIMEOUT_MS = 60_000;

interface Resolved {
  chunkElems: number;
  timeoutMs: number;
}

function resolveOptions(options: CollectiveOptions): Resolved {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!(timeoutMs > 0)) throw new ConfigError(`timeoutMs must be > 0, got ${timeoutMs}`);
  return { chunkElems: chunkElemsFor(options.chunkBytes ?? DEFAULT_CHUNK_BYTES), timeoutMs };
}

function checkRing(transport: RingTransport, rank: number, worldSize: number): void {
  if (transport.rank !== rank || transport.worldSize !== worldSize) {
    throw new ConfigError(
      `collective called as rank ${rank} of ${worldSize}, but the transport is rank ` +
        `${transport.rank} of ${transport.worldSize}`,
    );
  }
}

/** Receives one chunk and checks it has the length the schedule expects. */
async function recvExpected(
  transport: RingTransport,
  expectedElems: number,
  timeoutMs: number,
  what: string,
): Promise<Float32Array> {
  const chunk = await transport.recv(timeoutMs);
  if (chunk.length !== expectedElems) {
    const peer = mod(transport.rank - 1, transport.worldSize);
    throw new ProtocolError(
      `rank ${transport.rank}: ${what}: expected ${expectedElems} floats from rank ${peer}, ` +
        `got ${chunk.length}. Do all ranks use the same buffer length and chunk size?`,
    );
  }
  return chunk;
}

/**
 * Sums `buffer` over all ranks, in place: afterwards every rank holds the same bits.
 * Each segment is added in the fixed order of `reductionOrder()`. worldSize 1 is a no-op.
 * On error (CommTimeoutError, ProtocolError) the buffer is partly reduced and the transport
 * must be closed: messages of the failed call may still be in flight.
 */
export async function ringAllReduce(
  buffer: Float32Array,
  transport: RingTransport,
  rank: number,
  worldSize: number,
  options: CollectiveOptions = {},
): Promise<void> {
  checkRing(transport, rank, worldSize);
  const { timeoutMs } = resolveOptions(options);
  const n = worldSize;
  if (n === 1) return;
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const chunkElems = allReduceChunkElems(buffer.length, n, chunkBytes);
  const chunksOf = (segment: number): ElemRange[] => chunkRanges(segmentRange(buffer.length, n, segment), chunkElems);

  for (const c of chunksOf(reduceScatterSendSegment(rank, 0, n))) {
    await transport.send(buffer.subarray(c.start, c.end));
  }
  for (let step = 0; step < n - 1; step++) {
    const isLast = step === n - 2;
    for (const c of chunksOf(reduceScatterRecvSegment(rank, step, n))) {
      const what = `reduce-scatter step ${step}`;
      const partial = await recvExpected(transport, c.end - c.start, timeoutMs, what);
      const local = buffer.subarray(c.start, c.end);
      addInPlace(partial, local);
      if (isLast) {
        // The final value, as every other rank will receive it (a 16-bit wire rounds it).
        transport.quantize?.(partial);
        local.set(partial);
      }
      // The next reduce-scatter step, or all-gather step 0 once the segment is final.
      await transport.send(partial);
    }
  }
  for (let step = 0; step < n - 1; step++) {
    const forward = step < n - 2;
    for (const c of chunksOf(allGatherRecvSegment(rank, step, n))) {
      const what = `all-gather step ${step}`;
      const final = await recvExpected(transport, c.end - c.start, timeoutMs, what);
      buffer.set(final, c.start);
      if (forward) await transport.send(final);
    }
  }
}

/**
 * Copies `root`'s buffer into every rank's buffer (same length everywhere), pipelined along
 * the ring root -> root+1 -> ... -> root-1. Resolves on the root only once the last rank has
 * everything, so the root may overwrite its buffer as soon as this returns.
 */
export async function broadcast(
  buffer: Float32Array,
  transport: RingTransport,
  root: number,
  options: CollectiveOptions = {},
): Promise<void> {
  const { rank, worldSize: n } = transport;
  if (!Number.isInteger(root) || root < 0 || root >= n) {
    throw new ConfigError(`broadcast root must be a rank in [0, ${n}), got ${root}`);
  }
  const { chunkElems, timeoutMs } = resolveOptions(options);
  if (n === 1) return;
  const chunks = chunkRanges({ start: 0, end: buffer.length }, chunkElems);
  const hops = mod(rank - root, n);
  if (hops === 0) {
    for (const c of chunks) await transport.send(buffer.subarray(c.start, c.end));
    const token = await recvExpected(transport, 1, timeoutMs, 'broadcast completion token');
    if (token[0] !== chunks.length) {
      throw new ProtocolError(`rank ${rank}: broadcast token says ${token[0]} chunks, expected ${chunks.length}`);
    }
    return;
  }
  for (const c of chunks) {
    const got = await recvExpected(transport, c.end - c.start, timeoutMs, 'broadcast');
    buffer.set(got, c.start);
    if (hops < n - 1) await transport.send(got);
  }
  if (hops === n - 1) await transport.send(Float32Array.of(chunks.length));
}

/**
 * Element-wise sums of a few float64 values (e.g. [lossSum, sampleCount, correct]) over all
 * ranks. An all-gather around the ring, then every rank adds the vectors in rank order 0..n-1
 * in float64, so the result is exact for counts and bit-identical everywhere.
 */
export async function allReduceScalars(
  values: ArrayLike<number>,
  transport: RingTransport,
  options: CollectiveOptions = {},
): Promise<Float64Array> {
  const { rank, worldSize: n } = transport;
  const { timeoutMs } = resolveOptions(options);
  const byRank: Float64Array[] = new Array<Float64Array>(n);
  byRank[rank] = Float64Array.from(values);
  const count = byRank[rank].length;
  // Float64 bytes travel as a Float32Array view; never written after sending.
  let outgoing = new Float32Array(byRank[rank].buffer);
  for (let step = 0; step < n - 1; step++) {
    await transport.send(outgoing);
    const got = await recvExpected(transport, 2 * count, timeoutMs, 'allReduceScalars');
    // slice(): the received bytes need not be 8-byte aligned for a Float64Array view.
    byRank[mod(rank - 1 - step, n)] = new Float64Array(got.slice().buffer);
    outgoing = got;
  }
  const sums = new Float64Array(count);
  for (const vector of byRank) for (let i = 0; i < count; i++) sums[i] += vector[i];
  return sums;
}

/** Element ranges of consecutive segments of these sizes (segment k belongs to rank k). */
export function segmentsOfSizes(sizes: readonly number[]): ElemRange[] {
  let start = 0;
  return sizes.map((size) => {
    if (!Number.isInteger(size) || size < 0)
      throw new RangeError(`segment sizes must be whole numbers >= 0, got ${size}`);
    const range = { start, end: start + size };
    start += size;
    return range;
  });
}

/** The segments of a gather or scatter, checked: one per rank, and `length` values in all (or in this rank's, `ownOnly`). */
function checkedSegments(
  what: string,
  length: number,
  sizes: readonly number[],
  transport: RingTransport,
  ownOnly: boolean,
): ElemRange[] {
  const { rank, worldSize } = transport;
  if (sizes.length !== worldSize) {
    throw new ConfigError(`rank ${rank}: ${sizes.length} segment sizes for ${worldSize} ranks`);
  }
  const segments = segmentsOfSizes(sizes);
  const expected = ownOnly ? sizes[rank] : segments[worldSize - 1].end;
  if (length !== expected) {
    throw new ConfigError(
      `rank ${rank}: ${what} of ${length} values, but ${ownOnly ? 'its segment holds' : 'the segments add up to'} ${expected}`,
    );
  }
  return segments;
}

/**
 * Every rank's segment to every rank: `local` is this rank's segment (sizes[rank] values); the
 * result is all segments in rank order (sum of sizes values). Sizes may differ and be 0; every
 * rank must pass the same sizes. The ring carries segment (rank - step) at step `step`. What
 * goes out of `local` is copied first, so the caller may reuse `local` as soon as this returns.
 */
export async function ringAllGather(
  local: Float32Array,
  sizes: readonly number[],
  transport: RingTransport,
  options: CollectiveOptions = {},
): Promise<Float32Array> {
  const { rank, worldSize: n } = transport;
  const segments = checkedSegments('all-gather', local.length, sizes, transport, true);
  const { chunkElems, timeoutMs } = resolveOptions(options);
  const out = new Float32Array(segments[n - 1].end);
  const own = local.slice();
  // A 16-bit wire rounds what the others receive: keep the same rounded values here.
  transport.quantize?.(own);
  out.set(own, segments[rank].start);
  if (n === 1) return out;
  for (const c of chunkRanges(segments[rank], chunkElems)) {
    await transport.send(out.slice(c.start, c.end));
  }
  for (let step = 0; step < n - 1; step++) {
    const segment = mod(rank - 1 - step, n);
    for (const c of chunkRanges(segments[segment], chunkElems)) {
      const got = await recvExpected(transport, c.end - c.start, timeoutMs, `all-gather step ${step}`);
      out.set(got, c.start);
      if (step < n - 2) await transport.send(got);
    }
  }
  return out;
}

/**
 * Sums `buffer` (every rank's full-length contribution) over all ranks and leaves each rank
 * only its own segment of the sum: returns sizes[rank] values. Every rank must pass the same
 * sizes. Segment s travels from rank s+1 around the ring, gathering one addend per hop, and
 * ends at rank s; the additions happen in the fixed order of the ring, so the result is the
 * same on every run. `buffer` is not written, and what is sent from it is copied first.
 */
export async function ringReduceScatter(
  buffer: Float32Array,
  sizes: readonly number[],
  transport: RingTransport,
  options: CollectiveOptions = {},
): Promise<Float32Array> {
  const { rank, worldSize: n } = transport;
  const segments = checkedSegments('reduce-scatter', buffer.length, sizes, transport, false);
  const { chunkElems, timeoutMs } = resolveOptions(options);
  const own = segments[rank];
  if (n === 1) return buffer.slice(own.start, own.end);
  const result = new Float32Array(own.end - own.start);
  for (const c of chunkRanges(segments[mod(rank - 1, n)], chunkElems)) {
    await transport.send(buffer.slice(c.start, c.end));
  }
  for (let step = 0; step < n - 1; step++) {
    const segment = mod(rank - 2 - step, n);
    const isLast = step === n - 2;
    for (const c of chunkRanges(segments[segment], chunkElems)) {
      const partial = await recvExpected(transport, c.end - c.start, timeoutMs, `reduce-scatter step ${step}`);
      addInPlace(partial, buffer.subarray(c.start, c.end));
      if (isLast) result.set(partial, c.start - own.start);
      else await transport.send(partial);
    }
  }
  return result;
}
