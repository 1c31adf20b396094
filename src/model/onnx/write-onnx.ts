/**
 * `alexnet export --format onnx`: a model's variables read out of tfjs and written as one .onnx
 * file, atomically (a crash leaves no half-written file under the name).
 */
import type { AlexNet } from '../alexnet';
import type { ExportMetadata } from '../export';
import { writeAtomic } from '../../core/atomic-write';
import { encodeOnnxModel, type NamedWeights } from './export-onnx';

/** The model's weights by name, copied out of their tfjs variables. */
export function namedWeights(model: AlexNet): NamedWeights {
  return new Map(model.params.map((p) => [p.name, { shape: p.shape, data: p.variable.dataSync() as Float32Array }]));
}

export function exportOnnx(model: AlexNet, meta: ExportMetadata, file: string): number {
  const bytes = encodeOnnxModel(model.spec, namedWeights(model), meta);
  writeAtomic(file, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return bytes.length;
}
