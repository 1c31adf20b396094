/**
 * Learning-rate schedules as small pure state machines, so they can be saved in a checkpoint
 * and tested without a model.
 */
import type { ScheduleName } from '../core/config';

export interface ScheduleOptions {
  name: ScheduleName;
  baseLr: number;
  /** Divide by this at each drop (paper: 10). */
  factor: number;
  /** step: drop every `stepEpochs` epochs. */
  stepEpochs: number;
  /** plateau: drop after this many epochs without a validation improvement. */
  patience: number;
  /** plateau: an improvement must lower the error by more than this (absolute). */
  minDelta: number;
  /** plateau: the paper divided the rate three times in all. */
  maxDrops: number;
}

export interface ScheduleState {
  lr: number;
  drops: number;
  bestError: number;
  epochsSinceBest: number;
}

export function initialScheduleState(o: ScheduleOptions): ScheduleState {
  return { lr: o.baseLr, drops: 0, bestError: Infinity, epochsSinceBest: 0 };
}

/** The rate for a 0-based epoch under the step schedule. */
export function stepLr(o: ScheduleOptions, epoch: number): number {
  return o.baseLr / o.factor ** Math.floor(epoch / o.stepEpochs);
}

/**
 * Called once at the end of every epoch (0-based `epoch` just finished) with that epoch's
 * validation error (NaN when there is no validation split); returns the state for the next
 * epoch.
 */
export function advanceSchedule(o: ScheduleOptions, s: ScheduleState, epoch: number, valError: number): ScheduleState {
  switch (o.name) {
    case 'constant':
      return s;
    case 'step':
      return { ...s, lr: stepLr(o, epoch + 1), drops: Math.floor((epoch + 1) / o.stepEpochs) };
    case 'plateau': {
      if (Number.isNaN(valError)) return s;
      if (valError < s.bestError - o.minDelta) return { ...s, bestError: valError, epochsSinceBest: 0 };
      const waited = s.epochsSinceBest + 1;
      if (waited >= o.patience && s.drops < o.maxDrops) {
        return {
          lr: s.lr / o.factor,
          drops: s.drops + 1,
          bestError: Math.min(s.bestError, valError),
          epochsSinceBest: 0,
        };
      }
      return { ...s, bestError: Math.min(s.bestError, valError), epochsSinceBest: waited };
    }
  }
}
