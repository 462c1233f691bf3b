"""The multi-label F1 metric: known decisions give known F1, through TFMA too."""

import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types

from pipeline import multilabel_metrics
from pipeline.multilabel_metrics import MACRO_F1, MICRO_F1


def test_f1_family_from_counts():
  # label 0: tp 3, fp 1, fn 1 -> f1 0.75; label 1: tp 0, fp 0, fn 2 -> f1 0;
  # label 2: never in truth nor recommended -> undefined, left out of macro.
  values = multilabel_metrics.f1_family(
      np.array([3., 0., 0.]), np.array([1., 0., 0.]), np.array([1., 2., 0.]))
  assert values[(MACRO_F1, None)] == pytest.approx((0.75 + 0.0) / 2)
  assert values[(MICRO_F1, None)] == pytest.approx(6 / (6 + 1 + 3))
  assert values[('f1', 0)] == pytest.approx(0.75)
  assert values[('precision', 0)] == pytest.approx(0.75)
  assert values[('recall', 1)] == 0.0
  assert np.isnan(values[('f1', 2)])


def _combine(labels, probabilities, thresholds=None):
  key = metric_types.MetricKey(name=MACRO_F1)
  combiner = multilabel_metrics._MultiLabelCombiner(  # pylint: disable=protected-access
      key, tfma.EvalConfig(), thresholds)
  halves = []
  for rows in (slice(0, 2), slice(2, None)):
    counts = combiner.create_accumulator()
    for label, probability in zip(labels[rows], probabilities[rows]):
      counts = combiner.add_input(counts, metric_types.StandardMetricInputs(
          labels=np.array(label, np.float32),
          predictions=np.array(probability, np.float32),
          example_weights=np.array([1.0])))
    halves.append(counts)
  output = combiner.extract_output(combiner.merge_accumulators(halves))
  return {(k.name, k.sub_key.class_id if k.sub_key else None): v
          for k, v in output.items()}


LABELS = [[1, 0], [1, 1], [0, 1], [0, 0]]
PROBABILITIES = [[0.9, 0.2], [0.6, 0.4], [0.3, 0.7], [0.55, 0.1]]


def test_combiner_decides_at_one_half_by_default():
  # label 0: recommended for rows 0, 1, 3 -> tp 2, fp 1 -> f1 0.8;
  # label 1: recommended for row 2 only -> tp 1, fn 1 -> f1 2/3.
  output = _combine(LABELS, PROBABILITIES)
  assert output[('f1', 0)] == pytest.approx(0.8)
  assert output[('f1', 1)] == pytest.approx(2 / 3)
  assert output[(MACRO_F1, None)] == pytest.approx((0.8 + 2 / 3) / 2)


def test_combiner_uses_per_label_thresholds():
  # label 0 at 0.58 drops row 3 (fp) -> perfect; label 1 at 0.35 adds row 1.
  output = _combine(LABELS, PROBABILITIES, thresholds=[0.58, 0.35])
  assert output[('f1', 0)] == pytest.approx(1.0)
  assert output[('f1', 1)] == pytest.approx(1.0)
  assert output[(MACRO_F1, None)] == pytest.approx(1.0)


def _combined(combiner, labels, scores):
  accumulator = combiner.create_accumulator()
  for label, score in zip(labels, scores):
    accumulator = combiner.add_input(accumulator, metric_types.StandardMetricInputs(
        labels=np.array(label, np.float32),
        predictions=np.array(score, np.float32),
        example_weights=np.array([1.0])))
  return combiner.extract_output(combiner.merge_accumulators([accumulator]))


def test_auc_and_pr_auc_match_scikit_learn_on_random_scores():
  metrics = pytest.importorskip('sklearn.metrics')
  rng = np.random.default_rng(7)
  labels = rng.random((2000, 3)) < [0.02, 0.2, 0.5]
  # Informative scores, most of them close to 0 as for a rare label.
  scores = 1 / (1 + np.exp(-(rng.normal(-4, 2, labels.shape) + 3 * labels)))
  output = _combine(labels.astype(int), scores)

  for j in range(3):
    assert output[('auc', j)] == pytest.approx(
        metrics.roc_auc_score(labels[:, j], scores[:, j]), abs=2e-3)
    assert output[('pr_auc', j)] == pytest.approx(
        metrics.average_precision_score(labels[:, j], scores[:, j]), abs=5e-3)
  assert output[(multilabel_metrics.MACRO_AUC, None)] == pytest.approx(
      np.mean([output[('auc', j)] for j in range(3)]))


def test_auc_of_perfect_and_of_reversed_scores():
  labels = [[1, 0], [1, 0], [0, 1], [0, 1]]
  scores = [[0.9, 0.2], [0.8, 0.1], [0.1, 0.05], [0.2, 0.01]]
  output = _combine(labels, scores)

  assert output[('auc', 0)] == pytest.approx(1.0)
  assert output[('pr_auc', 0)] == pytest.approx(1.0)
  assert output[('auc', 1)] == pytest.approx(0.0)
  assert output[('pr_auc', 1)] == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_auc_is_undefined_for_a_label_without_negatives():
  output = _combine([[1, 0], [1, 1]], [[0.9, 0.2], [0.6, 0.4]])

  assert np.isnan(output[('auc', 0)])
  assert output[(multilabel_metrics.MACRO_AUC, None)] == pytest.approx(1.0)


def _shortfall(labels, scores, floor, min_examples):
  key = metric_types.MetricKey(name=multilabel_metrics.SLICE_MACRO_F1_SHORTFALL)
  combiner = multilabel_metrics._ShortfallCombiner(  # pylint: disable=protected-access
      key, tfma.EvalConfig(), floor, min_examples)
  (value,) = _combined(combiner, labels, scores).values()
  return value


def test_shortfall_is_how_far_a_large_enough_slice_falls_below_the_floor():
  # Macro F1 (0.8 + 2/3) / 2 = 0.7333 on these four examples.
  assert _shortfall(LABELS, PROBABILITIES, floor=0.9, min_examples=4) == (
      pytest.approx(0.9 - (0.8 + 2 / 3) / 2))
  assert _shortfall(LABELS, PROBABILITIES, floor=0.5, min_examples=4) == 0.0


def test_shortfall_exempts_slices_with_too_few_examples():
  assert _shortfall(LABELS, PROBABILITIES, floor=0.9, min_examples=5) == 0.0


def test_shortfall_threshold_fails_only_large_slices_below_the_floor():
  # Through TFMA's own validator: a failing slice names the metric and value.
  from tensorflow_model_analysis.evaluators import metrics_validator  # pylint: disable=g-import-not-at-top
  eval_config = tfma.EvalConfig(metrics_specs=[tfma.MetricsSpec(metrics=[
      tfma.MetricConfig(
          class_name='SliceMacroF1Shortfall', module=multilabel_metrics.__name__,
          config='{"floor": 0.9, "min_examples": 4}',
          per_slice_thresholds=[tfma.PerSliceMetricThreshold(
              slicing_specs=[tfma.SlicingSpec(feature_keys=['country'])],
              threshold=tfma.MetricThreshold(value_threshold=(
                  tfma.GenericValueThreshold(upper_bound={'value': 0.0}))))])
  ])])
  key = metric_types.MetricKey(name=multilabel_metrics.SLICE_MACRO_F1_SHORTFALL)
  failing = metrics_validator.validate_metrics(
      ((('country', 'DE'),), {key: 0.12}), eval_config)
  passing = metrics_validator.validate_metrics(
      ((('country', 'FR'),), {key: 0.0}), eval_config)

  assert not failing.validation_ok
  assert passing.validation_ok
