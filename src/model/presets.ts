/**
 * AlexNet presets as data. The model code (alexnet.ts) reads only these specs, so a preset is
 * the whole description of a network: geometry, grouping, LRN, pooling and initialisation.
 */
import type { ModelChoice, PresetName } from '../core/config';

/** Padding of one conv layer: tfjs' 'same'/'valid', or an explicit symmetric pixel count. */
export type ConvPad = 'same' | 'valid' | number;

export interface ConvSpec {
  name: string;
  filters: number;
  kernel: number;
  stride: number;
  pad: ConvPad;
  /** 2 for the paper's two-GPU split (conv2/4/5): each half sees half the input maps. */
  groups: number;
  /** Local response normalisation after the ReLU (paper: conv1, conv2). */
  lrn: boolean;
  /** Max-pool after this layer (and after the LRN). */
  pool: boolean;
  /** Initial bias: the paper uses 1 in conv2/4/5 so ReLUs start in their positive part. */
  biasInit: number;
}

export interface DenseSpec {
  name: string;
  units: number;
  biasInit: number;
}

export interface LrnSpec {
  /** Channels on each side: the paper's n = 5 is depthRadius 2. */
  depthRadius: number;
  /** k in the paper. */
  bias: number;
  /** alpha, NOT divided by n (the paper's formula and tfjs', unlike Caffe/PyTorch). */
  alpha: number;
  beta: number;
}

export interface ModelSpec {
  preset: PresetName;
  /** Side of the square input crop (paper: 227; the paper's text says 224). */
  inputSize: number;
  /** Shorter side the data pipeline resizes to before cropping (paper: 256). */
  resizeSize: number;
  convs: ConvSpec[];
  /** Hidden fully connected layers; the classifier layer (fc8) is added for the class count. */
  hidden: DenseSpec[];
  /** Where dropout goes: after each hidden FC (paper) or before it (torchvision). */
  dropoutPlacement: 'after' | 'before';
  dropoutRate: number;
  activation: 'relu' | 'tanh';
  /** null: no LRN anywhere (torchvision, or the ablation). */
  lrn: LrnSpec | null;
  pool: { window: number; stride: number };
  /** Standard deviation of the N(0, s) weight initialisation (paper: 0.01). */
  weightInitStd: number | 'he';
}

const PAPER_LRN: LrnSpec = { depthRadius: 2, bias: 2, alpha: 1e-4, beta: 0.75 };

function conv(
  name: string,
  filters: number,
  kernel: number,
  stride: number,
  pad: ConvPad,
  opts: Partial<Pick<ConvSpec, 'groups' | 'lrn' | 'pool' | 'biasInit'>> = {},
): ConvSpec {
  return { name, filters, kernel, stride, pad, groups: 1, lrn: false, pool: false, biasInit: 0, ...opts };
}

/** Krizhevsky et al. 2012, as in cuda-convnet's two-GPU config: 60,965,224 params at 1000 classes. */
const paper: ModelSpec = {
  preset: 'paper',
  inputSize: 227,
  resizeSize: 256,
  convs: [
    conv('conv1', 96, 11, 4, 'valid', { lrn: true, pool: true }),
    conv('conv2', 256, 5, 1, 2, { groups: 2, lrn: true, pool: true, biasInit: 1 }),
    conv('conv3', 384, 3, 1, 1),
    conv('conv4', 384, 3, 1, 1, { groups: 2, biasInit: 1 }),
    conv('conv5', 256, 3, 1, 1, { groups: 2, pool: true, biasInit: 1 }),
  ],
  hidden: [
    { name: 'fc6', units: 4096, biasInit: 1 },
    { name: 'fc7', units: 4096, biasInit: 1 },
  ],
  dropoutPlacement: 'after',
  dropoutRate: 0.5,
  activation: 'relu',
  lrn: PAPER_LRN,
  pool: { window: 3, stride: 2 },
  weightInitStd: 0.01,
};

