/**
 * Classification metrics as pure functions over plain arrays, and (sum, count) accumulators:
 * metrics are combined across steps and ranks as sums, never as averages of averages.
 */

/** Number of rows whose label is among the k highest logits (ties count against the label). */
export function countTopKCorrect(logits: Float32Array, labels: Int32Array, numClasses: number, k: number): number {
  let correct = 0;
  for (let row = 0; row < labels.length; row++) {
    const base = row * numClasses;
    const target = logits[base + labels[row]];
    let higher = 0;
    for (let c = 0; c < numClasses && higher < k; c++) {
      const v = logits[base + c];
      // A NaN score is never "correct": it must not hide a diverged model.
      if (v > target || (v === target && c < labels[row]) || Number.isNaN(target)) higher++;
    }
    if (higher < k) correct++;
  }
  return correct;
}

/** Top-k error in [0, 1]: the fraction of samples whose label is not in the k best scores. */
export function topKError(logits: Float32Array, labels: Int32Array, numClasses: number, k: number): number {
  if (labels.length === 0) return NaN;
  return 1 - countTopKCorrect(logits, labels, numClasses, k) / labels.length;
}

/** Sums that can be added across batches and ranks. */
export interface MetricSums {
  lossSum: number;
  top1Correct: number;
  top5Correct: number;
  count: number;
}

export function emptySums(): MetricSums {
  return { lossSum: 0, top1Correct: 0, top5Correct: 0, count: 0 };
}

export function addSums(a: MetricSums, b: MetricSums): MetricSums {
  return {
    lossSum: a.lossSum + b.lossSum,
    top1Correct: a.top1Correct + b.top1Correct,
    top5Correct: a.top5Correct + b.top5Correct,
    count: a.count + b.count,
  };
}

export interface MetricSummary {
  loss: number;
  top1Error: number;
  top5Error: number;
  count: number;
}

export function summarize(s: MetricSums): MetricSummary {
  const n = s.count;
  return {
    loss: n > 0 ? s.lossSum / n : NaN,
    top1Error: n > 0 ? 1 - s.top1Correct / n : NaN,
    top5Error: n > 0 ? 1 - s.top5Correct / n : NaN,
    count: n,
  };
}

/** Sums for one batch of logits. `lossSum` is the summed (not mean) cross-entropy. */
export function batchSums(logits: Float32Array, labels: Int32Array, numClasses: number, lossSum: number): MetricSums {
  return {
    lossSum,
    top1Correct: countTopKCorrect(logits, labels, numClasses, 1),
    top5Correct: countTopKCorrect(logits, labels, numClasses, Math.min(5, numClasses)),
    count: labels.length,
  };
}
