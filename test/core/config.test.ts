// TrainConfig: one set of defaults for the CLI and for code, and one validator that every
// receiver of a config runs (CLI, worker, joined host, checkpoint).
import t from 'tap';
import yargs from 'yargs';
import { trainOptions } from '../../src/cli';
import {
  EVAL_DEFAULTS,
  EVAL_FLAGS,
  EVAL_OPTIONS,
  LAYER_NAMES,
  TRAIN_DEFAULTS,
  TRAIN_FLAGS,
  TRAIN_OPTIONS,
  buildEvalConfig,
  buildTrainConfig,
  frozenLayers,
  lrMultipliers,
  trainConfig,
  validateTrainConfig,
  type CliArgs,
} from '../../src/core/config';
import { datasetOptions } from '../../src/data/cli-options';
import { PRESETS } from '../../src/model/presets';
import { defaultNow, FieldReader, type OptionTable } from '../../src/core/field-reader';
import { SRC } from '../helpers/repo';

const DATA = SRC; // any existing folder will do for --data

const parse = (argv: string[]) => buildTrainConfig(trainOptions(yargs(argv)).parseSync() as CliArgs);

t.test("the command line's defaults are TRAIN_DEFAULTS", async (t) => {
  const fromCli = parse(['--data', DATA, '--run-dir', '/tmp/r']);
  const fromCode = trainConfig({ data: DATA, runDir: '/tmp/r' });
  t.same(fromCli, fromCode, 'a config from the CLI with no options equals one built from the defaults');
  t.equal(fromCli.batchSize, TRAIN_DEFAULTS.batchSize);
  t.ok(Object.isFrozen(fromCli) && Object.isFrozen(fromCli.model), 'frozen, nested objects too');
});

t.test('every config field has a flag, and every flag a field', async (t) => {
  const leaves = (o: object, prefix = ''): string[] =>
    Object.entries(o).flatMap(([k, v]) =>
      v !== null && typeof v === 'object' ? leaves(v as object, `${prefix}${k}.`) : [`${prefix}${k}`],
    );
  // classNames is the one field two flags set (--classes, --classes-file: a list or a file).
  const fields = leaves(trainConfig({ data: DATA, runDir: '/tmp/r' }))
    .filter((f) => f !== 'classNames')
    .sort();
  t.same(Object.keys(TRAIN_FLAGS).sort(), fields);
});

t.test('a bad value names the flag on the command line and the field when received', async (t) => {
  t.throws(() => parse(['--data', DATA, '--batch-size', '0']), {
    name: 'ConfigError',
    message: '--batch-size must be a whole number >= 1, got 0',
  });
  t.throws(() => parse(['--data', DATA, '--dropout', '1']), { message: '--dropout must be in [0, 1), got 1' });
  t.throws(() => parse(['--data', DATA, '--tta', '5']), { message: /--tta must be 1 .* or 10/ });
  t.throws(() => parse(['--data', DATA, '--micro-batch', '1.5']), {
    message: '--micro-batch must be a whole number >= 0, got 1.5',
  });
  t.equal(parse(['--data', DATA]).microBatch, 0, '--micro-batch defaults to 0: chosen from the memory estimate');
  const good = trainConfig({ data: DATA, runDir: '/tmp/r' });
  const source = 'rank 1: the config from the coordinator';
  t.throws(() => validateTrainConfig({ ...good, batchSize: 'lots' }, source), {
    message: `${source}: config field batchSize must be a number, got 'lots'`,
  });
  t.throws(() => validateTrainConfig({ ...good, model: { ...good.model, activation: 'gelu' } }, source), {
    message: /config field model.activation must be one of relu, tanh; got 'gelu'/,
  });
  t.throws(() => validateTrainConfig({ ...good, augment: undefined }, source), {
    message: /config field augment.crop must be true or false/,
  });
  t.throws(() => validateTrainConfig(null, source), { message: /not an object/ });
  t.same(
    validateTrainConfig(JSON.parse(JSON.stringify(good)), source),
    good,
    'a config survives the trip through a message',
  );
});

