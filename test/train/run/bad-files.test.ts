// Each bad file is named once per run whatever the worker count: the first rank to meet it
// claims it in the run directory; bad-files.tsv lists each once.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { BAD_FILES, BadFileLog } from '../../../src/train/run/bad-files';
import { memoryLogger } from '../../../src/core/log';
import { tempDir } from '../../data/fixtures/images';

t.test('two ranks meeting the same bad files in different epochs name each once', async (t) => {
  const runDir = path.join(tempDir(t), 'run');
  const rank0 = memoryLogger();
  const rank1 = memoryLogger();
  const a = new BadFileLog(runDir, rank0);
  const b = new BadFileLog(runDir, rank1);
  a.report('/d/x.jpg', 'empty file (0 bytes)'); // epoch 1, rank 0
  b.report('/d/y.jpg', 'truncated'); // epoch 1, rank 1
  b.report('/d/x.jpg', 'empty file (0 bytes)'); // epoch 2: x is in rank 1's share now
  a.report('/d/y.jpg', 'truncated');
  a.report('/d/x.jpg', 'empty file (0 bytes)');
  const all = [...rank0.lines, ...rank1.lines];
  t.equal(all.length, 2, 'two warnings for two files');
  t.match(rank0.lines, [/^warn: skipping \/d\/x.jpg: empty file \(0 bytes\) \(named once/]);
  t.match(rank1.lines, [/^warn: skipping \/d\/y.jpg: truncated/]);
  t.same(readFileSync(path.join(runDir, BAD_FILES), 'utf8').split('\n').filter(Boolean).sort(), [
    '/d/x.jpg\tempty file (0 bytes)',
    '/d/y.jpg\ttruncated',
  ]);
});
