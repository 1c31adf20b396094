/**
 * `train --init-from FILE`: a new run that starts from another model's weights (fine-tuning).
 * FILE is one of our checkpoints (or a run directory: its best.ckpt, else last.ckpt), a folder
 * of our exported tfjs model, or an ONNX file of an AlexNet whose layers fit a preset
 * (torchvision's, from torch.onnx.export). Layers are matched by order and shape; a mismatch
 * names the layer and both shapes. When the class count differs, fc8 keeps its fresh
 * initialisation (the head is replaced). Unlike --resume, nothing else carries over: epoch 1,
 * fresh optimizer state and schedule.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { layerOfParam, PRESET_NAMES, validateTrainConfig, type PresetName, type TrainConfig } from '../core/config';
import { ConfigError, ModelFileError } from '../core/errors';
import type { Logger } from '../core/log';
import type { AlexNet } from '../model/alexnet';
import { folderIOHandler, MODEL_JSON, type ExportMetadata } from '../model/export';
import { flattenedMaps, type NamedWeights } from '../model/onnx/export-onnx';
import { onnxMismatch, onnxWeights, readOnnxNetwork } from '../model/onnx/import-onnx';
import { buildSpec, type ModelSpec } from '../model/presets';
import { BEST_CHECKPOINT, LAST_CHECKPOINT, loadCheckpoint } from './run/checkpoint';

export type InitFormat = 'checkpoint' | 'tfjs model' | 'ONNX';

/** A file --init-from names, read once. */
export interface InitSource {
  file: string;
  format: InitFormat;
  /** The preset the file records (our checkpoints and exports); null for ONNX (found by fitting). */
  recordedPreset: PresetName | null;
  /** The first layer where the file does not fit `spec` (fc8's class count aside), or null. */
  mismatch(spec: ModelSpec): string | null;
  /** Its weights by our parameter names, in our layouts, for a spec it fits. */
  weights(spec: ModelSpec): NamedWeights;
}

/** Every parameter's shape in a spec, fc8's output count left free (-1). */
export function paramShapes(spec: ModelSpec): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  let channels = 3;
  for (const c of spec.convs) {
    shapes.set(`${c.name}/kernel`, [c.kernel, c.kernel, channels / c.groups, c.filters]);
    shapes.set(`${c.name}/bias`, [c.filters]);
    channels = c.filters;
  }
  const maps = flattenedMaps(spec);
  let units = maps.height * maps.width * maps.channels;
  for (const h of [...spec.hidden, { name: 'fc8', units: -1 }]) {
    shapes.set(`${h.name}/kernel`, [units, h.units]);
    shapes.set(`${h.name}/bias`, [h.units]);
    units = h.units;
  }
  return shapes;
}

const shapeText = (s: readonly number[]) => `[${s.map((d) => (d < 0 ? 'classes' : d)).join(', ')}]`;

/** Named weights against a spec's shapes: the first one missing or of another shape. */
export function namedMismatch(weights: NamedWeights, spec: ModelSpec): string | null {
  for (const [name, want] of paramShapes(spec)) {
    const got = weights.get(name)?.shape;
    if (got === undefined) return `${name}: not in the file`;
    const fits = got.length === want.length && got.every((d, i) => want[i] < 0 || d === want[i]);
    if (!fits) return `${name}: the file's is ${shapeText(got)}, preset ${spec.preset}'s is ${shapeText(want)}`;
  }
  return null;
}

function namedSource(file: string, format: InitFormat, preset: PresetName, weights: NamedWeights): InitSource {
  return {
    file,
    format,
    recordedPreset: preset,
    mismatch: (spec) => namedMismatch(weights, spec),
    weights: () => weights,
  };
}

function checkpointSource(file: string): InitSource {
  const ckpt = loadCheckpoint(file);
  const weights = new Map(ckpt.weights.map((w) => [w.name, { shape: w.shape, data: w.data }]));
  return namedSource(file, 'checkpoint', ckpt.config.preset, weights);
}

async function exportedModelSource(dir: string): Promise<InitSource> {
  const { load } = folderIOHandler(dir);
  if (load === undefined) throw new RangeError('folderIOHandler without load');
  const artifacts = await load();
  const meta = (artifacts.userDefinedMetadata as { alexnet?: ExportMetadata } | undefined)?.alexnet;
  if (meta === undefined || !(PRESET_NAMES as readonly string[]).includes(meta.preset))
    throw new ModelFileError(
      `${dir}/${MODEL_JSON} is not an alexnet export: it has no alexnet metadata naming a preset`,
    );
  const specs = artifacts.weightSpecs ?? [];
  const tensors = tf.io.decodeWeights(artifacts.weightData as ArrayBuffer, specs);
  const weights = new Map(
    Object.entries(tensors).map(([name, t]) => {
      const w = { shape: t.shape, data: t.dataSync() as Float32Array };
      t.dispose();
      return [name, w];
    }),
  );
  return namedSource(dir, 'tfjs model', meta.preset as PresetName, weights);
}

