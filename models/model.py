"""The multi-label Keras model: one sigmoid output per part or operation.

Inputs are the Transform outputs (see preprocessing/transform.py): z-scored
numeric values with missing indicators, ids of categorical features, and padded
id lists of multivalent features such as DTCs and symptoms. Each categorical
feature gets an embedding; each list feature an embedding summed over the
values present in the row (a bag of DTCs). It is a wide-and-deep model: dense
layers with dropout over those encodings (the deep part, which learns
interactions such as a DTC on a given engine type) add their logits to a
linear, per-label logit of every value present and every number (the wide
part, a logistic regression inside the model). One sigmoid per label gives
`probabilities`, in label-vocabulary order.
"""

from typing import Any, Dict, Optional

import keras
from keras import layers, ops

from preprocessing import transform

PROBABILITIES = 'probabilities'


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
  for name in features['numeric']:
    for key in (transform.transformed_name(name),
                transform.transformed_name(name + transform.MISSING_SUFFIX)):
      inputs[key] = keras.Input(shape=(1,), dtype='float32', name=key)
      encoded.append(inputs[key])
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

  numeric = [encoded[i] for i in range(2 * len(features['numeric']))]
  if numeric:
    wide_logits.append(layers.Dense(num_labels, name='numeric_wide')(
        layers.Concatenate()(numeric) if len(numeric) > 1 else numeric[0]))
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
