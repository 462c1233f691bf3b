"""The TFMA EvalConfig of a run, generated from its configuration.

Metrics, on the overall slice and on every configured slice (transformed
features are named `<raw>_xf`, so slices on raw feature names slice on raw
values):
- TFMA's ExampleCount;
- MultiLabelF1 (pipeline/multilabel_metrics.py): macro and micro F1, macro
  AUC and PR-AUC, and per-label precision, recall, F1, AUC and PR-AUC;
- SliceMacroF1Shortfall: how far a large enough slice falls below the floor.

The blessing rules, all on the test split:
1. macro F1 clears `evaluation.macro_f1_lower_bound`;
2. macro F1 trails the latest blessed model by at most
   `evaluation.max_macro_f1_drop`;
3. the fairness guard: no configured slice with at least
   `evaluation.min_slice_examples` examples has a macro F1 below
   `evaluation.slice_macro_f1_floor`.
"""

import json

import tensorflow_model_analysis as tfma

from models import export
from pipeline import multilabel_metrics
from pipeline.config import Config
from preprocessing.transform import transformed_name

OVERALL = tfma.SlicingSpec()


def blessing_threshold(config: Config) -> tfma.MetricThreshold:
  """The rule a model's overall macro F1 must pass to be blessed."""
  evaluation = config.evaluation
  return tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(
          lower_bound={'value': evaluation.macro_f1_lower_bound}),
      change_threshold=tfma.GenericChangeThreshold(
          direction=tfma.MetricDirection.HIGHER_IS_BETTER,
          absolute={'value': -evaluation.max_macro_f1_drop}))


def slicing_specs(config: Config):
  """The configured slices, without the overall one."""
  return [tfma.SlicingSpec(feature_keys=list(keys)) for keys in config.slices]


def fairness_guard(config: Config) -> tfma.MetricConfig:
  """The shortfall metric, with a threshold of 0 on every configured slice."""
  evaluation = config.evaluation
  thresholds = []
  if config.slices:
    thresholds.append(tfma.PerSliceMetricThreshold(
        slicing_specs=slicing_specs(config),
        threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(
                upper_bound={'value': 0.0}))))
  return tfma.MetricConfig(
      class_name=multilabel_metrics.SliceMacroF1Shortfall.__name__,
      module=multilabel_metrics.__name__,
      config=json.dumps({'floor': evaluation.slice_macro_f1_floor,
                         'min_examples': evaluation.min_slice_examples}),
      per_slice_thresholds=thresholds)


def eval_config(config: Config) -> tfma.EvalConfig:
  """Metrics, slices and blessing thresholds for the Evaluator."""
  return tfma.EvalConfig(
      model_specs=[
          tfma.ModelSpec(
              signature_name='serving_default',
              preprocessing_function_names=['transform_features'],
              label_key=transformed_name(config.label.column),
              # The served decision: each label's threshold sits at 0.5.
              prediction_key=export.RECOMMENDATION_SCORES)
      ],
      slicing_specs=[OVERALL] + slicing_specs(config),
      metrics_specs=[
          tfma.MetricsSpec(metrics=[
              tfma.MetricConfig(class_name='ExampleCount'),
              tfma.MetricConfig(
                  class_name=multilabel_metrics.MultiLabelF1.__name__,
                  module=multilabel_metrics.__name__,
                  # On the overall slice only: the floor and the comparison
                  # with the baseline are about the model as a whole.
                  per_slice_thresholds=[tfma.PerSliceMetricThreshold(
                      slicing_specs=[OVERALL],
                      threshold=blessing_threshold(config))]),
              fairness_guard(config),
          ]),
      ])
