/** A Keras-style model summary table (layer, output shape, parameters), like the seed notebook's. */
import { layerShapes } from './alexnet';
import type { ModelSpec } from './presets';

export function formatSummary(spec: ModelSpec, numClasses: number): string {
  const rows = layerShapes(spec, numClasses);
  const header = ['Layer', 'Output shape', 'Params'];
  const body = rows.map((r) => [
    r.layer,
    `(${['batch', ...r.outputShape].join(', ')})`,
    r.params.toLocaleString('en-US'),
  ]);
  const input = ['input', `(batch, ${spec.inputSize}, ${spec.inputSize}, 3)`, '0'];
  const all = [header, input, ...body];
  const widths = header.map((_, c) => Math.max(...all.map((r) => r[c].length)));
  const line = (r: string[]) =>
    r.map((cell, c) => (c === 2 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ');
  const rule = '-'.repeat(widths.reduce((a, b) => a + b + 2, -2));
  const total = rows.reduce((s, r) => s + r.params, 0);
  return [
    `Model: AlexNet '${spec.preset}' (${spec.activation}, ${spec.lrn ? 'LRN' : 'no LRN'}, pool ${spec.pool.window}/${spec.pool.stride}, dropout ${spec.dropoutRate})`,
    rule,
    line(header),
    rule,
    ...[input, ...body].map(line),
    rule,
    `Total params: ${total.toLocaleString('en-US')}`,
  ].join('\n');
}
