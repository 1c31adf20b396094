/**
 * The options of every command that opens a dataset (train, eval, data check/stats/index/
 * prepare): which layout, and the names of numeric labels. One definition, so the commands
 * cannot drift apart.
 */
import type { Argv } from 'yargs';
import { classNamesFromArgs } from '../core/class-names';
import type { OpenOptions } from './index/dataset';
import { LAYOUTS, TRAIN_DEFAULTS, TRAIN_OPTIONS, type Layout } from '../core/config';
import { cliOption, FieldReader } from '../core/field-reader';

export function datasetOptions<T>(y: Argv<T>): Argv<T> {
  return classOptions(y).option(TRAIN_OPTIONS.dataLayout.flag, cliOption(TRAIN_OPTIONS.dataLayout));
}

/** --classes and --classes-file alone (data index reads folders only: no --layout). */
export function classOptions<T>(y: Argv<T>): Argv<T> {
  return y
    .option('classes', {
      type: 'string',
      describe:
        'names of labels 0,1,2,... comma-separated, e.g. rooster,tiger,dragon (default: root/classes.txt, else the label numbers); your label numbers are kept',
    })
    .option('classes-file', {
      type: 'string',
      describe: 'a file with one class name per line (line i names label i), instead of --classes',
    });
}

export function layoutFromArgs(args: Record<string, unknown>): Layout {
  return new FieldReader({ layout: args['layout'] ?? TRAIN_DEFAULTS.dataLayout }, (key) => `--${key}`).oneOf(
    'layout',
    LAYOUTS,
  );
}

/** openDataset's options from parsed arguments. */
export function openOptionsFromArgs(args: Record<string, unknown>): OpenOptions {
  return { layout: layoutFromArgs(args), classNames: classNamesFromArgs(args) };
}
