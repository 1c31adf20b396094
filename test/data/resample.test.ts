import { spawnSync } from 'node:child_process';
import t from 'tap';
import { centreSquare, resampleTaps, resizeCoverToRgb, grayToRgb } from '../../src/data/decode/resample';
import { DEBIAN_PYTHON, missingPythonModules } from '../helpers/python';
import { rawImage } from './fixtures/images';

t.test('taps: weights sum to 1, stay inside the image, widen when shrinking', (t) => {
  for (const [inSize, outSize] of [
    [28, 32],
    [500, 256],
    [7, 3],
    [3, 7],
  ]) {
    const taps = resampleTaps(inSize, 0, inSize, outSize);
    t.equal(taps.length, outSize);
    for (const { first, weights } of taps) {
      t.ok(Math.abs(weights.reduce((a, b) => a + b, 0) - 1) < 1e-9 && first >= 0 && first + weights.length <= inSize);
    }
    const widest = Math.max(...taps.map((x) => x.weights.length));
    t.ok(
      outSize < inSize ? widest >= Math.floor((2 * inSize) / outSize) : widest <= 2,
      `${inSize}->${outSize}: ${widest} taps`,
    );
  }
  t.same(centreSquare(500, 375), [62.5, 0, 375]);
  t.end();
});

/** Row 1 of a one-channel n x n image with a bright column at x = 1, resized to m. */
function spikeRow(n: number, m: number): number[] {
  const out = resizeCoverToRgb(
    { widthPx: n, heightPx: n, channels: 1, data: rawImage(n, n, 1, (x) => [x === 1 ? 240 : 0]) },
    m,
  );
  return Array.from({ length: m }, (_, x) => out[(m + x) * 3]);
}

t.test('pixel centres at +0.5: a column doubled lands on two output columns, evenly', (t) => {
  // 4 -> 8: output x samples input (x + 0.5) / 2 - 0.5, so x = 2, 3 sit 0.25 either side of column 1.
  t.same(spikeRow(4, 8), [0, 60, 180, 180, 60, 0, 0, 0]);
  // 8 -> 4 shrinks by 2: each output weighs a 4-wide triangle. Output 1 (centre 3) gives column 1
  // 1/8 of it; output 0 (centre 1) loses its tap left of the edge, so column 1 gets 0.75 / 1.75.
  t.same(spikeRow(8, 4), [Math.round((240 * 0.75) / 1.75), 30, 0, 0]);
  t.end();
});

t.test('gray and RGB resample alike; the centre square of a wide image is kept', (t) => {
  const gray = rawImage(30, 20, 1, (x, y) => [(x * 8 + y * 3) & 255]);
  const rgbSrc = Buffer.from(grayToRgb(gray));
  const a = resizeCoverToRgb({ widthPx: 30, heightPx: 20, channels: 1, data: gray }, 13);
  const b = resizeCoverToRgb({ widthPx: 30, heightPx: 20, channels: 3, data: rgbSrc }, 13);
  t.ok(Buffer.from(a).equals(Buffer.from(b)), 'gray expanded after equals RGB resampled');
  const exact = resizeCoverToRgb({ widthPx: 30, heightPx: 20, channels: 3, data: rgbSrc }, 20);
  t.equal(exact[0], rgbSrc[5 * 3], 'no resize: the crop starts at x = 5');
  t.end();
});

const pilMissing = missingPythonModules(['PIL', 'numpy']);
t.test("equals PIL's Image.resize(BILINEAR) within 1 level", { skip: pilMissing ?? false }, (t) => {
  // PIL's bilinear resize of the centre square, for enlargements and reductions.
  const script = `
import sys, json
import numpy as np
from PIL import Image
w, h, s = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
a = np.array(json.loads(sys.stdin.read()), dtype=np.uint8).reshape(h, w, 3)
side = min(w, h)
box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
print(json.dumps(np.asarray(Image.fromarray(a).resize((s, s), Image.BILINEAR, box=box)).reshape(-1).tolist()))
`;
  for (const [w, h, s] of [
    [28, 28, 32],
    [50, 40, 17],
    [64, 64, 227],
    [120, 90, 64],
  ]) {
    const rgb = rawImage(w, h, 3, (x, y) => [(x * 37 + y * 11) & 255, (x * y) & 255, (x * 5 + 200 - y) & 255]);
    const r = spawnSync(DEBIAN_PYTHON, ['-c', script, String(w), String(h), String(s)], {
      input: JSON.stringify(Array.from(rgb)),
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    if (r.status !== 0) {
      t.fail(r.stderr);
      continue;
    }
    const pil = JSON.parse(r.stdout) as number[];
    const ours = resizeCoverToRgb({ widthPx: w, heightPx: h, channels: 3, data: rgb }, s);
    const worst = pil.reduce((m, v, i) => Math.max(m, Math.abs(v - ours[i])), 0);
    t.ok(worst <= 1, `${w}x${h} -> ${s}: largest difference ${worst}`);
  }
  t.end();
});
