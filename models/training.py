"""The Trainer's run_fn: trains the multi-label model, picks its per-label
decision thresholds on the eval split, and exports both."""

import contextlib
import os
import shutil
import tempfile
from typing import Any, Dict, List, Tuple

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

from models import (distribution, export, hyperparameters, losses,
                    strategy_training, thresholds)
from models.model import build_model
from preprocessing import transform

# About this many steps make one Keras epoch: the unit of validation and
# logging during training.
STEPS_PER_EPOCH = 250


def seed_everything(seed: int) -> None:
  """Same seed, same data, same model: seeds Python, NumPy and TensorFlow,
  and makes TensorFlow pick deterministic kernels (see BENCHMARKS.md for the
  tolerance two runs agree within)."""
  keras.utils.set_random_seed(seed)
  tf.config.experimental.enable_op_determinism()


def epochs_for(steps: int) -> Tuple[int, int]:
  """(epochs, steps per epoch) of about STEPS_PER_EPOCH that cover `steps`.

  Keras epochs all have the same length, and most step counts (any prime)
  have no divisor near STEPS_PER_EPOCH, so the epochs round up and
  StopAfterSteps ends the last one early: a shorter last epoch, never a
  change of epoch length. Dividing exactly instead would turn 2003 steps into
  2003 epochs of one step, and early stopping would end training after a
  handful of them.
  """
  epochs = max(1, round(steps / STEPS_PER_EPOCH))
  return epochs, -(-steps // epochs)


class StopAfterSteps(keras.callbacks.Callback):
  """Ends training after exactly `steps` optimizer steps.

  It counts the optimizer's iterations, which BackupAndRestore restores, so a
  resumed Trainer still stops at the same step. The epoch it stops in is
  validated and seen by early stopping like any other.
  """

  def __init__(self, steps: int):
    super().__init__()
    self._steps = steps

  def on_train_batch_end(self, batch, logs=None):
    if int(self.model.optimizer.iterations.numpy()) >= self._steps:
      self.model.stop_training = True


def fit_schedule(steps: int, callbacks=()) -> Dict[str, Any]:
  """Keras fit arguments that run exactly `steps` steps (Trainer and Tuner)."""
  epochs, steps_per_epoch = epochs_for(steps)
  return {'epochs': epochs, 'steps_per_epoch': steps_per_epoch,
          'callbacks': [StopAfterSteps(steps)] + list(callbacks)}


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


def dataset_makers(fn_args: FnArgs, model_settings: Dict[str, Any],
                   transform_output: tft.TFTransformOutput):
  """Functions of a batch size that make the train and eval datasets."""
  seed = model_settings['training']['seed']

  def maker(files):
    return lambda batch_size: input_dataset(
        files, fn_args.data_accessor, transform_output,
        model_settings['label_column'], batch_size, seed)
  return maker(fn_args.train_files), maker(fn_args.eval_files)


def datasets(fn_args: FnArgs, model_settings: Dict[str, Any],
             transform_output: tft.TFTransformOutput, batch_size: int):
  """The train and eval datasets of a Trainer or Tuner run."""
  train, evaluation = dataset_makers(fn_args, model_settings,
                                     transform_output)
  return train(batch_size), evaluation(batch_size)


def fit(model: keras.Model, train, evaluation, train_steps: int,
        eval_steps: int, callbacks=()) -> keras.callbacks.History:
  """Fits for exactly `train_steps` steps, validating after every epoch."""
  return model.fit(train, validation_data=evaluation,
                   validation_steps=eval_steps, verbose=2,
                   **fit_schedule(train_steps, callbacks))


# Batches of the training split that estimate each label's frequency.
FREQUENCY_BATCHES = 50
# What early stopping and the Tuner maximise: eval macro F1 of the decision
# that is served, each label at its best threshold.
OBJECTIVE = 'val_thresholded_macro_f1'


class ThresholdedMacroF1(keras.callbacks.Callback):
  """Adds OBJECTIVE to the logs after every epoch.

  Keras's F1 metric decides at 0.5, but the exported model decides at
  per-label thresholds; comparing models (epochs, trials, losses) at 0.5 would
  favour whichever happens to be calibrated around 0.5. This callback scores
  each epoch the way the model will be served.
  """

  def __init__(self, evaluation: tf.data.Dataset, steps: int):
    super().__init__()
    self._batches = list(evaluation.take(steps))

  def on_epoch_end(self, epoch, logs=None):
    probabilities = np.concatenate([
        self.model(features, training=False).numpy()
        for features, _ in self._batches])
    labels = np.concatenate([labels.numpy() for _, labels in self._batches])
    chosen = thresholds.best_thresholds(probabilities, labels)
    decisions = probabilities >= chosen
    truth = labels > 0.5
    counts = [(decisions & truth).sum(0), (decisions & ~truth).sum(0),
              (~decisions & truth).sum(0)]
    macro_f1 = thresholds.macro_f1(*counts)
    logs[OBJECTIVE] = 0.0 if np.isnan(macro_f1) else macro_f1


def model_selection_callbacks(evaluation: tf.data.Dataset, eval_steps: int,
                              patience: int) -> List[keras.callbacks.Callback]:
  """Scores every epoch as served, stops after `patience` epochs without a
  better score, and keeps the weights of the best epoch."""
  return [
      ThresholdedMacroF1(evaluation, eval_steps),
      keras.callbacks.EarlyStopping(monitor=OBJECTIVE, mode='max',
                                    patience=patience,
                                    restore_best_weights=True),
  ]


def training_loss(model_settings: Dict[str, Any], loss_name: str, train):
  """The configured loss; label-weighted ones see the training frequencies."""
  frequencies = None
  if loss_name == 'weighted_binary_crossentropy':
    frequencies = losses.label_frequencies_from_dataset(train,
                                                        FREQUENCY_BATCHES)
  return losses.make_loss(loss_name, label_frequencies=frequencies,
                          focal_gamma=model_settings['training']['focal_gamma'])


def run_fn(fn_args: FnArgs) -> None:
  """Trains with the tuned (or configured) hyperparameters and exports.

  Under training.distribution, on every replica of the cluster TF_CONFIG
  names (models/distribution.py): the chief exports the model; a
  multi_worker_mirrored worker trains in lock step with it and exports to a
  temporary directory, as TensorFlow requires of every replica; a
  parameter_server worker or parameter server serves until the job ends.
  """
  model_settings = fn_args.custom_config
  training = model_settings['training']
  task = distribution.current_task()
  if (training['distribution'] == distribution.PARAMETER_SERVER and
      not task.is_chief):
    strategy_training.serve(task)
    return
  # First: MultiWorkerMirroredStrategy must exist before any TF operation.
  strategy = distribution.strategy_for(training['distribution'])
  seed_everything(training['seed'])
  transform_output = tft.TFTransformOutput(fn_args.transform_output)
  hparams = hyperparameters.resolve(model_settings, fn_args.hyperparameters)

  batch_size = training['batch_size']
  train_batches, eval_batches = dataset_makers(fn_args, model_settings,
                                               transform_output)
  train, evaluation = train_batches(batch_size), eval_batches(batch_size)
  loss = training_loss(model_settings, hparams['loss'], train)
  # Without a strategy, no scope at all: exactly the one-machine Trainer.
  with (strategy.scope() if training['distribution'] != distribution.NONE
        else contextlib.nullcontext()):
    model = build_model(model_settings,
                        vocabulary_sizes(model_settings, transform_output),
                        hparams, loss=loss)
  train_steps = fn_args.train_steps or training['train_steps']
  eval_steps = fn_args.eval_steps or training['eval_steps']
  callbacks = model_selection_callbacks(
      evaluation, eval_steps, training['early_stopping_patience']) + (
          run_callbacks(fn_args.model_run_dir, task))
  if training['distribution'] == distribution.NONE:
    fit(model, train, evaluation, train_steps, eval_steps,
        callbacks=callbacks)
  else:
    strategy_training.fit(strategy, model, train_batches, batch_size,
                          train_steps, *epochs_for(train_steps), callbacks)
  probabilities, labels = predict_split(model, fn_args.eval_files,
                                        fn_args.data_accessor, transform_output,
                                        model_settings)
  label_thresholds = thresholds.best_thresholds(probabilities, labels)
  if task.is_chief:
    export.export_serving_model(
        model, transform_output, model_settings, fn_args.serving_model_dir,
        fn_args.model_run_dir, label_thresholds=label_thresholds)
    return
  scratch = tempfile.mkdtemp(prefix=f'repairml-{task.name}-')
  try:
    export.export_serving_model(
        model, transform_output, model_settings,
        os.path.join(scratch, 'model'), scratch,
        label_thresholds=label_thresholds)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


def run_callbacks(model_run_dir: str, task: distribution.Task):
  """The chief's backup and TensorBoard logs; another replica's backup."""
  if not task.is_chief:
    return [keras.callbacks.BackupAndRestore(
        os.path.join(model_run_dir, f'backup-{task.name}'))]
  return [
      # An interrupted Trainer resumes from its last finished epoch.
      keras.callbacks.BackupAndRestore(os.path.join(model_run_dir, 'backup')),
      keras.callbacks.TensorBoard(log_dir=os.path.join(model_run_dir, 'logs')),
  ]


def predict_split(model: keras.Model, file_pattern: List[str], data_accessor,
                  transform_output: tft.TFTransformOutput,
                  model_settings: Dict[str, Any]):
  """(probabilities, multi-hot labels) of every example in the files, once."""
  dataset = data_accessor.tf_dataset_factory(
      file_pattern,
      tfxio.TensorFlowDatasetOptions(
          batch_size=1024, num_epochs=1, shuffle=False,
          label_key=transform.transformed_name(model_settings['label_column'])),
      transform_output.transformed_metadata.schema)
  probabilities, labels = [], []
  for features, batch_labels in dataset:
    probabilities.append(model(features, training=False).numpy())
    labels.append(batch_labels.numpy())
  return np.concatenate(probabilities), np.concatenate(labels)
