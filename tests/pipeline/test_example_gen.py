"""Parquet rows as tf.Examples (zeros kept, missing values dropped) and the deterministic session-id sample."""

import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.statistics import stats_impl, stats_options
from tfx_bsl.coders import example_coder

from data.generator import generate_sessions
from pipeline.components.example_gen import is_sampled_in, row_to_example

CURATED_SCHEMA = Path(__file__).resolve().parents[2] / 'schema' / 'schema.pbtxt'


def _kind_and_values(example, name):
  feature = example.features.feature[name]
  kind = feature.WhichOneof('kind')
  return kind, list(getattr(feature, kind).value) if kind else []


def test_zero_int_and_zero_float_are_kept():
  # TFX 1.16's dict_to_example drops falsy values, so a span 0 or a new
  # car's mileage 0 would read as missing.
  example = row_to_example({'span': 0, 'mileage_km': 0, 'fuel_trim_pct': 0.0})

  assert _kind_and_values(example, 'span') == ('int64_list', [0])
  assert _kind_and_values(example, 'mileage_km') == ('int64_list', [0])
  assert _kind_and_values(example, 'fuel_trim_pct') == ('float_list', [0.0])


def test_none_becomes_an_empty_feature():
  example = row_to_example({'battery_voltage': None, 'car_model': None})

  for name in ('battery_voltage', 'car_model'):
    assert name in example.features.feature
    assert _kind_and_values(example, name) == (None, [])


def _decoded(rows):
  return example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(
      [row_to_example(row).SerializeToString() for row in rows]).to_pydict()


def test_none_decodes_as_a_missing_value():
  decoded = _decoded([{'battery_voltage': None}, {'battery_voltage': 12.5}])

  assert decoded['battery_voltage'] == [None, [12.5]]


def test_nan_is_dropped_like_none():
  example = row_to_example({'coolant_temp_c': float('nan')})

  assert _kind_and_values(example, 'coolant_temp_c') == (None, [])
  assert _decoded([{'coolant_temp_c': float('nan')},
                   {'coolant_temp_c': 90.0}])['coolant_temp_c'] == [
                       None, [90.0]]


def test_scalars_keep_their_type():
  example = row_to_example({'session_id': 'S1-00000001', 'build_year': 2019,
                            'battery_voltage': 12.5, 'raw': b'\x00\x01'})

  assert _kind_and_values(example, 'session_id') == ('bytes_list',
                                                     [b'S1-00000001'])
  assert _kind_and_values(example, 'build_year') == ('int64_list', [2019])
  assert _kind_and_values(example, 'battery_voltage') == ('float_list', [12.5])
  assert _kind_and_values(example, 'raw') == ('bytes_list', [b'\x00\x01'])


def test_list_of_strings_becomes_a_multi_valued_bytes_list():
  example = row_to_example({'dtcs': ['P0300', 'P0301', 'U0100']})

  assert _kind_and_values(example, 'dtcs') == (
      'bytes_list', [b'P0300', b'P0301', b'U0100'])


def test_empty_list_becomes_an_empty_feature():
  example = row_to_example({'repair_labels': [], 'symptoms': ()})

  assert _kind_and_values(example, 'repair_labels') == (None, [])
  assert _kind_and_values(example, 'symptoms') == (None, [])


def test_a_generated_session_converts_value_by_value():
  row = generate_sessions(rows=50, seed=3).iloc[7].to_dict()
  row = {k: (list(v) if isinstance(v, np.ndarray) else v)
         for k, v in row.items()}

  example = row_to_example(row)

  assert set(example.features.feature) == set(row)
  assert _kind_and_values(example, 'span') == ('int64_list', [row['span']])
  assert _kind_and_values(example, 'mileage_km') == ('int64_list',
                                                     [row['mileage_km']])
  assert _kind_and_values(example, 'dtcs') == (
      'bytes_list' if row['dtcs'] else None, [d.encode() for d in row['dtcs']])
  for sensor in ('battery_voltage', 'coolant_temp_c', 'fuel_trim_pct'):
    kind, values = _kind_and_values(example, sensor)
    if math.isnan(row[sensor]):
      assert values == []
    else:
      assert kind == 'float_list'
      assert values == pytest.approx([row[sensor]], rel=1e-6)


def test_sampling_is_deterministic():
  ids = [f'S42-{i:08d}'.encode() for i in range(2000)]

  first = [is_sampled_in(i, 0.3) for i in ids]
  second = [is_sampled_in(i, 0.3) for i in ids]

  assert first == second


@pytest.mark.parametrize('fraction', [0.1, 0.5])
def test_sampling_keeps_the_fraction_within_binomial_tolerance(fraction):
  n = 20_000
  ids = [f'S7-{i:08d}'.encode() for i in range(n)]

  kept = sum(is_sampled_in(i, fraction) for i in ids)

  tolerance = 4 * math.sqrt(n * fraction * (1 - fraction))
  assert abs(kept - n * fraction) < tolerance


def test_a_smaller_fraction_keeps_a_subset_of_a_larger_one():
  ids = [f'S7-{i:08d}'.encode() for i in range(5000)]

  small = {i for i in ids if is_sampled_in(i, 0.1)}
  large = {i for i in ids if is_sampled_in(i, 0.4)}

  assert small < large


def test_fraction_one_keeps_every_session():
  ids = [f'S7-{i:08d}'.encode() for i in range(20_000)]

  assert all(is_sampled_in(i, 1.0) for i in ids)


def test_sessions_with_nan_readings_match_the_curated_schema():
  frame = generate_sessions(rows=500, seed=5)
  rows = [{k: (list(v) if isinstance(v, np.ndarray) else v)
           for k, v in row.items()} for row in frame.to_dict('records')]
  assert any(math.isnan(row['battery_voltage']) for row in rows)
  batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(
      [row_to_example(row).SerializeToString() for row in rows])

  statistics = stats_impl.generate_statistics_in_memory(
      batch, stats_options.StatsOptions())
  anomalies = tfdv.validate_statistics(
      statistics, tfdv.load_schema_text(str(CURATED_SCHEMA)))

  assert dict(anomalies.anomaly_info) == {}
