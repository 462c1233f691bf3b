"""training.fit runs exactly the configured number of training steps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import training


def _tiny_model_and_data():
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input(shape=(2,)),
                            keras.layers.Dense(3, activation='sigmoid')])
  model.compile(optimizer=keras.optimizers.SGD(0.01),
                loss=keras.losses.BinaryCrossentropy())
  features = np.random.default_rng(0).normal(size=(64, 2)).astype('float32')
  labels = (features[:, :1] > 0).astype('float32').repeat(3, axis=1)
  batches = tf.data.Dataset.from_tensor_slices((features, labels)).batch(
      8).repeat()
  return model, batches


@pytest.mark.parametrize('train_steps', [3, training.STEPS_PER_EPOCH,
                                         2 * training.STEPS_PER_EPOCH])
def test_fit_runs_the_requested_steps(train_steps):
  model, batches = _tiny_model_and_data()

  training.fit(model, batches, batches, train_steps=train_steps, eval_steps=1)

  assert int(model.optimizer.iterations.numpy()) == train_steps


def test_fit_runs_a_step_count_that_is_not_a_multiple_of_an_epoch():
  model, batches = _tiny_model_and_data()
  train_steps = training.STEPS_PER_EPOCH + 10

  training.fit(model, batches, batches, train_steps=train_steps, eval_steps=1)

  assert int(model.optimizer.iterations.numpy()) == train_steps


def test_each_epoch_logs_the_eval_macro_f1_at_the_best_thresholds():
  model, batches = _tiny_model_and_data()

  history = training.fit(
      model, batches, batches, train_steps=4, eval_steps=1,
      callbacks=[training.ThresholdedMacroF1(batches, steps=2)])

  scores = history.history[training.OBJECTIVE]
  assert len(scores) == len(history.history['loss'])
  assert all(0.0 <= score <= 1.0 for score in scores)
