"""JSON instances become the tf.Examples the model reads; bad ones, clear errors."""

import base64

import pytest
import tensorflow as tf

from serving.instances import RequestError, example_dicts, serialized_examples

FEATURES = {
    'car_model': {'dtype': 'string', 'list': False},
    'dtcs': {'dtype': 'string', 'list': True, 'max_values': 3},
    'build_year': {'dtype': 'int64', 'list': False, 'min': 1990, 'max': 2035},
    'battery_voltage': {'dtype': 'float32', 'list': True, 'max_values': 1,
                        'min': 0.0, 'max': 20.0},
    'odometer_km': {'dtype': 'int64', 'list': True},
    'fuel_trim_pct': {'dtype': 'float32', 'list': True},
}
REQUIRED = {'car_model': 'city_car', 'build_year': 2019}


def _example(serialized: bytes) -> tf.train.Example:
  return tf.train.Example.FromString(serialized)


def test_an_instance_becomes_a_typed_example():
  (data,) = serialized_examples([{
      'car_model': 'city_car', 'dtcs': ['P0300', 'P0301'], 'build_year': 2019,
      'battery_voltage': 12}], FEATURES)
  feature = _example(data).features.feature

  assert feature['car_model'].bytes_list.value == [b'city_car']
  assert feature['dtcs'].bytes_list.value == [b'P0300', b'P0301']
  assert feature['build_year'].int64_list.value == [2019]
  assert feature['battery_voltage'].float_list.value == [12.0]


def test_none_and_empty_lists_are_missing_values():
  (data,) = serialized_examples([{**REQUIRED, 'battery_voltage': None,
                                 'dtcs': []}], FEATURES)
  feature = _example(data).features.feature
  assert not feature['battery_voltage'].float_list.value
  assert not feature['dtcs'].bytes_list.value


def _b64(**features) -> str:
  example = tf.train.Example()
  for name, values in features.items():
    feature = example.features.feature[name]
    if isinstance(values[0], bytes):
      feature.bytes_list.value.extend(values)
    elif isinstance(values[0], int):
      feature.int64_list.value.extend(values)
    else:
      feature.float_list.value.extend(values)
  return base64.b64encode(example.SerializeToString()).decode()


def test_a_b64_instance_reads_as_the_same_example():
  (data,) = serialized_examples([{'b64': _b64(
      car_model=[b'city_car'], build_year=[2019], dtcs=[b'P0300'])}], FEATURES)
  assert example_dicts([data]) == [
      {'car_model': ['city_car'], 'build_year': [2019], 'dtcs': ['P0300']}]


@pytest.mark.parametrize('instances, fragment', [
    ([], '"instances" must be a non-empty list'),
    ({'car_model': 'x'}, '"instances" must be a non-empty list'),
    (['city_car'], 'instances[0]: must be an object'),
    ([{'colour': 'red'}], 'instances[0].colour: not a feature'),
    ([REQUIRED, {**REQUIRED, 'build_year': 'old'}],
     'instances[1].build_year: must be an integer'),
    ([{**REQUIRED, 'build_year': True}],
     'instances[0].build_year: must be an integer'),
    ([{**REQUIRED, 'car_model': ['a', 'b']}],
     'instances[0].car_model: takes one value'),
    ([{**REQUIRED, 'dtcs': [1]}], 'instances[0].dtcs: must be a string or a list'),
    ([{'b64': '***'}], 'instances[0].b64: not a base64-encoded tf.Example'),
    # Required features, value counts and the schema's ranges.
    ([{'car_model': 'city_car'}],
     'instances[0].build_year: required, and missing'),
    ([{**REQUIRED, 'car_model': None}],
     'instances[0].car_model: required, and missing'),
    ([{**REQUIRED, 'dtcs': ['a', 'b', 'c', 'd']}],
     'instances[0].dtcs: takes at most 3 values, got 4'),
    ([{**REQUIRED, 'build_year': 1900}],
     'instances[0].build_year: 1900 is outside the range the model accepts, '
     '[1990, 2035]'),
    ([{**REQUIRED, 'battery_voltage': 20.5}],
     'instances[0].battery_voltage: 20.5 is outside the range'),
    # What a JSON parser hands over for 1e308, 10**40 and 1e400.
    ([{**REQUIRED, 'odometer_km': 1e308}],
     'instances[0].odometer_km: 1e+308 is outside the range the model '
     'accepts, [-9.22337e+18, 9.22337e+18]'),
    ([{**REQUIRED, 'odometer_km': 10**40}],
     'instances[0].odometer_km: 1e+40 is outside'),
    ([{**REQUIRED, 'fuel_trim_pct': 1e308}],
     'instances[0].fuel_trim_pct: 1e+308 is outside the range the model '
     'accepts, [-3.40282e+38, 3.40282e+38]'),
    ([{**REQUIRED, 'fuel_trim_pct': float('inf')}],
     'instances[0].fuel_trim_pct: must be a finite number, got inf'),
    ([{'b64': _b64(car_model=[b'x'], build_year=[2019],
                   fuel_trim_pct=[float('-inf')])}],
     'instances[0].fuel_trim_pct: must be a finite number'),
    ([{'b64': _b64(car_model=[b'x'], build_year=[3000])}],
     'instances[0].build_year: 3000 is outside'),
])
def test_bad_instances_name_the_instance_and_the_feature(instances, fragment):
  with pytest.raises(RequestError) as error:
    serialized_examples(instances, FEATURES)
  assert fragment in str(error.value)


def test_example_dicts_reads_the_instances_back():
  serialized = serialized_examples([{'car_model': 'city_car', 'dtcs': ['P0300'],
                                     'build_year': 2019,
                                     'battery_voltage': float('nan')}],
                                   FEATURES)
  assert example_dicts(serialized) == [
      {'car_model': ['city_car'], 'dtcs': ['P0300'], 'build_year': [2019]}]
