"""training.distribution's strategy and the replica's role come from
TF_CONFIG; the strategy loop trains exactly the steps Keras's fit does.

The clusters themselves (two workers; a chief, a worker and a parameter
server) are trained in tests/e2e/test_distributed_training.py.
"""

import json
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import distribution, strategy_training, training


def _tf_config(monkeypatch, task_type, index=0):
  cluster = {'chief': ['127.0.0.1:1000'], 'worker': ['127.0.0.1:1001',
                                                     '127.0.0.1:1002'],
             'ps': ['127.0.0.1:1003']}
  monkeypatch.setenv('TF_CONFIG', json.dumps(
      {'cluster': cluster, 'task': {'type': task_type, 'index': index}}))


def test_without_tf_config_the_process_is_the_lone_chief(monkeypatch):
  monkeypatch.delenv('TF_CONFIG', raising=False)

  task = distribution.current_task()

  assert (task.is_chief, task.name) == (True, 'chief-0')


@pytest.mark.parametrize('task_type,index,is_chief', [
    ('chief', 0, True), ('worker', 1, False), ('ps', 0, False),
    ('master', 0, True)])
def test_the_task_of_tf_config(monkeypatch, task_type, index, is_chief):
  _tf_config(monkeypatch, task_type, index)

  task = distribution.current_task()

  assert (task.type, task.index, task.is_chief) == (task_type, index, is_chief)


def test_a_tf_config_that_is_not_json_is_named(monkeypatch):
  monkeypatch.setenv('TF_CONFIG', '{cluster: chief}')

  with pytest.raises(ValueError, match='TF_CONFIG is not JSON.*cluster: chief'):
    distribution.current_task()


def test_strategies_by_name(monkeypatch):
  monkeypatch.delenv('TF_CONFIG', raising=False)

  assert distribution.strategy_for('none') is tf.distribute.get_strategy()
  assert isinstance(distribution.strategy_for('mirrored'),
                    tf.distribute.MirroredStrategy)
  with pytest.raises(ValueError, match="Unknown training.distribution 'ring'"):
    distribution.strategy_for('ring')


def test_parameter_server_without_a_cluster_says_what_to_configure(
    monkeypatch):
  monkeypatch.delenv('TF_CONFIG', raising=False)

  with pytest.raises(ValueError, match='needs a cluster.*parameter_servers'):
    distribution.strategy_for('parameter_server')


@pytest.mark.parametrize('name', ['mirrored', 'multi_worker_mirrored',
                                  'parameter_server'])
def test_a_tuner_trial_uses_the_devices_of_its_own_machine(name):
  assert isinstance(distribution.tuner_strategy_for(name),
                    tf.distribute.MirroredStrategy)
  assert distribution.tuner_strategy_for('none') is None


def test_the_global_batch_must_split_evenly_over_the_replicas():
  three_replicas = types.SimpleNamespace(num_replicas_in_sync=3)

  assert distribution.per_replica_batch_size(three_replicas, 96) == 32
  with pytest.raises(ValueError, match='batch_size 64 does not split into 3 '
                     'replicas: use a multiple of 3'):
    distribution.per_replica_batch_size(three_replicas, 64)


def _tiny_model():
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input(shape=(2,)),
                            keras.layers.Dense(3, activation='sigmoid')])
  model.compile(optimizer=keras.optimizers.SGD(0.1),
                loss=keras.losses.BinaryCrossentropy())
  return model


def _batches(batch_size):
  features = np.random.default_rng(0).normal(size=(64, 2)).astype('float32')
  labels = (features[:, :1] > 0).astype('float32').repeat(3, axis=1)
  return tf.data.Dataset.from_tensor_slices((features, labels)).batch(
      batch_size).repeat()


class _EpochLog(keras.callbacks.Callback):

  def __init__(self):
    super().__init__()
    self.epochs = []

  def on_epoch_end(self, epoch, logs=None):
    self.epochs.append((epoch, int(self.model.optimizer.iterations.numpy())))


@pytest.mark.parametrize('train_steps', [7, training.STEPS_PER_EPOCH + 3])
def test_the_strategy_loop_runs_the_steps_and_epochs_of_keras_fit(
    train_steps):
  strategy = tf.distribute.MirroredStrategy()
  with strategy.scope():
    model = _tiny_model()
  epochs, steps_per_epoch = training.epochs_for(train_steps)
  seen = _EpochLog()

  history = strategy_training.fit(strategy, model, _batches, 8, train_steps,
                                  epochs, steps_per_epoch, [seen])

  assert int(model.optimizer.iterations.numpy()) == train_steps
  # Every epoch but the last is steps_per_epoch long, as under Keras's fit.
  assert [e for e, _ in seen.epochs] == list(range(epochs))
  assert seen.epochs[-1][1] == train_steps
  assert all(done == (e + 1) * steps_per_epoch for e, done in seen.epochs[:-1])
  assert len(history['loss']) == epochs
  if epochs > 1:
    assert history['loss'][-1] < history['loss'][0]  # it learns


def test_the_strategy_loop_stops_early_and_keeps_the_best_weights():
  strategy = tf.distribute.MirroredStrategy()
  with strategy.scope():
    model = _tiny_model()

  class Scores(keras.callbacks.Callback):
    """An objective that peaks at the second epoch."""
    weights = []

    def on_epoch_end(self, epoch, logs=None):
      logs['score'] = [0.1, 0.9, 0.2, 0.3, 0.4, 0.5][epoch]
      Scores.weights.append(self.model.get_weights()[0].copy())

  history = strategy_training.fit(
      strategy, model, _batches, 8, 6 * 10, 6, 10,
      [Scores(), keras.callbacks.EarlyStopping(
          monitor='score', mode='max', patience=2,
          restore_best_weights=True)])

  assert history['score'] == [0.1, 0.9, 0.2, 0.3]  # stopped after patience 2
  np.testing.assert_array_equal(model.get_weights()[0], Scores.weights[1])
