"""preprocessing_fn run through tf.Transform on a few sessions: exact z-scores, vocabulary ids, padded lists and multi-hot labels."""

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
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from pipeline.config import config_from_dict
from pipeline.settings import transform_settings
from preprocessing.transform import preprocessing_fn

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LABELS = ['part:dpf', 'op:replace_dpf', 'part:brake_pads']
MAX_VALUES = 3
# Columns of numeric_xf and numeric_missing_xf: the configured order.
MILEAGE, BATTERY = 0, 1

# Frequencies without ties, so vocabulary order is fixed:
# country DE 3 > FR 2; dtcs P0300 5 > P0420 3 > P0301 2.
SESSIONS = [
    {'mileage_km': [0], 'battery_voltage': [13.0], 'country': ['DE'],
     'dtcs': ['P0300', 'P0301'], 'repair_labels': ['part:dpf']},
    {'mileage_km': [100], 'battery_voltage': [], 'country': ['DE'],
     'dtcs': [], 'repair_labels': []},
    {'mileage_km': [200], 'battery_voltage': [14.0], 'country': ['FR'],
     'dtcs': ['P0300', 'P0420', 'P0301', 'P0300'],
     'repair_labels': ['part:brake_pads', 'part:dpf']},
    {'mileage_km': [300], 'battery_voltage': [9.0], 'country': ['DE'],
     'dtcs': ['P0300'], 'repair_labels': ['op:replace_dpf']},
    {'mileage_km': [400], 'battery_voltage': [], 'country': ['FR'],
     'dtcs': ['P0420', 'P0420'],
     # part:wiring_connector is in the schema but not in this run's labels.
     'repair_labels': ['op:replace_dpf', 'part:wiring_connector']},
]
UNSEEN = [
    {'mileage_km': [200], 'battery_voltage': [], 'country': ['SE'],
     'dtcs': ['U0100', 'P0300'], 'repair_labels': []},
]


def _settings() -> dict:
  with open(PROJECT_ROOT / 'configs' / 'local.yaml', encoding='utf-8') as f:
    raw = copy.deepcopy(yaml.safe_load(f))
  raw['features'] = {'numeric': ['mileage_km', 'battery_voltage'],
                     'categorical': ['country'], 'multivalent': ['dtcs'],
                     'max_values_per_row': MAX_VALUES}
  raw['label']['vocabulary'] = LABELS
  raw['slices'] = [['country']]
  return transform_settings(config_from_dict(raw))


def _raw_metadata() -> dataset_metadata.DatasetMetadata:
  """The curated schema, cut down to the features of these sessions."""
  schema = text_format.Parse(
      (PROJECT_ROOT / 'schema' / 'schema.pbtxt').read_text(),
      schema_pb2.Schema())
  kept = [f for f in schema.feature if f.name in SESSIONS[0]]
  del schema.feature[:]
  schema.feature.extend(kept)
  return dataset_metadata.DatasetMetadata(schema)


@pytest.fixture(scope='module')
def transformed(tmp_path_factory):
  """(transformed sessions, transformed unseen sessions, TFTransformOutput)."""
  settings = _settings()
  metadata = _raw_metadata()
  output_dir = str(tmp_path_factory.mktemp('transform_graph'))
  with tft_beam.Context(temp_dir=str(tmp_path_factory.mktemp('tft_tmp'))):
    (rows, _), transform_fn = (
        (SESSIONS, metadata)
        | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, settings)))
    unseen, _ = (((UNSEEN, metadata), transform_fn)
                 | tft_beam.TransformDataset())
    _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
  return rows, unseen, tft.TFTransformOutput(output_dir)


def _column(rows, name):
  return np.stack([row[name] for row in rows])


def test_raw_feature_spec_matches_the_curated_schema():
  spec = schema_utils.schema_as_feature_spec(
      _raw_metadata().schema).feature_spec

  assert spec['mileage_km'].shape == [1]  # required: dense
  assert spec['country'].shape == [1]
  for name in ('battery_voltage', 'dtcs', 'repair_labels'):  # may be missing
    assert isinstance(spec[name], tf.io.VarLenFeature)


def test_transformed_features_are_named_raw_name_xf(transformed):
  rows, _, _ = transformed

  assert set(rows[0]) == {'numeric_xf', 'numeric_missing_xf', 'country_xf',
                          'dtcs_xf', 'repair_labels_xf'}


