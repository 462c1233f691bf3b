"""Exports the trained model as a SavedModel with its transform graph.

Signatures:
- `serving_default`: serialized tf.Example strings under `examples` ->
  - `probabilities` [batch, num_labels] float, in label-vocabulary order;
  - `recommended` [batch, num_labels] int64, 1 where the probability reaches
    the label's decision threshold (models/thresholds.py);
  - `recommendation_scores` [batch, num_labels] float, the probabilities moved
    so that every threshold lands on 0.5 (TFMA evaluates these at 0.5, i.e.
    the served decision).
  It parses only the features of the schema's SERVING environment: no label,
  and none of the columns the schema marks absent at serving.
- `transform_features`: serialized tf.Example strings -> the Transform outputs,
  including the multi-hot label; TFMA uses it to get labels for evaluation.

The label names and thresholds travel with the model as the asset files
`assets/labels.txt` and `assets/thresholds.txt`, one line per label in output
order; `assets/serving_features.json` describes the features
`serving_default` parses, so that a server can build tf.Examples from JSON
without the pipeline's code: {name: {"dtype": "string" | "int64" | "float32",
"list": true if the feature may hold any number of values, and the curated
schema's "min", "max" (int and float domains) and "max_values" where it
sets them}}.
"""

import json
import os
from typing import Any, Dict, List, Optional, Set

import keras
import tensorflow as tf
import tensorflow_transform as tft

from models import thresholds

LABELS_ASSET = 'labels.txt'
THRESHOLDS_ASSET = 'thresholds.txt'
SERVING_FEATURES_ASSET = 'serving_features.json'
# The outputs of `serving_default`, described above: the names servers, batch
# prediction and the Evaluator read, and the Keras model's output layer name.
PROBABILITIES = 'probabilities'
RECOMMENDED = 'recommended'
RECOMMENDATION_SCORES = 'recommendation_scores'
SERVING_OUTPUTS = (PROBABILITIES, RECOMMENDED, RECOMMENDATION_SCORES)


SERVING_ENVIRONMENT = 'SERVING'


def absent_at_serving(schema) -> Set[str]:
  """Features the schema declares absent in the SERVING environment."""
  return {feature.name for feature in schema.feature
          if SERVING_ENVIRONMENT in feature.not_in_environment}


def serving_feature_spec(transform_output: tft.TFTransformOutput,
                         label_column: str):
  """The raw feature spec of a serving request: no label, and nothing the
  schema declares absent at serving."""
  absent = absent_at_serving(transform_output.raw_metadata.schema)
  return {name: spec for name, spec in
          transform_output.raw_feature_spec().items()
          if name not in absent | {label_column}}


def serving_features(transform_output: tft.TFTransformOutput,
                     label_column: str) -> Dict[str, Dict[str, Any]]:
  """{name: {dtype, list, ...}} of the serving feature spec, as plain JSON,
  with the curated schema's limits that a server checks requests against:
  `min` and `max` of an int or float domain, `max_values` of a value count."""
  schema = {feature.name: feature
            for feature in transform_output.raw_metadata.schema.feature}
  features = {}
  for name, spec in serving_feature_spec(transform_output,
                                         label_column).items():
    features[name] = {'dtype': spec.dtype.name,
                      'list': not isinstance(spec, tf.io.FixedLenFeature)}
    if name in schema:
      features[name].update(_schema_limits(schema[name]))
  return features


def _schema_limits(feature) -> Dict[str, Any]:
  limits = {}
  domain = feature.WhichOneof('domain_info')
  if domain in ('int_domain', 'float_domain'):
    for bound in ('min', 'max'):
      if getattr(feature, domain).HasField(bound):
        limits[bound] = getattr(getattr(feature, domain), bound)
  if feature.HasField('value_count') and feature.value_count.max > 0:
    limits['max_values'] = feature.value_count.max
  return limits


class RepairModel(tf.Module):
  """The Keras model plus everything needed to serve it from raw examples."""

  def __init__(self, model: keras.Model,
               transform_output: tft.TFTransformOutput, label_column: str,
               thresholds: List[float], asset_files: List[str]):
    super().__init__()
    self.model = model
    self.transform_layer = transform_output.transform_features_layer()
    self.assets = [tf.saved_model.Asset(path) for path in asset_files]
    self.thresholds = tf.constant(thresholds, tf.float32)
    self._model_inputs = [i.name for i in model.inputs]
    self._raw_spec = transform_output.raw_feature_spec()
    self._serving_spec = serving_feature_spec(transform_output, label_column)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                              name='examples')])
  def serve(self, examples):
    raw = tf.io.parse_example(examples, self._serving_spec)
    transformed = self.transform_layer(raw)
    inputs = {name: transformed[name] for name in self._model_inputs}
    probabilities = self.model(inputs, training=False)
    return {
        PROBABILITIES: probabilities,
        RECOMMENDED: tf.cast(probabilities >= self.thresholds, tf.int64),
        RECOMMENDATION_SCORES: thresholds.recommendation_scores(
            probabilities, self.thresholds),
    }

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                              name='examples')])
  def transform_features(self, examples):
    return self.transform_layer(tf.io.parse_example(examples, self._raw_spec))


def export_serving_model(model: keras.Model,
                         transform_output: tft.TFTransformOutput,
                         model_settings: Dict[str, Any], export_dir: str,
                         work_dir: str,
                         label_thresholds: Optional[List[float]] = None) -> None:
  """Saves the serving SavedModel to `export_dir`."""
  label_names = model_settings['label_vocabulary']
  if label_thresholds is None:
    label_thresholds = [thresholds.DEFAULT_THRESHOLD] * len(label_names)
  asset_files = [_write_lines(work_dir, LABELS_ASSET, label_names),
                 _write_lines(work_dir, THRESHOLDS_ASSET,
                              [repr(float(t)) for t in label_thresholds])]
  asset_files.append(_write_lines(work_dir, SERVING_FEATURES_ASSET, [
      json.dumps(serving_features(transform_output,
                                  model_settings['label_column']),
                 sort_keys=True)]))
  module = RepairModel(model, transform_output, model_settings['label_column'],
                       list(label_thresholds), asset_files)
  tf.saved_model.save(module, export_dir, signatures={
      'serving_default': module.serve,
      'transform_features': module.transform_features,
  })


def _write_lines(work_dir: str, name: str, lines: List[str]) -> str:
  path = os.path.join(work_dir, name)
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return path


def _read_lines(saved_model_dir: str, name: str) -> List[str]:
  with tf.io.gfile.GFile(os.path.join(saved_model_dir, 'assets', name)) as f:
    return [line for line in f.read().splitlines() if line]


def load_label_names(saved_model_dir: str) -> List[str]:
  """The label names of an exported model, in output order."""
  return _read_lines(saved_model_dir, LABELS_ASSET)


def load_thresholds(saved_model_dir: str) -> List[float]:
  """The per-label decision thresholds of an exported model."""
  return [float(line) for line in _read_lines(saved_model_dir,
                                              THRESHOLDS_ASSET)]


def load_serving_features(saved_model_dir: str) -> Dict[str, Dict[str, Any]]:
  """The features an exported model's serving_default parses (see above)."""
  return json.loads(''.join(_read_lines(saved_model_dir,
                                        SERVING_FEATURES_ASSET)))
