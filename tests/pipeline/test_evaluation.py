"""The Evaluator's EvalConfig generated from the run configuration: model spec, slices, metrics and the blessing threshold."""

import copy
import json
from pathlib import Path

import pytest
import tensorflow_model_analysis as tfma
import yaml

from pipeline import evaluation, multilabel_metrics
from pipeline.config import config_from_dict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OVERALL = tfma.SlicingSpec()


@pytest.fixture(scope='module')
def config():
  with open(PROJECT_ROOT / 'configs' / 'local.yaml', encoding='utf-8') as f:
    raw = copy.deepcopy(yaml.safe_load(f))
  raw['label']['vocabulary'] = ['part:dpf', 'op:replace_dpf',
                                'part:brake_pads', 'op:replace_brake_pads']
  raw['slices'] = [['country'], ['engine_type', 'car_model'], ['dtcs']]
  raw['evaluation'] = {'macro_f1_lower_bound': 0.42,
                       'max_macro_f1_drop': 0.015,
                       'slice_macro_f1_floor': 0.35,
                       'min_slice_examples': 150}
  return config_from_dict(raw)


@pytest.fixture(scope='module')
def eval_config(config) -> tfma.EvalConfig:
  return evaluation.eval_config(config)


def _metric_configs(eval_config):
  return [metric for spec in eval_config.metrics_specs
          for metric in spec.metrics]


def test_model_spec_reads_the_transformed_label_and_the_served_decision(
    eval_config):
  (model_spec,) = eval_config.model_specs

  assert model_spec.signature_name == 'serving_default'
  assert list(model_spec.preprocessing_function_names) == [
      'transform_features']
  assert model_spec.label_key == 'repair_labels_xf'
  # Scores with each label's threshold at 0.5: the decision that is served.
  assert model_spec.prediction_key == 'recommendation_scores'


def test_slices_are_overall_plus_one_per_configured_slice(eval_config):
  assert list(eval_config.slicing_specs) == [
      OVERALL,
      tfma.SlicingSpec(feature_keys=['country']),
      tfma.SlicingSpec(feature_keys=['engine_type', 'car_model']),
      tfma.SlicingSpec(feature_keys=['dtcs']),
  ]


def test_metrics_are_example_count_the_multi_label_family_and_the_guard(
    eval_config):
  assert [(m.class_name, m.module) for m in _metric_configs(eval_config)] == [
      ('ExampleCount', ''),
      ('MultiLabelF1', 'pipeline.multilabel_metrics'),
      ('SliceMacroF1Shortfall', 'pipeline.multilabel_metrics'),
  ]


def test_the_blessing_threshold_gates_macro_f1_on_the_overall_slice_only(
    eval_config):
  thresholds = tfma.metrics.metric_thresholds_from_metrics_specs(
      eval_config.metrics_specs, eval_config)

  macro_f1_thresholds = {key: value for key, value in thresholds.items()
                         if key.name == multilabel_metrics.MACRO_F1}
  assert {(key.name, key.is_diff) for key in macro_f1_thresholds} == {
      (multilabel_metrics.MACRO_F1, False), (multilabel_metrics.MACRO_F1, True)}
  for key, slices_and_thresholds in macro_f1_thresholds.items():
    ((slice_spec, threshold),) = slices_and_thresholds
    assert slice_spec == OVERALL
    if key.is_diff:
      assert threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
      assert threshold.absolute.value == pytest.approx(-0.015)
      assert not threshold.HasField('relative')
    else:
      assert threshold.lower_bound.value == pytest.approx(0.42)
      assert not threshold.HasField('upper_bound')


def test_the_fairness_guard_holds_every_configured_slice_to_the_floor(
    eval_config):
  (guard,) = [m for m in _metric_configs(eval_config)
              if m.class_name == 'SliceMacroF1Shortfall']
  thresholds = tfma.metrics.metric_thresholds_from_metrics_specs(
      eval_config.metrics_specs, eval_config)
  (slices_and_thresholds,) = [
      value for key, value in thresholds.items()
      if key.name == multilabel_metrics.SLICE_MACRO_F1_SHORTFALL]

  assert json.loads(guard.config) == {'floor': 0.35, 'min_examples': 150}
  assert [spec for spec, _ in slices_and_thresholds] == list(
      eval_config.slicing_specs[1:])
  for _, threshold in slices_and_thresholds:
    assert threshold.upper_bound.value == 0.0


def test_the_threshold_is_not_also_set_for_every_slice(eval_config):
  (f1,) = [m for m in _metric_configs(eval_config)
           if m.class_name == 'MultiLabelF1']

  assert not f1.HasField('threshold')
  assert [list(t.slicing_specs) for t in f1.per_slice_thresholds] == [
      [OVERALL]]


def test_blessing_threshold_follows_the_configuration(config):
  threshold = evaluation.blessing_threshold(config)

  assert threshold.value_threshold.lower_bound.value == pytest.approx(0.42)
  assert threshold.change_threshold.direction == (
      tfma.MetricDirection.HIGHER_IS_BETTER)
  assert threshold.change_threshold.absolute.value == pytest.approx(-0.015)
