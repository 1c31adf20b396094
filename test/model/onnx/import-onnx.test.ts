// Reading AlexNet-shaped ONNX graphs: our own export round-trips bit for bit, the other forms
// exporters write (MatMul + Add, Constant nodes) read the same, a layer that fits no preset is
// named with both shapes, an unsupported operator is named; and torchvision's AlexNet, exported
// by torch 1.13, runs in our model with torch's logits.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { createAlexNet, disposeModel, forward } from '../../../src/model/alexnet';
import { buildSpec } from '../../../src/model/presets';
import { ModelFileError } from '../../../src/core/errors';
import { buildOnnxModel } from '../../../src/model/onnx/export-onnx';
import { namedWeights } from '../../../src/model/onnx/write-onnx';
import { AttributeType, DataType, encodeModel, type OnnxModel } from '../../../src/model/onnx/onnx-proto';
import { onnxMismatch, onnxWeights, readOnnxNetwork } from '../../../src/model/onnx/import-onnx';
import { transpose4d } from '../../../src/model/onnx/layouts';
import { applyInitFrom, readInitSource } from '../../../src/train/init-from';
import { DEBIAN_PYTHON, missingPythonModules } from '../../helpers/python';
import { REPO } from '../../helpers/repo';
import { spawnSync } from 'node:child_process';
import { tempDir } from '../../data/fixtures/images';

t.before(async () => {
  await tf.setBackend('cpu');
});

const dir = tempDir(t, 'onnx-import-');

const META = {
  classes: ['a', 'b', 'c'],
  inputSize: 28,
  resizeSize: 32,
  meanRgb: [0, 0, 0],
  stdRgb: [1, 1, 1],
  preset: 'small',
};

/** Bit for bit (t.same walks a typed array element by element, slowly). */
function sameFloats(a: Float32Array | undefined, b: Float32Array | undefined): boolean {
  return (
    a !== undefined &&
    b !== undefined &&
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
  );
}

function smallOnnx(): { onnx: OnnxModel; weights: ReturnType<typeof namedWeights> } {
  const model = createAlexNet(buildSpec('small'), 3, 4);
  const weights = namedWeights(model);
  const onnx = buildOnnxModel(model.spec, weights, META as never);
  disposeModel(model);
  return { onnx, weights };
}

t.test('our export reads back bit for bit, and fits only its own preset', async (t) => {
  const { onnx, weights } = smallOnnx();
  const net = readOnnxNetwork(encodeModel(onnx));
  t.equal(onnxMismatch(net, buildSpec('small')), null);
  const back = onnxWeights(net, buildSpec('small'));
  for (const [name, w] of weights) t.ok(sameFloats(back.get(name)?.data, w.data), name);
  t.equal(
    onnxMismatch(net, buildSpec('paper')),
    "conv1: the file's weight is [32, 3, 5, 5], preset paper's is [96, 3, 11, 11]",
  );
  t.match(onnxMismatch(net, buildSpec('small', { lrn: false })), /conv1: the file has LRN/);
});

