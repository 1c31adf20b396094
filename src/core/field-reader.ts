/**
 * Reading an untrusted object field by field into a typed config: parsed command-line options,
 * a config received from another process, a checkpoint's header. Each bad field is a one-line
 * ConfigError that names the field the way its source does ('--batch-size' on the command
 * line, 'config field batchSize' in a message). And the option tables that declare each field once
 * (flag, type, default, help text, check), with what derives from one: the config type, the
 * defaults, the per-field validator and the yargs options.
 */
import { ConfigError } from './errors';

export type CliArgs = Record<string, unknown>;

/** obj.a.b for 'a.b' (undefined where a level is missing): configs nest, flags do not. */
export function getPath(obj: unknown, dotted: string): unknown {
  return dotted
    .split('.')
    .reduce<unknown>(
      (o, k) => (o !== null && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined),
      obj,
    );
}

function setPath(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
  o[keys[keys.length - 1]] = value;
}

/**
 * Reads fields of an untrusted object (parsed options, a message from another process, a
 * checkpoint's header) and throws a ConfigError naming the field as its source calls it.
 */
export class FieldReader {
  constructor(
    readonly source: Record<string, unknown>,
    /** How a message names a field: '--batch-size' for the CLI, 'batchSize' for a message. */
    readonly name: (key: string) => string,
  ) {}

  raw(key: string): unknown {
    return getPath(this.source, key);
  }

  number(key: string): number {
    const v = this.raw(key);
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
    if (!Number.isFinite(n)) throw new ConfigError(`${this.name(key)} must be a number, got '${String(v)}'`);
    return n;
  }

  /** A whole number >= 1 (>= 0 with allowZero). */
  count(key: string, allowZero = false): number {
    const n = this.number(key);
    if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) {
      throw new ConfigError(`${this.name(key)} must be a whole number ${allowZero ? '>= 0' : '>= 1'}, got ${n}`);
    }
    return n;
  }

  /** > 0 (>= 0 with allowZero). */
  positive(key: string, allowZero = false): number {
    const n = this.number(key);
    if (n < 0 || (!allowZero && n === 0))
      throw new ConfigError(`${this.name(key)} must be ${allowZero ? '>= 0' : '> 0'}, got ${n}`);
    return n;
  }

  oneOf<T extends string>(key: string, choices: readonly T[]): T {
    const v = String(this.raw(key));
    if (!(choices as readonly string[]).includes(v))
      throw new ConfigError(`${this.name(key)} must be one of ${choices.join(', ')}; got '${v}'`);
    return v as T;
  }

  bool(key: string): boolean {
    const v = this.raw(key);
    if (typeof v !== 'boolean') throw new ConfigError(`${this.name(key)} must be true or false, got '${String(v)}'`);
    return v;
  }

  string(key: string): string {
    const v = this.raw(key);
    if (typeof v !== 'string' || v === '')
      throw new ConfigError(`${this.name(key)} must be a non-empty string, got '${String(v)}'`);
    return v;
  }

  optionalString(key: string): string | null {
    const v = this.raw(key);
    return v == null ? null : this.string(key);
  }
}

/**
 * The parsed options of a command as a reader of its config's fields: each field takes its
 * flag's value, or the default where the flag was not given; messages name the flag.
 */
export function readerOfArgs(flags: Readonly<Record<string, string>>, defaults: object, args: CliArgs): FieldReader {
  const candidate: Record<string, unknown> = {};
  for (const [field, flag] of Object.entries(flags))
    setPath(candidate, field, args[flag] ?? getPath(defaults, field) ?? null);
  return new FieldReader(candidate, (key) => `--${flags[key] ?? key}`);
}

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value as object)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** A field's check: reads it from `r` as `key`; a bad value is a ConfigError naming the field. */
export type Check<T> = (r: FieldReader, key: string) => T;

/** The checks most fields need, by name, for the option tables. */
export const is = {
  count: (r: FieldReader, key: string): number => r.count(key),
  countOrZero: (r: FieldReader, key: string): number => r.count(key, true),
  positive: (r: FieldReader, key: string): number => r.positive(key),
  positiveOrZero: (r: FieldReader, key: string): number => r.positive(key, true),
  bool: (r: FieldReader, key: string): boolean => r.bool(key),
  string: (r: FieldReader, key: string): string => r.string(key),
  optionalString: (r: FieldReader, key: string): string | null => r.optionalString(key),
  oneOf:
    <T extends string>(choices: readonly T[]): Check<T> =>
    (r, key) =>
      r.oneOf(key, choices),
};