function onnxSource(file: string, bytes: Uint8Array): InitSource {
  const net = readOnnxNetwork(bytes);
  return {
    file,
    format: 'ONNX',
    recordedPreset: null,
    mismatch: (spec) => onnxMismatch(net, spec),
    weights: (spec) => onnxWeights(net, spec),
  };
}

const CHECKPOINT_MAGIC = Buffer.from('ALEXNETCKPT1');

/** Reads what --init-from names, by what it is (not by its name). */
export async function readInitSource(target: string): Promise<InitSource> {
  if (!fs.existsSync(target)) throw new ConfigError(`--init-from '${target}' does not exist`);
  if (fs.statSync(target).isDirectory()) {
    if (fs.existsSync(path.join(target, MODEL_JSON))) return exportedModelSource(target);
    const best = path.join(target, BEST_CHECKPOINT);
    return checkpointSource(fs.existsSync(best) ? best : path.join(target, LAST_CHECKPOINT));
  }
  const bytes = fs.readFileSync(target);
  if (bytes.subarray(0, CHECKPOINT_MAGIC.length).equals(CHECKPOINT_MAGIC)) return checkpointSource(target);
  try {
    return onnxSource(target, bytes);
  } catch (err) {
    if (!(err instanceof ModelFileError)) throw err;
    throw new ModelFileError(
      `--init-from ${target}: ${err.message} (an --init-from file is a checkpoint, an exported model folder or an AlexNet ONNX file)`,
    );
  }
}

/**
 * The run's preset for an --init-from file: `--preset` when given (it must fit), else the one
 * the file records, else the first that fits. Returns the config with it, and a line to log.
 */
export function initPreset(
  config: TrainConfig,
  source: InitSource,
  presetGiven: boolean,
): { config: TrainConfig; note: string } {
  const tryPreset = (p: PresetName) => ({ preset: p, mismatch: source.mismatch(buildSpec(p, config.model)) });
  const candidates: readonly PresetName[] = presetGiven
    ? [config.preset]
    : source.recordedPreset
      ? [source.recordedPreset]
      : PRESET_NAMES;
  const tried = candidates.map(tryPreset);
  const fit = tried.find((t) => t.mismatch === null);
  if (fit === undefined) {
    const why = tried.map((t) => (candidates.length > 1 ? `${t.preset}: ${t.mismatch}` : t.mismatch)).join('; ');
    const what = candidates.length > 1 ? 'fits no preset' : `does not fit --preset ${candidates[0]}`;
    throw new ModelFileError(`--init-from ${source.file} (${source.format}) ${what}: ${why}`);
  }
  const chosen = presetGiven ? 'as given' : source.recordedPreset ? "the file's" : 'the one its layers fit';
  return {
    config: validateTrainConfig({ ...config, preset: fit.preset }, '--init-from'),
    note: `--init-from ${source.file} (${source.format}): preset ${fit.preset} (${chosen})`,
  };
}

/**
 * Sets the model's weights from the source; fc8 keeps its fresh initialisation when the file's
 * class count differs from the model's, and so does every layer in `reinit` (--reinit). Returns
 * the one line to log.
 */
export function applyInitFrom(model: AlexNet, source: InitSource, reinit: ReadonlySet<string> = new Set()): string {
  const mismatch = source.mismatch(model.spec);
  if (mismatch !== null) throw new ModelFileError(`--init-from ${source.file} does not fit this model: ${mismatch}`);
  const weights = source.weights(model.spec);
  const fileClasses = weights.get('fc8/bias')?.shape[0] ?? model.numClasses;
  const replaceHead = fileClasses !== model.numClasses;
  tf.tidy(() => {
    for (const p of model.params) {
      if ((replaceHead && p.name.startsWith('fc8/')) || reinit.has(layerOfParam(p.name))) continue;
      const w = weights.get(p.name);
      if (w === undefined) throw new ModelFileError(`--init-from ${source.file}: ${p.name} is missing`);
      p.variable.assign(tf.tensor(w.data, p.shape));
    }
  });
  const loaded = `weights from ${source.file} (${source.format})`;
  const fresh = reinit.size > 0 ? `; fresh (--reinit): ${[...reinit].join(', ')}` : '';
  if (replaceHead)
    return `${loaded}; fc8 replaced: the file has ${fileClasses} classes, the dataset ${model.numClasses}, so fc8 starts fresh with ${model.numClasses} outputs${fresh}`;
  return reinit.has('fc8') ? `${loaded}${fresh}` : `${loaded}, fc8 included (${fileClasses} classes)${fresh}`;
}

/** `alexnet train` with --init-from: the config with the file's preset, and the line that says so. */
export async function resolveInitFrom(config: TrainConfig, presetGiven: boolean, log: Logger): Promise<TrainConfig> {
  if (config.reinit !== null && config.initFrom === null)
    throw new ConfigError('--reinit names layers that --init-from leaves fresh: it needs --init-from');
  if (config.initFrom === null) return config;
  if (config.resume !== null)
    throw new ConfigError(
      '--init-from starts a new run from weights, --resume continues a run (with its optimizer and position): pass one of them',
    );
  const { config: fitted, note } = initPreset(config, await readInitSource(config.initFrom), presetGiven);
  log.info(note);
  return fitted;
}
