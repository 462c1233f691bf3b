"""Hyperparameters for training: the configured defaults, the Tuner's best values, and a search space for every valid configuration."""

import copy
from pathlib import Path

import keras_tuner
import pytest
import yaml

from models import hyperparameters
from pipeline.config import ConfigError, config_from_dict
from pipeline.settings import model_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def local_raw():
  with open(PROJECT_ROOT / 'configs' / 'local.yaml', encoding='utf-8') as f:
    return yaml.safe_load(f)


@pytest.fixture(scope='module')
def settings(local_raw):
  raw = copy.deepcopy(local_raw)
  raw['training'].update(learning_rate=0.004, hidden_units=64,
                         hidden_layers=3, embedding_dim=8, dropout=0.2)
  return model_settings(config_from_dict(raw))


def test_without_tuning_the_configured_values_are_used(settings):
  expected = {'learning_rate': 0.004, 'hidden_units': 64, 'hidden_layers': 3,
              'embedding_dim': 8, 'dropout': 0.2,
              'loss': 'binary_crossentropy'}

  assert hyperparameters.resolve(settings, None) == expected
  assert hyperparameters.resolve(settings, {}) == expected


def test_tuned_values_override_the_configured_ones(settings):
  tuned = keras_tuner.HyperParameters()
  tuned.Fixed('learning_rate', 0.0075)
  tuned.Fixed('hidden_units', 256)
  tuned.Fixed('hidden_layers', 1)
  tuned.Fixed('embedding_dim', 32)
  tuned.Fixed('dropout', 0.0)
  tuned.Fixed('loss', 'soft_macro_f1')

  assert hyperparameters.resolve(settings, tuned.get_config()) == {
      'learning_rate': 0.0075, 'hidden_units': 256, 'hidden_layers': 1,
      'embedding_dim': 32, 'dropout': 0.0, 'loss': 'soft_macro_f1'}


def test_tuned_values_for_some_names_keep_the_defaults_for_the_rest(settings):
  tuned = keras_tuner.HyperParameters()
  tuned.Fixed('hidden_units', 128)

  resolved = hyperparameters.resolve(settings, tuned.get_config())

  assert resolved['hidden_units'] == 128
  assert resolved['embedding_dim'] == 8
  assert resolved['learning_rate'] == 0.004


def test_search_space_starts_from_the_configured_values(settings):
  space = hyperparameters.search_space(settings)

  assert space.values == hyperparameters.defaults(settings)


def test_best_values_of_a_search_space_resolve_to_those_values(settings):
  space = hyperparameters.search_space(settings)

  assert hyperparameters.resolve(settings, space.get_config()) == space.values


@pytest.mark.parametrize('key, value', [('hidden_units', 100),
                                        ('embedding_dim', 12)])
def test_a_configuration_that_loads_can_be_tuned(local_raw, key, value):
  raw = copy.deepcopy(local_raw)
  raw['tuning']['enabled'] = True
  raw['training'][key] = value
  try:
    config = config_from_dict(raw)
  except ConfigError as error:  # rejecting it at load time is fine too
    assert f'training.{key}' in str(error)
    return

  space = hyperparameters.search_space(model_settings(config))

  assert space.values[key] == value