/** A flag's type as yargs takes it: a boolean, number or string, or the closed list of its values. */
type FlagTypeOf<T> = [NonNullable<T>] extends [boolean]
  ? 'boolean'
  : [NonNullable<T>] extends [number]
    ? 'number'
    : [NonNullable<T>] extends [string]
      ? 'string' | readonly NonNullable<T>[]
      : never;

/**
 * One option of a command, declared once: the config field's type (what `check` returns), the
 * flag's default and help text, and the check that every receiver of a config runs.
 */
export interface OptionSpec<T> {
  /** The command-line flag, without '--'. */
  readonly flag: string;
  readonly type: FlagTypeOf<T>;
  /** Where the flag is left out. null: none, the field stays null; a function: computed for each run. */
  readonly default: T | (() => T);
  /** The flag's help text, and the field's only description. */
  readonly describe: string;
  readonly check: Check<T>;
}

/** What every table entry has, whatever its value type: for code that walks a table. */
export interface AnyOptionSpec {
  readonly flag: string;
  readonly type: 'boolean' | 'number' | 'string' | readonly string[];
  readonly default: unknown;
  readonly describe: string;
  readonly check: Check<unknown>;
}

/** Config fields by dotted path ('model.lrn': configs nest, flags do not) to their options. */
export type OptionTable = Readonly<Record<string, AnyOptionSpec>>;

type Checked<S> = S extends { readonly check: Check<infer T> } ? T : never;

/**
 * The table as written, checked entry by entry: each entry's type and default fit the value
 * its check returns, so the config type derived from the checks is the one the flags give.
 */
export function optionTable<const Tab extends { readonly [K in keyof Tab]: OptionSpec<Checked<Tab[K]>> }>(
  table: Tab,
): Tab {
  return table;
}

type Head<K> = K extends `${infer H}.${string}` ? H : K;
type Below<F, H extends string> = { [K in keyof F as K extends `${H}.${infer Rest}` ? Rest : never]: F[K] };
/** { 'model.lrn': boolean, epochs: number } -> { model: { lrn: boolean }, epochs: number }. */
type Nested<F> = { [H in Head<keyof F>]: H extends keyof F ? F[H] : Nested<Below<F, H & string>> };

/** The config a table describes: each field has the type its check returns. */
export type FieldsOf<Tab> = Nested<{ -readonly [K in keyof Tab]: Checked<Tab[K]> }>;

/** The fields of a table whose defaults are constants (not computed for each run). */
export type DefaultsOf<Tab> = Nested<{
  -readonly [K in keyof Tab as Tab[K] extends { readonly default: () => unknown } ? never : K]: Checked<Tab[K]>;
}>;

/** Each field's flag, by dotted path: how a message names a field of the command line. */
export function flagsOf<Tab extends OptionTable>(table: Tab): { readonly [K in keyof Tab]: Tab[K]['flag'] } {
  return Object.fromEntries(Object.entries(table).map(([field, spec]) => [field, spec.flag])) as {
    [K in keyof Tab]: Tab[K]['flag'];
  };
}

/** The constant defaults of a table, nested as the config is. */
export function defaultsOf<Tab extends OptionTable>(table: Tab): DefaultsOf<Tab> {
  const defaults: Record<string, unknown> = {};
  for (const [field, spec] of Object.entries(table))
    if (typeof spec.default !== 'function') setPath(defaults, field, spec.default);
  return defaults as DefaultsOf<Tab>;
}

/** A default as it stands now: a computed one (--run-dir's time stamp) is computed here. */
export function defaultNow(spec: AnyOptionSpec): unknown {
  return typeof spec.default === 'function' ? (spec.default as () => unknown)() : spec.default;
}

/** Every field of a table, each read and checked by its entry: the per-field part of a validator. */
export function readFields<Tab extends OptionTable>(table: Tab, r: FieldReader): FieldsOf<Tab> {
  const fields: Record<string, unknown> = {};
  for (const [field, spec] of Object.entries(table)) setPath(fields, field, spec.check(r, field));
  return fields as FieldsOf<Tab>;
}

/** A yargs option of one entry (its options' shape, without importing yargs here). */
export interface CliOption {
  type?: 'boolean' | 'number' | 'string';
  choices?: readonly string[];
  default?: unknown;
  describe: string;
}

/** An entry as yargs takes it: a choice list is `choices`, and a null default is no default. */
export function cliOption(spec: AnyOptionSpec): CliOption {
  const value = defaultNow(spec);
  return {
    ...(typeof spec.type === 'string' ? { type: spec.type } : { choices: spec.type }),
    ...(value === null ? {} : { default: value }),
    describe: spec.describe,
  };
}
