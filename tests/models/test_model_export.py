"""The exported SavedModel: raw tf.Examples in, label probabilities out, with the transform graph and label names inside."""

import math
import os
import shutil
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import dataset_metadata
from tfx_bsl.public import tfxio

from data.generator import generate_sessions
from models import export, training
from models.model import build_model
from pipeline.components.example_gen import row_to_example
from pipeline.config import load_config
from pipeline.settings import model_settings
from preprocessing.transform import preprocessing_fn

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LABEL = 'repair_labels'
# Features the curated schema declares absent in the SERVING environment.
NOT_AT_SERVING = ('repair_labels', 'session_date', 'span')
SMALL_MODEL = {'learning_rate': 0.01, 'hidden_units': 8, 'hidden_layers': 1,
               'embedding_dim': 4, 'dropout': 0.0}


def _session_rows(rows: int, seed: int):
  """Generated sessions as parquet-like rows: NaN readings are nulls."""
  def clean(value):
    if isinstance(value, np.ndarray):
      return list(value)
    if isinstance(value, float) and math.isnan(value):
      return None
    return value
  return [{k: clean(v) for k, v in row.items()}
          for row in generate_sessions(rows, seed).to_dict('records')]


def _serialized(rows, drop=()):
  return tf.constant([
      row_to_example({k: v for k, v in row.items() if k not in drop})
      .SerializeToString() for row in rows])


def _analyze(settings, schema, examples_path, output_dir, temp_dir):
  """What TFX's Transform writes: the transform graph and the raw metadata."""
  source = tfxio.TFExampleRecord(examples_path, schema=schema)
  with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=temp_dir):
    transform_fn = (
        (pipeline | source.BeamSource(), source.TensorAdapterConfig())
        | tft_beam.AnalyzeDataset(
            lambda inputs: preprocessing_fn(inputs, settings)))
    _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    _ = (dataset_metadata.DatasetMetadata(schema)
         | tft_beam.WriteMetadata(
             os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR),
             pipeline))


# Spread over (0, 1) so that some labels are recommended and some not.
THRESHOLDS = [0.3 + 0.4 * j / 46 for j in range(47)]


@pytest.fixture(scope='module')
def config():
  return load_config(str(PROJECT_ROOT / 'configs' / 'local.yaml'))


@pytest.fixture(scope='module')
def exported(config, tmp_path_factory):
  """(loaded SavedModel, export dir, trained Keras model, held-out rows)."""
  tmp = tmp_path_factory.mktemp('export')
  settings = model_settings(config)
  schema = text_format.Parse(
      (PROJECT_ROOT / 'schema' / 'schema.pbtxt').read_text(),
      schema_pb2.Schema())
  rows = _session_rows(300, seed=8)
  examples_path = str(tmp / 'sessions.tfrecord')
  with tf.io.TFRecordWriter(examples_path) as writer:
    for example in _serialized(rows).numpy():
      writer.write(example)
  transform_dir = str(tmp / 'transform_graph')
  _analyze(settings, schema, examples_path, transform_dir, str(tmp / 'tft'))
  transform_output = tft.TFTransformOutput(transform_dir)

  features = transform_output.transform_raw_features(tf.io.parse_example(
      _serialized(rows), transform_output.raw_feature_spec()))
  model = build_model(settings,
                      training.vocabulary_sizes(settings, transform_output),
                      SMALL_MODEL)
  inputs = {i.name: features[i.name] for i in model.inputs}
  batches = tf.data.Dataset.from_tensor_slices(
      (inputs, features[LABEL + '_xf'])).batch(32).repeat()
  training.fit(model, batches, batches, train_steps=2, eval_steps=1)

  export_dir = str(tmp / 'serving_model')
  work_dir = str(tmp / 'model_run')
  os.makedirs(work_dir)
  export.export_serving_model(model, transform_output, settings, export_dir,
                              work_dir, label_thresholds=THRESHOLDS)
  # The pusher copies only the SavedModel: it must not need anything else.
  shutil.rmtree(transform_dir)
  shutil.rmtree(work_dir)
  return (tf.saved_model.load(export_dir), export_dir, model,
          _session_rows(6, seed=9))


def test_serving_recommends_labels_at_the_exported_thresholds(exported):
  loaded, export_dir, _, rows = exported

  outputs = loaded.signatures['serving_default'](
      examples=_serialized(rows, drop=[LABEL]))

  probabilities = outputs['probabilities'].numpy()
  recommended = outputs['recommended'].numpy()
  assert export.load_thresholds(export_dir) == pytest.approx(THRESHOLDS)
  np.testing.assert_array_equal(recommended, probabilities >= THRESHOLDS)
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
  assert features['dtcs'] == {'dtype': 'string', 'list': True}
  assert features['build_year']['dtype'] == 'int64'
  assert features['battery_voltage']['dtype'] == 'float32'