t.test('MatMul + Add and Constant-node weights read as Gemm and initializers do', async (t) => {
  const { onnx, weights } = smallOnnx();
  const g = onnx.graph;
  // fc7 as MatMul([in, out]) + Add; conv1's weight as a Constant node.
  const fc7 = g.nodes.findIndex((n) => n.name === 'fc7');
  const w = g.initializers.find((i) => i.name === 'fc7.weight');
  const [out, inUnits] = w?.dims ?? [];
  const transposed = new Float32Array(out * inUnits);
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inUnits; i++) transposed[i * out + o] = w?.floats?.[o * inUnits + i] ?? NaN;
  g.initializers.push({ name: 'fc7.matmul', dims: [inUnits, out], dataType: DataType.Float, floats: transposed });
  g.nodes.splice(
    fc7,
    1,
    {
      name: 'fc7/matmul',
      opType: 'MatMul',
      domain: '',
      inputs: [g.nodes[fc7].inputs[0], 'fc7.matmul'],
      outputs: ['mm'],
      attributes: [],
    },
    { name: 'fc7/add', opType: 'Add', domain: '', inputs: ['mm', 'fc7.bias'], outputs: ['fc7'], attributes: [] },
  );
  const k = g.initializers.findIndex((i) => i.name === 'conv1.weight');
  const [conv1] = g.initializers.splice(k, 1);
  g.nodes.unshift({
    name: 'c',
    opType: 'Constant',
    domain: '',
    inputs: [],
    outputs: ['conv1.weight'],
    attributes: [{ name: 'value', type: AttributeType.Tensor, t: conv1 }],
  });
  const net = readOnnxNetwork(encodeModel(onnx));
  t.equal(onnxMismatch(net, buildSpec('small')), null);
  const back = onnxWeights(net, buildSpec('small'));
  for (const name of ['conv1/kernel', 'fc7/kernel', 'fc7/bias'])
    t.ok(sameFloats(back.get(name)?.data, weights.get(name)?.data), name);
});

t.test('an unsupported operator is a ModelFileError naming it', async (t) => {
  const { onnx } = smallOnnx();
  const relu = onnx.graph.nodes.find((n) => n.opType === 'Relu');
  if (relu) relu.opType = 'Elu';
  t.throws(() => readOnnxNetwork(encodeModel(onnx)), {
    name: 'ModelFileError',
    message: /'conv1\/relu' \(Elu\): operator not supported/,
  });
  t.throws(() => readOnnxNetwork(Uint8Array.of(1, 2, 3)), ModelFileError, 'not protobuf');
});

t.test("torchvision's AlexNet (torch.onnx.export, torch 1.13) gives torch's logits in our model", async (t) => {
  const missing = missingPythonModules(['torch', 'torchvision']);
  if (missing !== null) {
    t.comment(`SKIP torchvision: ${missing}`);
    t.plan(0, `torchvision comparison skipped: ${missing}`);
    return;
  }
  const [classes, batch] = [10, 1];
  const script = path.join(REPO, 'test/model/onnx/fixtures/torchvision_alexnet.py');
  const py = spawnSync(DEBIAN_PYTHON, [script, dir, String(classes), String(batch)], { encoding: 'utf8' });
  t.equal(py.status, 0, py.stderr);
  t.comment(py.stdout.trim());
  const source = await readInitSource(path.join(dir, 'torchvision.onnx'));
  t.equal(source.mismatch(buildSpec('torchvision')), null, 'fits the torchvision preset as it is');
  t.match(
    source.mismatch(buildSpec('paper')),
    /conv1: the file's weight is \[64, 3, 11, 11\], preset paper's is \[96, 3, 11, 11\]/,
  );
  const model = createAlexNet(buildSpec('torchvision'), classes, 0);
  t.match(applyInitFrom(model, source), /fc8 included \(10 classes\)/);
  const read = (f: string) => {
    const b = fs.readFileSync(path.join(dir, f));
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  };
  const nchw = read('images.f32');
  const torchLogits = read('logits.f32');
  const nhwc = transpose4d(nchw, [batch, 3, 224, 224], [0, 2, 3, 1]);
  const ours = tf.tidy(
    () => forward(model, tf.tensor4d(nhwc, [batch, 224, 224, 3]), { training: false }).dataSync() as Float32Array,
  );
  disposeModel(model);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < torchLogits.length; i++) {
    diff = Math.max(diff, Math.abs(ours[i] - torchLogits[i]));
    scale = Math.max(scale, Math.abs(torchLogits[i]));
  }
  t.comment(`torchvision: max |ours - torch| ${diff.toExponential(2)}, relative ${(diff / scale).toExponential(2)}`);
  t.ok(
    diff <= 1e-4 * Math.max(1, scale),
    `logits equal torch's to ${(diff / scale).toExponential(2)} relative (<= 1e-4)`,
  );
});
