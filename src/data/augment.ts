/**
 * Augmentation and normalisation as pure functions on uint8 HWC squares (the output of
 * decode/decode.ts). Pixel units: values are scaled to [0, 1] (pixel / 255) before the PCA lighting
 * and the mean/std normalisation, so DatasetStats are in [0, 1] units too.
 *
 * Krizhevsky et al. 2012: random crops + horizontal flips; PCA lighting adds
 * [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T to every pixel, a_i ~ N(0, 0.1) once per image per epoch.
 * The added colour is the same for all pixels of an image, so lighting and normalisation fold
 * into one per-channel affine map out = pixel * scale[c] + offset[c].
 */
import { Rng } from './rng';
import { loadJpegAddon, type JpegAddon } from './decode/jpeg-addon';

export interface CropBox {
  /** Left column of the crop in the source square, pixels. */
  xPx: number;
  /** Top row, pixels. */
  yPx: number;
}

/** Per-channel out = uint8 * scale[c] + offset[c]. */
export interface ChannelAffine {
  scale: [number, number, number];
  offset: [number, number, number];
}

/** What normalisation needs from DatasetStats (all in [0, 1] pixel units). */
export interface ColourStats {
  meanRgb: [number, number, number];
  stdRgb: [number, number, number];
  eigenvalues: [number, number, number];
  /** 3x3, columns are eigenvectors: eigenvectors[row][col]. */
  eigenvectors: number[][];
}

/** The paper's standard deviation of the lighting coefficients. */
export const PCA_ALPHA_STD = 0.1;

export interface AugmentParams {
  box: CropBox;
  flip: boolean;
  /** The three lighting coefficients a_i ~ N(0, PCA_ALPHA_STD). */
  alphas: [number, number, number];
}

/**
 * Draw one image's augmentation from its own generator. The draw order is fixed (x, y, flip,
 * then the three normals) so a given (seed, epoch, sample) always gets the same result.
 */
export function drawAugment(rng: Rng, srcSizePx: number, cropSizePx: number): AugmentParams {
  const span = srcSizePx - cropSizePx + 1;
  const xPx = rng.nextInt(span);
  const yPx = rng.nextInt(span);
  const flip = rng.nextU32() >= 0x80000000;
  const alphas: [number, number, number] = [
    rng.nextNormal() * PCA_ALPHA_STD,
    rng.nextNormal() * PCA_ALPHA_STD,
    rng.nextNormal() * PCA_ALPHA_STD,
  ];
  return { box: { xPx, yPx }, flip, alphas };
}

/** Centre crop; an odd margin puts the extra pixel at the bottom/right, like torchvision. */
export function centerCropBox(srcSizePx: number, cropSizePx: number): CropBox {
  const m = Math.floor((srcSizePx - cropSizePx) / 2);
  return { xPx: m, yPx: m };
}

/** The paper's ten test patches: 4 corners + centre, then the same five flipped. */
export function tenCropBoxes(srcSizePx: number, cropSizePx: number): { box: CropBox; flip: boolean }[] {
  const far = srcSizePx - cropSizePx;
  const five: CropBox[] = [
    { xPx: 0, yPx: 0 },
    { xPx: far, yPx: 0 },
    { xPx: 0, yPx: far },
    { xPx: far, yPx: far },
    centerCropBox(srcSizePx, cropSizePx),
  ];
  return [...five.map((box) => ({ box, flip: false })), ...five.map((box) => ({ box, flip: true }))];
}

/** RGB shift of the PCA lighting, [0, 1] units: sum_i p_i * a_i * l_i. */
export function pcaLightingShift(stats: ColourStats, alphas: readonly number[]): [number, number, number] {
  const shift: [number, number, number] = [0, 0, 0];
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < 3; i++) shift[c] += stats.eigenvectors[c][i] * alphas[i] * stats.eigenvalues[i];
  }
  return shift;
}

/**
 * The affine map from uint8 to the model's input: ((p / 255 + shift) - mean) / std with stats,
 * p / 255 - 0.5 without (no stats computed yet: roughly centred, unit range).
 */
export function channelAffine(stats: ColourStats | null, shiftRgb: readonly number[] = [0, 0, 0]): ChannelAffine {
  if (!stats)
    return { scale: [1 / 255, 1 / 255, 1 / 255], offset: [shiftRgb[0] - 0.5, shiftRgb[1] - 0.5, shiftRgb[2] - 0.5] };
  const scale: [number, number, number] = [0, 0, 0];
  const offset: [number, number, number] = [0, 0, 0];
  for (let c = 0; c < 3; c++) {
    scale[c] = 1 / (255 * stats.stdRgb[c]);
    offset[c] = (shiftRgb[c] - stats.meanRgb[c]) / stats.stdRgb[c];
  }
  return { scale, offset };
}

