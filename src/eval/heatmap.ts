/**
 * The confusion matrix as an SVG heat map: rows are true classes, columns predicted ones, each
 * cell shaded by its share of the row (so rare classes are as readable as common ones) and
 * labelled with its count while cells are large enough to hold a number.
 */
import type { ConfusionMatrix } from './confusion';
import { confusionCount, perClassAccuracy } from './confusion';
import { coord, svgDocument, svgText } from '../report/svg';

export interface Heatmap {
  svg: string;
  widthPx: number;
  heightPx: number;
}

/** Below this, class names would overlap; above it, numbers fit in the cells. */
const MIN_LABEL_CELL_PX = 9;
const MIN_NUMBER_CELL_PX = 22;
const LABEL_FONT_PX = 11;
const MAX_LABEL_CHARS = 24;

/** Cells shrink with the class count so 10 classes and 1000 both give a picture of sensible size. */
export function cellSizePx(numClasses: number): number {
  return Math.max(2, Math.min(48, Math.floor(800 / numClasses)));
}

function shortLabel(name: string): string {
  return name.length > MAX_LABEL_CHARS ? `${name.slice(0, MAX_LABEL_CHARS - 1)}…` : name;
}

/** White to dark blue; `share` in [0, 1]. */
export function shade(share: number): string {
  const s = Math.max(0, Math.min(1, share));
  const channel = (from: number, to: number) => Math.round(from + (to - from) * s);
  const hex = (v: number) => v.toString(16).padStart(2, '0');
  return `#${hex(channel(247, 8))}${hex(channel(251, 48))}${hex(channel(255, 107))}`;
}

export function confusionHeatmap(m: ConfusionMatrix, classNames: readonly string[], title: string): Heatmap {
  const k = m.numClasses;
  if (classNames.length !== k) throw new RangeError(`${classNames.length} class names for a ${k}-class matrix`);
  const cell = cellSizePx(k);
  const showLabels = cell >= MIN_LABEL_CELL_PX;
  const labelPx = showLabels
    ? Math.ceil(Math.max(...classNames.map((n) => shortLabel(n).length)) * LABEL_FONT_PX * 0.62) + 8
    : 0;
  const left = 30 + labelPx;
  const top = 56 + labelPx;
  const grid = k * cell;
  const legendPx = 80;
  const widthPx = Math.max(left + grid + legendPx, 420);
  const heightPx = top + grid + 20;
  const rows = perClassAccuracy(m);

  const body: string[] = [svgText(12, 22, title, { sizePx: 15, weight: 'bold' })];
  body.push(svgText(left + grid / 2, 44, 'predicted class', { sizePx: 12, anchor: 'middle' }));
  body.push(svgText(14, top + grid / 2, 'true class', { sizePx: 12, anchor: 'middle', rotate: -90 }));
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const count = confusionCount(m, i, j);
      // Empty cells stay background: at 1000 classes that keeps the SVG to the non-zero cells.
      if (count === 0) continue;
      const share = count / rows[i].images;
      const x = left + j * cell;
      const y = top + i * cell;
      body.push(`<rect x="${coord(x)}" y="${coord(y)}" width="${cell}" height="${cell}" fill="${shade(share)}"/>`);
      if (cell >= MIN_NUMBER_CELL_PX) {
        body.push(
          svgText(x + cell / 2, y + cell / 2 + 4, String(count), {
            sizePx: Math.min(12, Math.floor(cell / 2.6)),
            anchor: 'middle',
            fill: share > 0.5 ? 'white' : '#222',
          }),
        );
      }
    }
  }
  if (showLabels) {
    classNames.forEach((name, i) => {
      const mid = i * cell + cell / 2;
      body.push(svgText(left - 6, top + mid + 4, shortLabel(name), { sizePx: LABEL_FONT_PX, anchor: 'end' }));
      body.push(svgText(left + mid + 4, top - 6, shortLabel(name), { sizePx: LABEL_FONT_PX, rotate: -90 }));
    });
  }
  body.push(`<rect x="${left}" y="${top}" width="${grid}" height="${grid}" fill="none" stroke="#444"/>`);
  body.push(...colourLegend(left + grid + 20, top, Math.min(grid, 200)));
  return { svg: svgDocument(widthPx, heightPx, body), widthPx, heightPx };
}

/** A ten-step bar explaining the shading: share of the true class's images. */
function colourLegend(x: number, y: number, heightPx: number): string[] {
  const steps = 10;
  const out: string[] = [];
  for (let s = 0; s < steps; s++) {
    const share = 1 - s / (steps - 1);
    out.push(
      `<rect x="${coord(x)}" y="${coord(y + (s * heightPx) / steps)}" width="14" height="${coord(heightPx / steps + 0.5)}" fill="${shade(share)}"/>`,
    );
  }
  out.push(svgText(x + 18, y + 10, '100%', { sizePx: 10 }));
  out.push(svgText(x + 18, y + heightPx, '0%', { sizePx: 10 }));
  out.push(svgText(x + 18, y + heightPx / 2 + 4, 'of row', { sizePx: 10, fill: '#666' }));
  return out;
}
