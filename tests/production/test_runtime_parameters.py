"""The runtime parameters `repairml submit` sends: the configured defaults,
and a wrong value rejected with the command-line option it came from, by the
same filter check the configuration and the RunParameters step use."""

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config
from pipeline.production import runtime_parameters

VERTEX_YAML = Path(__file__).resolve().parents[2] / 'configs' / 'vertex.yaml'


@pytest.fixture(scope='module')
def config():
  return load_config(str(VERTEX_YAML))


def test_the_defaults_are_the_configured_filter_and_train_steps(config):
  assert runtime_parameters.defaults(config) == {
      'car_model': '', 'date_from': '', 'date_to': '', 'train_steps': 2000}


def test_valid_values_come_back_as_given_and_unset_ones_stay_out(config):
  assert runtime_parameters.checked_values(
      config, car_model='Golf VII', date_from='2026-01-01',
      train_steps=500) == {'car_model': 'Golf VII',
                           'date_from': '2026-01-01', 'train_steps': 500}


@pytest.mark.parametrize('values, message_start, fragment', [
    ({'car_model': "x' OR '1'='1"}, '--car-model: ', 'not allowed'),
    ({'date_from': '01/02/2026'}, '--date-from: ', 'YYYY-MM-DD'),
    ({'date_to': '2026-02-30'}, '--date-to: ', 'YYYY-MM-DD'),
    ({'date_from': '2026-02-02', 'date_to': '2026-02-01'}, '--date-from: ',
     'after the end date 2026-02-01'),
    ({'train_steps': 0}, '--train-steps: ', 'positive'),
])
def test_a_wrong_value_is_named_by_its_option(config, values, message_start,
                                              fragment):
  with pytest.raises(ConfigError) as error:
    runtime_parameters.checked_values(config, **values)

  message = str(error.value)
  assert message.startswith(message_start), message
  assert fragment in message
  assert '\n' not in message
