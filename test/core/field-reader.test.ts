// The option-table machinery on a table of its own: what a command's config, defaults,
// validator and yargs options are derived from (src/config.ts's TRAIN_OPTIONS and EVAL_OPTIONS).
import t from 'tap';
import {
  cliOption,
  defaultsOf,
  FieldReader,
  flagsOf,
  is,
  optionTable,
  readerOfArgs,
  readFields,
} from '../../src/core/field-reader';

let runs = 0;
const TABLE = optionTable({
  steps: { flag: 'steps', type: 'number', default: 3, check: is.count, describe: 'steps to take' },
  'net.kind': {
    flag: 'kind',
    type: ['a', 'b'] as const,
    default: 'a',
    check: is.oneOf(['a', 'b'] as const),
    describe: 'which net',
  },
  'net.wide': { flag: 'wide', type: 'boolean', default: false, check: is.bool, describe: 'a wide net' },
  out: { flag: 'out', type: 'string', default: () => `run-${++runs}`, check: is.string, describe: 'where to write' },
  resume: { flag: 'resume', type: 'string', default: null, check: is.optionalString, describe: 'what to continue' },
});

t.test('defaults and flags come from the entries, nested by dotted path', async (t) => {
  t.same(
    defaultsOf(TABLE),
    { steps: 3, net: { kind: 'a', wide: false }, resume: null },
    'a computed default is left out',
  );
  t.same(flagsOf(TABLE), { steps: 'steps', 'net.kind': 'kind', 'net.wide': 'wide', out: 'out', resume: 'resume' });
});

t.test('readFields checks every field by its entry and nests the result', async (t) => {
  const r = readerOfArgs(flagsOf(TABLE), { ...defaultsOf(TABLE), out: 'x' }, { kind: 'b' });
  t.same(readFields(TABLE, r), { steps: 3, net: { kind: 'b', wide: false }, out: 'x', resume: null });
  const bad = new FieldReader({ steps: 0, net: { kind: 'a', wide: false }, out: 'x' }, (key) => `field ${key}`);
  t.throws(() => readFields(TABLE, bad), {
    name: 'ConfigError',
    message: 'field steps must be a whole number >= 1, got 0',
  });
});

t.test(
  'an entry as a yargs option: choices for a closed list, no default for null, a computed one computed',
  async (t) => {
    t.same(cliOption(TABLE.steps), { type: 'number', default: 3, describe: 'steps to take' });
    t.same(cliOption(TABLE['net.kind']), { choices: ['a', 'b'], default: 'a', describe: 'which net' });
    t.same(cliOption(TABLE.resume), { type: 'string', describe: 'what to continue' });
    t.notOk('default' in cliOption(TABLE.resume), 'no default key: yargs shows none');
    t.not(cliOption(TABLE.out).default, cliOption(TABLE.out).default, 'computed each time');
  },
);
