/**
 * Forks a node script as a child process with an IPC channel: a compiled .js (dist/, what
 * users run) or a .ts (tests and benchmarks run from source). TypeScript children are
 * transpiled by ts-node: the project's own `ts-node` if installed, else the fork tap bundles.
 */
import { ChildProcess, fork } from 'node:child_process';
import { pathToFileURL } from 'node:url';

/**
 * ts-node's `--import` entry (CJS hook + ESM loader). A plain `-r ts-node/register` is not
 * enough under tap: tap's NODE_OPTIONS add an ESM loader, so node loads the entry file as ESM
 * and rejects the .ts extension.
 */
function tsImport(): string {
  for (const candidate of ['ts-node/import', '@isaacs/ts-node-temp-fork-for-pr-2009/import']) {
    try {
      return pathToFileURL(require.resolve(candidate)).href;
    } catch {
      // try the next one
    }
  }
  throw new Error('cannot run a .ts child: no ts-node found (run the compiled dist/ instead)');
}

export function forkScript(script: string, args: string[] = []): ChildProcess {
  const isTs = script.endsWith('.ts');
  return fork(script, args, {
    execArgv: isTs ? ['--import', tsImport()] : [],
    env: isTs ? { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' } : process.env,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** Resolves with the next IPC message from `child` that satisfies `accept`. */
export function nextMessage<T>(child: ChildProcess, accept: (m: unknown) => m is T, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`no message from child within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (m: unknown): void => {
      if (accept(m)) done(null, m);
    };
    const onExit = (code: number | null, signal: string | null): void =>
      done(new Error(`child exited (code ${code}, signal ${signal}) before answering`));
    const done = (err: Error | null, m?: T): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err !== null) reject(err);
      else resolve(m as T);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}
