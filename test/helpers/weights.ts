import type { CheckpointContents } from '../../src/train/run/checkpoint';

/** The largest max|a - b| / max|a| over the tensors of two checkpoints of one model. */
export function maxRelativeDifference(a: CheckpointContents['weights'], b: CheckpointContents['weights']): number {
  let maxRel = 0;
  a.forEach((w, i) => {
    let diff = 0;
    let ref = 0;
    for (let k = 0; k < w.data.length; k++) {
      diff = Math.max(diff, Math.abs(w.data[k] - b[i].data[k]));
      ref = Math.max(ref, Math.abs(w.data[k]));
    }
    maxRel = Math.max(maxRel, diff / ref);
  });
  return maxRel;
}
