// Reading a scheduler's environment (pure): torchrun / Kubeflow PyTorchJob and Slurm variables
// as those tools set them, Slurm host lists, and the clear errors of a half-set environment.
import t from 'tap';
import {
  coordinatorArgs,
  expandSlurmNodelist,
  joinArgs,
  resolveMasterHost,
  schedulerLaunch,
  type SchedulerLaunch,
} from '../../../src/dist/launch/scheduler-env';

t.test('torchrun / PyTorchJob: MASTER_ADDR, MASTER_PORT, WORLD_SIZE hosts, NODE_RANK else RANK', async (t) => {
  // PyTorchJob sets RANK per pod; torchrun --nproc-per-node 1 sets RANK and (from --node-rank) NODE_RANK.
  t.same(schedulerLaunch({ MASTER_ADDR: 'trainer-master-0', MASTER_PORT: '23456', WORLD_SIZE: '4', RANK: '2' }), {
    scheduler: 'torchrun',
    masterHost: 'trainer-master-0',
    masterPort: 23456,
    hosts: 4,
    hostRank: 2,
  });
  t.same(
    schedulerLaunch({ MASTER_ADDR: '10.0.0.1', MASTER_PORT: '29500', WORLD_SIZE: '2', RANK: '1', NODE_RANK: '0' })
      ?.hostRank,
    0,
    'NODE_RANK wins over RANK',
  );
  t.equal(
    schedulerLaunch({ MASTER_ADDR: '10.0.0.1', MASTER_PORT: '29500', WORLD_SIZE: '1', RANK: '0' }),
    null,
    'a one-host job runs on this host',
  );
  t.equal(schedulerLaunch({}), null, 'no scheduler');
  t.equal(schedulerLaunch({ MASTER_PORT: '29500' }), null, 'a stray MASTER_PORT alone is no launch');
});

t.test('a half-set or wrong torchrun environment is a clear error naming what is missing', async (t) => {
  t.throws(() => schedulerLaunch({ MASTER_ADDR: '10.0.0.1' }), {
    name: 'ConfigError',
    message:
      'a half-set torchrun environment: MASTER_ADDR is set but MASTER_PORT, WORLD_SIZE, NODE_RANK or RANK are not (set them all, or pass --rendezvous and its flags)',
  });
  t.throws(
    () => schedulerLaunch({ MASTER_ADDR: '10.0.0.1', MASTER_PORT: '1', WORLD_SIZE: '2' }),
    /MASTER_ADDR, MASTER_PORT, WORLD_SIZE are set but NODE_RANK or RANK is not/,
  );
  t.throws(
    () => schedulerLaunch({ WORLD_SIZE: '2', RANK: '0' }),
    /WORLD_SIZE, RANK are set but MASTER_ADDR, MASTER_PORT are not/,
  );
  t.throws(
    () => schedulerLaunch({ MASTER_ADDR: 'h', MASTER_PORT: '70000', WORLD_SIZE: '2', RANK: '0' }),
    /MASTER_PORT must be a port 1-65535, got 70000/,
  );
  t.throws(
    () => schedulerLaunch({ MASTER_ADDR: 'h', MASTER_PORT: '1', WORLD_SIZE: 'two', RANK: '0' }),
    /WORLD_SIZE must be a whole number >= 1, got 'two'/,
  );
  t.throws(
    () => schedulerLaunch({ MASTER_ADDR: 'h', MASTER_PORT: '1', WORLD_SIZE: '2', RANK: '2' }),
    /RANK 2 is not below the job's 2 hosts/,
  );
});

t.test('Slurm: the first host of SLURM_JOB_NODELIST runs the coordinator', async (t) => {
  const env = {
    SLURM_JOB_NUM_NODES: '3',
    SLURM_NODEID: '1',
    SLURM_PROCID: '1',
    SLURM_JOB_NODELIST: 'gpu-[07-08],login1',
  };
  t.same(schedulerLaunch(env), { scheduler: 'slurm', masterHost: 'gpu-07', masterPort: 29500, hosts: 3, hostRank: 1 });
  t.equal(schedulerLaunch({ ...env, MASTER_PORT: '31000' })?.masterPort, 31000, 'MASTER_PORT sets the port');
  t.same(schedulerLaunch({ ...env, SLURM_PROCID: undefined })?.hostRank, 1, 'SLURM_PROCID is only set inside srun');
  t.equal(
    schedulerLaunch({ SLURM_JOB_NUM_NODES: '1', SLURM_NODEID: '0', SLURM_JOB_NODELIST: 'node1' }),
    null,
    'a one-node allocation runs on this host',
  );
  t.equal(
    schedulerLaunch({ ...env, MASTER_ADDR: '10.1.1.1', WORLD_SIZE: '3', RANK: '1', MASTER_PORT: '1234' })?.scheduler,
    'torchrun',
    'srun torchrun: torchrun wins',
  );
});

