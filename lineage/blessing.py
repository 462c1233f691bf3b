"""Each blessing rule of an evaluation, on each slice, and its outcome.

The rules are the thresholds of the EvalConfig the Evaluator ran with (its
`eval_config` execution property); the values are TFMA's metrics of the
candidate and of the baseline; the outcome is TFMA's validation result. So
a row says: this rule, on this slice, with this threshold, got this value
(the baseline got that one), and passed or failed.

repairml's fairness guard (pipeline/evaluation.py) is a shortfall metric
with an upper bound of 0; its rows are shown as what it means: the slice's
macro F1 against the floor, for slices with enough examples.
"""

import dataclasses
import json
from typing import Any, Dict, List, Optional, Tuple

from pipeline import metrics as run_metrics
from pipeline import multilabel_metrics

PASS = 'pass'
FAIL = 'fail'
NOT_JUDGED = 'not judged'  # a slice too small for the fairness guard
MACRO_F1 = multilabel_metrics.MACRO_F1
SHORTFALL = multilabel_metrics.SLICE_MACRO_F1_SHORTFALL

# (model, slice, metric, is_diff) -> value
Values = Dict[Tuple[str, str, str, bool], Optional[float]]


@dataclasses.dataclass
class RuleRow:
  rule: str
  slice: str
  examples: Optional[int]
  threshold: str
  value: Optional[float]
  baseline_value: Optional[float]
  outcome: str


def read_values(evaluation_uri: str) -> Values:
  """Every un-keyed metric of every model and slice TFMA wrote."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  values: Values = {}
  for per_slice in tfma.load_metrics(evaluation_uri):
    name = run_metrics.slice_name(
        tfma.slicer.deserialize_slice_key(per_slice.slice_key))
    for entry in per_slice.metric_keys_and_values:
      key = entry.key
      if key.HasField('sub_key') or not entry.value.HasField('double_value'):
        continue
      model = key.model_name or run_metrics.CANDIDATE
      value = entry.value.double_value.value
      values[(model, name, key.name, key.is_diff)] = (
          None if value != value else value)
  return values


def read_failures(evaluation_uri: str) -> List[Tuple[str, str, bool]]:
  """(slice, metric, is_diff) of each threshold TFMA found failed."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  result = tfma.load_validation_result(evaluation_uri)
  failures = []
  for per_slice in result.metric_validations_per_slice:
    name = run_metrics.slice_name(
        tfma.slicer.deserialize_slice_key(per_slice.slice_key))
    for failure in per_slice.failures:
      failures.append((name, failure.metric_key.name,
                       failure.metric_key.is_diff))
  return failures


def parse_eval_config(text: str):
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  return json_format.Parse(text, tfma.EvalConfig())


def has_thresholds(eval_config) -> bool:
  return any(metric.HasField('threshold') or metric.per_slice_thresholds
             for spec in eval_config.metrics_specs for metric in spec.metrics)


def rule_rows(eval_config, values: Values,
              failures: List[Tuple[str, str, bool]]) -> List[RuleRow]:
  """One row per rule and slice: failing rows, passing ones, then those
  not judged (no baseline, or a slice too small for the fairness guard)."""
  failed = set(failures)
  slices = sorted({key[1] for key in values})
  rows = []
  for spec in eval_config.metrics_specs:
    for metric in spec.metrics:
      thresholds = [(list(p.slicing_specs), p.threshold)
                    for p in metric.per_slice_thresholds]
      if metric.HasField('threshold'):
        thresholds.append(([None], metric.threshold))
      for slicing_specs, threshold in thresholds:
        metric_name = _metric_name(metric)
        for slice_name in _matching(slices, slicing_specs):
          rows += _rows(metric, metric_name, threshold, slice_name, values,
                        failed)
  order = {FAIL: 0, PASS: 1, NOT_JUDGED: 2}
  return sorted(rows, key=lambda r: (order[r.outcome],
                                     r.slice != run_metrics.OVERALL,
                                     r.rule, r.slice))


