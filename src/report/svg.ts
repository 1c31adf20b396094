/**
 * The few SVG pieces the charts and the heat map share, as strings: no chart library, and no
 * DOM. Coordinates are rounded to 0.1 px, enough for a raster and short in the file.
 */
import { loadSharp } from '../core/sharp';
import { writeAtomic } from '../core/atomic-write';

/** Text and attribute values: class names may hold <, & or quotes. */
export function escapeXml(text: string): string {
  return text.replace(
    /[<>&'"]/g,
    (ch) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[ch] ?? ch,
  );
}

/** A coordinate: a non-finite one is a bug in the caller, and would silently drop the shape. */
export function coord(v: number): string {
  if (!Number.isFinite(v)) throw new RangeError(`non-finite SVG coordinate ${v}`);
  return String(Math.round(v * 10) / 10);
}

export const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';

export interface TextOptions {
  sizePx?: number;
  anchor?: 'start' | 'middle' | 'end';
  /** Degrees, about (x, y). */
  rotate?: number;
  weight?: 'normal' | 'bold';
  fill?: string;
}

export function svgText(x: number, y: number, text: string, o: TextOptions = {}): string {
  const rotate = o.rotate ? ` transform="rotate(${o.rotate} ${coord(x)} ${coord(y)})"` : '';
  const weight = o.weight === 'bold' ? ' font-weight="bold"' : '';
  const fill = o.fill ? ` fill="${o.fill}"` : '';
  return `<text x="${coord(x)}" y="${coord(y)}" font-size="${o.sizePx ?? 12}" text-anchor="${o.anchor ?? 'start'}"${weight}${fill}${rotate}>${escapeXml(text)}</text>`;
}

export function svgDocument(widthPx: number, heightPx: number, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${widthPx}" height="${heightPx}" viewBox="0 0 ${widthPx} ${heightPx}" font-family="${FONT}">`,
    `<rect width="${widthPx}" height="${heightPx}" fill="white"/>`,
    ...body,
    '</svg>',
  ].join('\n');
}

/**
 * Writes `svg` and its PNG rendering (librsvg through sharp, which draws the text too), each
 * atomically so a viewer refreshing the image mid-training never reads half a file.
 */
export async function writeSvgAndPng(svg: string, svgFile: string | null, pngFile: string): Promise<void> {
  const png = await loadSharp()(Buffer.from(svg)).png().toBuffer();
  if (svgFile != null) writeAtomic(svgFile, svg);
  writeAtomic(pngFile, png);
}
