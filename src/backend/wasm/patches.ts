/**
 * Kernel patches that make the tfjs wasm backend able to train a conv net (docs/architecture.md, "Backends"):
 *
 * 1. wasm has no `Conv2DBackpropFilter`. We build dW from wasm's own forward conv:
 *    treating the batch as the channel axis, dW is a *dilated* convolution of the padded input
 *    with the output gradient (dilation = forward stride), cropped to the filter size.
 * 2. wasm's `Conv2DBackpropInput` is a slow scalar loop. For stride 1 (and unit dilation), dx is
 *    a plain 'valid' convolution of the padded dy with the filter flipped in space and its
 *    in/out channels swapped, which runs on XNNPACK ~10x faster. Other strides keep the stock
 *    kernel.
 *
 * 3. LRN, LRNGrad and MaxPoolGrad are replaced by the faster JS versions in js-kernels.ts.
 *
 * The conv kernels are built only from other wasm *kernel functions*; calling `tf.*` ops inside
 * a kernel would record them on the tape and leak tensors. Every intermediate is disposed here.
 */
import * as tf from '@tensorflow/tfjs';
import { lrnGradKernel, lrnKernel, maxPoolGradKernel } from './js-kernels';
import type {
  Conv2DBackpropFilterAttrs,
  Conv2DBackpropInputAttrs,
  KernelConfig,
  KernelFunc,
  NamedAttrMap,
  NamedTensorInfoMap,
  TensorInfo,
} from '@tensorflow/tfjs';

const WASM = 'wasm';

/** The minimal backend surface a kernel function needs: running other kernels and freeing. */
interface KernelBackend {
  disposeData(dataId: object): boolean;
}

function callKernel(
  backend: KernelBackend,
  kernelName: string,
  inputs: NamedTensorInfoMap,
  attrs: NamedAttrMap,
): TensorInfo {
  const kernel = tf.getKernel(kernelName, WASM);
  if (kernel == null) throw new Error(`wasm backend has no ${kernelName} kernel to build on`);
  return kernel.kernelFunc({ inputs, attrs, backend: backend as never }) as TensorInfo;
}

/** Runs `fn` with a scratch list of intermediates, all freed when it returns or throws. */
function withScratch<T>(backend: KernelBackend, fn: (keep: (t: TensorInfo) => TensorInfo) => T): T {
  const scratch: TensorInfo[] = [];
  try {
    return fn((t) => {
      scratch.push(t);
      return t;
    });
  } finally {
    for (const t of scratch) backend.disposeData(t.dataId);
  }
}

function convInfoFor(
  xShape: number[],
  filterShape: number[],
  strides: number | [number, number],
  pad: Conv2DBackpropFilterAttrs['pad'],
  dimRoundingMode: Conv2DBackpropFilterAttrs['dimRoundingMode'],
  dataFormat: Conv2DBackpropFilterAttrs['dataFormat'],
): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(dataFormat),
  );
}

/** dW[kh,kw,ci,co] = sum_{n,i,j} xpad[n, i*s+kh, j*s+kw, ci] * dy[n,i,j,co]. */
export const conv2DBackpropFilter: KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as Conv2DBackpropFilterAttrs;
  if (dataFormat === 'NCHW') throw new Error('Conv2DBackpropFilter (wasm patch) supports NHWC only');
  const info = convInfoFor(x.shape, filterShape, strides, pad, dimRoundingMode, dataFormat);
  const b = backend as unknown as KernelBackend;
  return withScratch(b, (keep) => {
    const { top, bottom, left, right } = info.padInfo;
    const xPadded = keep(
      callKernel(b, 'PadV2', { x }, {
        paddings: [
          [0, 0],
          [top, bottom],
          [left, right],
          [0, 0],
        ],
        constantValue: 0,
      } as unknown as NamedAttrMap),
    );
    // [N, Hp, Wp, Ci] -> [Ci, Hp, Wp, N]: input channels become the batch, samples the channels.
    const xT = keep(callKernel(b, 'Transpose', { x: xPadded }, { perm: [3, 1, 2, 0] }));
    // [N, Ho, Wo, Co] -> [Ho, Wo, N, Co]: dy becomes an HWIO filter with I = N.
    const dyT = keep(callKernel(b, 'Transpose', { x: dy }, { perm: [1, 2, 0, 3] }));
    const corr = keep(
      callKernel(b, 'Conv2D', { x: xT, filter: dyT }, {
        strides: [1, 1],
        pad: 'valid',
        dataFormat: 'NHWC',
        dilations: [info.strideHeight, info.strideWidth],
        dimRoundingMode: undefined,
      } as unknown as NamedAttrMap),
    );
    // The correlation can be larger than the filter when padding overshoots: crop.
    const [ci, , , co] = corr.shape;
    const cropped = keep(
      callKernel(
        b,
        'Slice',
        { x: corr },
        {
          begin: [0, 0, 0, 0],
          size: [ci, info.filterHeight, info.filterWidth, co],
        },
      ),
    );
    // [Ci, KH, KW, Co] -> [KH, KW, Ci, Co]; the result is returned, so not kept as scratch.
    return callKernel(b, 'Transpose', { x: cropped }, { perm: [1, 2, 0, 3] });
  });
};

