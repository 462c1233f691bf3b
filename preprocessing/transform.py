"""The Transform component's preprocessing_fn, built from the configured features.

Everything the model needs to turn a raw diagnostic session into tensors is
computed here once, over the training split, and saved in the transform graph
that travels with the model:

- numeric features: z-score normalisation over the present values; a missing
  reading (absent or NaN) becomes 0 (the mean) plus a missing indicator of 1.
  All numeric features travel as two [batch, N] tensors, `numeric_xf` (the
  z-scores) and `numeric_missing_xf` (the indicators), column i being
  `features.numeric[i]` in configuration order. One TFT analyzer computes
  every column's mean and variance at once: Transform's cost grows with the
  number of values, not with the number of features (BENCHMARKS.md);
- categorical features: a vocabulary with one out-of-vocabulary bucket, as ids
  shifted by one so that 0 means "missing";
- multivalent features (lists such as DTCs): the same vocabulary ids, padded
  with 0 or truncated to a fixed number of values per row;
- the label column (a list of label names): a multi-hot vector over the
  configured label vocabulary, in vocabulary order.

Transformed features are named `<raw name>_xf` (the stacked numeric ones
`numeric_xf` and `numeric_missing_xf`), so that they never shadow the raw
features that TFMA slices on.

The settings arrive as Transform's `custom_config`, made from the run's Config
by pipeline/settings.py.
"""

from typing import Any, Dict, List, Tuple

import tensorflow as tf
import tensorflow_transform as tft

# Id 0 is reserved for "no value" in categorical and multivalent features.
PADDING_ID = 0
TRANSFORMED_SUFFIX = '_xf'


def transformed_name(name: str) -> str:
  """The name of the Transform output made from raw feature `name`."""
  return name + TRANSFORMED_SUFFIX


# The stacked numeric features: [batch, len(features.numeric)] each.
NUMERIC_VALUES = transformed_name('numeric')
NUMERIC_MISSING = transformed_name('numeric_missing')


def vocabulary_name(feature: str) -> str:
  """The vocabulary file name of a categorical or multivalent feature."""
  return f'{feature}_vocabulary'


def preprocessing_fn(inputs: Dict[str, Any],
                     custom_config: Dict[str, Any]) -> Dict[str, tf.Tensor]:
  """Maps raw session features to model-ready tensors (see module docstring)."""
  features = custom_config['features']
  outputs = _Outputs()
  if features['numeric']:
    values, missing = normalized_numeric(
        [inputs[name] for name in features['numeric']])
    outputs[NUMERIC_VALUES] = values
    outputs[NUMERIC_MISSING] = missing
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
  return dict(outputs)


class _Outputs(dict):
  """Transform's outputs; a name given twice is an error, not an overwrite
  (a feature named `numeric` would otherwise replace the stacked numbers)."""

  def __setitem__(self, name, tensor):
    if name in self:
      raise ValueError(
          f'Two Transform outputs are named {name!r}: rename the configured '
          f'feature that becomes {name!r} (features are named <name>'
          f'{TRANSFORMED_SUFFIX}; {NUMERIC_VALUES!r} and {NUMERIC_MISSING!r} '
          'hold the numeric features).')
    super().__setitem__(name, tensor)


def normalized_numeric(columns: List[Any]) -> Tuple[tf.Tensor, tf.Tensor]:
  """(z-scores, missing indicators), both [batch, len(columns)] float32.

  Each column is one numeric feature, dense or sparse; a row's first value is
  its reading. One elementwise `tft.scale_to_z_score` over the stacked
  readings computes the mean and variance of every column over its present
  values: TFT's mean-and-variance analyzer skips non-finite values
  (tf_utils.reduce_batch_count_mean_and_var), so NaN marks "missing" to it at
  no cost, and its one combiner replaces one analyzer per feature. Missing
  readings become 0, the mean.
  """
  readings = _stacked_readings(columns)
  present = tf.logical_not(tf.math.is_nan(readings))
  # The analyzer sums in the input's precision, in the order of Beam's
  # batches, which Beam sizes by timing. In float32 the mean and variance
  # then differ in their last bit from run to run, and so does every
  # model trained on them; in float64 the z-scores round to the same
  # float32 values (BENCHMARKS.md, "Determinism").
  scaled = tf.cast(tft.scale_to_z_score(tf.cast(readings, tf.float64),
                                        elementwise=True), tf.float32)
  return (tf.where(present, scaled, tf.zeros_like(scaled)),
          1.0 - tf.cast(present, tf.float32))


