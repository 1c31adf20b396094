/**
 * The benchmark charts as plain SVG strings, drawn with the run report's line charts
 * (src/report/charts.ts): training img/s against workers, one panel per preset, and all-reduce
 * bus bandwidth against message size, one panel per world size.
 */
import { lineChart, type ChartSpec, type Series } from '../src/report/charts';
import { svgDocument, svgText } from '../src/report/svg';
import type { Row as AllReduceRow } from './allreduce';
import type { TrainRow } from './train-stats';

const OURS = '#1f77b4';
const TORCH = '#d62728';
const IDEAL = '#aaaaaa';
const TRANSPORT_COLORS: Record<AllReduceRow['transport'], string> = {
  ipc: OURS,
  tcp: '#2ca02c',
  shm: '#9467bd',
  'gloo-tcp': TORCH,
};
const PANEL = { width: 420, height: 320 };
const TITLE_PX = 36;

/** Panels side by side under a title line. */
function panelsSvg(title: string, specs: readonly ChartSpec[]): string {
  const panels = specs.map((spec, i) =>
    lineChart(spec, { x: i * PANEL.width, y: TITLE_PX, width: PANEL.width, height: PANEL.height }),
  );
  return svgDocument(Math.max(1, specs.length) * PANEL.width, TITLE_PX + PANEL.height, [
    svgText(16, 24, title, { sizePx: 16, weight: 'bold' }),
    ...panels,
  ]);
}

const unique = <T>(values: readonly T[]): T[] => [...new Set(values)];

/** Ours and PyTorch img/s against workers for each preset, with ours' perfect scaling in grey. */
export function throughputChartSvg(rows: readonly TrainRow[], title: string): string {
  const specs = unique(rows.map((r) => r.preset)).map((preset): ChartSpec => {
    const rs = rows.filter((r) => r.preset === preset).sort((a, b) => a.workers - b.workers);
    const one = rs.find((r) => r.workers === 1);
    const series: Series[] = [
      { name: 'ours', color: OURS, points: rs.map((r) => ({ x: r.workers, y: r.ours.imagesPerSec })) },
      {
        name: 'PyTorch',
        color: TORCH,
        points: rs.map((r) => ({ x: r.workers, y: typeof r.torch === 'string' ? null : r.torch.imagesPerSec })),
      },
    ];
    if (one)
      series.push({
        name: 'ours ideal',
        color: IDEAL,
        points: rs.map((r) => ({ x: r.workers, y: r.workers * one.ours.imagesPerSec })),
      });
    const batch = rs[0]?.batchPerWorker ?? 0;
    return {
      title: `${preset}, batch ${batch}/worker`,
      xLabel: 'workers',
      yLabel: 'images / s',
      series,
      yScale: 'linear',
      includeZero: true,
      integerX: true,
    };
  });
  return panelsSvg(title, specs);
}

/** log2 of the size in KiB: 0 is 1 KiB, 10 is 1 MiB, 18 is 256 MiB. */
export function sizeAxisValue(bytes: number): number {
  return Math.log2(bytes / 1024);
}

/** Bus bandwidth against message size for each transport, one panel per world size. */
export function busbwChartSvg(rows: readonly AllReduceRow[], title: string): string {
  const specs = unique(rows.map((r) => r.ranks))
    .sort((a, b) => a - b)
    .map((ranks): ChartSpec => {
      const series = unique(rows.map((r) => r.transport)).map((transport): Series => ({
        name: transport === 'gloo-tcp' ? 'gloo (tcp)' : transport,
        color: TRANSPORT_COLORS[transport],
        points: rows
          .filter((r) => r.ranks === ranks && r.transport === transport)
          .sort((a, b) => a.bytes - b.bytes)
          .map((r) => ({ x: sizeAxisValue(r.bytes), y: r.busbwGBps })),
      }));
      return {
        title: `${ranks} ranks`,
        xLabel: 'size, log2 KiB (10 = 1 MiB, 20 = 1 GiB)',
        yLabel: 'bus bandwidth, GB/s',
        series,
        yScale: 'linear',
        includeZero: true,
      };
    });
  return panelsSvg(title, specs);
}