t.test('a half-set or inconsistent Slurm environment is a clear error', async (t) => {
  t.throws(() => schedulerLaunch({ SLURM_NODEID: '0' }), {
    message:
      'a half-set Slurm environment: SLURM_NODEID is set but SLURM_JOB_NUM_NODES, SLURM_JOB_NODELIST are not (set them all, or pass --rendezvous and its flags)',
  });
  t.throws(
    () =>
      schedulerLaunch({ SLURM_JOB_NUM_NODES: '2', SLURM_NODEID: '0', SLURM_JOB_NODELIST: 'a,b', SLURM_PROCID: '3' }),
    /SLURM_PROCID 3 differs from SLURM_NODEID 0: run one alexnet task per node/,
  );
  t.throws(
    () => schedulerLaunch({ SLURM_JOB_NUM_NODES: '3', SLURM_NODEID: '0', SLURM_JOB_NODELIST: 'a,b' }),
    /names 2 hosts, SLURM_JOB_NUM_NODES says 3/,
  );
});

t.test('Slurm host lists expand as scontrol show hostnames does', async (t) => {
  t.same(expandSlurmNodelist('node1'), ['node1']);
  t.same(expandSlurmNodelist('gpu-[01-03,07],login1'), ['gpu-01', 'gpu-02', 'gpu-03', 'gpu-07', 'login1']);
  t.same(expandSlurmNodelist('rack[1-2]-n[8-10]'), [
    'rack1-n8',
    'rack1-n9',
    'rack1-n10',
    'rack2-n8',
    'rack2-n9',
    'rack2-n10',
  ]);
  t.same(expandSlurmNodelist('c[098-101].cluster'), ['c098.cluster', 'c099.cluster', 'c100.cluster', 'c101.cluster']);
  t.throws(() => expandSlurmNodelist('a[1-2'), /unbalanced brackets/);
  t.throws(() => expandSlurmNodelist('a[3-1]'), /runs backwards/);
  t.throws(() => expandSlurmNodelist('a[x]'), /'x' is not a number or a range/);
  t.throws(() => expandSlurmNodelist('a,,b'), /empty entry/);
});

t.test('host 0 runs train --rendezvous, the others join with their own devices and the same key', async (t) => {
  const launch: SchedulerLaunch = {
    scheduler: 'slurm',
    masterHost: 'gpu-01',
    masterPort: 29500,
    hosts: 3,
    hostRank: 0,
  };
  const args = { data: 'd', devices: '2', 'key-file': 'k', 'log-level': 'info', epochs: 5 };
  t.same(
    coordinatorArgs(launch, '10.0.0.1', args, 2),
    { ...args, rendezvous: 'tcp://10.0.0.1:29500', 'world-size': 6 },
    'every host runs as many workers as this one',
  );
  t.equal(coordinatorArgs(launch, '10.0.0.1', { ...args, 'world-size': 5 }, 2)['world-size'], 5, '--world-size wins');
  t.same(joinArgs({ ...launch, hostRank: 2 }, 'fe80::1', args), {
    devices: '2',
    'key-file': 'k',
    'log-level': 'info',
    rendezvous: 'tcp://[fe80::1]:29500',
  });
});

t.test('the coordinator host name resolves to an address the other hosts can reach', async (t) => {
  const launch: SchedulerLaunch = {
    scheduler: 'torchrun',
    masterHost: '10.1.2.3',
    masterPort: 29500,
    hosts: 2,
    hostRank: 1,
  };
  t.equal(await resolveMasterHost(launch), '10.1.2.3');
  t.equal(
    await resolveMasterHost({ ...launch, masterHost: '127.0.0.1' }),
    '127.0.0.1',
    'a loopback address given as such is meant',
  );
  await t.rejects(
    resolveMasterHost({ ...launch, masterHost: 'gpu-01' }, 0, async () => '127.0.1.1'),
    /MASTER_ADDR 'gpu-01' resolves to 127\.0\.1\.1 here, which the other hosts cannot reach/,
    "Debian's 127.0.1.1 for a host's own name",
  );
  await t.rejects(
    resolveMasterHost({ ...launch, scheduler: 'slurm', masterHost: 'no-such-host.invalid' }, 0),
    /cannot resolve the first host of SLURM_JOB_NODELIST 'no-such-host.invalid' \(tried for 0 s\)/,
  );
});
