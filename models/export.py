"""Exports the trained model as a SavedModel with its transform graph.

Signatures:
- `serving_default`: serialized tf.Example strings under `examples` ->
  `probabilities` [batch, num_labels], in label-vocabulary order. It parses
  only the features of the schema's SERVING environment: no label, and none
  of the columns the schema marks absent at serving.
- `transform_features`: serialized tf.Example strings -> the Transform outputs,
  including the multi-hot label; TFMA uses it to get labels for evaluation.

The label names travel with the model as the asset file `assets/labels.txt`,
one name per line in output order.
"""

import os
from typing import Any, Dict, List, Set

import keras
import tensorflow as tf
import tensorflow_transform as tft

from models.model import PROBABILITIES

LABELS_ASSET = 'labels.txt'


SERVING_ENVIRONMENT = 'SERVING'


def absent_at_serving(schema) -> Set[str]:
  """Features the schema declares absent in the SERVING environment."""
  return {feature.name for feature in schema.feature
          if SERVING_ENVIRONMENT in feature.not_in_environment}


class RepairModel(tf.Module):
  """The Keras model plus everything needed to serve it from raw examples."""

  def __init__(self, model: keras.Model,
               transform_output: tft.TFTransformOutput, label_column: str,
               label_names: List[str], labels_file: str):
    super().__init__()
    self.model = model
    self.transform_layer = transform_output.transform_features_layer()
    self.labels_asset = tf.saved_model.Asset(labels_file)
    self._model_inputs = [i.name for i in model.inputs]
    raw_spec = transform_output.raw_feature_spec()
    self._raw_spec = raw_spec
    absent = absent_at_serving(transform_output.raw_metadata.schema)
    self._serving_spec = {k: v for k, v in raw_spec.items()
                          if k not in absent | {label_column}}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                              name='examples')])
  def serve(self, examples):
    raw = tf.io.parse_example(examples, self._serving_spec)
    transformed = self.transform_layer(raw)
    inputs = {name: transformed[name] for name in self._model_inputs}
    return {PROBABILITIES: self.model(inputs, training=False)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                              name='examples')])
  def transform_features(self, examples):
    return self.transform_layer(tf.io.parse_example(examples, self._raw_spec))


def export_serving_model(model: keras.Model,
                         transform_output: tft.TFTransformOutput,
                         model_settings: Dict[str, Any], export_dir: str,
                         work_dir: str) -> None:
  """Saves the serving SavedModel to `export_dir`."""
  labels_file = os.path.join(work_dir, LABELS_ASSET)
  with tf.io.gfile.GFile(labels_file, 'w') as f:
    f.write('\n'.join(model_settings['label_vocabulary']) + '\n')
  module = RepairModel(model, transform_output, model_settings['label_column'],
                       model_settings['label_vocabulary'], labels_file)
  tf.saved_model.save(module, export_dir, signatures={
      'serving_default': module.serve,
      'transform_features': module.transform_features,
  })


def load_label_names(saved_model_dir: str) -> List[str]:
  """The label names of an exported model, in output order."""
  path = os.path.join(saved_model_dir, 'assets', LABELS_ASSET)
  with tf.io.gfile.GFile(path) as f:
    return [line for line in f.read().splitlines() if line]
