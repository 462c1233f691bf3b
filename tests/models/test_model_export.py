"""The exported SavedModel: raw tf.Examples in, label probabilities out, with the transform graph and label names inside."""

import numpy as np
import pytest
import tensorflow as tf

from models import export
from pipeline.components.example_gen import row_to_example

LABEL = 'repair_labels'
# Features the curated schema declares absent in the SERVING environment.
NOT_AT_SERVING = ('repair_labels', 'session_date', 'span')


@pytest.fixture(scope='module')
def config(exported_model):
  return exported_model.config


@pytest.fixture(scope='module')
def exported(exported_model):
  """(loaded SavedModel, export dir, trained Keras model, held-out rows)."""
  return (tf.saved_model.load(exported_model.export_dir),
          exported_model.export_dir, exported_model.keras_model,
          exported_model.held_out_rows)


def _serialized(rows, drop=()):
  return tf.constant([
      row_to_example({k: v for k, v in row.items() if k not in drop})
      .SerializeToString() for row in rows])


def test_serving_recommends_labels_at_the_exported_thresholds(
    exported, exported_model):
  loaded, export_dir, _, rows = exported

  outputs = loaded.signatures['serving_default'](
      examples=_serialized(rows, drop=[LABEL]))

  probabilities = outputs['probabilities'].numpy()
  recommended = outputs['recommended'].numpy()
  assert export.load_thresholds(export_dir) == pytest.approx(
      exported_model.thresholds)
  np.testing.assert_array_equal(recommended, 
                                probabilities >= exported_model.thresholds)
  assert 0 < recommended.sum() < recommended.size
  # The scores TFMA reads at 0.5 make the same decision, in the same order.
  scores = outputs['recommendation_scores'].numpy()
  np.testing.assert_array_equal(scores >= 0.5, recommended == 1)


def test_serving_returns_one_probability_per_label(exported, config):
  loaded, _, _, rows = exported

  probabilities = loaded.signatures['serving_default'](
      examples=_serialized(rows, drop=[LABEL]))['probabilities'].numpy()

  assert probabilities.shape == (len(rows), config.num_labels)
  assert probabilities.dtype == np.float32
  assert np.all((probabilities >= 0.0) & (probabilities <= 1.0))


def test_serving_applies_the_transform_graph_then_the_model(exported):
  loaded, _, model, rows = exported
  examples = _serialized(rows)

  served = loaded.signatures['serving_default'](
      examples=_serialized(rows, drop=[LABEL]))['probabilities'].numpy()
  transformed = loaded.signatures['transform_features'](examples=examples)
  direct = model({i.name: transformed[i.name] for i in model.inputs},
                 training=False).numpy()

  np.testing.assert_allclose(served, direct, rtol=1e-5, atol=1e-6)


def test_the_model_reads_the_transform_outputs_by_name_and_shape(
    exported, config):
  loaded, _, model, rows = exported
  rows = [dict(rows[0], battery_voltage=None)] + rows[1:]

  transformed = loaded.signatures['transform_features'](
      examples=_serialized(rows))

  for model_input in model.inputs:
    output = transformed[model_input.name]
    assert tuple(output.shape[1:]) == tuple(model_input.shape[1:])
    assert output.dtype.name == model_input.dtype
  # All numeric features arrive as one tensor of values and one of
  # indicators, a column per feature in configuration order.
  numeric = len(config.features.numeric)
  assert transformed['numeric_xf'].shape == (len(rows), numeric)
  missing = transformed['numeric_missing_xf'].numpy()
  battery = config.features.numeric.index('battery_voltage')
  np.testing.assert_array_equal(
      missing[:, battery], [float(r['battery_voltage'] is None) for r in rows])


def test_serving_accepts_missing_sensors_and_unseen_values(exported):
  loaded, _, _, rows = exported
  unusual = dict(rows[0], car_model='hover_car', country='XX',
                 dtcs=['P9999', 'U0100'], symptoms=[], battery_voltage=None,
                 coolant_temp_c=None, fuel_trim_pct=None)

  probabilities = loaded.signatures['serving_default'](
      examples=_serialized([unusual], drop=[LABEL]))['probabilities'].numpy()

  assert np.all(np.isfinite(probabilities))


def test_order_of_list_values_does_not_change_the_prediction(exported):
  loaded, _, _, rows = exported
  forward = dict(rows[0], dtcs=['P0300', 'P0420', 'U0100'])
  backward = dict(rows[0], dtcs=['U0100', 'P0420', 'P0300'])

  probabilities = loaded.signatures['serving_default'](
      examples=_serialized([forward, backward], drop=[LABEL]))
  probabilities = probabilities['probabilities'].numpy()

  np.testing.assert_allclose(probabilities[0], probabilities[1], rtol=1e-6)


def test_serving_accepts_examples_of_the_serving_environment(exported,
                                                             config):
  loaded, _, _, rows = exported

  probabilities = loaded.signatures['serving_default'](
      examples=_serialized(rows, drop=NOT_AT_SERVING))['probabilities']

  assert probabilities.shape == (len(rows), config.num_labels)


def test_transform_features_gives_the_multi_hot_label(exported, config):
  loaded, _, _, rows = exported
  expected = np.array(
      [[float(name in row[LABEL]) for name in config.label.vocabulary]
       for row in rows], dtype=np.float32)
  assert expected.sum() > 0  # the held-out sessions have some repairs

  transformed = loaded.signatures['transform_features'](
      examples=_serialized(rows))

  np.testing.assert_array_equal(transformed[LABEL + '_xf'].numpy(), expected)


def test_label_names_travel_with_the_model_in_output_order(exported, config):
  _, export_dir, _, _ = exported

  assert export.load_label_names(export_dir) == config.label.vocabulary


def test_the_serving_features_travel_with_the_model(exported, config):
  _, export_dir, _, _ = exported
  features = export.load_serving_features(export_dir)

  assert set(features) == set(config.features.all) | {config.data.id_column}
  assert features['car_model'] == {'dtype': 'string', 'list': False}
  # With the curated schema's limits, which a server checks requests against.
  assert features['dtcs'] == {'dtype': 'string', 'list': True,
                              'max_values': 30}
  assert features['build_year'] == {'dtype': 'int64', 'list': False,
                                    'min': 1990, 'max': 2035}
  assert features['battery_voltage'] == {'dtype': 'float32', 'list': True,
                                         'min': 0.0, 'max': 20.0,
                                         'max_values': 1}
