// TrainConfig: one set of defaults for the CLI and for code, and one validator that every
// receiver of a config runs (CLI, worker, joined host, checkpoint).
import * as path from 'node:path';
import t from 'tap';
import yargs from 'yargs';
import { trainOptions } from '../../src/cli';
import { TRAIN_DEFAULTS, TRAIN_FLAGS, buildEvalConfig, buildTrainConfig, trainConfig, validateTrainConfig, type CliArgs } from '../../src/core/config';

const DATA = path.resolve(__dirname, '..', '..', 'test'); // any existing folder will do for --data

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
    Object.entries(o).flatMap(([k, v]) => (v !== null && typeof v === 'object' ? leaves(v as object, `${prefix}${k}.`) : [`${prefix}${k}`]));
  // classNames is the one field two flags set (--classes, --classes-file: a list or a file).
  const fields = leaves(trainConfig({ data: DATA, runDir: '/tmp/r' })).filter((f) => f !== 'classNames').sort();
  t.same(Object.keys(TRAIN_FLAGS).sort(), fields);
});

t.test('a bad value names the flag on the command line and the field when received', async (t) => {
  t.throws(() => parse(['--data', DATA, '--batch-size', '0']), { name: 'ConfigError', message: '--batch-size must be a whole number >= 1, got 0' });
  t.throws(() => parse(['--data', DATA, '--dropout', '1']), { message: '--dropout must be in [0, 1), got 1' });
  t.throws(() => parse(['--data', DATA, '--tta', '5']), { message: /--tta must be 1 .* or 10/ });
  t.throws(() => parse(['--data', DATA, '--micro-batch', '1.5']), { message: '--micro-batch must be a whole number >= 0, got 1.5' });
  t.equal(parse(['--data', DATA]).microBatch, 0, '--micro-batch defaults to 0: chosen from the memory estimate');
  const good = trainConfig({ data: DATA, runDir: '/tmp/r' });
  const source = 'rank 1: the config from the coordinator';
  t.throws(() => validateTrainConfig({ ...good, batchSize: 'lots' }, source), { message: `${source}: config field batchSize must be a number, got 'lots'` });
  t.throws(() => validateTrainConfig({ ...good, model: { ...good.model, activation: 'gelu' } }, source), { message: /config field model.activation must be one of relu, tanh; got 'gelu'/ });
  t.throws(() => validateTrainConfig({ ...good, augment: undefined }, source), { message: /config field augment.crop must be true or false/ });
  t.throws(() => validateTrainConfig(null, source), { message: /not an object/ });
  t.same(validateTrainConfig(JSON.parse(JSON.stringify(good)), source), good, 'a config survives the trip through a message');
});

t.test('eval has a typed config with its own defaults', async (t) => {
  const c = buildEvalConfig({ checkpoint: 'runs/x', 'batch-size': 64 });
  t.same(c, { checkpoint: 'runs/x', data: null, split: 'test', tta: 1, batchSize: 64, out: null, force: false, backend: 'auto', allowSoftwareGpu: false, dataLayout: 'auto', classNames: null });
  t.same(buildEvalConfig({ checkpoint: 'x', classes: 'a,b' }).classNames, { names: ['a', 'b'], source: '--classes' });
  t.throws(() => buildEvalConfig({ checkpoint: 'runs/x', tta: 3 }), { message: /--tta must be 1/ });
  t.throws(() => buildEvalConfig({ checkpoint: 'runs/x', split: 'holdout' }), { message: /--split must be one of train, val, test/ });
});