t.test('eval has a typed config with its own defaults', async (t) => {
  const c = buildEvalConfig({ checkpoint: 'runs/x', 'batch-size': 64 });
  t.same(c, {
    checkpoint: 'runs/x',
    data: null,
    split: 'test',
    tta: 1,
    batchSize: 64,
    out: null,
    force: false,
    backend: 'auto',
    allowSoftwareGpu: false,
    dataLayout: 'auto',
    classNames: null,
  });
  t.same(buildEvalConfig({ checkpoint: 'x', classes: 'a,b' }).classNames, { names: ['a', 'b'], source: '--classes' });
  t.throws(() => buildEvalConfig({ checkpoint: 'runs/x', tta: 3 }), { message: /--tta must be 1/ });
  t.throws(() => buildEvalConfig({ checkpoint: 'runs/x', split: 'holdout' }), {
    message: /--split must be one of train, val, test/,
  });
});

// The one table per command (TRAIN_OPTIONS, EVAL_OPTIONS): each entry complete, and everything
// derived from it (the yargs options, the defaults, the validator, --help) covering exactly its fields.
const leaves = (o: object, prefix = ''): string[] =>
  Object.entries(o).flatMap(([k, v]) =>
    v !== null && typeof v === 'object' ? leaves(v as object, `${prefix}${k}.`) : [`${prefix}${k}`],
  );

t.test(
  'every option has its flag, type, default, description and check, and its default passes its check',
  async (t) => {
    for (const [command, table] of [
      ['train', TRAIN_OPTIONS],
      ['eval', EVAL_OPTIONS],
    ] as const) {
      for (const [field, spec] of Object.entries(table as OptionTable)) {
        const where = `${command} ${field}`;
        t.match(spec.flag, /^[a-z][a-z0-9-]*$/, `${where}: a flag`);
        t.ok(
          typeof spec.type === 'string' ? ['boolean', 'number', 'string'].includes(spec.type) : spec.type.length > 0,
          `${where}: a type`,
        );
        t.ok(Object.hasOwn(spec, 'default'), `${where}: a default (null: none)`);
        t.ok(typeof spec.describe === 'string' && spec.describe.trim() !== '', `${where}: a description`);
        t.type(spec.check, 'function', `${where}: a check`);
        const read = (value: unknown) => spec.check(new FieldReader({ value }, () => `--${spec.flag}`), 'value');
        const value = defaultNow(spec);
        t.same(read(value), value, `${where}: the default passes the check`);
        if (typeof spec.type !== 'string') {
          for (const choice of spec.type)
            t.equal(read(choice), choice, `${where}: the check takes the choice ${choice}`);
          t.throws(
            () => read('no-such-choice'),
            { name: 'ConfigError' },
            `${where}: the check refuses what is not a choice`,
          );
        }
      }
    }
    t.equal(
      new Set(Object.values(TRAIN_FLAGS)).size,
      Object.keys(TRAIN_OPTIONS).length,
      'no two train fields share a flag',
    );
  },
);

t.test('the yargs options, defaults, validator and --help of train cover exactly the table', async (t) => {
  const fields = Object.keys(TRAIN_OPTIONS).sort();
  // yargs' getOptions() is public API its typings leave out.
  const parser = datasetOptions(trainOptions(yargs([]))) as unknown as {
    getOptions(): { key: Record<string, unknown> };
  };
  const declared = Object.keys(parser.getOptions().key).filter(
    (k) => !['help', 'version', 'classes', 'classes-file'].includes(k),
  );
  t.same(declared.sort(), Object.values(TRAIN_FLAGS).sort(), 'one yargs option per entry');
  t.same(
    leaves(TRAIN_DEFAULTS).sort(),
    [...fields.filter((f) => f !== 'runDir'), 'classNames'].sort(),
    'a default per entry (--run-dir: computed per run)',
  );
  const good = trainConfig({ data: DATA, runDir: '/tmp/r' });
  t.same(leaves(good).sort(), [...fields, 'classNames'].sort(), 'the validator returns every field');
  const source = 'a message';
  for (const field of fields) {
    const bad = JSON.parse(JSON.stringify(good)) as Record<string, unknown>;
    const [head, leaf] = field.split('.');
    if (leaf === undefined) bad[head] = {};
    else (bad[head] as Record<string, unknown>)[leaf] = {};
    t.throws(
      () => validateTrainConfig(bad, source),
      { name: 'ConfigError', message: `${source}: config field ${field} must be` },
      `the validator checks ${field}`,
    );
  }
  const help = (
    await datasetOptions(trainOptions(yargs([])))
      .wrap(null)
      .getHelp()
  ).replace(/\s+/g, ' ');
  for (const spec of Object.values(TRAIN_OPTIONS as OptionTable))
    t.ok(help.includes(`--${spec.flag} ${spec.describe.replace(/\s+/g, ' ')}`), `--help describes --${spec.flag}`);
});

