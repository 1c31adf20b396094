/**
 * Reading an untrusted object field by field into a typed config: parsed command-line options,
 * a config received from another process, a checkpoint's header. Each bad field is a one-line
 * ConfigError that names the field the way its source does ('--batch-size' on the command
 * line, 'config field batchSize' in a message).
 */
import { ConfigError } from './errors';

export type CliArgs = Record<string, unknown>;

/** obj.a.b for 'a.b' (undefined where a level is missing): configs nest, flags do not. */
export function getPath(obj: unknown, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((o, k) => (o !== null && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj);
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
    if (n < 0 || (!allowZero && n === 0)) throw new ConfigError(`${this.name(key)} must be ${allowZero ? '>= 0' : '> 0'}, got ${n}`);
    return n;
  }

  oneOf<T extends string>(key: string, choices: readonly T[]): T {
    const v = String(this.raw(key));
    if (!(choices as readonly string[]).includes(v)) throw new ConfigError(`${this.name(key)} must be one of ${choices.join(', ')}; got '${v}'`);
    return v as T;
  }

  bool(key: string): boolean {
    const v = this.raw(key);
    if (typeof v !== 'boolean') throw new ConfigError(`${this.name(key)} must be true or false, got '${String(v)}'`);
    return v;
  }

  string(key: string): string {
    const v = this.raw(key);
    if (typeof v !== 'string' || v === '') throw new ConfigError(`${this.name(key)} must be a non-empty string, got '${String(v)}'`);
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
  for (const [field, flag] of Object.entries(flags)) setPath(candidate, field, args[flag] ?? getPath(defaults, field) ?? null);
  return new FieldReader(candidate, (key) => `--${flags[key] ?? key}`);
}

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value as object)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

