/**
 * Launching from the schedulers clusters already use: the rendezvous and this host's place in
 * the run, read from the environment a scheduler sets, so that every host runs the same
 * `alexnet train` command line. Pure: the caller passes the variables in (src/core/config.ts's
 * `env.variables` reads them).
 *
 * The model is one `alexnet` process per host (it starts one worker per device itself):
 *   torchrun (--nproc-per-node 1), Kubeflow's PyTorchJob and similar:
 *     MASTER_ADDR, MASTER_PORT   the coordinator's host and port
 *     WORLD_SIZE                 hosts in the job (one alexnet process each)
 *     NODE_RANK, else RANK       this host's index; 0 runs the coordinator
 *   Slurm (srun --ntasks-per-node 1):
 *     SLURM_JOB_NUM_NODES        hosts in the job
 *     SLURM_NODEID               this host's index; 0 runs the coordinator
 *     SLURM_JOB_NODELIST         the hosts; the first runs the coordinator
 *     SLURM_PROCID               this task's rank: must equal SLURM_NODEID (one task per host)
 *     MASTER_PORT                the rendezvous port, if set (else DEFAULT_RENDEZVOUS_PORT)
 * A job of one host is no multi-host run: null, as without a scheduler.
 */
import { lookup } from 'node:dns/promises';
import type { CliArgs } from '../../core/config';
import { ConfigError } from '../../core/errors';
import { isLoopbackHost, tcpAddress } from '../ring/ring-address';

export const TORCHRUN_VARIABLES = ['MASTER_ADDR', 'MASTER_PORT', 'WORLD_SIZE', 'RANK', 'NODE_RANK'] as const;
export const SLURM_VARIABLES = ['SLURM_JOB_NUM_NODES', 'SLURM_NODEID', 'SLURM_JOB_NODELIST', 'SLURM_PROCID'] as const;
/** Every variable this module reads. */
export const SCHEDULER_VARIABLES = [...TORCHRUN_VARIABLES, ...SLURM_VARIABLES] as const;
export type SchedulerVariable = (typeof SCHEDULER_VARIABLES)[number];
export type SchedulerEnv = Partial<Record<SchedulerVariable, string>>;

/** torchrun's default rendezvous port, used when a Slurm job sets no MASTER_PORT. */
export const DEFAULT_RENDEZVOUS_PORT = 29500;

/** Where this host stands in a job a scheduler launched. */
export interface SchedulerLaunch {
  scheduler: 'torchrun' | 'slurm';
  /** The coordinator's host, as the scheduler names it (a host name or an address). */
  masterHost: string;
  masterPort: number;
  /** Hosts in the job. */
  hosts: number;
  /** This host's index: 0 runs the coordinator, the others join it. */
  hostRank: number;
}

const isSet = (v: string | undefined): v is string => v !== undefined && v.trim() !== '';

function wholeNumber(env: SchedulerEnv, name: SchedulerVariable, min: number): number {
  const raw = env[name] ?? '';
  if (!/^\d+$/.test(raw.trim()) || Number(raw) < min)
    throw new ConfigError(`${name} must be a whole number >= ${min}, got '${raw}'`);
  return Number(raw);
}

function port(env: SchedulerEnv): number {
  const p = wholeNumber(env, 'MASTER_PORT', 1);
  if (p > 65535) throw new ConfigError(`MASTER_PORT must be a port 1-65535, got ${p}`);
  return p;
}

/** "MASTER_ADDR is set but WORLD_SIZE and RANK (or NODE_RANK) are not". */
function requireAll(
  env: SchedulerEnv,
  scheduler: string,
  needed: readonly (SchedulerVariable | readonly SchedulerVariable[])[],
): void {
  const missing = needed.filter((n) => (typeof n === 'string' ? !isSet(env[n]) : !n.some((m) => isSet(env[m]))));
  if (missing.length === 0) return;
  const set = SCHEDULER_VARIABLES.filter((n) => isSet(env[n]));
  const names = missing.map((n) => (typeof n === 'string' ? n : n.join(' or ')));
  throw new ConfigError(
    `a half-set ${scheduler} environment: ${set.join(', ')} ${set.length === 1 ? 'is' : 'are'} set but ${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} not (set them all, or pass --rendezvous and its flags)`,
  );
}

