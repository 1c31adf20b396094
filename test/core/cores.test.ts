import * as os from 'node:os';
import t from 'tap';
import { CORES_ENV, coreShareEnvironment, coresOfThisProcess } from '../../src/core/cores';

t.test("a launcher's share of the cores, and what a process reads back", (t) => {
  const cores = os.availableParallelism();
  t.same(coreShareEnvironment(1), { [CORES_ENV]: String(cores) });
  t.same(coreShareEnvironment(cores * 3), { [CORES_ENV]: '1' }, 'never below 1');
  t.equal(coresOfThisProcess(coreShareEnvironment(2)), Math.max(1, Math.floor(cores / 2)));
  t.equal(coresOfThisProcess({}), cores, 'no share given: every core');
  for (const bad of ['0', '-2', '1.5', 'two', ''])
    t.equal(coresOfThisProcess({ [CORES_ENV]: bad }), cores, `'${bad}' is ignored`);
  t.end();
});
