"""Reads the Evaluator's TFMA output into plain numbers for people and reports.

For each evaluated model (the candidate, and the baseline when there is one):
macro and micro F1, per-label precision/recall/F1 keyed by label name, the
example count, and the macro F1 of every slice.
"""

import math
from typing import Any, Dict, List, Optional

import tensorflow_model_analysis as tfma

from pipeline import multilabel_metrics

CANDIDATE = 'candidate'
BASELINE = 'baseline'
OVERALL = 'overall'


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
  return {'macro_f1': None, 'micro_f1': None, 'example_count': None,
          'per_label': {}, 'slices': {}}


def _record(model, slice_label: str, key, value: Optional[float],
            label_names: List[str]) -> None:
  if slice_label != OVERALL:
    if key.name in (multilabel_metrics.MACRO_F1, 'example_count'):
      model['slices'].setdefault(slice_label, {})[key.name] = value
    return
  if key.name == 'example_count':
    model['example_count'] = int(value)
  elif key.name in (multilabel_metrics.MACRO_F1, multilabel_metrics.MICRO_F1):
    model[key.name] = value
  elif key.sub_key.HasField('class_id'):
    label = label_names[key.sub_key.class_id.value]
    model['per_label'].setdefault(label, {})[key.name] = value


def candidate_and_baseline(evaluation_uri: str, label_names: List[str]):
  """(candidate metrics, baseline metrics or None)."""
  models = read_metrics(evaluation_uri, label_names)
  return models.get(CANDIDATE), models.get(BASELINE)
