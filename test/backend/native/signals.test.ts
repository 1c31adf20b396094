// oneDNN's JIT gemm kernels point the stack pointer into the heap while they run, so a signal
// handled mid-product corrupted the heap: `node --cpu-prof` (SIGPROF) aborted the kernel tests
// with "corrupted size vs. prev_size", and Ctrl-C (SIGINT) could do the same to a run. The addon
// now defers signals during its calls (dnnl_addon.cc, "Signals"). Here a child runs the FC
// products under --cpu-prof while this process sends it SIGUSR2 every few ms, with 1 and 2
// oneDNN threads: it must finish, with the cpu backend's results, and its handler must have run.
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import t from 'tap';
import { tempDir } from '../../data/fixtures/images';
import { ensureNativeAddon } from '../../helpers/native-addon';

const FIXTURE = path.join(__dirname, 'fixtures', 'gemm-under-signals.js');
const REPS = 20;

const { addon, skipReason } = ensureNativeAddon();

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  sent: number;
}

/** Runs the fixture under --cpu-prof, sending it SIGUSR2 every 2 ms while it computes. */
function runUnderSignals(threads: number, profileDir: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        '--cpu-prof',
        '--cpu-prof-dir',
        profileDir,
        '--cpu-prof-interval',
        '100',
        FIXTURE,
        String(threads),
        String(REPS),
      ],
      // A deadlock (the C reproduction's other outcome) ends as a failure, not tap's timeout.
      { stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 },
    );
    let [stdout, stderr, sent] = ['', '', 0];
    let ticker: NodeJS.Timeout | null = null;
    const stopTicking = () => {
      if (ticker) clearInterval(ticker);
      ticker = null;
    };
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      // Send from 'ready' (the handler is in place: before, SIGUSR2 would end the child) to the
      // result line (the child is about to exit).
      const lines = stdout.split('\n').length - 1;
      if (lines === 1 && ticker === null) {
        ticker = setInterval(() => {
          if (child.exitCode === null && child.kill('SIGUSR2')) sent++;
        }, 2);
      }
      if (lines >= 2) stopTicking();
    });
    child.on('exit', (code, signal) => {
      stopTicking();
      resolve({ code, signal, stdout, stderr, sent });
    });
  });
}

/** The child's result line; empty when it died before printing one (the first check says so). */
function resultOf(stdout: string): { error?: number; handled?: number } {
  const last = stdout.trim().split('\n').pop() ?? '';
  return last.startsWith('{') ? (JSON.parse(last) as { error?: number; handled?: number }) : {};
}

t.test(
  'FC products under a profiler and a stream of signals',
  { skip: addon == null ? skipReason : false },
  async (t) => {
    for (const threads of [1, 2]) {
      const out = await runUnderSignals(threads, tempDir(t, 'alexnet-prof-'));
      t.same(
        { code: out.code, signal: out.signal },
        { code: 0, signal: null },
        `${threads} thread(s): the child finished (no heap corruption abort)`,
        { stderr: out.stderr.slice(-2000) },
      );
      const result = resultOf(out.stdout);
      t.ok(
        (result.error ?? Infinity) <= 1e-4,
        `${threads} thread(s): products equal the cpu backend's (${result.error})`,
      );
      t.ok(
        (result.handled ?? 0) > 0,
        `${threads} thread(s): the JS handler saw ${result.handled} of ${out.sent} SIGUSR2s (signals still arrive)`,
      );
    }
  },
);
