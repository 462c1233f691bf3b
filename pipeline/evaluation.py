"""The TFMA EvalConfig of a run, generated from its configuration.

Per-label precision, recall and F1 come from binarizing the multi-label output
by label id (metric keys `classId:N`). Macro and micro F1 need one MetricsSpec
each, because TFMA's AggregationOptions is a oneof. Transformed features are
named `<raw>_xf`, so slices on raw names slice on raw values. The model is blessed when
its macro F1 on the test split clears the configured lower bound and does not
trail the latest blessed model by more than the configured drop.
"""

import tensorflow_model_analysis as tfma

from models.model import PROBABILITIES
from pipeline.config import Config
from preprocessing.transform import transformed_name

F1 = 'F1Score'
PER_LABEL_METRICS = ('Precision', 'Recall', F1)


def _label_ids(config: Config) -> tfma.BinarizationOptions:
  return tfma.BinarizationOptions(
      class_ids={'values': list(range(config.num_labels))})


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
  label_ids = _label_ids(config)
  return tfma.EvalConfig(
      model_specs=[
          tfma.ModelSpec(
              signature_name='serving_default',
              preprocessing_function_names=['transform_features'],
              label_key=transformed_name(config.label.column),
              prediction_key=PROBABILITIES)
      ],
      slicing_specs=[tfma.SlicingSpec()] + [
          tfma.SlicingSpec(feature_keys=list(keys)) for keys in config.slices
      ],
      metrics_specs=[
          tfma.MetricsSpec(
              metrics=[tfma.MetricConfig(class_name='ExampleCount')]),
          tfma.MetricsSpec(
              metrics=[tfma.MetricConfig(class_name=name)
                       for name in PER_LABEL_METRICS],
              binarize=label_ids),
          tfma.MetricsSpec(
              metrics=[tfma.MetricConfig(
                  class_name=F1, threshold=blessing_threshold(config))],
              # No `binarize` here: it would put the threshold on every
              # label's F1 too. The class weights name the labels.
              aggregate=tfma.AggregationOptions(
                  macro_average=True,
                  class_weights={i: 1.0 for i in range(config.num_labels)})),
          tfma.MetricsSpec(
              metrics=[tfma.MetricConfig(class_name=F1)],
              binarize=label_ids,
              aggregate=tfma.AggregationOptions(micro_average=True)),
      ])
