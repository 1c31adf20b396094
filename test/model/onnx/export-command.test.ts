// `alexnet export <run> --format onnx|tfjs` through the real CLI: what it writes, where, and
// that the ONNX file's metadata carries the run's classes and colour statistics.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { main } from '../../../src/cli';
import { createAlexNet, disposeModel } from '../../../src/model/alexnet';
import { buildSpec } from '../../../src/model/presets';
import { decodeModel } from '../../../src/model/onnx/onnx-proto';
import { writeModelCheckpoint, TEST_STATS } from '../../helpers/model-checkpoint';
import { tempDir } from '../../data/fixtures/images';

const dir = tempDir(t, 'onnx-export-cli-');

t.test('export writes best.onnx beside the checkpoint, then refuses to replace it without --force', async (t) => {
  await tf.setBackend('cpu');
  const runDir = path.join(dir, 'run');
  const model = createAlexNet(buildSpec('small'), 3, 1);
  await writeModelCheckpoint(runDir, model, ['cat', 'dog', 'fox']);
  disposeModel(model);
  t.equal(await main(['export', runDir, '--format', 'onnx']), 0);
  const file = path.join(runDir, 'best.onnx');
  const onnx = decodeModel(fs.readFileSync(file));
  t.same(JSON.parse(onnx.metadata.classes), ['cat', 'dog', 'fox']);
  t.same(JSON.parse(onnx.metadata.mean_rgb), TEST_STATS.meanRgb, "the run's colour statistics");
  t.equal(onnx.metadata.preset, 'small');
  t.equal(await main(['export', runDir, '--format', 'onnx']), 2, 'an existing file is refused');
  t.equal(await main(['export', runDir, '--format', 'onnx', '--force']), 0, '--force replaces it');

  t.equal(await main(['export', runDir]), 0, 'tfjs is the default format');
  t.ok(fs.existsSync(path.join(runDir, 'best-tfjs', 'model.json')));
});
