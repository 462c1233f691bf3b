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
  combiner = multilabel_metrics._MultiLabelF1Combiner(  # pylint: disable=protected-access
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
