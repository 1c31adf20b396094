/**
 * sharp (libvips), loaded at its first use. Loading it costs a process or a decode thread ~0.1 s
 * of CPU; a run on plain PNGs decodes them in JS (data/decode/png.ts) and its ranks other than 0
 * draw no report, so most of them never need it.
 */
import type Sharp from 'sharp';

let sharpModule: typeof Sharp | null = null;

export function loadSharp(): typeof Sharp {
  sharpModule ??= require('sharp') as typeof Sharp;
  return sharpModule;
}
