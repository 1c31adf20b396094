// The ONNX export against two independent readers: onnxruntime runs the file and its logits
// equal our tfjs model's on the same images (NHWC there, NCHW here), for every preset; Debian's
// onnx checker (full_check: shape inference too) accepts it.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { createAlexNet, disposeModel, forward, type AlexNet } from '../../../src/model/alexnet';
import { buildSpec, type ModelSpec } from '../../../src/model/presets';
import type { PresetName } from '../../../src/core/config';
import type { ExportMetadata } from '../../../src/model/export';
import { buildOnnxModel, convGeometry, LOGITS, PROBABILITIES } from '../../../src/model/onnx/export-onnx';
import { exportOnnx, namedWeights } from '../../../src/model/onnx/write-onnx';
import { decodeModel } from '../../../src/model/onnx/onnx-proto';
import { transpose4d } from '../../../src/model/onnx/layouts';
import { missingPythonModules, runPython } from '../../helpers/python';
import { tempDir } from '../../data/fixtures/images';

t.before(async () => {
  await tf.setBackend('cpu');
});

const dir = tempDir(t, 'onnx-export-');

function metaOf(model: AlexNet): ExportMetadata {
  return {
    classes: Array.from({ length: model.numClasses }, (_, i) => `class ${i}`),
    inputSize: model.spec.inputSize,
    resizeSize: model.spec.resizeSize,
    meanRgb: [0.5, 0.4, 0.3],
    stdRgb: [0.2, 0.25, 0.3],
    preset: model.spec.preset,
  };
}

/** max |a - b| / max |b|: the error relative to the logits' scale. */
export function maxRelativeError(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/**
 * The big presets at the smallest input whose last maps are still 2x2 (so fc6's NHWC -> NCHW
 * row order is tested): 99 px for paper (23 -> 11 -> 5 -> 2), 95 for torchvision (pad 2). Every
 * layer keeps its kernel, stride, padding, groups and widths; only fc6's input count shrinks.
 */
const CASES: { name: string; spec: ModelSpec; batch: number }[] = [
  { name: 'small', spec: sized('small', 28), batch: 4 },
  { name: 'torchvision', spec: sized('torchvision', 95), batch: 2 },
  { name: 'paper', spec: sized('paper', 99), batch: 2 },
  // tfjs SAME at stride 2 pads unevenly (1 before, 2 after at 56 px): ONNX gets explicit pads.
  { name: 'small-stride2', spec: withConv1Stride(sized('small', 56), 2), batch: 2 },
];

/** A preset at another input size, with He init: the activations keep their scale and the logits are not ~0. */
function sized(preset: PresetName, inputSize: number): ModelSpec {
  return { ...buildSpec(preset, { init: 'he' }), inputSize };
}

function withConv1Stride(spec: ModelSpec, stride: number): ModelSpec {
  return { ...spec, convs: spec.convs.map((c, i) => (i === 0 ? { ...c, stride } : c)) };
}

for (const { name, spec, batch } of CASES) {
  t.test(`${name} at ${spec.inputSize} px: onnxruntime's logits equal tfjs's`, async (t) => {
    const model = createAlexNet(spec, 10, 7);
    const size = model.spec.inputSize;
    const file = path.join(dir, `${name}.onnx`);
    const bytes = exportOnnx(model, metaOf(model), file);
    t.ok(bytes > 0, `${name}: ${(bytes / 1e6).toFixed(1)} MB`);
    const images = tf.randomUniform([batch, size, size, 3], -1, 1, 'float32', 11) as tf.Tensor4D;
    const ours = tf.tidy(() => forward(model, images, { training: false }).dataSync() as Float32Array);
    const nchw = transpose4d(images.dataSync() as Float32Array, images.shape, [0, 3, 1, 2]);
    images.dispose();
    disposeModel(model);
    const session = await ort.InferenceSession.create(file);
    const out = await session.run({ input: new ort.Tensor('float32', nchw, [batch, 3, size, size]) });
    const logits = out[LOGITS].data as Float32Array;
    const probs = out[PROBABILITIES].data as Float32Array;
    await session.release();
    t.same(out[LOGITS].dims, [batch, 10]);
    const rel = maxRelativeError(logits, ours);
    t.comment(`${name}: max relative error ${rel.toExponential(2)}`);
    t.ok(rel <= 1e-4, `max relative error of the logits ${rel.toExponential(2)} <= 1e-4`);
    const rowSum = probs.slice(0, 10).reduce((a, b) => a + b, 0);
    t.ok(Math.abs(rowSum - 1) < 1e-5, 'probabilities are a softmax');
  });
}

t.test("the file's structure: opset 13, standard ops, metadata, explicit SAME pads", async (t) => {
  const model = createAlexNet(buildSpec('small'), 3, 1);
  const onnx = buildOnnxModel(model.spec, namedWeights(model), metaOf(model));
  const decoded = decodeModel(fs.readFileSync(path.join(dir, 'small.onnx')));
  disposeModel(model);
  t.same(decoded.opsetImports, [{ domain: '', version: 13 }]);
  t.same([...new Set(onnx.graph.nodes.map((n) => n.opType))].sort(), [
    'Conv',
    'Flatten',
    'Gemm',
    'LRN',
    'MaxPool',
    'Relu',
    'Softmax',
  ]);
  t.same(
    decoded.graph.outputs.map((o) => o.name),
    ['logits', 'probabilities'],
  );
  t.same(decoded.graph.inputs[0].shape, ['batch', 3, 28, 28]);
  t.same(JSON.parse(decoded.metadata.mean_rgb), [0.5, 0.4, 0.3]);
  t.equal(JSON.parse(decoded.metadata.classes).length, 10);
  const lrn = onnx.graph.nodes.find((n) => n.opType === 'LRN');
  t.same(
    lrn?.attributes.find((a) => a.name === 'alpha'),
    { name: 'alpha', type: 1, f: 5e-4 },
    'LRN alpha is ours times the window (ONNX divides by it)',
  );
  // small's conv1 is 5x5 'same' at stride 1: 2 pixels each side; a stride-2 SAME pad is uneven.
  t.same(convGeometry(model.spec)[0].pads, [2, 2]);
  t.same(convGeometry(withConv1Stride(sized('small', 56), 2))[0].pads, [1, 2]);
  const conv2 = onnx.graph.nodes.find((n) => n.name === 'conv2');
  t.same(
    conv2?.attributes.find((a) => a.name === 'group'),
    { name: 'group', type: 2, i: 2 },
  );
});

t.test("Debian's onnx checker (full_check) accepts every preset's file", async (t) => {
  const missing = missingPythonModules(['onnx']);
  if (missing !== null) {
    t.comment(`SKIP onnx checker: ${missing}`);
    t.plan(0, `onnx checker skipped: ${missing}`);
    return;
  }
  const out = runPython(
    [
      'import sys, onnx',
      'for f in sys.argv[1:]:',
      '    onnx.checker.check_model(onnx.load(f), full_check=True)',
      '    print(f"ok {f}")',
    ].join('\n'),
    CASES.map((c) => path.join(dir, `${c.name}.onnx`)),
  );
  t.equal(out.trim().split('\n').length, CASES.length, out);
});
