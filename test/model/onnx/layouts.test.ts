// Weight layouts between tfjs and ONNX, each against a hand-indexed reference and its inverse.
import t from 'tap';
import {
  convFromOnnx,
  convToOnnx,
  denseFromOnnx,
  denseToOnnx,
  samePads,
  transpose2d,
  transpose4d,
} from '../../../src/model/onnx/layouts';

const iota = (n: number) => Float32Array.from({ length: n }, (_, i) => i);

t.test('conv kernels: tfjs [kh, kw, in, out] <-> ONNX [out, in, kh, kw]', async (t) => {
  const [kh, kw, cin, cout] = [2, 3, 4, 5];
  const hwio = iota(kh * kw * cin * cout);
  const oihw = convToOnnx(hwio, [kh, kw, cin, cout]);
  for (const [y, x, i, o] of [
    [0, 0, 0, 0],
    [1, 2, 3, 4],
    [1, 0, 2, 3],
  ])
    t.equal(
      oihw[((o * cin + i) * kh + y) * kw + x],
      hwio[((y * kw + x) * cin + i) * cout + o],
      `[${y},${x},${i},${o}]`,
    );
  t.same(convFromOnnx(oihw, [cout, cin, kh, kw]), hwio, 'inverse');
});

t.test("fc6: our NHWC-flattened rows <-> ONNX's NCHW-flattened columns", async (t) => {
  const maps = { height: 2, width: 3, channels: 4 };
  const inUnits = 24;
  const outUnits = 2;
  const kernel = iota(inUnits * outUnits);
  const gemm = denseToOnnx(kernel, inUnits, outUnits, maps);
  // The feature at channel c, row h, column w: NHWC index (h*3 + w)*4 + c, NCHW index c*6 + h*3 + w.
  const [c, h, w, o] = [3, 1, 2, 1];
  t.equal(gemm[o * inUnits + (c * 6 + h * 3 + w)], kernel[((h * 3 + w) * 4 + c) * outUnits + o]);
  t.same(denseFromOnnx(gemm, inUnits, outUnits, maps), kernel, 'inverse');
  t.same(denseToOnnx(kernel, inUnits, outUnits, null), transpose2d(kernel, inUnits, outUnits), 'no maps: a transpose');
});

t.test('transpose4d checks its shape', async (t) => {
  t.throws(() => transpose4d(iota(5), [1, 2, 3, 1], [0, 1, 2, 3]), RangeError);
});

t.test('tfjs SAME padding as explicit pads (the extra pixel goes at the end)', async (t) => {
  t.same(samePads(28, 5, 1), [2, 2]);
  t.same(samePads(56, 5, 2), [1, 2]);
  t.same(samePads(224, 11, 4), [3, 4], '224 -> 56 at stride 4');
  t.same(samePads(5, 1, 2), [0, 0]);
});
