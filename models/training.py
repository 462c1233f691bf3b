"""The Trainer's run_fn: trains the multi-label model and exports it."""

import os
from typing import Any, Dict, List, Tuple

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models import export, hyperparameters
from models.model import build_model
from preprocessing import transform

# About this many steps make one Keras epoch: the unit of validation and
# logging during training.
STEPS_PER_EPOCH = 250


def epochs_for(steps: int) -> Tuple[int, int]:
  """(epochs, steps per epoch) that run exactly `steps` steps.

  Keras epochs are all the same length, so the epoch count divides `steps`;
  among the divisors, the epoch length nearest STEPS_PER_EPOCH wins.
  """
  divisors = [e for e in range(1, steps + 1) if steps % e == 0]
  epochs = min(divisors, key=lambda e: abs(steps // e - STEPS_PER_EPOCH))
  return epochs, steps // epochs


def input_dataset(file_pattern: List[str], data_accessor,
                  transform_output: tft.TFTransformOutput, label_column: str,
                  batch_size: int, seed: int) -> tf.data.Dataset:
  """Batches of (transformed features, multi-hot labels), repeated forever."""
  return data_accessor.tf_dataset_factory(
      file_pattern,
      tfxio.TensorFlowDatasetOptions(
          batch_size=batch_size,
          label_key=transform.transformed_name(label_column),
          shuffle_seed=seed),
      transform_output.transformed_metadata.schema).repeat()


def vocabulary_sizes(model_settings: Dict[str, Any],
                     transform_output: tft.TFTransformOutput) -> Dict[str, int]:
  features = model_settings['features']
  return {
      name: transform_output.vocabulary_size_by_name(
          transform.vocabulary_name(name))
      for name in features['categorical'] + features['multivalent']
  }


def datasets(fn_args: tfx.components.FnArgs, model_settings: Dict[str, Any],
             transform_output: tft.TFTransformOutput, batch_size: int):
  """The train and eval datasets of a Trainer or Tuner run."""
  seed = model_settings['training']['seed']
  make = lambda files: input_dataset(  # pylint: disable=g-long-lambda
      files, fn_args.data_accessor, transform_output,
      model_settings['label_column'], batch_size, seed)
  return make(fn_args.train_files), make(fn_args.eval_files)


def fit(model: keras.Model, train, evaluation, train_steps: int,
        eval_steps: int, callbacks=()) -> keras.callbacks.History:
  """Fits for exactly `train_steps` steps, validating after every epoch."""
  epochs, steps_per_epoch = epochs_for(train_steps)
  return model.fit(train, steps_per_epoch=steps_per_epoch, epochs=epochs,
                   validation_data=evaluation, validation_steps=eval_steps,
                   callbacks=list(callbacks), verbose=2)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """Trains with the tuned (or configured) hyperparameters and exports."""
  model_settings = fn_args.custom_config
  training = model_settings['training']
  keras.utils.set_random_seed(training['seed'])
  transform_output = tft.TFTransformOutput(fn_args.transform_output)
  hparams = hyperparameters.resolve(model_settings, fn_args.hyperparameters)

  train, evaluation = datasets(fn_args, model_settings, transform_output,
                               training['batch_size'])
  model = build_model(model_settings,
                      vocabulary_sizes(model_settings, transform_output),
                      hparams)
  fit(model, train, evaluation, fn_args.train_steps or training['train_steps'],
      fn_args.eval_steps or training['eval_steps'],
      callbacks=[keras.callbacks.TensorBoard(
          log_dir=os.path.join(fn_args.model_run_dir, 'logs'))])
  export.export_serving_model(model, transform_output, model_settings,
                              fn_args.serving_model_dir, fn_args.model_run_dir)
