/**
 * One logger, level-gated and injectable: tests capture lines; workers other than rank 0
 * prefix `[rank N]`. Everything goes to stderr except results a user may pipe (stdout).
 */
import type { LogLevel } from './config';

export interface Logger {
  info(line: string): void;
  warn(line: string): void;
  debug(line: string): void;
  /** Results (final metrics, tables): always printed, on stdout. */
  result(line: string): void;
}

export interface ConsoleLoggerOptions {
  level: LogLevel;
  prefix?: string;
}

export function consoleLogger({ level, prefix = '' }: ConsoleLoggerOptions): Logger {
  const p = prefix ? `${prefix} ` : '';
  return {
    info: (l) => level !== 'quiet' && process.stderr.write(`${p}${l}\n`),
    warn: (l) => process.stderr.write(`${p}warning: ${l}\n`),
    debug: (l) => level === 'debug' && process.stderr.write(`${p}${l}\n`),
    result: (l) => process.stdout.write(`${p}${l}\n`),
  };
}

/** A logger that keeps lines in memory, for tests. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const push = (kind: string) => (l: string) => lines.push(`${kind}: ${l}`);
  return { lines, info: push('info'), warn: push('warn'), debug: push('debug'), result: push('result') };
}
