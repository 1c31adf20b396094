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

/** Carriage return + erase to end of line. */
export const CLEAR_LINE = '\r\x1b[K';

export interface ConsoleLoggerOptions {
  level: LogLevel;
  prefix?: string;
}

export function consoleLogger({ level, prefix = '' }: ConsoleLoggerOptions): Logger {
  // On a terminal a progress bar (this process's or rank 0's: workers share the terminal) may
  // be half drawn on the current line: erase it first, so a warning never lands inside it.
  const p = prefix ? `${prefix} ` : '';
  const e = `${process.stderr.isTTY ? CLEAR_LINE : ''}${p}`;
  return {
    info: (l) => level !== 'quiet' && process.stderr.write(`${e}${l}\n`),
    warn: (l) => process.stderr.write(`${e}warning: ${l}\n`),
    debug: (l) => level === 'debug' && process.stderr.write(`${e}${l}\n`),
    result: (l) => process.stdout.write(`${p}${l}\n`),
  };
}

/** A logger that keeps lines in memory, for tests. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const push = (kind: string) => (l: string) => lines.push(`${kind}: ${l}`);
  return { lines, info: push('info'), warn: push('warn'), debug: push('debug'), result: push('result') };
}
