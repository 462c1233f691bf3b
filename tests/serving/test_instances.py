"""JSON instances become the tf.Examples the model reads; bad ones, clear errors."""

import base64

import pytest
import tensorflow as tf

from serving.instances import RequestError, example_dicts, serialized_examples

FEATURES = {
    'car_model': {'dtype': 'string', 'list': False},
    'dtcs': {'dtype': 'string', 'list': True},
    'build_year': {'dtype': 'int64', 'list': False},
    'battery_voltage': {'dtype': 'float32', 'list': True},
}


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
  (data,) = serialized_examples([{'battery_voltage': None, 'dtcs': []}],
                                FEATURES)
  feature = _example(data).features.feature
  assert not feature['battery_voltage'].float_list.value
  assert not feature['dtcs'].bytes_list.value


def test_a_b64_instance_is_passed_through():
  example = tf.train.Example()
  example.features.feature['car_model'].bytes_list.value.append(b'city_car')
  encoded = base64.b64encode(example.SerializeToString()).decode()
  assert serialized_examples([{'b64': encoded}], FEATURES) == [
      example.SerializeToString()]


@pytest.mark.parametrize('instances, fragment', [
    ([], '"instances" must be a non-empty list'),
    ({'car_model': 'x'}, '"instances" must be a non-empty list'),
    (['city_car'], 'instances[0]: must be an object'),
    ([{'colour': 'red'}], 'instances[0].colour: not a feature'),
    ([{}, {'build_year': 'old'}], 'instances[1].build_year: must be an integer'),
    ([{'build_year': True}], 'instances[0].build_year: must be an integer'),
    ([{'car_model': ['a', 'b']}], 'instances[0].car_model: takes one value'),
    ([{'dtcs': [1]}], 'instances[0].dtcs: must be a string or a list'),
    ([{'b64': '***'}], 'instances[0].b64: not a base64-encoded tf.Example'),
])
def test_bad_instances_name_the_instance_and_the_feature(instances, fragment):
  with pytest.raises(RequestError) as error:
    serialized_examples(instances, FEATURES)
  assert fragment in str(error.value)


def test_example_dicts_reads_the_instances_back():
  serialized = serialized_examples([{'car_model': 'city_car', 'dtcs': ['P0300'],
                                     'build_year': 2019}], FEATURES)
  assert example_dicts(serialized) == [
      {'car_model': ['city_car'], 'dtcs': ['P0300'], 'build_year': [2019]}]
