"""The Tuner's tuner_fn: a KerasTuner Bayesian search toward eval macro F1.

The search starts from the configured hyperparameters (the `training` section):
KerasTuner's Bayesian oracle would start from random points, and with a small
budget could end below the configuration it was meant to improve.
"""

import keras_tuner
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.tuner.component import TunerFnResult

from models import distribution, hyperparameters, training
from models.model import build_model


class ConfiguredFirstOracle(keras_tuner.oracles.BayesianOptimizationOracle):
  """Bayesian optimisation whose first trial is the configured values."""

  def populate_space(self, trial_id):
    if not self.trials:
      return {'status': keras_tuner.engine.trial.TrialStatus.RUNNING,
              'values': {hp.name: hp.default
                         for hp in self.hyperparameters.space}}
    return super().populate_space(trial_id)


def oracle(model_settings) -> keras_tuner.Oracle:
  """What decides the trials: the Bayesian search toward OBJECTIVE, from the
  configured hyperparameters."""
  settings = model_settings['training']
  return ConfiguredFirstOracle(
      objective=keras_tuner.Objective(training.OBJECTIVE, direction='max'),
      max_trials=model_settings['tuning']['max_trials'],
      hyperparameters=hyperparameters.search_space(model_settings),
      seed=settings['seed'])


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
      oracle=oracle(model_settings),
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