def _metric_name(metric) -> str:
  if metric.class_name == multilabel_metrics.MultiLabelF1.__name__:
    return MACRO_F1
  if metric.class_name == multilabel_metrics.SliceMacroF1Shortfall.__name__:
    return SHORTFALL
  return json.loads(metric.config).get('name', '') if metric.config else (
      metric.class_name)


def _matching(slices: List[str], slicing_specs) -> List[str]:
  names = []
  for spec in slicing_specs:
    if spec is None or not spec.feature_keys and not spec.feature_values:
      names.append(run_metrics.OVERALL)
      continue
    columns = sorted(spec.feature_keys)
    names += [name for name in slices if name != run_metrics.OVERALL and
              sorted(part.split('=', 1)[0] for part in name.split(','))
              == columns]
  return sorted(set(names))


def _rows(metric, name: str, threshold, slice_name: str, values: Values,
          failed) -> List[RuleRow]:
  candidate = run_metrics.CANDIDATE
  baseline = run_metrics.BASELINE
  examples = values.get((candidate, slice_name, 'example_count', False))
  examples = int(examples) if examples is not None else None
  rows = []
  if name == SHORTFALL:
    settings = json.loads(metric.config or '{}')
    floor, minimum = settings.get('floor'), settings.get('min_examples')
    outcome = (FAIL if (slice_name, name, False) in failed else
               NOT_JUDGED if examples is not None and minimum is not None
               and examples < minimum else PASS)
    return [RuleRow(
        rule=f'slice macro F1 >= floor (slices of >= {minimum} examples)',
        slice=slice_name, examples=examples, threshold=f'>= {floor}',
        value=values.get((candidate, slice_name, MACRO_F1, False)),
        baseline_value=values.get((baseline, slice_name, MACRO_F1, False)),
        outcome=outcome)]
  bound = threshold.value_threshold
  if threshold.HasField('value_threshold'):
    if bound.HasField('lower_bound'):
      rows.append((f'{name} >= lower bound', f'>= {bound.lower_bound.value}'))
    if bound.HasField('upper_bound'):
      rows.append((f'{name} <= upper bound', f'<= {bound.upper_bound.value}'))
  result = [RuleRow(
      rule=rule, slice=slice_name, examples=examples, threshold=text,
      value=values.get((candidate, slice_name, name, False)),
      baseline_value=values.get((baseline, slice_name, name, False)),
      outcome=FAIL if (slice_name, name, False) in failed else PASS)
            for rule, text in rows]
  change = threshold.change_threshold
  if threshold.HasField('change_threshold'):
    has_baseline = (baseline, slice_name, name, False) in values
    import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
    direction = ('>=' if change.direction ==
                 tfma.MetricDirection.HIGHER_IS_BETTER else '<=')
    result.append(RuleRow(
        rule=f'{name} change against the baseline',
        slice=slice_name, examples=examples,
        threshold=f'{direction} {change.absolute.value:+g}',
        value=values.get((candidate, slice_name, name, True)),
        baseline_value=values.get((baseline, slice_name, name, False)),
        outcome=(FAIL if (slice_name, name, True) in failed else
                 PASS if has_baseline else NOT_JUDGED)))
  return result


def evaluation_rules(history, evaluator_step) -> Dict[str, Any]:
  """{'configured', 'blessed', 'rows'} of one Evaluator step."""
  config_text = evaluator_step.properties.get('eval_config', '')
  evaluation = history.artifact(evaluator_step.output('evaluation'))
  blessing = history.artifact(evaluator_step.output('blessing'))
  eval_config = parse_eval_config(config_text) if config_text else None
  configured = eval_config is not None and has_thresholds(eval_config)
  rows = []
  if configured and evaluation is not None:
    rows = rule_rows(eval_config, read_values(evaluation.uri),
                     read_failures(evaluation.uri))
  return {
      'configured': configured,
      'blessed': (blessing.properties.get('blessed') == 1
                  if blessing is not None else None),
      'rows': [dataclasses.asdict(row) for row in rows],
  }
