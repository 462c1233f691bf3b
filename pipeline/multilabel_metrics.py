"""A TFMA metric for multi-label recommendations: F1, AUC and PR-AUC, per label.

TFMA can compute these with built-ins (BinarizationOptions over the label ids,
plus AggregationOptions), but it then runs one Python combiner per label, per
metric and per slice: with 47 labels and ~60 slices that took minutes on 5,000
examples. This metric, registered with TFMA and used through its MetricConfig,
keeps one set of per-label vectors per slice and updates it with a few numpy
operations per batch of PENDING_EXAMPLES examples:
- the counts of true positives, false positives and false negatives of the
  decision (a label is recommended when its score reaches its threshold: 0.5
  unless `thresholds` gives one per label), so the metric that blesses a model
  measures the decision that is served;
- a histogram of the scores of positive and of negative examples, per label,
  in AUC_BUCKETS buckets that are even in logit space: most scores of a rare
  label sit close to 0, where even buckets in probability would lump them
  together. ROC AUC and PR-AUC come from these histograms, like TFMA's AUC
  comes from its thresholds.

Output keys (`MetricKey.name`):
- `macro_f1`: the mean F1 over labels that occur in the slice, in the labels
  or in the recommendations (F1 is undefined for a label that does neither);
- `micro_f1`: F1 over all (session, label) decisions;
- `macro_auc`, `macro_pr_auc`: the mean ROC AUC and PR-AUC (average precision)
  over labels with both positive and negative examples in the slice;
- `f1`, `precision`, `recall`, `auc`, `pr_auc` with `sub_key.class_id` = the
  label id.

`SliceMacroF1Shortfall` is the fairness guard: per slice, how far macro F1
falls below a floor, counted only for slices with enough examples to judge.
"""

from typing import Dict, Iterable, List, Optional

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util

from models.thresholds import macro_f1

MACRO_F1 = 'macro_f1'
MICRO_F1 = 'micro_f1'
MACRO_AUC = 'macro_auc'
MACRO_PR_AUC = 'macro_pr_auc'
SLICE_MACRO_F1_SHORTFALL = 'slice_macro_f1_shortfall'

# Score histogram: AUC_BUCKETS buckets, even in logit over [-LOGIT_RANGE,
# LOGIT_RANGE]; scores beyond fall in the end buckets.
AUC_BUCKETS = 640
LOGIT_RANGE = 16.0


class MultiLabelF1(metric_types.Metric):
  """F1 family, AUC and PR-AUC of multi-label predictions; see the module."""

  def __init__(self, name: str = MACRO_F1,
               thresholds: Optional[List[float]] = None):
    super().__init__(_computations, name=name, thresholds=thresholds)


class SliceMacroF1Shortfall(metric_types.Metric):
  """max(0, floor - macro F1) of a slice with at least `min_examples`, else 0.

  A TFMA threshold `upper_bound: 0` on it fails every slice large enough to
  judge whose macro F1 is below the floor, and passes small slices, whose F1
  is mostly noise. (TFMA cannot restrict a threshold to slices by size, and it
  fails a threshold whose metric is missing, hence 0 rather than nothing.)
  """

  def __init__(self, name: str = SLICE_MACRO_F1_SHORTFALL, floor: float = 0.0,
               min_examples: int = 1):
    super().__init__(_computations, name=name, floor=floor,
                     min_examples=min_examples)


metric_types.register_metric(MultiLabelF1)
metric_types.register_metric(SliceMacroF1Shortfall)


def _computations(name: str = MACRO_F1, thresholds=None, floor=None,
                  min_examples=None, eval_config=None,
                  model_names: Iterable[str] = ('',),
                  output_names: Iterable[str] = ('',),
                  example_weighted: bool = False,
                  **unused_kwargs) -> metric_types.MetricComputations:
  computations = []
  for model_name in model_names or ['']:
    for output_name in output_names or ['']:
      key = metric_types.MetricKey(name=name, model_name=model_name,
                                   output_name=output_name,
                                   example_weighted=example_weighted)
      if floor is None:
        combiner = _MultiLabelCombiner(key, eval_config, thresholds)
      else:
        combiner = _ShortfallCombiner(key, eval_config, floor, min_examples)
      computations.append(metric_types.MetricComputation(
          keys=[key], preprocessors=None, combiner=combiner))
  return computations


# Examples an accumulator holds before it counts them in one vectorised step.
PENDING_EXAMPLES = 256


