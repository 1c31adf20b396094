/**
 * Per-epoch progress: a redrawn bar on a terminal, plain lines (every ~10% of the epoch) when
 * the output is a file or CI log, in the spirit of pytorch/examples' ProgressMeter.
 */
import type { Logger } from '../core/log';
import { formatPercent } from '../core/text-format';

export interface ProgressSnapshot {
  step: number;
  totalSteps: number;
  loss: number;
  top1Error: number;
  imagesPerSec: number;
  elapsedMs: number;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '--:--';
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

export function etaMs(p: Pick<ProgressSnapshot, 'step' | 'totalSteps' | 'elapsedMs'>): number {
  return p.step > 0 ? (p.elapsedMs / p.step) * (p.totalSteps - p.step) : NaN;
}

export function formatProgress(label: string, p: ProgressSnapshot, barWidth = 24): string {
  const frac = p.totalSteps > 0 ? Math.min(1, p.step / p.totalSteps) : 0;
  const filled = Math.round(frac * barWidth);
  const bar = '='.repeat(Math.max(0, filled - 1)) + (filled > 0 ? '>' : '') + ' '.repeat(barWidth - filled);
  const width = String(p.totalSteps).length;
  return (
    `${label} [${bar}] ${String(p.step).padStart(width)}/${p.totalSteps}` +
    `  loss ${p.loss.toFixed(4)}  top-1 ${formatPercent(p.top1Error)}` +
    `  ${p.imagesPerSec.toFixed(1)} img/s  ETA ${formatDuration(etaMs(p))}`
  );
}

export class ProgressBar {
  private lastLineStep = 0;
  private drawn = false;

  constructor(
    private readonly label: string,
    private readonly log: Logger,
    private readonly tty: boolean,
    private readonly write: (s: string) => void = (s) => process.stderr.write(s),
  ) {}

  update(p: ProgressSnapshot): void {
    if (this.tty) {
      this.write(`\r${formatProgress(this.label, p)}\x1b[K`);
      this.drawn = true;
      return;
    }
    const every = Math.max(1, Math.ceil(p.totalSteps / 10));
    if (p.step - this.lastLineStep >= every || p.step === p.totalSteps) {
      this.lastLineStep = p.step;
      this.log.info(formatProgress(this.label, p));
    }
  }

  /** Ends the bar's line so the next output starts on a fresh one. */
  finish(): void {
    if (this.tty && this.drawn) this.write('\n');
    this.drawn = false;
  }
}