/** The JPEG addon's writeCrop on this thread (looked up once), or null where it is not built. */
let nativeWriteCrop: JpegAddon['writeCrop'] | null | undefined;

function nativeCropWriter(): JpegAddon['writeCrop'] | null {
  if (nativeWriteCrop === undefined) {
    const addon = loadJpegAddon();
    nativeWriteCrop = addon?.writeCrop?.bind(addon) ?? null;
  }
  return nativeWriteCrop;
}

/**
 * Write one crop of `src` (srcSizePx x srcSizePx x 3, uint8) into `dst` at element offset
 * `dstOffset` as cropSizePx x cropSizePx x 3 float32, optionally mirrored left-right, through
 * the per-channel affine map. The loader's only per-pixel work on the training thread: the JPEG
 * addon's loop where it is built (the same floats, 1.3-2x faster at 224 px, where writing the
 * floats bounds both), else writeCropJs.
 */
export const writeCrop: typeof writeCropJs = (src, srcSizePx, cropSizePx, box, flip, affine, dst, dstOffset) => {
  checkCropFits(srcSizePx, cropSizePx, box);
  const native = nativeCropWriter();
  if (native) {
    const map = Float64Array.of(...affine.scale, ...affine.offset);
    native(src, srcSizePx, cropSizePx, box.xPx, box.yPx, flip, map, dst, dstOffset);
  } else {
    writeCropJs(src, srcSizePx, cropSizePx, box, flip, affine, dst, dstOffset);
  }
};

function checkCropFits(srcSizePx: number, cropSizePx: number, box: CropBox): void {
  if (box.xPx < 0 || box.yPx < 0 || box.xPx + cropSizePx > srcSizePx || box.yPx + cropSizePx > srcSizePx) {
    throw new RangeError(`crop ${cropSizePx} at (${box.xPx}, ${box.yPx}) does not fit a ${srcSizePx} px square`);
  }
}

/** writeCrop in JS: out = uint8 * scale[c] + offset[c] in doubles, stored as float32. */
export function writeCropJs(
  src: Uint8Array,
  srcSizePx: number,
  cropSizePx: number,
  box: CropBox,
  flip: boolean,
  affine: ChannelAffine,
  dst: Float32Array,
  dstOffset: number,
): void {
  checkCropFits(srcSizePx, cropSizePx, box);
  const [s0, s1, s2] = affine.scale;
  const [o0, o1, o2] = affine.offset;
  let d = dstOffset;
  for (let y = 0; y < cropSizePx; y++) {
    const row = ((box.yPx + y) * srcSizePx + box.xPx) * 3;
    // Mirrored: walk the source row from its right end with a negative stride.
    let s = flip ? row + (cropSizePx - 1) * 3 : row;
    const step = flip ? -3 : 3;
    for (let x = 0; x < cropSizePx; x++, s += step, d += 3) {
      dst[d] = src[s] * s0 + o0;
      dst[d + 1] = src[s + 1] * s1 + o1;
      dst[d + 2] = src[s + 2] * s2 + o2;
    }
  }
}

/** Elements of one crop. */
export function cropElements(cropSizePx: number): number {
  return cropSizePx * cropSizePx * 3;
}

/** An image's 10 patches (tenCropBoxes order) written one after another from `dstOffset`. */
export function writeTenCrops(
  src: Uint8Array,
  srcSizePx: number,
  cropSizePx: number,
  affine: ChannelAffine,
  dst: Float32Array,
  dstOffset: number,
): void {
  const per = cropElements(cropSizePx);
  tenCropBoxes(srcSizePx, cropSizePx).forEach(({ box, flip }, k) => {
    writeCrop(src, srcSizePx, cropSizePx, box, flip, affine, dst, dstOffset + k * per);
  });
}

/**
 * The paper's evaluation input: for each image its 10 patches, image-major, so logits reshape
 * to [count, 10, classes] and the softmax is averaged over axis 1.
 */
export function tenCropBatch(
  images: readonly Uint8Array[],
  srcSizePx: number,
  cropSizePx: number,
  stats: ColourStats | null,
): Float32Array {
  const per = cropElements(cropSizePx);
  const out = new Float32Array(images.length * 10 * per);
  const affine = channelAffine(stats);
  images.forEach((img, i) => writeTenCrops(img, srcSizePx, cropSizePx, affine, out, i * 10 * per));
  return out;
}