class _Accumulator:
  """Per-label decision counts and score histograms of one slice.

  Examples wait in `pending` (truth, scores) until PENDING_EXAMPLES have
  arrived, then `flush` counts them with a few numpy operations in all.
  """
  __slots__ = ['examples', 'pending', 'true_positives', 'false_positives',
               'false_negatives', 'positive_scores', 'negative_scores']

  def __init__(self):
    self.examples = 0
    self.pending = []
    self.true_positives = None  # [L] counts; the rest are created with it

  def allocate(self, num_labels: int) -> None:
    self.true_positives = np.zeros(num_labels, np.int64)
    self.false_positives = np.zeros(num_labels, np.int64)
    self.false_negatives = np.zeros(num_labels, np.int64)
    self.positive_scores = np.zeros((num_labels, AUC_BUCKETS), np.int64)
    self.negative_scores = np.zeros((num_labels, AUC_BUCKETS), np.int64)

  def add(self, truth: np.ndarray, scores: np.ndarray,
          thresholds: Optional[np.ndarray]) -> None:
    self.examples += 1
    self.pending.append((truth, scores))
    if len(self.pending) >= PENDING_EXAMPLES:
      self.flush(thresholds)

  def flush(self, thresholds: Optional[np.ndarray]) -> '_Accumulator':
    """Counts the pending examples' decisions and scores."""
    if not self.pending:
      return self
    truth = np.stack([t for t, _ in self.pending])
    scores = np.stack([s for _, s in self.pending])
    self.pending = []
    num_labels = truth.shape[1]
    if self.true_positives is None:
      self.allocate(num_labels)
    recommended = scores >= (0.5 if thresholds is None else thresholds)
    self.true_positives += (truth & recommended).sum(axis=0)
    self.false_positives += (~truth & recommended).sum(axis=0)
    self.false_negatives += (truth & ~recommended).sum(axis=0)
    cells = np.arange(num_labels) * AUC_BUCKETS + score_buckets(scores)
    for histogram, mask in ((self.positive_scores, truth),
                            (self.negative_scores, ~truth)):
      histogram += np.bincount(cells[mask], minlength=histogram.size).reshape(
          histogram.shape)
    return self

  def merge(self, other: '_Accumulator') -> '_Accumulator':
    """Adds `other`, whose pending examples must be flushed."""
    if other.true_positives is None:
      return self
    if self.true_positives is None:
      self.allocate(len(other.true_positives))
    self.examples += other.examples
    for name in self.__slots__[2:]:
      getattr(self, name).__iadd__(getattr(other, name))
    return self


def score_buckets(scores: np.ndarray) -> np.ndarray:
  """The histogram bucket of each score in [0, 1]; higher scores, higher ids."""
  clipped = np.clip(scores, 1e-12, 1 - 1e-12)
  logits = np.log(clipped) - np.log1p(-clipped)
  position = (logits + LOGIT_RANGE) / (2 * LOGIT_RANGE) * AUC_BUCKETS
  return np.clip(position, 0, AUC_BUCKETS - 1).astype(np.int64)


class _CountingCombiner(beam.CombineFn):
  """Accumulates one slice's decisions and scores."""

  def __init__(self, key: metric_types.MetricKey, eval_config,
               thresholds: Optional[List[float]] = None):
    self._key = key
    self._eval_config = eval_config
    self._thresholds = None if thresholds is None else np.asarray(thresholds)

  def create_accumulator(self) -> _Accumulator:
    return _Accumulator()

  def add_input(self, accumulator: _Accumulator,
                element: metric_types.StandardMetricInputs) -> _Accumulator:
    for label, prediction, _ in metric_util.to_label_prediction_example_weight(
        element, eval_config=self._eval_config,
        model_name=self._key.model_name, output_name=self._key.output_name,
        flatten=False, require_single_example_weight=True):
      accumulator.add(np.asarray(label).reshape(-1) > 0.5,
                      np.asarray(prediction, np.float64).reshape(-1),
                      self._thresholds)
    return accumulator

  def compact(self, accumulator: _Accumulator) -> _Accumulator:
    return accumulator.flush(self._thresholds)

  def merge_accumulators(
      self, accumulators: Iterable[_Accumulator]) -> _Accumulator:
    merged = _Accumulator()
    for accumulator in accumulators:
      merged.merge(accumulator.flush(self._thresholds))
    return merged

  def _key_named(self, name: str, class_id: Optional[int] = None):
    return metric_types.MetricKey(
        name=name, model_name=self._key.model_name,
        output_name=self._key.output_name,
        sub_key=(None if class_id is None else
                 metric_types.SubKey(class_id=class_id)),
        example_weighted=self._key.example_weighted)


