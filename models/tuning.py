"""The Tuner's tuner_fn: a Bayesian search toward eval macro F1, by KerasTuner's
oracle or, on Vertex AI with vertex.tuner.service: vizier, by a Vertex AI
Vizier study (models/vizier.py).

The search starts from the configured hyperparameters (the `training` section):
KerasTuner's Bayesian oracle would start from random points, and with a small
budget could end below the configuration it was meant to improve.
"""

from typing import Optional

import keras_tuner
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.tuner.component import TunerFnResult

from models import distribution, hyperparameters, training, vizier
from models.model import build_model


class ConfiguredFirstOracle(keras_tuner.oracles.BayesianOptimizationOracle):
  """Bayesian optimisation whose first trial is the configured values."""

  def populate_space(self, trial_id):
    if not self.trials:
      return {'status': keras_tuner.engine.trial.TrialStatus.RUNNING,
              'values': {hp.name: hp.default
                         for hp in self.hyperparameters.space}}
    return super().populate_space(trial_id)


def oracle(model_settings, fn_args: Optional[FnArgs] = None
          ) -> keras_tuner.Oracle:
  """What decides the trials: the Bayesian search toward OBJECTIVE, from the
  configured hyperparameters; KerasTuner's, or a Vertex AI Vizier study
  (models/vizier.py) when the settings ask for it (vertex.tuner.service:
  vizier), named after the Tuner execution `fn_args` describes."""
  settings = model_settings['training']
  objective = keras_tuner.Objective(training.OBJECTIVE, direction='max')
  budget = model_settings['tuning']['max_trials']
  space = hyperparameters.search_space(model_settings)
  if vizier.uses_vizier(model_settings):
    service = model_settings[vizier.SETTINGS_KEY]
    if fn_args is None:
      raise ValueError('The Vizier oracle names its study after the Tuner '
                       'execution: pass tuner_fn\'s fn_args to oracle().')
    return vizier.VizierOracle(
        objective=objective, max_trials=budget, hyperparameters=space,
        study_name=vizier.study_name(service['pipeline_name'], fn_args),
        project=service['project'], region=service['region'],
        seed=settings['seed'])
  return ConfiguredFirstOracle(objective=objective, max_trials=budget,
                               hyperparameters=space, seed=settings['seed'])


def tuner_fn(fn_args: FnArgs) -> TunerFnResult:
  """Returns the tuner and the arguments its search is run with."""
  model_settings = fn_args.custom_config
  settings = model_settings['training']
  budget = model_settings['tuning']
  training.seed_everything(settings['seed'])
  transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  sizes = training.vocabulary_sizes(model_settings, transform_output)

  train, evaluation = training.datasets(fn_args, model_settings,
                                        transform_output, settings['batch_size'])

  def hypermodel(hp: keras_tuner.HyperParameters):
    return build_model(model_settings, sizes, hp.values,
                       loss=training.training_loss(model_settings,
                                                   hp.values['loss'], train))

  tuner = keras_tuner.Tuner(
      oracle=oracle(model_settings, fn_args),
      hypermodel=hypermodel,
      # Each trial builds its model in the strategy's scope: the devices of
      # the machine that runs it.
      distribution_strategy=distribution.tuner_strategy_for(
          settings['distribution']),
      directory=fn_args.working_dir,
      project_name='repair_model_tuning')
  return TunerFnResult(
      tuner=tuner,
      fit_kwargs={
          'x': train,
          'validation_data': evaluation,
          'validation_steps': settings['eval_steps'],
          'verbose': 2,
          **training.fit_schedule(
              budget['steps_per_trial'],
              callbacks=[training.ThresholdedMacroF1(evaluation,
                                                     settings['eval_steps'])]),
      })
