/**
 * A tiny learnable image-folder dataset made with sharp at test time: class 0 horizontal
 * stripes, class 1 vertical stripes, class 2 a checkerboard, each with a random phase, period
 * and noise. A few steps of the small preset separate them, so the loss must fall.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { mulberry32 } from '../../src/data/rng';

export const STRIPE_CLASSES = ['horizontal', 'vertical', 'checker'];

export async function stripeImage(file: string, cls: number, seed: number, sizePx = 36): Promise<void> {
  const rng = mulberry32(seed);
  const rnd = () => rng.nextFloat();
  const period = 4 + Math.floor(rnd() * 5);
  const phase = Math.floor(rnd() * period);
  const px = Buffer.alloc(sizePx * sizePx * 3);
  for (let y = 0; y < sizePx; y++) {
    for (let x = 0; x < sizePx; x++) {
      const h = Math.floor((y + phase) / (period / 2)) % 2;
      const v = Math.floor((x + phase) / (period / 2)) % 2;
      const on = cls === 0 ? h : cls === 1 ? v : h ^ v;
      const value = Math.max(0, Math.min(255, (on ? 200 : 55) + (rnd() - 0.5) * 60));
      px.fill(value, (y * sizePx + x) * 3, (y * sizePx + x) * 3 + 3);
    }
  }
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await sharp(px, { raw: { width: sizePx, height: sizePx, channels: 3 } })
    .png()
    .toFile(file);
}

/** root/{train,val,test}/<class>/<n>.png with `perClass` images per class per split. */
export async function makeStripeDataset(
  root: string,
  perClass: Record<'train' | 'val' | 'test', number>,
): Promise<string> {
  let seed = 1;
  for (const [split, count] of Object.entries(perClass)) {
    for (let c = 0; c < STRIPE_CLASSES.length; c++) {
      for (let i = 0; i < count; i++)
        await stripeImage(path.join(root, split, STRIPE_CLASSES[c], `${i}.png`), c, seed++);
    }
  }
  return root;
}
