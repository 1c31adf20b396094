/**
 * The data pipeline's public surface for the trainer and the CLI. src/data never imports
 * tfjs: it produces Float32Array batches (NHWC) and Int32Array labels.
 */
export { openDataset, SPLIT_NAMES, classCounts } from './dataset';
export type { Dataset, DatasetSplit, Sample, SplitName } from './dataset';
export { BatchLoader, batchesPerEpoch } from './loader';
export type { Batch, LoaderMode, LoaderOptions, SkippedFile } from './loader';
export { computeStats, loadStats, saveStats, STATS_FILE } from './stats';
export type { DatasetStats } from './stats';
export { tenCropBatch, channelAffine, centerCropBox, tenCropBoxes } from './augment';
export { preflight, checkDataset, formatCheckReport } from './check';
export { decodeFile } from './decode';
export type { DecodeOptions } from './decode';
export { dataCommand, makeDataCommand } from './commands';
export { DEFAULT_FASHION_MNIST_DIR, FASHION_MNIST_CLASSES } from './fashion-mnist';
