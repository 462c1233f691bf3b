"""The Evaluator's EvalConfig generated from the run configuration: slices, per-label and aggregate F1, and the blessing threshold."""

import copy
from pathlib import Path

import pytest
import tensorflow_model_analysis as tfma
import yaml

from pipeline import evaluation
from pipeline.config import config_from_dict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def config():
  with open(PROJECT_ROOT / 'configs' / 'local.yaml', encoding='utf-8') as f:
    raw = yaml.safe_load(f)
  raw = copy.deepcopy(raw)
  raw['label']['vocabulary'] = ['part:dpf', 'op:replace_dpf',
                                'part:brake_pads', 'op:replace_brake_pads']
  raw['slices'] = [['country'], ['engine_type', 'car_model'], ['dtcs']]
  raw['evaluation'] = {'macro_f1_lower_bound': 0.42,
                       'max_macro_f1_drop': 0.015}
  return config_from_dict(raw)


@pytest.fixture(scope='module')
def eval_config(config) -> tfma.EvalConfig:
  return evaluation.eval_config(config)


def _specs_with(eval_config, predicate):
  return [spec for spec in eval_config.metrics_specs if predicate(spec)]


def test_model_spec_reads_transformed_label_and_probabilities(eval_config):
  (model_spec,) = eval_config.model_specs

  assert model_spec.signature_name == 'serving_default'
  assert list(model_spec.preprocessing_function_names) == [
      'transform_features']
  assert model_spec.label_key == 'repair_labels_xf'
  assert model_spec.prediction_key == 'probabilities'


def test_slices_are_overall_plus_one_per_configured_slice(eval_config):
  assert [list(spec.feature_keys) for spec in eval_config.slicing_specs] == [
      [], ['country'], ['engine_type', 'car_model'], ['dtcs']]
  assert eval_config.slicing_specs[0] == tfma.SlicingSpec()


def test_example_count_is_computed(eval_config):
  names = [m.class_name for spec in eval_config.metrics_specs
           for m in spec.metrics]
  assert 'ExampleCount' in names


def test_per_label_metrics_binarize_over_every_label_id(eval_config):
  (per_label,) = _specs_with(
      eval_config,
      lambda s: s.HasField('binarize') and not s.HasField('aggregate'))

  assert list(per_label.binarize.class_ids.values) == [0, 1, 2, 3]
  assert sorted(m.class_name for m in per_label.metrics) == [
      'F1Score', 'Precision', 'Recall']
  assert all(not m.HasField('threshold') and not m.per_slice_thresholds
             for m in per_label.metrics)


def test_macro_f1_weights_every_label_and_carries_the_blessing_threshold(
    eval_config):
  (macro,) = _specs_with(eval_config,
                         lambda s: s.aggregate.macro_average)

  assert not macro.aggregate.micro_average
  assert dict(macro.aggregate.class_weights) == {0: 1.0, 1: 1.0, 2: 1.0,
                                                 3: 1.0}
  assert not macro.HasField('binarize')  # else each label's F1 is gated too
  (f1,) = macro.metrics
  assert f1.class_name == 'F1Score'
  assert not f1.HasField('threshold')
  (per_slice,) = f1.per_slice_thresholds
  assert list(per_slice.slicing_specs) == [tfma.SlicingSpec()]  # overall only
  threshold = per_slice.threshold
  assert threshold.value_threshold.lower_bound.value == pytest.approx(0.42)
  assert not threshold.value_threshold.HasField('upper_bound')
  assert threshold.change_threshold.direction == (
      tfma.MetricDirection.HIGHER_IS_BETTER)
  assert threshold.change_threshold.absolute.value == pytest.approx(-0.015)


def test_micro_f1_has_its_own_spec_without_a_threshold(eval_config):
  (micro,) = _specs_with(eval_config,
                         lambda s: s.aggregate.micro_average)

  assert not micro.aggregate.macro_average
  assert list(micro.binarize.class_ids.values) == [0, 1, 2, 3]
  (f1,) = micro.metrics
  assert f1.class_name == 'F1Score'
  assert not f1.HasField('threshold') and not f1.per_slice_thresholds


def test_only_the_macro_f1_gates_the_blessing(eval_config):
  gated = [(spec.aggregate.macro_average, m.class_name)
           for spec in eval_config.metrics_specs for m in spec.metrics
           if m.HasField('threshold') or m.per_slice_thresholds]
  assert gated == [(True, 'F1Score')]


def test_blessing_threshold_follows_the_configuration(config):
  threshold = evaluation.blessing_threshold(config)

  assert threshold.value_threshold.lower_bound.value == pytest.approx(
      config.evaluation.macro_f1_lower_bound)
  assert threshold.change_threshold.absolute.value == pytest.approx(
      -config.evaluation.max_macro_f1_drop)


def test_eval_config_is_accepted_by_tfma(eval_config):
  # Raises on an invalid config, e.g. macro_average without class_weights.
  tfma.metrics.specs_from_metrics  # noqa: B018  (import check)
  tfma.verify_eval_config(eval_config)