def test_dense_numeric_is_z_scored(transformed):
  rows, _, _ = transformed
  mileage = np.array([0., 100., 200., 300., 400.])
  expected = (mileage - mileage.mean()) / mileage.std()  # population std

  np.testing.assert_allclose(_column(rows, 'numeric_xf')[:, MILEAGE],
                             expected, rtol=1e-5)
  np.testing.assert_array_equal(_column(rows, 'numeric_missing_xf')[:, MILEAGE],
                                np.zeros(5))


def test_missing_numeric_is_zero_with_indicator_and_mean_uses_present_values(
    transformed):
  rows, _, _ = transformed
  present = np.array([13., 14., 9.])  # rows 0, 2 and 3; mean 12, not 7.2
  z = (present - present.mean()) / present.std()

  np.testing.assert_allclose(_column(rows, 'numeric_xf')[:, BATTERY],
                             [z[0], 0., z[1], z[2], 0.], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(
      _column(rows, 'numeric_missing_xf')[:, BATTERY], [0., 1., 0., 0., 1.])


def test_categorical_ids_start_at_one_with_the_most_frequent_value(
    transformed):
  rows, _, _ = transformed

  np.testing.assert_array_equal(_column(rows, 'country_xf'),
                                [[1], [1], [2], [1], [2]])


def test_list_features_are_padded_with_zero_and_truncated(transformed):
  rows, _, _ = transformed

  np.testing.assert_array_equal(_column(rows, 'dtcs_xf'), [
      [1, 3, 0],   # P0300 P0301
      [0, 0, 0],   # no DTC
      [1, 2, 3],   # P0300 P0420 P0301 | P0300 cut at max_values_per_row
      [1, 0, 0],   # P0300
      [2, 2, 0],   # P0420 P0420
  ])


def test_unseen_values_map_to_the_out_of_vocabulary_id(transformed):
  _, (unseen,), _ = transformed

  assert unseen['country_xf'].tolist() == [3]        # vocabulary DE, FR; OOV
  assert unseen['dtcs_xf'].tolist() == [4, 1, 0]     # U0100 is OOV, P0300 is 1
  # mileage 200 is the training mean; battery_voltage is missing.
  assert unseen['numeric_xf'].tolist() == [0.0, 0.0]
  assert unseen['numeric_missing_xf'].tolist() == [0.0, 1.0]


def test_labels_are_multi_hot_in_configured_vocabulary_order(transformed):
  rows, _, _ = transformed

  np.testing.assert_array_equal(_column(rows, 'repair_labels_xf'), [
      [1., 0., 0.],  # part:dpf
      [0., 0., 0.],  # no repair
      [1., 0., 1.],  # part:brake_pads, part:dpf
      [0., 1., 0.],  # op:replace_dpf
      [0., 1., 0.],  # op:replace_dpf; part:wiring_connector is not a label
  ])


def test_vocabularies_are_saved_by_frequency_without_the_shift(transformed):
  _, _, transform_output = transformed

  assert transform_output.vocabulary_by_name('country_vocabulary') == [
      b'DE', b'FR']
  assert transform_output.vocabulary_by_name('dtcs_vocabulary') == [
      b'P0300', b'P0420', b'P0301']
  assert transform_output.vocabulary_size_by_name('dtcs_vocabulary') == 3


def test_transformed_spec_has_the_fixed_shapes_the_model_expects(
    transformed):
  _, _, transform_output = transformed
  spec = transform_output.transformed_feature_spec()

  assert {name: (list(f.shape), f.dtype.name) for name, f in spec.items()} == {
      # mileage_km, battery_voltage: the numeric features in configured order.
      'numeric_xf': ([2], 'float32'),
      'numeric_missing_xf': ([2], 'float32'),
      'country_xf': ([1], 'int64'),
      'dtcs_xf': ([MAX_VALUES], 'int64'),
      'repair_labels_xf': ([len(LABELS)], 'float32'),
  }


def test_without_the_label_column_no_label_is_produced(transformed):
  _, _, transform_output = transformed
  raw = {
      'mileage_km': np.array([[100]], dtype=np.int64),
      'battery_voltage': _sparse([[12.0]], np.float32),
      'country': np.array([[b'FR']]),
      'dtcs': _sparse([[b'P0420']], object),
  }

  features = transform_output.transform_raw_features(raw)

  assert 'repair_labels_xf' not in features
  assert features['country_xf'].numpy().tolist() == [[2]]
  assert features['dtcs_xf'].numpy().tolist() == [[2, 0, 0]]


def _sparse(rows, dtype):
  return tf.sparse.from_dense(tf.constant(np.array(rows, dtype=dtype)))