/** Wraps the stock kernel: stride-1 cases go through XNNPACK's forward conv. */
export function makeConv2DBackpropInput(stock: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
    const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as Conv2DBackpropInputAttrs;
    const info = convInfoFor(inputShape, filter.shape, strides, pad, dimRoundingMode, dataFormat);
    const padTop = info.filterHeight - 1 - info.padInfo.top;
    const padBottom = info.filterHeight - 1 - info.padInfo.bottom;
    const padLeft = info.filterWidth - 1 - info.padInfo.left;
    const padRight = info.filterWidth - 1 - info.padInfo.right;
    const usable =
      info.strideHeight === 1 &&
      info.strideWidth === 1 &&
      info.dataFormat === 'channelsLast' &&
      Math.min(padTop, padBottom, padLeft, padRight) >= 0;
    if (!usable) return stock(args);
    const b = backend as unknown as KernelBackend;
    return withScratch(b, (keep) => {
      const dyPadded = keep(
        callKernel(b, 'PadV2', { x: dy }, {
          paddings: [
            [0, 0],
            [padTop, padBottom],
            [padLeft, padRight],
            [0, 0],
          ],
          constantValue: 0,
        } as unknown as NamedAttrMap),
      );
      const flipped = keep(callKernel(b, 'Reverse', { x: filter }, { dims: [0, 1] }));
      // HWIO with I and O swapped: the transposed convolution's filter.
      const swapped = keep(callKernel(b, 'Transpose', { x: flipped }, { perm: [0, 1, 3, 2] }));
      return callKernel(b, 'Conv2D', { x: dyPadded, filter: swapped }, {
        strides: [1, 1],
        pad: 'valid',
        dataFormat: 'NHWC',
        dilations: [1, 1],
        dimRoundingMode: undefined,
      } as unknown as NamedAttrMap);
    });
  };
}

let patched = false;

/**
 * Registers the patched kernels for the 'wasm' backend. Must run after
 * '@tensorflow/tfjs-backend-wasm' is imported (its kernels registered) and is idempotent.
 */
export function patchWasmKernels(): void {
  if (patched) return;
  const stockInput: KernelConfig | undefined = tf.getKernel(tf.Conv2DBackpropInput, WASM);
  if (stockInput == null) throw new Error('import @tensorflow/tfjs-backend-wasm before patching it');
  tf.unregisterKernel(tf.Conv2DBackpropInput, WASM);
  tf.registerKernel({ ...stockInput, kernelFunc: makeConv2DBackpropInput(stockInput.kernelFunc) });
  if (tf.getKernel(tf.Conv2DBackpropFilter, WASM) == null) {
    tf.registerKernel({
      kernelName: tf.Conv2DBackpropFilter,
      backendName: WASM,
      kernelFunc: conv2DBackpropFilter,
    });
  }
  for (const [kernelName, kernelFunc] of [
    [tf.LRN, lrnKernel],
    [tf.LRNGrad, lrnGradKernel],
    [tf.MaxPoolGrad, maxPoolGradKernel],
  ] as const) {
    const stock = tf.getKernel(kernelName, WASM);
    if (stock != null) tf.unregisterKernel(kernelName, WASM);
    // No setupFunc: these kernels need nothing from the wasm module but its heap.
    tf.registerKernel({ kernelName, backendName: WASM, kernelFunc });
  }
  patched = true;
}
