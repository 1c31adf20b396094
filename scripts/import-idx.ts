/**
 * Import an MNIST-family dataset shipped as IDX files (MNIST, Fashion-MNIST, KMNIST...) into
 * an image folder: <out>/{train,test}/<class>/<index>.png, keeping the official split;
 * --val N carves a stratified, seeded validation split out of train. Idempotent like
 * make-fashion-mnist.
 *
 *   apt-get install dataset-fashion-mnist   # Debian ships the official IDX files
 *   npx tsc && node dist/scripts/import-idx.js /usr/share/datasets/fashion-mnist --out data/fashion-mnist-idx --val 5000
 *
 * Expects train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
 * t10k-labels-idx1-ubyte in the folder, each optionally gzipped (.gz).
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import yargs from 'yargs';
import { DataError, UserError } from '../src/core/errors';
import { SplitName } from '../src/data/index/dataset';
import { FASHION_MNIST_CLASSES } from '../src/data/commands/fashion-mnist';
import { idxImages, readIdxFile } from '../src/data/commands/idx';
import { buildImageTree, isCompleteTree, TreeImage } from '../src/data/commands/image-tree';
import { stratifiedSplit } from '../src/data/commands/split';

const FORMAT_VERSION = 1;

/** The file for `base`, plain or gzipped. */
function findIdx(dir: string, base: string): string {
  for (const name of [base, `${base}.gz`]) if (existsSync(path.join(dir, name))) return path.join(dir, name);
  throw new DataError(`${dir}: missing ${base}(.gz)`);
}

async function readPart(dir: string, prefix: 'train' | 't10k'): Promise<ReturnType<typeof idxImages>> {
  const images = await readIdxFile(findIdx(dir, `${prefix}-images-idx3-ubyte`));
  const labels = await readIdxFile(findIdx(dir, `${prefix}-labels-idx1-ubyte`));
  return idxImages(images, labels, `${dir} (${prefix})`);
}

function classNames(choice: string, dir: string): string[] {
  const kind = choice === 'auto' ? (/fashion/i.test(dir) ? 'fashion' : 'digits') : choice;
  if (kind === 'fashion') return [...FASHION_MNIST_CLASSES];
  if (kind === 'digits') return Array.from({ length: 10 }, (_, i) => String(i));
  return kind.split(',').map((s) => s.trim());
}

async function main(): Promise<void> {
  const args = await yargs(process.argv.slice(2))
    .command('$0 <dir>', 'import IDX files')
    .positional('dir', { type: 'string', demandOption: true })
    .option('out', { type: 'string', demandOption: true })
    .option('classes', {
      type: 'string',
      default: 'auto',
      describe: "'fashion', 'digits', a comma-separated list, or 'auto' (fashion if the folder name says so)",
    })
    .option('val', {
      type: 'number',
      default: 0,
      describe: 'validation images taken from train (count, or fraction < 1)',
    })
    .option('seed', { type: 'number', default: 0 })
    .strict()
    .parseAsync();
  const dir = path.resolve(args.dir);
  const classes = classNames(args.classes, dir);
  const params = { source: dir, classes, val: args.val, seed: args.seed, version: FORMAT_VERSION };
  if (await isCompleteTree(args.out, params)) {
    console.log(`${args.out} is already complete`);
    return;
  }
  const train = await readPart(dir, 'train');
  const test = await readPart(dir, 't10k');
  const bad = [...train.labels, ...test.labels].find((l) => l >= classes.length);
  if (bad !== undefined)
    throw new DataError(`label ${bad} but only ${classes.length} class names (${classes.join(', ')}); pass --classes`);
  const trainSplit: SplitName[] = stratifiedSplit(train.labels, { val: args.val, test: 0 }, args.seed);
  const tree: TreeImage[] = [
    ...train.pixels.map((pixels, i) => ({
      split: trainSplit[i],
      className: classes[train.labels[i]],
      fileName: `train-${String(i).padStart(5, '0')}.png`,
      pixels,
    })),
    ...test.pixels.map((pixels, i) => ({
      split: 'test' as const,
      className: classes[test.labels[i]],
      fileName: `t10k-${String(i).padStart(5, '0')}.png`,
      pixels,
    })),
  ];
  const marker = await buildImageTree(
    args.out,
    tree,
    { widthPx: train.widthPx, heightPx: train.heightPx, channels: 1 },
    params,
  );
  console.log(
    `wrote ${tree.length} PNGs to ${args.out}: ${JSON.stringify(marker.counts)} (classes: ${classes.join(', ')})`,
  );
}

main().catch((err: unknown) => {
  if (err instanceof UserError) {
    console.error(`error: ${err.message}`);
    process.exit(err.exitCode);
  }
  throw err;
});
