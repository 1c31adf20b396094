/**
 * ShmGroup's checks that need no peer: names, the start-up reason line, option validation, and
 * a group of one (every collective is the ring's N = 1 result).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { shmUnavailableReason } from '../../../src/dist/shm/addon';
import { ShmGroup, newShmPrefix, segmentName, sweepSegments } from '../../../src/dist/shm/shm-group';
import { ConfigError } from '../../../src/core/errors';
import { tempDir } from '../../data/fixtures/images';

const unavailable = shmUnavailableReason();

t.test('names', async (t) => {
  const prefix = newShmPrefix();
  t.match(prefix, /^alexnet-[0-9a-f]{32}$/);
  t.not(newShmPrefix(), prefix, 'fresh each time');
  t.equal(segmentName(prefix, 'control'), `/${prefix}-c`);
  t.equal(segmentName(prefix, 3), `/${prefix}-a3`);
  t.throws(() => sweepSegments('../etc'), ConfigError, 'sweepSegments only takes our prefixes');
  const dir = tempDir(t, 'shm-sweep-');
  fs.writeFileSync(path.join(dir, `${prefix}-a0`), '');
  fs.writeFileSync(path.join(dir, `${newShmPrefix()}-a0`), '');
  t.same(sweepSegments(prefix, dir), [`${prefix}-a0`], "removes that run's segments only");
  t.equal(fs.readdirSync(dir).length, 1);
});

t.test('the start-up line says why the addon cannot be used', async (t) => {
  t.match(shmUnavailableReason('/nonexistent/alexnet_shm.node'), /not built \(make shm\)/);
  const bogus = path.join(tempDir(t, 'shm-addon-'), 'alexnet_shm.node');
  fs.writeFileSync(bogus, 'not an ELF file');
  t.match(shmUnavailableReason(bogus), /does not load: /);
});

t.test('bad options are ConfigErrors', { skip: unavailable ?? false }, async (t) => {
  const prefix = newShmPrefix();
  t.throws(() => ShmGroup.create({ rank: 2, worldSize: 2, prefix, timeoutMs: 100 }), ConfigError);
  t.throws(() => ShmGroup.create({ rank: 0, worldSize: 2, prefix: 'alexnet-guessable', timeoutMs: 100 }), ConfigError);
  t.throws(() => ShmGroup.create({ rank: 0, worldSize: 1, prefix, timeoutMs: 0 }), ConfigError);
});

t.test(
  'a group of one: the collectives leave values as the ring does for N = 1',
  { skip: unavailable ?? false },
  async (t) => {
    const prefix = newShmPrefix();
    const group = ShmGroup.create({ rank: 0, worldSize: 1, prefix, timeoutMs: 1000 });
    t.same(
      fs.readdirSync('/dev/shm').filter((f) => f.startsWith(prefix)),
      [],
      'unlinked at once',
    );
    const values = group.allocate(5);
    values.set([1.0001, 2, 3, 4, 5]);
    group.allReduce(values, { wireDtype: 'fp16' });
    t.equal(values[0], Math.fround(1.0001), 'N = 1: no rounding, as the ring');
    t.same(
      Array.from(group.allGather(Float32Array.of(1.0001), [1], { wireDtype: 'bf16' })),
      [1],
      'the gather rounds its own copy, as the ring',
    );
    t.same(Array.from(group.reduceScatter(Float32Array.of(7, 8), [2])), [7, 8]);
    t.throws(() => group.broadcast(values, 1), ConfigError);
    group.close();
    t.throws(() => group.allReduce(values), /after close/);
  },
);
