"""Blessing rules as rows: rule x slice x threshold x value x baseline."""

import tensorflow_model_analysis as tfma

from lineage import blessing, text, why
from pipeline.config import load_config
from pipeline.evaluation import eval_config

CONFIG = load_config('configs/local.yaml')   # floor 0.3, drop 0.01, slices 0.25


def _values(candidate_f1, baseline_f1=None, slices=()):
  values = {('candidate', 'overall', 'macro_f1', False): candidate_f1,
            ('candidate', 'overall', 'example_count', False): 1000.0}
  if baseline_f1 is not None:
    values[('baseline', 'overall', 'macro_f1', False)] = baseline_f1
    values[('candidate', 'overall', 'macro_f1', True)] = (candidate_f1 -
                                                          baseline_f1)
  for name, f1, examples in slices:
    values[('candidate', name, 'macro_f1', False)] = f1
    values[('candidate', name, 'example_count', False)] = float(examples)
  return values


def test_a_model_below_the_floor_fails_that_row_only():
  rows = blessing.rule_rows(
      eval_config(CONFIG), _values(0.21, 0.5),
      failures=[('overall', 'macro_f1', False), ('overall', 'macro_f1', True)])

  by_rule = {(r.rule, r.slice): r for r in rows}
  floor = by_rule[('macro_f1 >= lower bound', 'overall')]
  assert (floor.outcome, floor.threshold, floor.value, floor.baseline_value) == (
      'fail', '>= 0.3', 0.21, 0.5)
  drop = by_rule[('macro_f1 change against the baseline', 'overall')]
  assert drop.outcome == 'fail' and drop.threshold == '>= -0.01'
  assert abs(drop.value - (0.21 - 0.5)) < 1e-12
  assert rows[0].outcome == 'fail'


def test_without_a_baseline_the_change_rule_is_not_judged():
  rows = blessing.rule_rows(eval_config(CONFIG), _values(0.6), failures=[])

  (change,) = [r for r in rows if r.rule.startswith('macro_f1 change')]
  assert change.outcome == blessing.NOT_JUDGED and change.value is None
  assert all(r.outcome != 'fail' for r in rows)


def test_the_fairness_guard_reads_as_a_floor_on_large_slices():
  rows = blessing.rule_rows(
      eval_config(CONFIG),
      _values(0.6, slices=[('country=DE', 0.2, 900), ('country=SE', 0.1, 40),
                           ('country=FR', 0.5, 800)]),
      failures=[('country=DE', 'slice_macro_f1_shortfall', False)])

  guard = {r.slice: r for r in rows if r.rule.startswith('slice macro F1')}
  assert set(guard) == {'country=DE', 'country=SE', 'country=FR'}
  assert guard['country=DE'].outcome == 'fail'
  assert guard['country=DE'].threshold == '>= 0.25'
  assert guard['country=DE'].value == 0.2
  assert guard['country=DE'].examples == 900
  assert guard['country=SE'].outcome == blessing.NOT_JUDGED   # < 200 examples
  assert guard['country=FR'].outcome == 'pass'
  assert [r.outcome for r in rows] == sorted(
      (r.outcome for r in rows), key=['fail', 'pass', 'not judged'].index)


def test_no_thresholds_is_said_in_words():
  plain = tfma.EvalConfig(metrics_specs=[tfma.MetricsSpec(
      metrics=[tfma.MetricConfig(class_name='ExampleCount')])])
  assert not blessing.has_thresholds(plain)
  assert blessing.has_thresholds(eval_config(CONFIG))
  rules = {'configured': False, 'blessed': True, 'rows': []}

  assert 'no thresholds were configured' in text.blessing_text(rules, False)
  assert why._evaluated(None, None, 'not_blessed', rules).startswith(  # pylint: disable=protected-access
      'No blessing thresholds were configured')