class _MultiLabelCombiner(_CountingCombiner):

  def extract_output(self, accumulator: _Accumulator):
    accumulator.flush(self._thresholds)
    if accumulator.true_positives is None:
      return {}
    values = f1_family(accumulator.true_positives, accumulator.false_positives,
                       accumulator.false_negatives)
    values.update(auc_family(accumulator.positive_scores,
                             accumulator.negative_scores))
    # The metric's own name (what thresholds refer to) is macro F1's.
    return {self._key_named(self._key.name if name == MACRO_F1 else name,
                            class_id): value
            for (name, class_id), value in values.items()}


class _ShortfallCombiner(_CountingCombiner):

  def __init__(self, key, eval_config, floor: float, min_examples: int):
    super().__init__(key, eval_config)
    self._floor = floor
    self._min_examples = min_examples

  def extract_output(self, accumulator: _Accumulator):
    accumulator.flush(self._thresholds)
    shortfall = 0.0
    if (accumulator.true_positives is not None and
        accumulator.examples >= self._min_examples):
      macro_f1 = f1_family(accumulator.true_positives,
                           accumulator.false_positives,
                           accumulator.false_negatives)[(MACRO_F1, None)]
      if not np.isnan(macro_f1):
        shortfall = max(0.0, self._floor - macro_f1)
    return {self._key: shortfall}


def f1_family(true_positives: np.ndarray, false_positives: np.ndarray,
              false_negatives: np.ndarray):
  """{(metric name, label id or None): value} from per-label counts."""
  tp, fp, fn = (np.asarray(c, np.float64) for c in
                (true_positives, false_positives, false_negatives))
  with np.errstate(divide='ignore', invalid='ignore'):
    f1 = 2 * tp / (2 * tp + fp + fn)
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
  micro_denominator = 2 * tp.sum() + fp.sum() + fn.sum()
  values = {
      (MACRO_F1, None): macro_f1(tp, fp, fn),
      (MICRO_F1, None): float(2 * tp.sum() / micro_denominator)
                        if micro_denominator else float('nan'),
  }
  for name, per_label in (('f1', f1), ('precision', precision),
                          ('recall', recall)):
    for class_id, value in enumerate(per_label):
      values[(name, class_id)] = float(value)
  return values


def auc_family(positive_scores: np.ndarray, negative_scores: np.ndarray):
  """{(metric name, label id or None): value} from per-label score histograms.

  Args:
    positive_scores: [L, buckets] counts of positive examples per score
      bucket, lowest scores first; negative_scores likewise.

  ROC AUC is the probability that a positive outscores a negative, ties (the
  same bucket) counting one half. PR-AUC is the average precision: the mean,
  over positives, of the precision at their bucket's cut-off.
  """
  positives = np.asarray(positive_scores, np.float64)
  negatives = np.asarray(negative_scores, np.float64)
  total_positives, total_negatives = positives.sum(1), negatives.sum(1)
  # Negatives strictly below each bucket; positives and negatives at or above.
  negatives_below = np.cumsum(negatives, 1) - negatives
  positives_from = np.cumsum(positives[:, ::-1], 1)[:, ::-1]
  negatives_from = np.cumsum(negatives[:, ::-1], 1)[:, ::-1]
  defined = (total_positives > 0) & (total_negatives > 0)
  with np.errstate(divide='ignore', invalid='ignore'):
    auc = ((positives * (negatives_below + negatives / 2)).sum(1) /
           (total_positives * total_negatives))
    precision_from = positives_from / (positives_from + negatives_from)
    pr_auc = np.nansum(positives * precision_from, 1) / total_positives
  auc[~defined] = np.nan
  pr_auc[~defined] = np.nan
  values = {
      (MACRO_AUC, None): float(auc[defined].mean()) if defined.any()
                         else float('nan'),
      (MACRO_PR_AUC, None): float(pr_auc[defined].mean()) if defined.any()
                            else float('nan'),
  }
  for class_id in range(len(auc)):
    values[('auc', class_id)] = float(auc[class_id])
    values[('pr_auc', class_id)] = float(pr_auc[class_id])
  return values
