"""The TFMA EvalConfig of a run, generated from its configuration.

Macro F1, micro F1 and per-label precision, recall and F1 come from one
multi-label metric (pipeline/multilabel_metrics.py), on the overall slice and on
every configured slice. Transformed features are named `<raw>_xf`, so slices
on raw feature names slice on raw values. The model is blessed when
its macro F1 on the test split clears the configured lower bound and does not
trail the latest blessed model by more than the configured drop.
"""

import tensorflow_model_analysis as tfma

from models import export
from pipeline import multilabel_metrics
from pipeline.config import Config
from preprocessing.transform import transformed_name

def blessing_threshold(config: Config) -> tfma.MetricThreshold:
  """The rule a model's macro F1 must pass to be blessed."""
  evaluation = config.evaluation
  return tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(
          lower_bound={'value': evaluation.macro_f1_lower_bound}),
      change_threshold=tfma.GenericChangeThreshold(
          direction=tfma.MetricDirection.HIGHER_IS_BETTER,
          absolute={'value': -evaluation.max_macro_f1_drop}))


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
      slicing_specs=[tfma.SlicingSpec()] + [
          tfma.SlicingSpec(feature_keys=list(keys)) for keys in config.slices
      ],
      metrics_specs=[
          tfma.MetricsSpec(metrics=[
              tfma.MetricConfig(class_name='ExampleCount'),
              tfma.MetricConfig(
                  class_name=multilabel_metrics.MultiLabelF1.__name__,
                  module=multilabel_metrics.__name__,
                  # On the overall slice only: the floor and the comparison
                  # with the baseline are about the model as a whole.
                  per_slice_thresholds=[tfma.PerSliceMetricThreshold(
                      slicing_specs=[tfma.SlicingSpec()],
                      threshold=blessing_threshold(config))]),
          ]),
      ])
