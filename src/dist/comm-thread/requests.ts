/** Messages between a worker's main thread and its communication thread (comm-thread.ts). */
import type { MessagePort } from 'node:worker_threads';
import type { CurveKeys } from '../security/curve-auth';
import type { WireDtype } from '../ring/wire-codec';
import type { ShmGroupHandle } from '../shm/shm-group';
import type { HierarchicalLayout } from '../shm/hierarchical';

/** What the thread is started with. */
export interface CommThreadData {
  rank: number;
  worldSize: number;
  bindAddress: string;
  /** Where the cross-ring socket binds (multi-host runs: the hierarchical plane may need it), or null. */
  crossBindAddress: string | null;
  curve: CurveKeys | null;
  timeoutMs: number;
  chunkBytes: number | null;
  /** One Int32: requests finished so far (answered on `replies` first). */
  completed: SharedArrayBuffer;
  requests: MessagePort;
  replies: MessagePort;
  /** Any message here closes the sockets at once, out of turn; then `aborted` becomes 1. */
  abort: MessagePort;
  aborted: SharedArrayBuffer;
  /** One Float64: bytes put on the ring so far, updated before each request completes. */
  stats: SharedArrayBuffer;
}

/** Float32 values in shared memory: handed over without a copy. */
export interface SharedView {
  buffer: SharedArrayBuffer;
  byteOffset: number;
  length: number;
}

type RequestBody =
  | { op: 'bind' }
  | { op: 'connect'; next: string; wireDtype: WireDtype }
  /** From now on the collectives run in this shared-memory group, not on the ring. */
  | { op: 'useShm'; handle: ShmGroupHandle }
  /**
   * From now on all-reduces are hierarchical (dist/shm/hierarchical.ts): `handle` is the host's group,
   * the cross-ring socket connects to `crossNext`. The flat ring stays for the other collectives.
   */
  | { op: 'useHierarchical'; handle: ShmGroupHandle; layout: HierarchicalLayout; crossNext: string }
  /** `exact`: fp32 whatever the wire dtype (counts, keys, the metric tail). */
  | { op: 'allReduce'; buffer: SharedView; exact: boolean }
  | { op: 'broadcast'; buffer: SharedView; root: number }
  | { op: 'allGather'; local: Float32Array; sizes: number[]; exact: boolean }
  | { op: 'reduceScatter'; values: Float32Array; sizes: number[] }
  | { op: 'close' };

export type CommRequest = RequestBody & { id: number };
export type CommOp = CommRequest['op'];

export interface CommReply {
  id: number;
  error?: { name: string; message: string };
  endpoint?: string;
  /** bind's answer in a multi-host run: where the cross-ring socket is bound. */
  crossEndpoint?: string;
  /** bind's answer: which wire conversions the thread uses ('native', or 'js' and why). */
  codec?: string;
  values?: Float32Array;
}
