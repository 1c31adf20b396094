// The CLI as a user runs it (compiled dist/): one-line errors with exit code 2, help, summary.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import t from 'tap';

const cli = path.resolve('dist/src/cli.js');
function run(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('bad options: one line on stderr, exit code 2, no stack trace', async (t) => {
  const cases: [string[], RegExp][] = [
    [['train', '--preset', 'vgg', '--data', '.'], /--preset|preset/],
    [['train', '--batch-size', '0', '--data', '.'], /--batch-size must be a whole number >= 1/],
    [['train', '--data', '/no/such/dataset'], /dataset '\/no\/such\/dataset' does not exist/],
    [['train', '--data', '.', '--tta', '3'], /--tta must be 1/],
    [['train', '--data', '.', '--no-such-option'], /Unknown argument/],
    [['eval', '/no/such.ckpt'], /no checkpoint at/],
    [['report', '/no/such/run'], /run directory '\/no\/such\/run' does not exist/],
    [['fly'], /Unknown argument|command/],
  ];
  for (const [args, pattern] of cases) {
    const r = run(...args);
    t.equal(r.code, 2, `${args.join(' ')} -> exit 2`);
    t.match(r.stderr, pattern, args.join(' '));
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

t.test('--help explains every train option with its default', async (t) => {
  const r = run('train', '--help');
  t.equal(r.code, 0);
  for (const opt of ['--preset', '--batch-size', '--lr', '--weight-decay', '--devices', '--resume', '--tta']) t.match(r.stdout, opt);
  t.match(r.stdout, /default: 128/);
});

t.test('summary prints the published parameter count', async (t) => {
  const r = run('summary', '--preset', 'paper');
  t.equal(r.code, 0);
  t.match(r.stdout, /Total params: 60,965,224/);
  t.match(r.stdout, /conv2 \(2 groups\)/);
});