t.test('the defaults and validator of eval cover exactly its table', async (t) => {
  const fields = Object.keys(EVAL_OPTIONS).sort();
  t.same(leaves(EVAL_DEFAULTS).sort(), [...fields, 'classNames'].sort());
  t.same(Object.keys(buildEvalConfig({ checkpoint: 'x' })).sort(), [...fields, 'checkpoint', 'classNames'].sort());
  for (const field of fields) {
    const flag = EVAL_FLAGS[field as keyof typeof EVAL_FLAGS];
    t.throws(
      () => buildEvalConfig({ checkpoint: 'x', [flag]: {} }),
      { name: 'ConfigError', message: `--${flag} must be` },
      `the validator checks ${field}`,
    );
  }
});

t.test('--freeze takes a range and a list of the layers; --lr-mult layer=factor pairs', async (t) => {
  const c = parse(['--data', DATA, '--freeze', 'conv1-conv3,fc6', '--lr-mult', 'fc8=10,fc7=0.5']);
  t.equal(c.freeze, 'conv1,conv2,conv3,fc6', 'written out in the network order');
  t.same([...frozenLayers(c)], ['conv1', 'conv2', 'conv3', 'fc6']);
  t.equal(c.lrMult, 'fc7=0.5,fc8=10');
  t.same(lrMultipliers(c), { fc7: 0.5, fc8: 10 });
  const d = parse(['--data', DATA]);
  t.equal(d.freeze, null, 'nothing frozen by default');
  t.same([...frozenLayers(d)], []);
  t.same(lrMultipliers(d), {});
  t.equal(parse(['--data', DATA, '--freeze', 'conv1-conv5']).freeze, 'conv1,conv2,conv3,conv4,conv5');
  const bad: [string[], RegExp][] = [
    [
      ['--freeze', 'conv6'],
      /^--freeze: unknown layer 'conv6'; the layers are conv1, conv2, conv3, conv4, conv5, fc6, fc7, fc8$/,
    ],
    [['--freeze', 'conv5-conv1'], /runs backwards/],
    [['--freeze', 'conv1-fc8'], /freezes every layer/],
    [['--lr-mult', 'fc9=2'], /--lr-mult: unknown layer 'fc9'; the layers are conv1/],
    [['--lr-mult', 'fc8=0'], /--lr-mult: the factor of fc8 must be a positive finite number, got '0'/],
    [['--lr-mult', 'fc8=-1'], /positive finite/],
    [['--lr-mult', 'fc8=Infinity'], /positive finite/],
    [['--lr-mult', 'fc8'], /is not layer=factor/],
    [['--lr-mult', 'fc8=2,fc8=3'], /fc8 is given twice/],
  ];
  for (const [args, message] of bad)
    t.throws(() => parse(['--data', DATA, ...args]), { name: 'ConfigError', message }, args.join(' '));
  const good = trainConfig({ data: DATA, runDir: '/tmp/r' });
  t.throws(() => validateTrainConfig({ ...good, freeze: 'fc9' }, 'rank 1'), { message: /unknown layer 'fc9'/ });
});

t.test('every preset names its layers LAYER_NAMES, the names --freeze and --lr-mult accept', async (t) => {
  for (const [name, spec] of Object.entries(PRESETS))
    t.same([...spec.convs.map((c) => c.name), ...spec.hidden.map((h) => h.name), 'fc8'], LAYER_NAMES, name);
});
