/**
 * Separable resampling of an 8-bit gray or RGB image to the paper's square, in JS, for the images the
 * JS PNG path decodes (src/data/decode/png.ts): shorter side to `sizePx`, centre square kept, as
 * sharp's `fit: 'cover'` does.
 *
 * The filter is the triangle (bilinear) one, widened by the scale when shrinking so that every
 * source pixel counts (antialiasing): PIL's and torchvision's Resize(..., BILINEAR), and what
 * sharp's 'linear' kernel does when it shrinks. Pixel centres sit at +0.5.
 */

/** Taps of one output position: the first source index and its normalised weights. */
interface Taps {
  first: number;
  weights: Float64Array;
}

const triangle = (x: number): number => Math.max(0, 1 - Math.abs(x));

/**
 * The taps for `outSize` outputs reading the source interval [from, from + span) of an axis
 * `inSize` long.
 */
export function resampleTaps(inSize: number, from: number, span: number, outSize: number): Taps[] {
  const scale = span / outSize;
  const widen = Math.max(scale, 1);
  const support = widen; // the triangle's support is 1, widened when shrinking
  const taps: Taps[] = [];
  for (let o = 0; o < outSize; o++) {
    const centre = from + (o + 0.5) * scale;
    const first = Math.max(Math.floor(centre - support + 0.5), 0);
    const last = Math.min(Math.floor(centre + support + 0.5), inSize); // exclusive
    const weights = new Float64Array(Math.max(last - first, 1));
    let total = 0;
    for (let i = first; i < last; i++) {
      const w = triangle((i - centre + 0.5) / widen);
      weights[i - first] = w;
      total += w;
    }
    if (total > 0) for (let k = 0; k < weights.length; k++) weights[k] /= total;
    else weights[0] = 1; // cannot happen for span >= 1; keeps the output defined
    taps.push({ first: Math.min(first, inSize - 1), weights });
  }
  return taps;
}

/** The centred square of side min(w, h) in source coordinates, as [x0, y0, side]. */
export function centreSquare(widthPx: number, heightPx: number): [number, number, number] {
  const side = Math.min(widthPx, heightPx);
  return [(widthPx - side) / 2, (heightPx - side) / 2, side];
}

/** A dataset's images mostly share a few sizes: their taps are computed once. */
const tapsCache = new Map<string, Taps[]>();
const TAPS_CACHE_ENTRIES = 64;

function cachedTaps(inSize: number, from: number, span: number, outSize: number): Taps[] {
  const key = `${inSize},${from},${span},${outSize}`;
  let taps = tapsCache.get(key);
  if (!taps) {
    if (tapsCache.size >= TAPS_CACHE_ENTRIES) tapsCache.clear();
    taps = resampleTaps(inSize, from, span, outSize);
    tapsCache.set(key, taps);
  }
  return taps;
}

/** One axis' taps in flat arrays, for a native kernel: position o reads weights[offset[o]..offset[o + 1]) from first[o]. */
export interface FlatTaps {
  first: Int32Array;
  offset: Int32Array;
  weights: Float64Array;
}

function flatten(taps: readonly Taps[]): FlatTaps {
  const offset = new Int32Array(taps.length + 1);
  taps.forEach((t, o) => (offset[o + 1] = offset[o] + t.weights.length));
  const weights = new Float64Array(offset[taps.length]);
  taps.forEach((t, o) => weights.set(t.weights, offset[o]));
  return { first: Int32Array.from(taps, (t) => t.first), offset, weights };
}

const squareTapsCache = new Map<string, { across: FlatTaps; down: FlatTaps }>();

/** Both axes' taps of resizeCoverToRgb's square for a `widthPx` x `heightPx` image, flat (cached). */
export function squareTaps(widthPx: number, heightPx: number, sizePx: number): { across: FlatTaps; down: FlatTaps } {
  const key = `${widthPx},${heightPx},${sizePx}`;
  let taps = squareTapsCache.get(key);
  if (!taps) {
    if (squareTapsCache.size >= TAPS_CACHE_ENTRIES) squareTapsCache.clear();
    const [x0, y0, side] = centreSquare(widthPx, heightPx);
    taps = {
      across: flatten(cachedTaps(widthPx, x0, side, sizePx)),
      down: flatten(cachedTaps(heightPx, y0, side, sizePx)),
    };
    squareTapsCache.set(key, taps);
  }
  return taps;
}

