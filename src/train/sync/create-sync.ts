/**
 * Chooses the run's gradient-sync strategy once, before the first step: local (one process),
 * data-parallel (with or without --overlap) or hybrid, and prepares it: rank 0's weights on every
 * rank first, then the hybrid slices and the buffers the strategy reduces in.
 */
import * as tf from '@tensorflow/tfjs';
import type { TrainConfig } from '../../core/config';
import { ConfigError } from '../../core/errors';
import type { Logger } from '../../core/log';
import type { SyncCollective } from '../../dist/collective';
import type { AlexNet, Param } from '../../model/alexnet';
import type { Optimizer } from '../optimizer';
import { broadcastParams, DataParallelSync } from './data-parallel-sync';
import { fusionFor, type FusionBuffer } from './fusion-buffer';
import type { GradientSync } from './gradient-sync';
import { HybridHead } from './hybrid';
import { HybridSync } from './hybrid-sync';
import { LocalSync } from './local-sync';
import { OverlappedReduce } from './overlap';

export interface SyncSetup {
  config: TrainConfig;
  /** The other ranks (null: this process trains alone). */
  collective: SyncCollective | null;
  model: AlexNet;
  /** The full model's optimizer; hybrid mode replaces it with one over its slices (and disposes it). */
  optimizer: Optimizer;
  /** Images per forward+backward chosen for this rank (../memory.ts); 0: the whole share. */
  microBatch: number;
  log: Logger;
}

/**
 * Hybrid mode and --overlap read tensors inside tfjs's synchronous backward pass (dataSync), which
 * the webgpu backend cannot do in Node (its readbacks are async only).
 */
function refuseAsyncOnlyBackend(what: string): void {
  if (tf.getBackend() === 'webgpu')
    throw new ConfigError(
      `${what} is not available on the webgpu backend: it reads tensors inside the backward pass, and webgpu reads back only asynchronously. Use --parallel data without --overlap there.`,
    );
}

/**
 * The bucketed all-reduce during backward (--overlap), or null: off, or micro-batches (their
 * gradients add up over several passes, so none is final before the last one ends). `fused`:
 * the params whose gradients the fusion buffer holds, in its order (the trained ones).
 */
function overlapFor(
  setup: SyncSetup,
  collective: SyncCollective,
  fusion: FusionBuffer,
  fused: readonly Param[],
  hybrid: boolean,
): OverlappedReduce | null {
  const { config, microBatch, log } = setup;
  if (!config.overlap) return null;
  refuseAsyncOnlyBackend('--overlap');
  const isMaster = collective.rank === 0;
  const share = Math.ceil(config.batchSize / collective.worldSize);
  if (!hybrid && microBatch > 0 && microBatch < share) {
    if (isMaster)
      log.warn(
        `--overlap is off: each worker's ${share} images run in micro-batches of ${microBatch}, and no gradient is final before the last one`,
      );
    return null;
  }
  const modelIndices = fused.map((p) => setup.model.params.indexOf(p));
  const overlap = new OverlappedReduce(fusion, collective, config.bucketMb * 1e6, modelIndices);
  if (isMaster)
    log.info(
      `overlapping the all-reduce with the backward pass: ${overlap.bucketCount} buckets of about ${config.bucketMb} MB`,
    );
  return overlap;
}

/** Hybrid mode's slices of the FC layers, cut from the (broadcast or resumed) full model. */
async function hybridSync(setup: SyncSetup, collective: SyncCollective): Promise<HybridSync> {
  const { config, microBatch, log } = setup;
  refuseAsyncOnlyBackend('--parallel hybrid');
  const share = Math.ceil(config.batchSize / collective.worldSize);
  if (collective.rank === 0 && microBatch > 0 && microBatch < share) {
    log.warn(
      `--parallel hybrid runs each worker's share of ${share} images in one pass (the FC layers see the whole global batch); micro-batches of ${microBatch} are not used`,
    );
  }
  const head = await HybridHead.create(setup.model, setup.optimizer, collective);
  const fused = head.trainParams.slice(0, head.replicated);
  return new HybridSync(head, collective, overlapFor(setup, collective, head.fusion, fused, true));
}

/**
 * The strategy for this run. With other ranks, every rank first takes rank 0's weights (they
 * already match for one seed; this makes sure, and a resumed rank 0 is the source of truth).
 * In one process the modes are the same computation, so --parallel and --overlap change nothing.
 */
export async function createGradientSync(setup: SyncSetup): Promise<GradientSync> {
  const { collective, config } = setup;
  if (collective === null || collective.worldSize === 1) return new LocalSync(setup.optimizer);
  await broadcastParams(collective, setup.model.params);
  if (config.parallel === 'hybrid') return hybridSync(setup, collective);
  // The trained params' gradients only (a frozen layer sends none), in the host's shared-memory
  // segment when the ranks share one: reduced there, no copy.
  const trained = setup.optimizer.params;
  const fusion = fusionFor(trained, (length) => collective.allocate(length));
  return new DataParallelSync(
    collective,
    setup.optimizer,
    fusion,
    overlapFor(setup, collective, fusion, trained, false),
  );
}