function hostRankWithin(rank: number, hosts: number, name: string): number {
  if (rank >= hosts) throw new ConfigError(`${name} ${rank} is not below the job's ${hosts} hosts`);
  return rank;
}

function torchrunLaunch(env: SchedulerEnv): SchedulerLaunch | null {
  requireAll(env, 'torchrun', ['MASTER_ADDR', 'MASTER_PORT', 'WORLD_SIZE', ['NODE_RANK', 'RANK']]);
  const hosts = wholeNumber(env, 'WORLD_SIZE', 1);
  const rankName = isSet(env.NODE_RANK) ? 'NODE_RANK' : 'RANK';
  const hostRank = hostRankWithin(wholeNumber(env, rankName, 0), hosts, rankName);
  if (hosts === 1) return null;
  return { scheduler: 'torchrun', masterHost: (env.MASTER_ADDR ?? '').trim(), masterPort: port(env), hosts, hostRank };
}

function slurmLaunch(env: SchedulerEnv): SchedulerLaunch | null {
  requireAll(env, 'Slurm', ['SLURM_JOB_NUM_NODES', 'SLURM_NODEID', 'SLURM_JOB_NODELIST']);
  const hosts = wholeNumber(env, 'SLURM_JOB_NUM_NODES', 1);
  const hostRank = hostRankWithin(wholeNumber(env, 'SLURM_NODEID', 0), hosts, 'SLURM_NODEID');
  if (isSet(env.SLURM_PROCID) && wholeNumber(env, 'SLURM_PROCID', 0) !== hostRank) {
    throw new ConfigError(
      `SLURM_PROCID ${env.SLURM_PROCID} differs from SLURM_NODEID ${hostRank}: run one alexnet task per node (srun --ntasks-per-node=1); it starts a worker per device itself`,
    );
  }
  const nodes = expandSlurmNodelist((env.SLURM_JOB_NODELIST ?? '').trim());
  if (nodes.length !== hosts)
    throw new ConfigError(
      `SLURM_JOB_NODELIST '${env.SLURM_JOB_NODELIST}' names ${nodes.length} hosts, SLURM_JOB_NUM_NODES says ${hosts}`,
    );
  if (hosts === 1) return null;
  return {
    scheduler: 'slurm',
    masterHost: nodes[0],
    masterPort: isSet(env.MASTER_PORT) ? port(env) : DEFAULT_RENDEZVOUS_PORT,
    hosts,
    hostRank,
  };
}

/**
 * This host's place in a scheduler's job, or null outside one (and in a one-host job).
 * torchrun's variables win over Slurm's (`srun torchrun ...` sets both). Throws a ConfigError
 * naming what is missing or wrong.
 */
export function schedulerLaunch(env: SchedulerEnv): SchedulerLaunch | null {
  if (TORCHRUN_VARIABLES.some((n) => n !== 'MASTER_PORT' && isSet(env[n]))) return torchrunLaunch(env);
  if (SLURM_VARIABLES.some((n) => isSet(env[n]))) return slurmLaunch(env);
  return null;
}

/** Top-level commas only: "a[1-2,4],b" -> ["a[1-2,4]", "b"]. */
function splitTopLevel(list: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < list.length; i++) {
    if (list[i] === '[') depth++;
    else if (list[i] === ']') depth--;
    else if (list[i] === ',' && depth === 0) {
      parts.push(list.slice(start, i));
      start = i + 1;
    }
    if (depth < 0 || depth > 1) throw new ConfigError(`SLURM_JOB_NODELIST '${list}' has unbalanced brackets`);
  }
  if (depth !== 0) throw new ConfigError(`SLURM_JOB_NODELIST '${list}' has unbalanced brackets`);
  parts.push(list.slice(start));
  return parts;
}

/** "01-03,7" -> ["01", "02", "03", "7"]: zero padding kept, as Slurm writes host names. */
function expandRanges(ranges: string, list: string): string[] {
  return ranges.split(',').flatMap((range) => {
    const m = /^(\d+)(?:-(\d+))?$/.exec(range);
    if (m === null) throw new ConfigError(`SLURM_JOB_NODELIST '${list}': '${range}' is not a number or a range`);
    const [from, to] = [Number(m[1]), Number(m[2] ?? m[1])];
    if (to < from) throw new ConfigError(`SLURM_JOB_NODELIST '${list}': range '${range}' runs backwards`);
    return Array.from({ length: to - from + 1 }, (_, i) => String(from + i).padStart(m[1].length, '0'));
  });
}

