/**
 * One training run of the training benchmark, forked by bench/train.ts (see there) so that
 * every run starts in a fresh process with a fresh wasm heap. It runs exactly what
 * `alexnet train` runs for the same options: one worker in this process (no sockets), several
 * through the coordinator and its worker processes. Each step's report is time-stamped as it
 * arrives and sent back over the fork IPC channel.
 */
import yargs from 'yargs';
import { backendRequest, describeBackend, initBackend } from '../src/backend/select';
import { trainOptions } from '../src/cli';
import { buildTrainConfig } from '../src/core/config';
import type { BackendChoice, PresetName } from '../src/core/config';
import { trainDataParallel } from '../src/command-handlers';
import { resolveDevices } from '../src/devices/discover';
import { stepReportMessage, type StepReportMessage } from '../src/dist/control/messages';
import { Trainer, type TrainerDeps } from '../src/train/trainer';
import { consoleLogger } from '../src/core/log';
import { sampleOf, type StepSample } from './train-stats';

export interface RunSpec {
  data: string;
  preset: PresetName;
  workers: number;
  batchPerWorker: number;
  /** Warm-up and measured steps together: the run stops after them (--max-steps). */
  steps: number;
  /** --epochs: the steps may span several (bench/train.ts: a decoding epoch, then a measured one). */
  epochs: number;
  runDir: string;
  /** --backend of the run: wasm (the default) or native, one thread per worker process either way; or webgpu. */
  backend: BackendChoice;
  /** webgpu only: one worker per hardware GPU, each pinned (--devices N); else `webgpu:N` on whatever adapter exists. */
  gpus?: boolean;
  /** --threads: oneDNN threads per worker process (native only). */
  threads: number;
  /** More `alexnet train` flags (the parallel-modes benchmark: --parallel, --wire-dtype, --overlap). */
  extraArgs?: string[];
}

export type RunReply =
  { kind: 'done'; samples: StepSample[]; backend: string; maxRssMb: number } | { kind: 'failed'; message: string };

function devicesOf(spec: RunSpec): string {
  if (spec.backend !== 'webgpu') return `cpu:${spec.workers}`;
  return spec.gpus === true ? String(spec.workers) : `webgpu:${spec.workers}`;
}

/** The `alexnet train` options of a run: the benchmark's exact command. */
export function trainArgs(spec: RunSpec): string[] {
  return [
    '--data',
    spec.data,
    '--preset',
    spec.preset,
    '--batch-size',
    String(spec.batchPerWorker * spec.workers),
    '--devices',
    devicesOf(spec),
    '--backend',
    spec.backend,
    ...(spec.backend === 'webgpu' && spec.gpus !== true ? ['--allow-software-gpu'] : []),
    '--threads',
    String(spec.threads),
    '--epochs',
    String(spec.epochs),
    '--max-steps',
    String(spec.steps),
    '--run-dir',
    spec.runDir,
    ...(spec.extraArgs ?? []),
  ];
}

async function run(spec: RunSpec): Promise<Extract<RunReply, { kind: 'done' }>> {
  const config = buildTrainConfig(trainOptions(yargs()).parseSync(trainArgs(spec)));
  const log = consoleLogger({ level: config.logLevel });
  const samples: StepSample[] = [];
  // Steps numbered per rank across epochs (a report's own step number restarts every epoch).
  const stepsSoFar = new Map<number, number>();
  const record = (m: StepReportMessage): void => {
    const step = (stepsSoFar.get(m.rank) ?? 0) + 1;
    stepsSoFar.set(m.rank, step);
    samples.push(sampleOf({ ...m, step }, performance.now()));
  };
  const devices = resolveDevices(config);
  let backend = `${devices.worldSize} ${spec.backend} worker processes`;
  if (devices.worldSize === 1) {
    const { choice, options } = backendRequest(config, devices.kind, true);
    backend = describeBackend(await initBackend(choice, devices.kind === 'gpu', options));
    const deps: TrainerDeps = {
      log,
      tty: false,
      collective: null,
      shouldStop: () => false,
      onStep: (r) => record(stepReportMessage(0, r)),
    };
    await new Trainer(config, deps).run();
  } else {
    await trainDataParallel(config, devices, log, { onStepReport: record });
  }
  return { kind: 'done', samples, backend, maxRssMb: process.resourceUsage().maxRSS / 1024 };
}

if (require.main === module) {
  // Exit once the parent has the reply: tfjs and sharp may keep the event loop alive.
  const reply = (r: RunReply): void => void process.send?.(r, () => process.exit(r.kind === 'done' ? 0 : 1));
  run(JSON.parse(process.argv[2] ?? '{}') as RunSpec).then(reply, (err: unknown) =>
    reply({ kind: 'failed', message: err instanceof Error ? err.message : String(err) }),
  );
}