/** torchvision.models.alexnet ("one weird trick"): 61,100,840 params at 1000 classes. */
const torchvision: ModelSpec = {
  preset: 'torchvision',
  inputSize: 224,
  resizeSize: 256,
  convs: [
    conv('conv1', 64, 11, 4, 2, { pool: true }),
    conv('conv2', 192, 5, 1, 2, { pool: true }),
    conv('conv3', 384, 3, 1, 1),
    conv('conv4', 256, 3, 1, 1),
    conv('conv5', 256, 3, 1, 1, { pool: true }),
  ],
  hidden: [
    { name: 'fc6', units: 4096, biasInit: 0 },
    { name: 'fc7', units: 4096, biasInit: 0 },
  ],
  dropoutPlacement: 'before',
  dropoutRate: 0.5,
  activation: 'relu',
  lrn: null,
  pool: { window: 3, stride: 2 },
  weightInitStd: 'he',
};

/**
 * The paper's topology (5 conv + 3 FC, LRN after conv1/2, grouped conv2/4/5, overlapping 3/2
 * pooling, dropout) scaled down for CPUs and small images: 28 px crops of a 32 px square (the
 * paper's 227 of 256, near enough), a 5x5 stride-1 first layer instead of 11x11 stride 4 (a
 * 28 px image has no room for it), channel counts divided by 3-4, 256-unit hidden layers.
 * Geometry: 28 -> pool 13 -> pool 6 -> pool 2.
 */
const small: ModelSpec = {
  preset: 'small',
  inputSize: 28,
  resizeSize: 32,
  convs: [
    conv('conv1', 32, 5, 1, 'same', { lrn: true, pool: true }),
    conv('conv2', 64, 5, 1, 2, { groups: 2, lrn: true, pool: true, biasInit: 1 }),
    conv('conv3', 96, 3, 1, 1),
    conv('conv4', 96, 3, 1, 1, { groups: 2, biasInit: 1 }),
    conv('conv5', 64, 3, 1, 1, { groups: 2, pool: true, biasInit: 1 }),
  ],
  hidden: [
    { name: 'fc6', units: 256, biasInit: 1 },
    { name: 'fc7', units: 256, biasInit: 1 },
  ],
  dropoutPlacement: 'after',
  dropoutRate: 0.5,
  activation: 'relu',
  lrn: PAPER_LRN,
  pool: { window: 3, stride: 2 },
  weightInitStd: 0.01,
};

export const PRESETS: Readonly<Record<PresetName, ModelSpec>> = { paper, torchvision, small };

/**
 * The initialisation a preset gets without --init (or with --init preset): the paper's
 * N(0, 0.01) where the paper's scale makes it work, He for the small preset, where N(0, 0.01)
 * leaves the loss flat at chance (docs/measurements.md, "Small preset initialisation"). The
 * presets themselves are written with the paper's init, so --init paper restores it exactly.
 */
export const PRESET_DEFAULT_INIT: Readonly<Partial<Record<PresetName, 'paper' | 'he'>>> = { small: 'he' };

/** The preset with a run's changes (TrainConfig.model): a null dropout rate or init 'preset' keeps the preset's. */
export function buildSpec(preset: PresetName, overrides: Partial<ModelChoice> = {}): ModelSpec {
  const base = PRESETS[preset];
  const init =
    overrides.init === undefined || overrides.init === 'preset' ? PRESET_DEFAULT_INIT[preset] : overrides.init;
  const spec: ModelSpec = {
    ...base,
    convs: base.convs.map((c) => ({ ...c })),
    hidden: base.hidden.map((h) => ({ ...h })),
  };
  if (overrides.activation) spec.activation = overrides.activation;
  if (overrides.lrn === false) spec.lrn = null;
  if (overrides.overlappingPool === false) spec.pool = { window: 2, stride: 2 };
  if (overrides.dropoutRate != null) spec.dropoutRate = overrides.dropoutRate;
  if (init === 'paper') spec.weightInitStd = 0.01;
  if (init === 'he') {
    spec.weightInitStd = 'he';
    // Bias 1 was chosen for N(0, 0.01) weights; on He-scaled weights it inflates every
    // activation (docs/measurements.md, "Small preset initialisation"). 0.1 is what Caffe's
    // AlexNet settled on.
    for (const layer of [...spec.convs, ...spec.hidden]) if (layer.biasInit === 1) layer.biasInit = 0.1;
  }
  return spec;
}