/** An 8-bit image, row-major, interleaved: 1 channel (gray) or 3 (RGB). */
export interface PixelImage {
  widthPx: number;
  heightPx: number;
  channels: 1 | 3;
  data: Uint8Array;
}

/** Resamples `image` to its centre `sizePx` square through squareTaps' taps, as RGB. */
export type SquareResampler = (image: PixelImage, sizePx: number) => Uint8Array;

/**
 * Resize so the shorter side is `sizePx`, keep the centre `sizePx` square, and return it as RGB.
 * `resample` does the resampling: this file's JS, or the same arithmetic in the JPEG addon
 * (jpeg-addon.ts `nativeResampler`), which gives the same bytes.
 */
export function resizeCoverToRgb(
  image: PixelImage,
  sizePx: number,
  resample: SquareResampler = resampleSquareToRgb,
): Uint8Array {
  const { widthPx, heightPx } = image;
  const [x0, y0, side] = centreSquare(widthPx, heightPx);
  if (!(side === sizePx && Number.isInteger(x0) && Number.isInteger(y0))) return resample(image, sizePx);
  const square = cropSquare(image, x0, y0, sizePx);
  return image.channels === 3 ? square : grayToRgb(square);
}

/** The JS resampler. Gray images are resampled as one channel and expanded after, a third of the work. */
export function resampleSquareToRgb(image: PixelImage, sizePx: number): Uint8Array {
  const { data: src, widthPx, heightPx, channels: c } = image;
  const [x0, y0, side] = centreSquare(widthPx, heightPx);
  const across = cachedTaps(widthPx, x0, side, sizePx);
  const down = cachedTaps(heightPx, y0, side, sizePx);
  // Horizontal pass over only the source rows the vertical pass reads, kept in float.
  const rowFirst = down[0].first;
  const rowLast = down[sizePx - 1].first + down[sizePx - 1].weights.length;
  const rowElems = sizePx * c;
  const mid = new Float64Array((rowLast - rowFirst) * rowElems);
  for (let y = rowFirst; y < rowLast; y++) {
    const srcRow = y * widthPx * c;
    const midRow = (y - rowFirst) * rowElems;
    for (let x = 0; x < sizePx; x++) {
      const { first, weights } = across[x];
      for (let ch = 0; ch < c; ch++) {
        let v = 0;
        for (let k = 0; k < weights.length; k++) v += src[srcRow + (first + k) * c + ch] * weights[k];
        mid[midRow + x * c + ch] = v;
      }
    }
  }
  const out = new Uint8Array(sizePx * rowElems);
  const acc = new Float64Array(rowElems);
  for (let y = 0; y < sizePx; y++) {
    const { first, weights } = down[y];
    acc.fill(0);
    for (let k = 0; k < weights.length; k++) {
      const w = weights[k];
      const from = (first - rowFirst + k) * rowElems;
      for (let e = 0; e < rowElems; e++) acc[e] += mid[from + e] * w;
    }
    const row = y * rowElems;
    for (let e = 0; e < rowElems; e++) {
      const v = acc[e] + 0.5; // round half up: the values are >= 0
      out[row + e] = v >= 256 ? 255 : v | 0;
    }
  }
  return c === 3 ? out : grayToRgb(out);
}

function cropSquare(image: PixelImage, x0: number, y0: number, sizePx: number): Uint8Array {
  const { data, widthPx, channels: c } = image;
  if (x0 === 0 && y0 === 0 && widthPx === sizePx) return data.slice(0, sizePx * sizePx * c);
  const out = new Uint8Array(sizePx * sizePx * c);
  for (let y = 0; y < sizePx; y++) {
    const from = ((y0 + y) * widthPx + x0) * c;
    out.set(data.subarray(from, from + sizePx * c), y * sizePx * c);
  }
  return out;
}

export function grayToRgb(gray: Uint8Array): Uint8Array {
  const rgb = new Uint8Array(gray.length * 3);
  for (let i = 0; i < gray.length; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = gray[i];
  return rgb;
}
