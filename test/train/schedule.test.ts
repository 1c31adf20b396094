// Learning-rate schedules.
import t from 'tap';
import { advanceSchedule, initialScheduleState, stepLr, type ScheduleOptions } from '../../src/train/schedule';

const base: ScheduleOptions = {
  name: 'plateau',
  baseLr: 0.01,
  factor: 10,
  stepEpochs: 30,
  patience: 2,
  minDelta: 1e-4,
  maxDrops: 3,
};

t.test('step: divide by 10 every 30 epochs', async (t) => {
  const o = { ...base, name: 'step' as const };
  t.equal(stepLr(o, 0), 0.01);
  t.equal(stepLr(o, 29), 0.01);
  t.ok(Math.abs(stepLr(o, 30) - 0.001) < 1e-12);
  let s = initialScheduleState(o);
  for (let e = 0; e < 60; e++) s = advanceSchedule(o, s, e, 0.5);
  t.ok(Math.abs(s.lr - 0.0001) < 1e-12, `after 60 epochs ${s.lr}`);
});

t.test('plateau: drops after `patience` epochs without improvement, at most 3 times', async (t) => {
  let s = initialScheduleState(base);
  const errors = [0.5, 0.4, 0.41, 0.4, 0.39, 0.39, 0.39, 0.39, 0.39, 0.39, 0.39, 0.39];
  const lrs: number[] = [];
  errors.forEach((err, e) => {
    s = advanceSchedule(base, s, e, err);
    lrs.push(+s.lr.toPrecision(3));
  });
  t.same(lrs, [0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.0001, 0.0001, 0.00001, 0.00001, 0.00001, 0.00001]);
  t.equal(s.drops, 3);
});

t.test('plateau ignores epochs without a validation split', async (t) => {
  const s = advanceSchedule(base, initialScheduleState(base), 0, NaN);
  t.same(s, initialScheduleState(base));
});
