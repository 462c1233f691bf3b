"""The Tuner's search starts from the configured hyperparameters."""

import keras_tuner

from models import hyperparameters, training
from models.tuning import ConfiguredFirstOracle
from pipeline.config import load_config
from pipeline.settings import model_settings


def _oracle(tmp_path, settings):
  oracle = ConfiguredFirstOracle(
      objective=keras_tuner.Objective(training.OBJECTIVE, direction='max'),
      max_trials=3, hyperparameters=hyperparameters.search_space(settings),
      seed=1)
  oracle._set_project_dir(str(tmp_path), 'tuning')  # pylint: disable=protected-access
  return oracle


def test_first_trial_is_the_configuration_then_the_search_moves_on(tmp_path):
  settings = model_settings(load_config('configs/local.yaml'))
  oracle = _oracle(tmp_path, settings)

  first = oracle.create_trial('tuner0')
  assert first.hyperparameters.values == hyperparameters.defaults(settings)
  oracle.update_trial(first.trial_id, {training.OBJECTIVE: 0.5})
  oracle.end_trial(first)

  second = oracle.create_trial('tuner0')
  assert second.hyperparameters.values != hyperparameters.defaults(settings)