/** One host-list entry, each bracket group expanded in turn: "r[1-2]n[01-02]" -> 4 hosts. */
function expandEntry(entry: string, list: string): string[] {
  const m = /^([^[]*)\[([^\]]*)\](.*)$/.exec(entry);
  if (m === null) return [entry];
  return expandRanges(m[2], list).flatMap((mid) => expandEntry(`${m[1]}${mid}${m[3]}`, list));
}

/** Slurm's compressed host list, e.g. "gpu-[01-03,07],login1", in order. */
export function expandSlurmNodelist(list: string): string[] {
  if (list === '') throw new ConfigError('SLURM_JOB_NODELIST is empty');
  return splitTopLevel(list).flatMap((entry) => {
    if (entry === '') throw new ConfigError(`SLURM_JOB_NODELIST '${list}' has an empty entry`);
    return expandEntry(entry, list);
  });
}

const lookupAddress = async (host: string): Promise<string> =>
  (await lookup(host, { family: 0, order: 'ipv4first' })).address;

/**
 * The scheduler's name for the coordinator's host as an IP address (ZeroMQ binds addresses,
 * and every host's ring must dial the same one): IPv4 first, as cluster DNS usually answers.
 * Retried for `retryMs`: in Kubernetes the first pod's DNS name appears only once it runs. A
 * loopback answer is refused: the other hosts could not reach it (Debian's /etc/hosts maps
 * the host's own name to 127.0.1.1).
 */
export async function resolveMasterHost(
  launch: SchedulerLaunch,
  retryMs = 120_000,
  resolve: (host: string) => Promise<string> = lookupAddress,
): Promise<string> {
  const name = launch.scheduler === 'torchrun' ? 'MASTER_ADDR' : 'the first host of SLURM_JOB_NODELIST';
  const started = Date.now();
  for (;;) {
    try {
      const address = await resolve(launch.masterHost);
      if (isLoopbackHost(address) && !isLoopbackHost(launch.masterHost)) {
        throw new ConfigError(
          `${name} '${launch.masterHost}' resolves to ${address} here, which the other hosts cannot reach: fix the host's name resolution, or pass --rendezvous tcp://<its IP>:<port> and its flags`,
        );
      }
      return address;
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      if (Date.now() - started >= retryMs)
        throw new ConfigError(
          `cannot resolve ${name} '${launch.masterHost}' (tried for ${Math.round(retryMs / 1000)} s): ${err instanceof Error ? err.message : String(err)}`,
        );
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

/**
 * Host 0's `train` options: the rendezvous at the coordinator's address, and (unless
 * --world-size is given) every host running as many workers as this one.
 */
export function coordinatorArgs(
  launch: SchedulerLaunch,
  masterIp: string,
  args: CliArgs,
  localWorkers: number,
): CliArgs {
  return {
    ...args,
    rendezvous: tcpAddress(masterIp, launch.masterPort),
    'world-size': args['world-size'] ?? launch.hosts * localWorkers,
  };
}

/** Another host's `join` options, from its `train` command line: the same key, devices and ring options. */
export function joinArgs(launch: SchedulerLaunch, masterIp: string, args: CliArgs): CliArgs {
  const kept = ['key-file', 'devices', 'strict-devices', 'ring-host', 'ring-port', 'join-timeout', 'log-level'];
  return {
    ...Object.fromEntries(kept.filter((k) => args[k] !== undefined).map((k) => [k, args[k]])),
    rendezvous: tcpAddress(masterIp, launch.masterPort),
  };
}

/** "Slurm job: host 2 of 4, coordinator gpu-01 (10.0.0.1:29500)". */
export function describeLaunch(launch: SchedulerLaunch, masterIp: string): string {
  const role = launch.hostRank === 0 ? 'runs the coordinator' : 'joins the coordinator';
  return `${launch.scheduler === 'slurm' ? 'Slurm' : 'torchrun-style'} job: host ${launch.hostRank} of ${launch.hosts} ${role} at ${launch.masterHost} (${tcpAddress(masterIp, launch.masterPort)})`;
}
