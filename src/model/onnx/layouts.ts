/**
 * Weight layouts between this project's tfjs model and ONNX (and so PyTorch), as pure functions
 * each with its inverse:
 *   conv kernels   tfjs [kh, kw, in/groups, out]  <->  ONNX Conv W [out, in/groups, kh, kw]
 *   dense kernels  tfjs [in, out] (x @ W)          <->  ONNX Gemm B [out, in] with transB=1 (torch's Linear)
 *   fc6's rows     tfjs flattens NHWC maps, h-w-c  <->  ONNX/torch flatten NCHW maps, c-h-w
 * Permuting fc6's rows (rather than a Transpose before Flatten) lets a torchvision file map
 * straight onto our weights, and our file read like torchvision's.
 */

/** A 4-d array's axes permuted: out[...] = data at the permuted index; `perm[k]` is the source axis of output axis k. */
export function transpose4d(data: Float32Array, shape: readonly number[], perm: readonly number[]): Float32Array {
  if (shape.length !== 4 || data.length !== shape.reduce((a, b) => a * b, 1))
    throw new RangeError(`transpose4d: ${data.length} values do not make shape [${shape}]`);
  const outShape = perm.map((p) => shape[p]);
  const strides = [shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1];
  const s = perm.map((p) => strides[p]);
  const out = new Float32Array(data.length);
  let at = 0;
  for (let a = 0; a < outShape[0]; a++)
    for (let b = 0; b < outShape[1]; b++)
      for (let c = 0; c < outShape[2]; c++)
        for (let d = 0; d < outShape[3]; d++) out[at++] = data[a * s[0] + b * s[1] + c * s[2] + d * s[3]];
  return out;
}

/** tfjs conv kernel [kh, kw, in, out] -> ONNX [out, in, kh, kw]. */
export function convToOnnx(kernel: Float32Array, shape: readonly number[]): Float32Array {
  return transpose4d(kernel, shape, [3, 2, 0, 1]);
}

/** ONNX conv weight [out, in, kh, kw] -> tfjs [kh, kw, in, out]. */
export function convFromOnnx(weight: Float32Array, shape: readonly number[]): Float32Array {
  return transpose4d(weight, shape, [2, 3, 1, 0]);
}

/** Height, width and channels of the maps a dense layer reads flattened (fc6); null for the others. */
export interface FlattenedMaps {
  height: number;
  width: number;
  channels: number;
}

/** The tfjs (NHWC) flat index of the feature at NCHW flat index `nchw`. */
function nhwcIndex(nchw: number, maps: FlattenedMaps): number {
  const plane = maps.height * maps.width;
  const c = Math.floor(nchw / plane);
  const hw = nchw % plane;
  return hw * maps.channels + c;
}

/**
 * tfjs dense kernel [in, out] -> ONNX Gemm B [out, in] (transB=1). With `maps`, the input
 * features are reordered from NHWC to NCHW flattening (fc6).
 */
export function denseToOnnx(
  kernel: Float32Array,
  inUnits: number,
  outUnits: number,
  maps: FlattenedMaps | null,
): Float32Array {
  const out = new Float32Array(kernel.length);
  for (let i = 0; i < inUnits; i++) {
    const src = maps === null ? i : nhwcIndex(i, maps);
    for (let o = 0; o < outUnits; o++) out[o * inUnits + i] = kernel[src * outUnits + o];
  }
  return out;
}

/** ONNX Gemm B [out, in] (transB=1) -> tfjs dense kernel [in, out], NCHW features back to NHWC with `maps`. */
export function denseFromOnnx(
  weight: Float32Array,
  inUnits: number,
  outUnits: number,
  maps: FlattenedMaps | null,
): Float32Array {
  const out = new Float32Array(weight.length);
  for (let i = 0; i < inUnits; i++) {
    const dst = maps === null ? i : nhwcIndex(i, maps);
    for (let o = 0; o < outUnits; o++) out[dst * outUnits + o] = weight[o * inUnits + i];
  }
  return out;
}

/** A [rows, cols] matrix transposed (MatMul's B [in, out] to Gemm's [out, in]). */
export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}

/**
 * tfjs' SAME padding as explicit [begin, end] pads: the output is ceil(size / stride), and an
 * odd total pad puts the extra pixel at the end (TensorFlow's rule, unlike a symmetric pad).
 */
export function samePads(size: number, kernel: number, stride: number): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + kernel - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}
