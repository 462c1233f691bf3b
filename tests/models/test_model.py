"""The wide-and-deep model: crossed features learn what neither feature can alone."""

import numpy as np
import tensorflow as tf
from keras import ops

from models import model as repair_model

ENGINES = 2   # ids 1 and 2 (0 is padding)
DTCS = 3      # ids 1..3


def test_crossed_ids_pair_every_present_value_of_two_lists():
  dtcs = tf.constant([[1, 3, 0]], tf.int64)      # two codes and padding
  engine = tf.constant([[2]], tf.int64)
  ids, present, buckets = repair_model._crossed_ids(  # pylint: disable=protected-access
      dtcs, DTCS, engine, ENGINES)

  assert buckets == (DTCS + 2) * (ENGINES + 2)
  assert ops.convert_to_numpy(ids).tolist() == [[1 * 4 + 2, 3 * 4 + 2, 2]]
  assert ops.convert_to_numpy(present)[..., 0].tolist() == [[1.0, 1.0, 0.0]]


def _settings(crosses):
  return {'features': {'numeric': [], 'categorical': ['engine_type'],
                       'multivalent': ['dtcs'], 'max_values_per_row': 2,
                       'crosses': crosses},
          'label_vocabulary': ['op:replace_dpf', 'op:replace_ignition_coil']}


def _interaction_data(rows: int = 512):
  """Codes 1 and 2 mean one repair on the matching engine, another on the
  other engine: an XOR of code and engine, which no sum of a per-code and a
  per-engine term can express."""
  rng = np.random.default_rng(0)
  engine = rng.integers(1, ENGINES + 1, (rows, 1))
  dtcs = np.stack([rng.integers(1, DTCS + 1, rows), np.zeros(rows, int)], 1)
  code = dtcs[:, :1]
  known = code <= 2
  labels = np.concatenate([known & (code == engine),
                           known & (code != engine)], 1).astype('float32')
  features = {'engine_type_xf': engine, 'dtcs_xf': dtcs}
  return tf.data.Dataset.from_tensor_slices((features, labels)).batch(64)


def _fitted_f1(crosses) -> float:
  tf.keras.utils.set_random_seed(1)
  hparams = {'learning_rate': 0.05, 'hidden_units': 4, 'hidden_layers': 0,
             'embedding_dim': 2, 'dropout': 0.0}
  model = repair_model.build_model(_settings(crosses),
                                   {'engine_type': ENGINES, 'dtcs': DTCS},
                                   hparams)
  data = _interaction_data()
  model.fit(data.repeat(), steps_per_epoch=200, epochs=1, verbose=0)
  return model.evaluate(data, verbose=0, return_dict=True)['macro_f1']


def test_a_cross_learns_an_interaction_a_linear_model_cannot():
  # Without hidden layers the model is linear in its per-feature encodings,
  # so only the cross can tell "code 1 on engine 1" from "code 1 on engine 2".
  assert _fitted_f1([['dtcs', 'engine_type']]) > 0.99
  assert _fitted_f1([]) < 0.9


def _numeric_settings(numeric):
  return {'features': {'numeric': numeric, 'categorical': ['engine_type'],
                       'multivalent': [], 'max_values_per_row': 2},
          'label_vocabulary': ['op:battery_charge_and_test',
                               'op:replace_12v_battery']}


SMALL = {'learning_rate': 0.05, 'hidden_units': 4, 'hidden_layers': 0,
         'embedding_dim': 2, 'dropout': 0.0}


def test_numeric_features_enter_as_two_inputs_whatever_their_number():
  numeric = [f'reading_{i}' for i in range(200)]
  model = repair_model.build_model(_numeric_settings(numeric),
                                   {'engine_type': ENGINES}, SMALL)

  assert {i.name: tuple(i.shape) for i in model.inputs} == {
      'numeric_xf': (None, 200), 'numeric_missing_xf': (None, 200),
      'engine_type_xf': (None, 1)}
  # The wide part is linear in every number and every missing indicator.
  assert model.get_layer('numeric_wide').kernel.shape == (400, 2)


def test_a_label_that_follows_one_missing_indicator_is_learnt():
  # A flat battery reading is often missing: the label is "reading 3 is
  # missing", which only that column of numeric_missing_xf tells.
  tf.keras.utils.set_random_seed(2)
  rng = np.random.default_rng(2)
  rows, width = 512, 5
  missing = (rng.random((rows, width)) < 0.5).astype('float32')
  values = np.where(missing == 1, 0.0, rng.normal(size=(rows, width)))
  labels = np.stack([missing[:, 3], 1 - missing[:, 3]], axis=1)
  features = {'numeric_xf': values.astype('float32'),
              'numeric_missing_xf': missing,
              'engine_type_xf': rng.integers(1, ENGINES + 1, (rows, 1))}
  data = tf.data.Dataset.from_tensor_slices((features, labels)).batch(64)
  model = repair_model.build_model(
      _numeric_settings([f'reading_{i}' for i in range(width)]),
      {'engine_type': ENGINES}, SMALL)

  model.fit(data.repeat(), steps_per_epoch=200, epochs=1, verbose=0)

  assert model.evaluate(data, verbose=0, return_dict=True)['macro_f1'] > 0.99
