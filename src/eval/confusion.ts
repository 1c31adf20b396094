/**
 * Confusion matrix and per-class accuracy as pure functions over plain arrays, so they can be
 * checked against hand-computed cases without a model. Counts, never rates, are accumulated:
 * batches (and ranks) combine by adding.
 */

export interface ConfusionMatrix {
  numClasses: number;
  /** Row-major [true class][predicted class] image counts. */
  counts: Int32Array;
  /**
   * Per true class, images whose scores were all NaN (a diverged model): they predict no class,
   * so they are errors and sit outside `counts`.
   */
  unscored: Int32Array;
}

export function emptyConfusion(numClasses: number): ConfusionMatrix {
  return { numClasses, counts: new Int32Array(numClasses * numClasses), unscored: new Int32Array(numClasses) };
}

/**
 * The highest score of each row; the lowest index wins ties, so `argmax == label` exactly when
 * `countTopKCorrect(.., 1)` counts the row as correct. NaN never wins; a row of NaN gives -1.
 */
export function argmaxRows(scores: Float32Array, numClasses: number): Int32Array {
  const rows = Math.floor(scores.length / numClasses);
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = -1;
    let bestScore = -Infinity;
    for (let c = 0; c < numClasses; c++) {
      const v = scores[r * numClasses + c];
      if (v > bestScore || (best === -1 && v === -Infinity)) {
        best = c;
        bestScore = v;
      }
    }
    out[r] = best;
  }
  return out;
}

/**
 * Adds one batch (row-major [labels.length, numClasses] scores) to `m`, in place: copying a
 * 1000x1000 matrix per batch would cost more than the batch's bookkeeping is worth.
 */
export function addToConfusion(m: ConfusionMatrix, scores: Float32Array, labels: Int32Array): void {
  if (scores.length !== labels.length * m.numClasses) {
    throw new RangeError(
      `scores hold ${scores.length} values, expected ${labels.length} rows x ${m.numClasses} classes`,
    );
  }
  const predicted = argmaxRows(scores, m.numClasses);
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i];
    if (label < 0 || label >= m.numClasses) throw new RangeError(`label ${label} is outside 0..${m.numClasses - 1}`);
    if (predicted[i] < 0) m.unscored[label]++;
    else m.counts[label * m.numClasses + predicted[i]]++;
  }
}

export function confusionCount(m: ConfusionMatrix, trueClass: number, predictedClass: number): number {
  return m.counts[trueClass * m.numClasses + predictedClass];
}

export interface ClassAccuracy {
  /** Images of this class evaluated. */
  images: number;
  /** Of them, predicted as this class. */
  correct: number;
  /** correct / images (the class's recall); NaN without images. */
  accuracy: number;
  /** Images of any class predicted as this one. */
  predicted: number;
  /** correct / predicted; NaN when nothing was predicted as this class. */
  precision: number;
  /** The wrong class this one is most often predicted as (lowest index on ties), -1 when never wrong. */
  mostConfusedWith: number;
}

export function perClassAccuracy(m: ConfusionMatrix): ClassAccuracy[] {
  const k = m.numClasses;
  const result: ClassAccuracy[] = [];
  for (let i = 0; i < k; i++) {
    let images = m.unscored[i];
    let predicted = 0;
    let mostConfusedWith = -1;
    for (let j = 0; j < k; j++) {
      images += confusionCount(m, i, j);
      predicted += confusionCount(m, j, i);
      const wrong = confusionCount(m, i, j);
      if (j !== i && wrong > 0 && (mostConfusedWith === -1 || wrong > confusionCount(m, i, mostConfusedWith)))
        mostConfusedWith = j;
    }
    const correct = confusionCount(m, i, i);
    result.push({
      images,
      correct,
      accuracy: images > 0 ? correct / images : NaN,
      predicted,
      precision: predicted > 0 ? correct / predicted : NaN,
      mostConfusedWith,
    });
  }
  return result;
}

/** Images in the matrix plus the unscored ones: every evaluated image once. */
export function totalImages(m: ConfusionMatrix): number {
  let n = 0;
  for (const c of m.counts) n += c;
  for (const u of m.unscored) n += u;
  return n;
}
