"""The blessing rules a model failed, in words, from TFMA's validation failures."""

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import validation_result_pb2

from pipeline import metrics, multilabel_metrics


def _failure(name, value, threshold, is_diff=False):
  failure = validation_result_pb2.ValidationFailure()
  failure.metric_key.name = name
  failure.metric_key.is_diff = is_diff
  failure.metric_value.double_value.value = value
  failure.metric_threshold.CopyFrom(threshold)
  return failure


def test_lower_bound_failure():
  failure = _failure('macro_f1', 0.21, tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(lower_bound={'value': 0.3})))
  assert metrics.failure_in_words(failure) == (
      'macro_f1 0.2100 is below the lower bound 0.3000')


def test_change_against_the_baseline_failure():
  failure = _failure('macro_f1', -0.05, tfma.MetricThreshold(
      change_threshold=tfma.GenericChangeThreshold(
          absolute={'value': -0.01})), is_diff=True)
  assert metrics.failure_in_words(failure) == (
      'macro_f1 changed by -0.0500 against the baseline (allowed: -0.0100)')


def test_slice_floor_failure():
  failure = _failure(
      multilabel_metrics.SLICE_MACRO_F1_SHORTFALL, 0.04, tfma.MetricThreshold(
          value_threshold=tfma.GenericValueThreshold(
              upper_bound={'value': 0.0})))
  assert metrics.failure_in_words(failure) == (
      'macro F1 is 0.0400 below the slice floor')