def _stacked_readings(columns: List[Any]) -> tf.Tensor:
  """[batch, len(columns)] float32: each column's first value, NaN if none.

  TFT traces preprocessing_fn about ten times per run (analysis, schema
  inference, the saved transform graph), so the TF ops made per feature are
  what a wide table pays for. Here a feature costs at most two ops (a cast,
  and the size of a sparse column's values); every sparse column is placed
  into the stacked tensor by one scatter.
  """
  sparse = [i for i, c in enumerate(columns) if isinstance(c, tf.SparseTensor)]
  dense = [i for i, c in enumerate(columns)
           if not isinstance(c, tf.SparseTensor)]
  parts = []
  if dense:
    parts.append(tf.concat([_first_dense_value(columns[i]) for i in dense],
                           axis=1))
  if sparse:
    batch = (tf.shape(parts[0], out_type=tf.int64)[0] if parts
             else columns[sparse[0]].dense_shape[0])
    indices = tf.concat([columns[i].indices for i in sparse], axis=0)
    values = tf.concat([tf.cast(columns[i].values, tf.float32)
                        for i in sparse], axis=0)
    value_counts = tf.concat([tf.shape(columns[i].values, out_type=tf.int64)
                              for i in sparse], axis=0)
    column_ids = tf.repeat(tf.range(len(sparse), dtype=tf.int64),
                           value_counts)
    # Parsed rows are left-aligned: position 0 holds a row's first value.
    first = tf.equal(indices[:, 1], 0)
    positions = tf.stack([tf.boolean_mask(indices[:, 0], first),
                          tf.boolean_mask(column_ids, first)], axis=1)
    missing = tf.fill(tf.stack([batch, len(sparse)]), float('nan'))
    parts.append(tf.reshape(tf.tensor_scatter_nd_update(
        missing, positions, tf.boolean_mask(values, first)),
                            [-1, len(sparse)]))
  stacked = tf.concat(parts, axis=1) if len(parts) > 1 else parts[0]
  if dense and sparse:  # back to configuration order
    order = {column: i for i, column in enumerate(dense + sparse)}
    stacked = tf.gather(stacked, [order[i] for i in range(len(columns))],
                        axis=1)
  return stacked


def _first_dense_value(column: tf.Tensor) -> tf.Tensor:
  """[batch, 1] float32 of a dense feature's first value."""
  column = tf.cast(column, tf.float32)
  if column.shape.rank == 2 and column.shape[1] == 1:  # FixedLen [1]: as is
    return column
  return tf.reshape(column, [tf.shape(column)[0], -1])[:, :1]


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


def _vocabulary_ids(value, name: str, top_k: int):
  """Vocabulary ids shifted by one, so that PADDING_ID stays free."""
  ids = tft.compute_and_apply_vocabulary(
      value, top_k=top_k, num_oov_buckets=1,
      vocab_filename=vocabulary_name(name))
  if isinstance(ids, tf.SparseTensor):
    return tf.SparseTensor(ids.indices, ids.values + 1, ids.dense_shape)
  return ids + 1


def _to_dense_rows(value, width: int, default) -> tf.Tensor:
  """[batch, width] dense tensor: sparse rows are padded or truncated."""
  if isinstance(value, tf.SparseTensor):
    batch = value.dense_shape[0]
    value = tf.sparse.slice(value, [0, 0], tf.stack(
        [batch, tf.constant(width, tf.int64)]))
    value = tf.sparse.to_dense(value, default_value=default)
  elif value.shape.rank == 2 and value.shape[1] == width:
    return value  # a FixedLen feature of that width, e.g. car_model: as is
  else:
    value = tf.reshape(value, [tf.shape(value)[0], -1])[:, :width]
  padding = width - tf.shape(value)[1]
  value = tf.pad(value, [[0, 0], [0, padding]], constant_values=default)
  return tf.reshape(value, [-1, width])
