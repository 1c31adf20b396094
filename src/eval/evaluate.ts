/**
 * One pass over an evaluation loader: the metric sums the trainer reports, plus the confusion
 * matrix. Scores come from the same evalBatchScores as training's validation, so `eval` and
 * the training log agree on what a prediction is (TTA crops softmax-averaged once, there).
 */
import type { BatchLoader } from '../data/loader';
import type { AlexNet } from '../model/alexnet';
import { addSums, emptySums, summarize, type MetricSummary } from '../train/metrics';
import { evalBatchScores } from '../train/step';
import { addToConfusion, emptyConfusion, type ConfusionMatrix } from './confusion';

export interface SplitEvaluation {
  summary: MetricSummary;
  confusion: ConfusionMatrix;
}

export async function evaluateWithConfusion(model: AlexNet, loader: BatchLoader): Promise<SplitEvaluation> {
  let sums = emptySums();
  const confusion = emptyConfusion(model.numClasses);
  for await (const batch of loader.epoch(0)) {
    const { sums: batchSums, scores } = await evalBatchScores(model, batch);
    sums = addSums(sums, batchSums);
    addToConfusion(confusion, scores, batch.labels);
  }
  return { summary: summarize(sums), confusion };
}
