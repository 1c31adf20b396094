// Warnings on a terminal never land inside the progress bar's line (issue 13: "ETA 0:01[rank 1]
// warning: skipping ..."): what the screen shows after a bar, a warning from another rank
// and more bar updates, through a small terminal model.
import t from 'tap';
import { ProgressBar } from '../../src/train/progress';
import { consoleLogger } from '../../src/core/log';

/** The screen's lines after `output`: \r returns to column 0, ESC[K erases to the line's end. */
function screen(output: string): string[] {
  const lines: string[] = [''];
  let col = 0;
  for (let i = 0; i < output.length; i++) {
    const row = lines.length - 1;
    if (output.startsWith('\x1b[K', i)) {
      lines[row] = lines[row].slice(0, col);
      i += 2;
    } else if (output[i] === '\r') col = 0;
    else if (output[i] === '\n') {
      lines.push('');
      col = 0;
    } else {
      lines[row] = lines[row].slice(0, col) + output[i] + lines[row].slice(col + 1);
      col++;
    }
  }
  return lines;
}

t.test('a warning erases the half-drawn bar line first', async (t) => {
  let out = '';
  const stderr = process.stderr as NodeJS.WriteStream & { isTTY: boolean };
  const wasTTY = stderr.isTTY;
  const write = stderr.write;
  stderr.isTTY = true;
  stderr.write = ((chunk: string) => {
    out += chunk;
    return true;
  }) as typeof stderr.write;
  try {
    const master = consoleLogger({ level: 'info' });
    const rank1 = consoleLogger({ level: 'quiet', prefix: '[rank 1]' });
    const bar = new ProgressBar('Epoch 1/1', master, true, (s) => {
      out += s;
    });
    const snap = (step: number) => ({
      step,
      totalSteps: 4,
      loss: 2.5,
      top1Error: 0.9,
      imagesPerSec: 50,
      elapsedMs: 1000 * step,
    });
    bar.update(snap(1));
    rank1.warn('skipping /data/signs/train/snake/00000073.jpg: empty file (0 bytes)');
    bar.update(snap(2));
    master.warn('skipping /data/signs/train/monkey/00000072.jpg: truncated');
    bar.update(snap(4));
    bar.finish();
  } finally {
    stderr.write = write;
    stderr.isTTY = wasTTY;
  }
  const lines = screen(out);
  t.notOk(
    lines.some((l) => /ETA/.test(l) && /warning/.test(l)),
    'no line holds both the bar and a warning',
  );
  t.ok(
    lines.includes('[rank 1] warning: skipping /data/signs/train/snake/00000073.jpg: empty file (0 bytes)'),
    'the warning on a line of its own',
  );
  t.ok(lines.includes('warning: skipping /data/signs/train/monkey/00000072.jpg: truncated'));
  t.match(lines[lines.length - 2], /^Epoch 1\/1 \[=+>\] 4\/4 /, 'the bar is redrawn below the warnings');
  // The model does show the old output as the bug it was.
  t.same(screen('\rEpoch 1/1 [=>  ] 1/4  ETA 0:01[rank 1] warning: skipping x\n'), [
    'Epoch 1/1 [=>  ] 1/4  ETA 0:01[rank 1] warning: skipping x',
    '',
  ]);
});
