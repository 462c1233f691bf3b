"""The multi-label Keras model: one sigmoid output per part or operation.

Inputs are the Transform outputs (see preprocessing/transform.py): the z-scored
numeric values and their missing indicators, each one [batch, N] input for all
N numeric features, ids of categorical features, and padded id lists of
multivalent features such as DTCs and symptoms. Each categorical
feature gets an embedding; each list feature an embedding summed over the
values present in the row (a bag of DTCs). It is a wide-and-deep model: dense
layers with dropout over those encodings (the deep part, which learns
interactions such as a DTC on a given engine type) add their logits to a
linear, per-label logit of every value present and every number (the wide
part, a logistic regression inside the model). Configured crosses, such as
DTC x engine type, give every combination of their values present in a row
an embedding in the deep part and a logit per label in the wide part. One
sigmoid per label gives `probabilities`, in label-vocabulary order.
"""

from typing import Any, Dict, Optional

import keras
from keras import layers, ops

from models.export import PROBABILITIES
from preprocessing import transform

# A cross of two large vocabularies hashes its combinations into this many
# buckets.
MAX_CROSS_BUCKETS = 20000


def build_model(model_settings: Dict[str, Any], vocabulary_sizes: Dict[str, int],
                hparams: Dict[str, Any],
                loss: Optional[keras.losses.Loss] = None) -> keras.Model:
  """Builds and compiles the model.

  Args:
    model_settings: the Trainer's custom_config (see pipeline/settings.py).
    vocabulary_sizes: vocabulary size of each categorical and list feature,
      without the out-of-vocabulary bucket.
    hparams: values of the names in models/hyperparameters.py.
    loss: the training loss (models/losses.py); binary cross-entropy if None.
  """
  features = model_settings['features']
  num_labels = len(model_settings['label_vocabulary'])
  inputs, encoded, wide_logits = {}, [], []
  if features['numeric']:
    # Two inputs whatever the number of numeric features: their z-scores and
    # missing indicators, column i being features['numeric'][i].
    numeric = []
    for key in (transform.NUMERIC_VALUES, transform.NUMERIC_MISSING):
      inputs[key] = keras.Input(shape=(len(features['numeric']),),
                                dtype='float32', name=key)
      numeric.append(inputs[key])
    numeric = layers.Concatenate(name='numeric_encoding')(numeric)
    encoded.append(numeric)
    # The wide part: one logit per label, linear in every number and
    # indicator.
    wide_logits.append(layers.Dense(num_labels, name='numeric_wide')(numeric))
  for name in features['categorical'] + features['multivalent']:
    width = 1 if name in features['categorical'] else features[
        'max_values_per_row']
    key = transform.transformed_name(name)
    ids = inputs[key] = keras.Input(shape=(width,), dtype='int64', name=key)
    # +2: the padding id 0 and the out-of-vocabulary bucket.
    embedded = layers.Embedding(vocabulary_sizes[name] + 2,
                                hparams['embedding_dim'],
                                name=f'{name}_embedding')(ids)
    present = ops.expand_dims(
        ops.cast(ops.not_equal(ids, transform.PADDING_ID), 'float32'), -1)
    encoded.append(ops.sum(embedded * present, axis=1))
    # The wide part: one logit per label for each value present.
    wide = layers.Embedding(vocabulary_sizes[name] + 2, num_labels,
                            embeddings_initializer='zeros',
                            name=f'{name}_wide')(ids)
    wide_logits.append(ops.sum(wide * present, axis=1))

  for first, second in features.get('crosses', []):
    ids, present, buckets = _crossed_ids(
        inputs[transform.transformed_name(first)], vocabulary_sizes[first],
        inputs[transform.transformed_name(second)], vocabulary_sizes[second])
    name = f'{first}_x_{second}'
    encoded.append(ops.sum(layers.Embedding(
        buckets, hparams['embedding_dim'], name=f'{name}_embedding')(ids) *
                           present, axis=1))
    wide_logits.append(ops.sum(layers.Embedding(
        buckets, num_labels, embeddings_initializer='zeros',
        name=f'{name}_wide')(ids) * present, axis=1))

  hidden = layers.Concatenate(name='session_encoding')(encoded)
  for i in range(hparams['hidden_layers']):
    hidden = layers.Dense(hparams['hidden_units'], activation='relu',
                          name=f'hidden_{i}')(hidden)
    hidden = layers.Dropout(hparams['dropout'])(hidden)
  logits = layers.Add(name='logits')(
      [layers.Dense(num_labels, name='deep_logits')(hidden)] + wide_logits)
  probabilities = layers.Activation('sigmoid', name=PROBABILITIES)(logits)

  model = keras.Model(inputs=inputs, outputs=probabilities)
  model.compile(
      optimizer=keras.optimizers.Adam(hparams['learning_rate']),
      loss=loss or keras.losses.BinaryCrossentropy(),
      metrics=[keras.metrics.F1Score(average='macro', threshold=0.5,
                                     name='macro_f1')])
  return model


def _crossed_ids(first_ids, first_size: int, second_ids, second_size: int):
  """(ids, presence, buckets) of every pair of values of two id lists.

  Row-wise, a [w1] and a [w2] list of ids become w1 * w2 pair ids; a pair is
  present when both of its values are (not padding).
  """
  width = (first_size + 2) * (second_size + 2)
  buckets = min(width, MAX_CROSS_BUCKETS)
  pairs = (ops.expand_dims(first_ids, 2) * (second_size + 2) +
           ops.expand_dims(second_ids, 1))
  present = ops.logical_and(
      ops.expand_dims(ops.not_equal(first_ids, transform.PADDING_ID), 2),
      ops.expand_dims(ops.not_equal(second_ids, transform.PADDING_ID), 1))
  pair_count = first_ids.shape[1] * second_ids.shape[1]
  ids = ops.reshape(pairs % buckets, (-1, pair_count))
  present = ops.expand_dims(
      ops.cast(ops.reshape(present, (-1, pair_count)), 'float32'), -1)
  return ids, present, buckets
