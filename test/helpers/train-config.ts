/**
 * What the launch tests share: a TrainConfig from `alexnet train` arguments, parsed and
 * validated as the CLI does, and CPU-simulated devices for trainDataParallel.
 */
import yargs from 'yargs';
import { trainOptions } from '../../src/cli';
import { buildTrainConfig, type CliArgs, type TrainConfig } from '../../src/core/config';
import type { DeviceAssignment } from '../../src/devices/discover';

/** The config `alexnet train <argv>` would run. */
export function trainConfigOf(argv: string[]): TrainConfig {
  return buildTrainConfig(trainOptions(yargs(argv)).parseSync() as CliArgs) as TrainConfig;
}

/** `n` CPU-simulated devices (one worker process each). */
export function cpuDevices(n: number): DeviceAssignment {
  return { kind: 'cpu', worldSize: n, gpuIds: [], note: null };
}

/**
 * The launch tests' run: the small preset (He init) on a stripes dataset, 12 images a step at
 * lr 0.01, seeded; more flags go after it (a flag may appear once: the parser reads two as a list).
 */
export function smallRunArgs(
  data: string,
  runDir: string,
  { backend = 'wasm', seed = 5 }: { backend?: 'wasm' | 'native'; seed?: number } = {},
): string[] {
  return [
    ...['--data', data, '--preset', 'small', '--init', 'he', '--batch-size', '12', '--lr', '0.01'],
    ...['--run-dir', runDir, '--backend', backend, '--seed', String(seed)],
  ];
}
