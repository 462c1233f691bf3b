"""The Tuner's tuner_fn: a KerasTuner Bayesian search toward eval macro F1."""

import keras_tuner
import tensorflow_transform as tft
from tfx import v1 as tfx

from models import hyperparameters, training
from models.model import build_model


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
  """Returns the tuner and the arguments its search is run with."""
  model_settings = fn_args.custom_config
  settings = model_settings['training']
  budget = model_settings['tuning']
  transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  sizes = training.vocabulary_sizes(model_settings, transform_output)

  train, evaluation = training.datasets(fn_args, model_settings,
                                        transform_output, settings['batch_size'])

  def hypermodel(hp: keras_tuner.HyperParameters):
    return build_model(model_settings, sizes, hp.values,
                       loss=training.training_loss(model_settings,
                                                   hp.values['loss'], train))

  tuner = keras_tuner.BayesianOptimization(
      hypermodel=hypermodel,
      objective=keras_tuner.Objective('val_macro_f1', direction='max'),
      max_trials=budget['max_trials'],
      hyperparameters=hyperparameters.search_space(model_settings),
      seed=settings['seed'],
      directory=fn_args.working_dir,
      project_name='repair_model_tuning')
  epochs, steps_per_epoch = training.epochs_for(budget['steps_per_trial'])
  return tfx.components.TunerFnResult(
      tuner=tuner,
      fit_kwargs={
          'x': train,
          'validation_data': evaluation,
          'steps_per_epoch': steps_per_epoch,
          'epochs': epochs,
          'validation_steps': settings['eval_steps'],
          'verbose': 2,
      })
