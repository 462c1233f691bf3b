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


@pytest.mark.parametrize("train_steps", [3, 7, training.STEPS_PER_EPOCH,
                                         2 * training.STEPS_PER_EPOCH])
def test_fit_runs_the_requested_steps(train_steps):
  model, batches = _tiny_model_and_data()

  training.fit(model, batches, batches, train_steps=train_steps, eval_steps=1)

  assert int(model.optimizer.iterations.numpy()) == train_steps


def test_fit_runs_a_step_count_that_is_not_a_multiple_of_an_epoch():
  model, batches = _tiny_model_and_data()
  train_steps = 2 * training.STEPS_PER_EPOCH + 3  # 503: prime

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


def _learnable_task(seed: int):
  """Six labels, each a noisy linear rule over eight numbers: a linear model
  learns them in a few hundred steps, and not in a dozen."""
  rng = np.random.default_rng(seed)
  weights = rng.normal(size=(8, 6))
  bias = np.array([-2.0, -1.5, -1.0, -1.0, -0.5, 0.0])

  def batches(rows):
    features = rng.normal(size=(rows, 8)).astype('float32')
    logits = features @ weights + bias + rng.normal(scale=0.3, size=(rows, 6))
    return features, (logits > 0).astype('float32')

  return batches


def _served_macro_f1(model, features, labels, eval_features, eval_labels):
  """Test macro F1 of the served decision: thresholds picked on eval."""
  from models import thresholds  # pylint: disable=g-import-not-at-top
  chosen = thresholds.best_thresholds(model.predict(eval_features, verbose=0),
                                      eval_labels)
  decisions = model.predict(features, verbose=0) >= chosen
  truth = labels > 0.5
  return thresholds.macro_f1((decisions & truth).sum(0),
                             (decisions & ~truth).sum(0),
                             (~decisions & truth).sum(0))


def _train_as_run_fn_does(train_steps: int, monkeypatch) -> float:
  """Trains a linear multi-label model with run_fn's step schedule and its
  model selection (early stopping on the served macro F1, best weights)."""
  # Epochs of 25 steps keep the test fast; the rule is the same at 250.
  monkeypatch.setattr(training, 'STEPS_PER_EPOCH', 25)
  keras.utils.set_random_seed(0)
  task = _learnable_task(seed=1)
  train_x, train_y = task(4096)
  eval_x, eval_y = task(512)
  test_x, test_y = task(2048)
  model = keras.Sequential([keras.Input(shape=(8,)),
                            keras.layers.Dense(6, activation='sigmoid')])
  model.compile(optimizer=keras.optimizers.Adam(0.003),
                loss=keras.losses.BinaryCrossentropy())
  train = tf.data.Dataset.from_tensor_slices((train_x, train_y)).shuffle(
      4096, seed=0).batch(32).repeat()
  # A small eval set, as in a real run: its score is noisy next to what
  # one step of training changes.
  evaluation = tf.data.Dataset.from_tensor_slices((eval_x, eval_y)).batch(
      64).repeat()
  training.fit(model, train, evaluation, train_steps=train_steps,
               eval_steps=2,
               callbacks=training.model_selection_callbacks(
                   evaluation, eval_steps=2, patience=3))
  assert int(model.optimizer.iterations.numpy()) <= train_steps
  return _served_macro_f1(model, test_x, test_y, eval_x, eval_y)


def test_a_prime_step_count_trains_as_well_as_the_nearest_round_one(
    monkeypatch):
  # 401 is prime: no epoch length near 25 divides it. Dividing exactly made
  # it 401 epochs of one step, and early stopping ended training after about
  # a dozen (macro F1 0.55 here, against 0.86).
  round_f1 = _train_as_run_fn_does(400, monkeypatch)
  prime_f1 = _train_as_run_fn_does(401, monkeypatch)

  assert round_f1 > 0.8
  assert prime_f1 > round_f1 - 0.03


@pytest.mark.parametrize('steps', [1, 2, 7, 101, 249, 251, 2003, 4001])
def test_epochs_are_about_an_epoch_long_and_cover_the_steps(steps):
  epochs, steps_per_epoch = training.epochs_for(steps)

  assert epochs * steps_per_epoch >= steps
  assert (epochs - 1) * steps_per_epoch < steps  # only the last is cut short
  if steps >= training.STEPS_PER_EPOCH:
    assert abs(steps_per_epoch - training.STEPS_PER_EPOCH) <= (
        training.STEPS_PER_EPOCH // 2)
