// The paper's SGD update, Adam, and their state round trip.
import t from 'tap';
import * as tf from '@tensorflow/tfjs';
import type { Param } from '../../src/model/alexnet';
import { Optimizer, sgdReference, type OptimizerOptions } from '../../src/train/optimizer';

const sgd: OptimizerOptions = {
  name: 'sgd',
  momentum: 0.9,
  weightDecay: 0.0005,
  beta1: 0.9,
  beta2: 0.999,
  epsilon: 1e-8,
};

function param(name: string, kind: Param['kind'], values: number[]): Param {
  return {
    name,
    kind,
    shape: [values.length],
    variable: tf.variable(tf.tensor1d(values), true, `${name}-${Math.random()}`),
  };
}

t.before(async () => {
  await tf.setBackend('cpu');
});

t.test('SGD follows v <- 0.9 v - 0.0005 lr w - lr g; w <- w + v for three steps', async (t) => {
  const w0 = [0.5, -1.5, 2];
  const p = param('w', 'weight', w0);
  const opt = new Optimizer(sgd, [p]);
  const grads = [
    [0.1, 0.2, -0.3],
    [0.05, -0.4, 0.2],
    [1, 1, 1],
  ];
  let w = [...w0];
  let v = [0, 0, 0];
  for (const g of grads) {
    opt.apply([tf.tensor1d(g)], 0.01);
    for (let i = 0; i < 3; i++) ({ w: w[i], v: v[i] } = sgdReference(w[i], v[i], g[i], 0.01, 0.9, 0.0005));
  }
  const got = Array.from(p.variable.dataSync());
  got.forEach((x, i) => t.ok(Math.abs(x - w[i]) < 1e-6, `w[${i}] ${x} vs ${w[i]}`));
});

t.test('weight decay applies to weights, not biases; gradScale averages summed gradients', async (t) => {
  const b = param('b', 'bias', [1, 1]);
  const opt = new Optimizer(sgd, [b]);
  opt.apply([tf.tensor1d([4, 8])], 0.1, 0.25);
  t.same(
    Array.from(b.variable.dataSync()).map((x) => +x.toFixed(6)),
    [0.9, 0.8],
    'b - lr * g / 4, no decay',
  );
});

t.test('Adam first step moves each weight by about lr against the gradient sign', async (t) => {
  const p = param('w', 'weight', [1, 1]);
  const opt = new Optimizer({ ...sgd, name: 'adam', weightDecay: 0 }, [p]);
  opt.apply([tf.tensor1d([3, -0.2])], 0.001);
  const [a, b] = p.variable.dataSync();
  t.ok(Math.abs(a - 0.999) < 1e-6 && Math.abs(b - 1.001) < 1e-6, `${a}, ${b}`);
});

t.test('state round trip: a restored optimizer continues identically', async (t) => {
  const run = async (restoreAfter: number | null) => {
    const p = param('w', 'weight', [0.3, -0.7]);
    let opt = new Optimizer(sgd, [p]);
    for (let s = 0; s < 4; s++) {
      if (s === restoreAfter) {
        const state = await opt.getState();
        opt = new Optimizer(sgd, [p]);
        opt.setState(state);
      }
      opt.apply([tf.tensor1d([0.1 * (s + 1), -0.2])], 0.05);
    }
    return Array.from(p.variable.dataSync());
  };
  t.same(await run(2), await run(null));
  const fresh = new Optimizer(sgd, [param('w', 'weight', [1])]);
  t.throws(() => fresh.setState({ name: 'adam', iterations: 1, slots: {} }), /adam/);
});

t.test('--lr-mult scales exactly its layer: kernel and bias, SGD (decay too) and Adam', async (t) => {
  for (const name of ['sgd', 'adam'] as const) {
    const make = () => [
      param('fc7/kernel', 'weight', [0.5, -1]),
      param('fc7/bias', 'bias', [0.1, 0.2]),
      param('fc8/kernel', 'weight', [0.3, 0.7]),
      param('fc8/bias', 'bias', [-0.2, 0.4]),
    ];
    const grads = () =>
      [
        [0.2, -0.1],
        [0.05, 0.3],
        [-0.4, 0.25],
        [0.15, -0.05],
      ].map((g) => tf.tensor1d(g));
    const update = (lrMult?: Record<string, number>): number[][] => {
      const params = make();
      const before = params.map((p) => Array.from(p.variable.dataSync()));
      new Optimizer({ ...sgd, name, lrMult }, params).apply(grads(), 0.01, 0.5);
      return params.map((p, i) => Array.from(p.variable.dataSync()).map((w, k) => w - before[i][k]));
    };
    const base = update();
    const scaled = update({ fc8: 10 });
    for (const [i, label] of ['fc7/kernel', 'fc7/bias', 'fc8/kernel', 'fc8/bias'].entries()) {
      const factor = label.startsWith('fc8') ? 10 : 1;
      base[i].forEach((d, k) => {
        t.ok(d !== 0, `${name} ${label}[${k}] moves`);
        const ratio = scaled[i][k] / d;
        t.ok(
          Math.abs(ratio - factor) < 1e-4 * factor,
          `${name} ${label}[${k}]: update x${ratio.toFixed(6)}, want x${factor}`,
        );
      });
    }
  }
});

t.test(
  'state is matched by param name: a param without saved slots starts at zero, extra slots are left out',
  async (t) => {
    const a = param('conv1/kernel', 'weight', [1, 2]);
    const b = param('fc8/kernel', 'weight', [3, 4]);
    const onlyB = new Optimizer(sgd, [b]); // conv1 frozen
    onlyB.apply([tf.tensor1d([1, 1])], 0.1);
    const saved = await onlyB.getState();
    t.same(saved.params, ['fc8/kernel'], 'slots for the trained param only');
    t.equal(saved.slots.velocity.length, 1);
    const both = new Optimizer(sgd, [a, b]); // conv1 unfrozen on resume
    both.setState(saved);
    const [va, vb] = both.slotVariables()[0].map((v) => Array.from(v.dataSync()));
    t.same(va, [0, 0], 'conv1: fresh slots');
    t.same(vb, Array.from(saved.slots.velocity[0]), 'fc8: its saved velocity');
    const onlyA = new Optimizer(sgd, [a]);
    onlyA.setState({ ...saved, params: ['fc8/kernel'] });
    t.same(
      Array.from(onlyA.slotVariables()[0][0].dataSync()),
      [0, 0],
      'a saved slot of a param not trained here is left out',
    );
  },
);
