"""The Transform component's preprocessing_fn, built from the configured features.

Everything the model needs to turn a raw diagnostic session into tensors is
computed here once, over the training split, and saved in the transform graph
that travels with the model:

- numeric features: z-score normalisation over the present values; a missing
  reading becomes 0 (the mean) plus a `<name>_missing` indicator;
- categorical features: a vocabulary with one out-of-vocabulary bucket, as ids
  shifted by one so that 0 means "missing";
- multivalent features (lists such as DTCs): the same vocabulary ids, padded
  with 0 or truncated to a fixed number of values per row;
- the label column (a list of label names): a multi-hot vector over the
  configured label vocabulary, in vocabulary order.

Transformed features are named `<raw name>_xf`, so that they never shadow the
raw features that TFMA slices on.

The settings arrive as Transform's `custom_config`, made from the run's Config
by pipeline/settings.py.
"""

from typing import Any, Dict, List

import tensorflow as tf
import tensorflow_transform as tft

# Id 0 is reserved for "no value" in categorical and multivalent features.
PADDING_ID = 0
MISSING_SUFFIX = '_missing'
TRANSFORMED_SUFFIX = '_xf'


def transformed_name(name: str) -> str:
  """The name of the Transform output made from raw feature `name`."""
  return name + TRANSFORMED_SUFFIX


def vocabulary_name(feature: str) -> str:
  """The vocabulary file name of a categorical or multivalent feature."""
  return f'{feature}_vocabulary'


def preprocessing_fn(inputs: Dict[str, Any],
                     custom_config: Dict[str, Any]) -> Dict[str, tf.Tensor]:
  """Maps raw session features to model-ready tensors (see module docstring)."""
  features = custom_config['features']
  outputs = {}
  for name in features['numeric']:
    value, missing = _normalized_with_missing_indicator(inputs[name])
    outputs[transformed_name(name)] = value
    outputs[transformed_name(name + MISSING_SUFFIX)] = missing
  for name in features['categorical']:
    ids = _vocabulary_ids(inputs[name], name, features['vocabulary_top_k'])
    outputs[transformed_name(name)] = _to_dense_rows(ids, width=1,
                                                     default=PADDING_ID)
  for name in features['multivalent']:
    ids = _vocabulary_ids(inputs[name], name, features['vocabulary_top_k'])
    outputs[transformed_name(name)] = _to_dense_rows(
        ids, width=features['max_values_per_row'], default=PADDING_ID)
  label_column = custom_config['label_column']
  if label_column in inputs:  # absent at serving time
    outputs[transformed_name(label_column)] = multi_hot_labels(
        inputs[label_column], custom_config['label_vocabulary'])
  return outputs


def multi_hot_labels(labels, vocabulary: List[str]) -> tf.Tensor:
  """[batch, len(vocabulary)] float 0/1; names outside the vocabulary are ignored.

  Names outside the vocabulary are caught earlier, by the schema's domain for
  the label column and the data gate.
  """
  if isinstance(labels, tf.SparseTensor):
    labels = tf.sparse.to_dense(labels, default_value='')
  matches = tf.equal(tf.expand_dims(labels, -1),
                     tf.constant(vocabulary, dtype=tf.string))
  return tf.cast(tf.reduce_any(matches, axis=1), tf.float32)


def _normalized_with_missing_indicator(value):
  """z-scored value [batch, 1] with 0 for missing, and the missing flag."""
  value = _cast_values(value, tf.float32)
  scaled = tft.scale_to_z_score(value)
  present = _cast_values(value, tf.float32, ones=True)
  dense_present = _to_dense_rows(present, width=1, default=0.0)
  return _to_dense_rows(scaled, width=1, default=0.0), 1.0 - dense_present


def _vocabulary_ids(value, name: str, top_k: int):
  """Vocabulary ids shifted by one, so that PADDING_ID stays free."""
  ids = tft.compute_and_apply_vocabulary(
      value, top_k=top_k, num_oov_buckets=1,
      vocab_filename=vocabulary_name(name))
  if isinstance(ids, tf.SparseTensor):
    return tf.SparseTensor(ids.indices, ids.values + 1, ids.dense_shape)
  return ids + 1


def _cast_values(value, dtype, ones: bool = False):
  """Casts a dense or sparse tensor; with `ones`, replaces its values by 1."""
  if isinstance(value, tf.SparseTensor):
    values = tf.ones_like(value.values, dtype) if ones else tf.cast(
        value.values, dtype)
    return tf.SparseTensor(value.indices, values, value.dense_shape)
  return tf.ones_like(value, dtype) if ones else tf.cast(value, dtype)


def _to_dense_rows(value, width: int, default) -> tf.Tensor:
  """[batch, width] dense tensor: sparse rows are padded or truncated."""
  if isinstance(value, tf.SparseTensor):
    batch = value.dense_shape[0]
    value = tf.sparse.slice(value, [0, 0], tf.stack(
        [batch, tf.constant(width, tf.int64)]))
    value = tf.sparse.to_dense(value, default_value=default)
  else:
    value = tf.reshape(value, [tf.shape(value)[0], -1])[:, :width]
  padding = width - tf.shape(value)[1]
  value = tf.pad(value, [[0, 0], [0, padding]], constant_values=default)
  return tf.reshape(value, [-1, width])
