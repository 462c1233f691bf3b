"""Reads the Evaluator's TFMA output into plain numbers for people and reports.

For each evaluated model (the candidate, and the baseline when there is one):
macro and micro F1, macro AUC and PR-AUC, per-label precision/recall/F1/AUC/
PR-AUC keyed by label name, the example count, and the macro F1 and example
count of every slice. Also: the blessing rules a model failed, in words.
"""

import math
from typing import Any, Dict, List, Optional

import tensorflow_model_analysis as tfma

from pipeline import multilabel_metrics

CANDIDATE = 'candidate'
BASELINE = 'baseline'
OVERALL = 'overall'
OVERALL_METRICS = (multilabel_metrics.MACRO_F1, multilabel_metrics.MICRO_F1,
                   multilabel_metrics.MACRO_AUC,
                   multilabel_metrics.MACRO_PR_AUC)


def slice_name(slice_key) -> str:
  """('country', 'DE'),  ->  'country=DE'; the overall slice is 'overall'."""
  if not slice_key:
    return OVERALL
  return ','.join(f'{column}={value}' for column, value in slice_key)


def read_metrics(evaluation_uri: str,
                 label_names: List[str]) -> Dict[str, Dict[str, Any]]:
  """{model: metrics} for 'candidate' and, if evaluated, 'baseline'."""
  models: Dict[str, Dict[str, Any]] = {}
  for metrics_for_slice in tfma.load_metrics(evaluation_uri):
    name = slice_name(tfma.slicer.deserialize_slice_key(
        metrics_for_slice.slice_key))
    for entry in metrics_for_slice.metric_keys_and_values:
      key = entry.key
      if key.is_diff or not entry.value.HasField('double_value'):
        continue
      # A lone model is unnamed; TFX names it 'candidate' next to a baseline.
      model = models.setdefault(key.model_name or CANDIDATE, _empty())
      value = entry.value.double_value.value
      # An undefined metric (a label absent from a slice) is None, not NaN.
      _record(model, name, key, None if math.isnan(value) else value,
              label_names)
  return models


def _empty() -> Dict[str, Any]:
  return {'macro_f1': None, 'micro_f1': None, 'macro_auc': None,
          'macro_pr_auc': None, 'example_count': None, 'per_label': {},
          'slices': {}}


def _record(model, slice_label: str, key, value: Optional[float],
            label_names: List[str]) -> None:
  if slice_label != OVERALL:
    if key.name in (multilabel_metrics.MACRO_F1, 'example_count'):
      model['slices'].setdefault(slice_label, {})[key.name] = value
    return
  if key.name == 'example_count':
    model['example_count'] = int(value)
  elif key.name in OVERALL_METRICS:
    model[key.name] = value
  elif key.sub_key.HasField('class_id'):
    label = label_names[key.sub_key.class_id.value]
    model['per_label'].setdefault(label, {})[key.name] = value


def candidate_and_baseline(evaluation_uri: str, label_names: List[str]):
  """(candidate metrics, baseline metrics or None)."""
  models = read_metrics(evaluation_uri, label_names)
  return models.get(CANDIDATE), models.get(BASELINE)


def blessing_failures(evaluation_uri: str) -> List[str]:
  """Each blessing rule the candidate failed, on which slice, in words."""
  result = tfma.load_validation_result(evaluation_uri)
  failures = []
  for per_slice in result.metric_validations_per_slice:
    name = slice_name(tfma.slicer.deserialize_slice_key(per_slice.slice_key))
    for failure in per_slice.failures:
      failures.append(f'{name}: {failure_in_words(failure)}')
  return failures


def failure_in_words(failure) -> str:
  metric = failure.metric_key.name
  value = failure.metric_value.double_value.value
  threshold = failure.metric_threshold
  if metric == multilabel_metrics.SLICE_MACRO_F1_SHORTFALL:
    return f'macro F1 is {value:.4f} below the slice floor'
  if failure.metric_key.is_diff:
    return (f'{metric} changed by {value:+.4f} against the baseline '
            f'(allowed: {threshold.change_threshold.absolute.value:+.4f})')
  if threshold.value_threshold.HasField('lower_bound'):
    return (f'{metric} {value:.4f} is below the lower bound '
            f'{threshold.value_threshold.lower_bound.value:.4f}')
  return f'{metric} {value:.4f} fails its threshold'
