"""The stacked numeric features (numeric_xf, numeric_missing_xf) hold the same
numbers as one tft.scale_to_z_score per feature, and as z-scores computed with
NumPy over each feature's present values."""

import copy
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
import yaml
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import dataset_metadata

from pipeline.config import config_from_dict
from pipeline.settings import transform_settings
from preprocessing.transform import preprocessing_fn

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Dense (always present) and sparse (may be missing) features interleaved, so
# that the columns must come back in this configured order.
NUMERIC = ['battery_voltage', 'build_year', 'coolant_temp_c', 'mileage_km',
           'fuel_trim_pct']
DENSE = {'build_year', 'mileage_km'}
ROWS = 40


def _readings() -> np.ndarray:
  """[ROWS, 5] readings, NaN where missing; one column is constant."""
  rng = np.random.default_rng(7)
  readings = np.stack([
      rng.normal(12.5, 1.0, ROWS),                    # battery_voltage
      rng.integers(1995, 2024, ROWS).astype(float),   # build_year
      np.full(ROWS, 90.0),                            # coolant_temp_c
      rng.integers(0, 300_000, ROWS).astype(float),   # mileage_km
      rng.normal(0.0, 8.0, ROWS),                     # fuel_trim_pct
  ], axis=1)
  for j, name in enumerate(NUMERIC):
    if name not in DENSE:
      readings[rng.random(ROWS) < 0.3, j] = np.nan
  readings[0, NUMERIC.index('fuel_trim_pct')] = np.nan  # rows 0, 1 missing:
  readings[1, NUMERIC.index('fuel_trim_pct')] = np.nan  # batches vary
  return readings


def _instances(readings: np.ndarray):
  """TFT instance dicts: [value] or [] per feature, as parsed tf.Examples."""
  instances = []
  for row in readings:
    instance = {}
    for name, value in zip(NUMERIC, row):
      if name in DENSE:
        instance[name] = [int(value)]
      else:
        instance[name] = [] if np.isnan(value) else [float(value)]
    instances.append(instance)
  return instances


def _metadata(names) -> dataset_metadata.DatasetMetadata:
  """The curated schema, cut down to the features `names`."""
  schema = text_format.Parse(
      (PROJECT_ROOT / 'schema' / 'schema.pbtxt').read_text(),
      schema_pb2.Schema())
  kept = [f for f in schema.feature if f.name in names]
  del schema.feature[:]
  schema.feature.extend(kept)
  return dataset_metadata.DatasetMetadata(schema)


def _settings(numeric=NUMERIC, categorical=()) -> dict:
  with open(PROJECT_ROOT / 'configs' / 'local.yaml', encoding='utf-8') as f:
    raw = copy.deepcopy(yaml.safe_load(f))
  raw['features'] = {'numeric': list(numeric),
                     'categorical': list(categorical), 'multivalent': []}
  raw['slices'] = []
  return transform_settings(config_from_dict(raw))


def _per_feature_reference(inputs):
  """Today's per-feature recipe, written out with TFT's own mapper: one
  scale_to_z_score per feature over its present values, 0 where missing."""
  outputs = {}
  for name in NUMERIC:
    value = inputs[name]
    if isinstance(value, tf.SparseTensor):
      scaled = tft.scale_to_z_score(tf.SparseTensor(
          value.indices, tf.cast(value.values, tf.float32), value.dense_shape))
      dense = tf.sparse.to_dense(tf.sparse.reset_shape(
          scaled, [scaled.dense_shape[0], 1]))
    else:
      dense = tft.scale_to_z_score(tf.cast(value, tf.float32))
    outputs[name] = tf.reshape(dense, [-1, 1])
  return outputs


def _numpy_reference(readings: np.ndarray):
  """z-scores over each column's present values (population std; TFT leaves a
  constant column unscaled, i.e. x - mean); 0 and indicator 1 where missing."""
  present = ~np.isnan(readings)
  scores = np.zeros_like(readings)
  for j in range(readings.shape[1]):
    values = readings[present[:, j], j]
    std = values.std()
    centred = readings[present[:, j], j] - values.mean()
    scores[present[:, j], j] = centred / std if std > 0 else centred
  return scores, (~present).astype(np.float32)


def _analyze_and_transform(instances, fn, tmp_path_factory):
  """The transformed instances, analysed over themselves."""
  with tft_beam.Context(temp_dir=str(tmp_path_factory.mktemp('tft')),
                        desired_batch_size=16):  # several batches to combine
    (rows, _), _ = ((instances, _metadata(set(instances[0])))
                    | tft_beam.AnalyzeAndTransformDataset(fn))
  return rows


@pytest.fixture(scope='module')
def stacked(tmp_path_factory):
  settings = _settings()
  rows = _analyze_and_transform(
      _instances(_readings()),
      lambda inputs: preprocessing_fn(inputs, settings), tmp_path_factory)
  return (np.stack([r['numeric_xf'] for r in rows]),
          np.stack([r['numeric_missing_xf'] for r in rows]))


def test_stacked_z_scores_match_numpy_over_present_values(stacked):
  values, missing = stacked
  expected_values, expected_missing = _numpy_reference(_readings())

  assert values.shape == (ROWS, len(NUMERIC))
  np.testing.assert_allclose(values, expected_values, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(missing, expected_missing)
  # The data has what the test is about: gaps, and a constant column.
  assert 0 < expected_missing.sum() < expected_missing.size
  assert np.all(values[:, NUMERIC.index('coolant_temp_c')] == 0.0)


def test_stacked_z_scores_match_one_tft_scale_per_feature(
    stacked, tmp_path_factory):
  values, _ = stacked
  reference = _analyze_and_transform(_instances(_readings()),
                                     _per_feature_reference, tmp_path_factory)

  for j, name in enumerate(NUMERIC):
    np.testing.assert_allclose(
        values[:, j], np.stack([r[name] for r in reference])[:, 0],
        rtol=1e-5, atol=1e-5, err_msg=name)


def test_a_nan_reading_is_missing_and_only_a_rows_first_value_counts(
    tmp_path_factory):
  # ExampleGen and the server already drop NaN readings; one that slips
  # through is treated as missing rather than reaching the model as NaN.
  instances = [
      {'battery_voltage': [12.0, 99.0], 'mileage_km': [0]},
      {'battery_voltage': [float('nan')], 'mileage_km': [10]},
      {'battery_voltage': [14.0], 'mileage_km': [20]},
      {'battery_voltage': [], 'mileage_km': [30]},
  ]
  settings = _settings(numeric=['battery_voltage', 'mileage_km'])
  rows = _analyze_and_transform(
      instances, lambda inputs: preprocessing_fn(inputs, settings),
      tmp_path_factory)

  battery = np.stack([r['numeric_xf'] for r in rows])[:, 0]
  # Readings 12 and 14: mean 13, std 1.
  np.testing.assert_allclose(battery, [-1.0, 0.0, 1.0, 0.0], atol=1e-6)
  np.testing.assert_array_equal(
      np.stack([r['numeric_missing_xf'] for r in rows])[:, 0], [0, 1, 0, 1])


def test_a_feature_named_like_the_stacked_output_is_refused():
  settings = _settings(numeric=['mileage_km'], categorical=['numeric'])
  with tf.compat.v1.Graph().as_default():
    inputs = {
        'mileage_km': tf.compat.v1.placeholder(tf.int64, [None, 1]),
        'numeric': tf.compat.v1.placeholder(tf.string, [None, 1]),
    }
    with pytest.raises(ValueError, match="named 'numeric_xf'"):
      preprocessing_fn(inputs, settings)
