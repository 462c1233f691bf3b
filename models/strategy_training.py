"""Training under a tf.distribute strategy: mirrored, multi_worker_mirrored
or parameter_server (models/distribution.py).

Keras 3's model.fit drives none of the cluster strategies:
- under MultiWorkerMirroredStrategy it fails before the first step, reducing
  the first batch as one tensor ("Attempt to convert a value ({...:
  PerReplica..."; keras-team/keras#20585, #20329);
- under ParameterServerStrategy it has no way in (Keras 2's DatasetCreator is
  gone: "To use this dataset, you need to pass this dataset to
  ClusterCoordinator.create_per_worker_dataset");
- under MirroredStrategy it sums each replica's mean-loss gradients, so a
  step's update grows with the replica count.
`fit` here is TensorFlow's documented custom loop for each, with the contract
of models/training.py's fit: exactly train_steps optimizer steps, each one
update on the gradient of the mean loss over batch_size sessions, in the same
epochs, each ending with the same Keras callbacks (the served-decision eval
macro F1, early stopping with the best weights restored, the backup a retried
Trainer resumes from). Without a strategy the Trainer keeps Keras's fit.
"""

import time
from typing import Callable, Dict, List

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from models import distribution


def serve(task: distribution.Task) -> None:
  """Runs a parameter_server worker's or parameter server's TensorFlow
  server until the job ends: on Vertex AI, when the chief has finished."""
  resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  server = tf.distribute.Server(
      resolver.cluster_spec(), job_name=task.type, task_index=task.index,
      protocol=resolver.rpc_layer or 'grpc', start=True)
  server.join()


def fit(strategy: tf.distribute.Strategy, model: keras.Model,
        make_dataset: Callable[[int], tf.data.Dataset], batch_size: int,
        train_steps: int, epochs: int, steps_per_epoch: int,
        callbacks: List[keras.callbacks.Callback]) -> Dict[str, list]:
  """Trains `model`, built in `strategy`'s scope, for train_steps steps.

  The epochs are training.epochs_for's; the last one is cut short so that the
  steps add up to train_steps. Returns the history: each epoch's mean
  training loss and the callbacks' logs.
  """
  logging.info('Training under %s: %d replicas per step, variables on %s.',
               distribution.name_of(strategy), strategy.num_replicas_in_sync,
               ', '.join(variable_devices(model)))
  if isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy):
    run_steps = _parameter_server_steps(strategy, model, make_dataset,
                                        batch_size)
  else:
    run_steps = _synchronous_steps(strategy, model, make_dataset, batch_size)
  callback_list = keras.callbacks.CallbackList(
      list(callbacks), model=model, epochs=epochs, steps=steps_per_epoch)
  history: Dict[str, list] = {}
  model.stop_training = False
  callback_list.on_train_begin()
  # BackupAndRestore sets the epoch a retried Trainer resumes from.
  first_epoch = getattr(model, '_initial_epoch', None) or 0
  done = first_epoch * steps_per_epoch
  for epoch in range(first_epoch, epochs):
    callback_list.on_epoch_begin(epoch)
    steps = min(steps_per_epoch, train_steps - done)
    started = time.monotonic()
    logs = {'loss': run_steps(steps)}
    seconds = time.monotonic() - started
    # benchmarks/distributed_training.py reads these lines.
    logging.info('Epoch %d: %d steps in %.3f s, loss %.4f.', epoch, steps,
                 seconds, logs['loss'])
    done += steps
    callback_list.on_epoch_end(epoch, logs)
    for name, value in logs.items():
      history.setdefault(name, []).append(value)
    if model.stop_training or done >= train_steps:
      break
  callback_list.on_train_end()
  return history


def variable_devices(model: keras.Model) -> List[str]:
  """Where the model's variables live (their first copy, when mirrored)."""
  devices = set()
  for variable in model.variables:
    value = getattr(variable, 'value', variable)
    copies = getattr(value, 'values', None)
    devices.add((copies[0] if copies else value).device)
  return sorted(devices)


def _replica_loss(model: keras.Model, features, labels, replicas: int):
  """This replica's share of the step's mean loss: summed over the
  replicas (as the optimizer sums their gradients), the mean over the whole
  batch."""
  predictions = model(features, training=True)
  return model.compute_loss(x=features, y=labels,
                            y_pred=predictions) / replicas


def _apply(model: keras.Model, tape: tf.GradientTape, loss) -> None:
  gradients = tape.gradient(loss, model.trainable_variables)
  model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))


def _synchronous_steps(strategy, model, make_dataset, batch_size):
  """Mirrored and multi-worker mirrored: every replica computes its part of
  each step's batch (distribution.global_batches), gradients all-reduced."""
  batches = iter(strategy.experimental_distribute_dataset(
      distribution.global_batches(strategy, make_dataset, batch_size)))
  replicas = strategy.num_replicas_in_sync

  @tf.function
  def train_step(iterator):
    def step(features, labels):
      with tf.GradientTape() as tape:
        loss = _replica_loss(model, features, labels, replicas)
      _apply(model, tape, loss)
      return loss
    losses = strategy.run(step, args=next(iterator))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

  def run_steps(steps: int) -> float:
    return float(np.mean([train_step(batches).numpy()
                          for _ in range(steps)]))
  return run_steps


def _parameter_server_steps(strategy, model, make_dataset, batch_size):
  """The chief schedules each step on whichever worker is free; the
  variables live on the parameter servers. Each worker reads its own shard
  of the training data; a step is one worker's update on batch_size
  sessions."""
  coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)

  def shard(context: tf.distribute.InputContext) -> tf.data.Dataset:
    return make_dataset(batch_size).shard(context.num_input_pipelines,
                                          context.input_pipeline_id)

  @tf.function
  def per_worker_dataset():
    return strategy.distribute_datasets_from_function(shard)

  batches = iter(coordinator.create_per_worker_dataset(per_worker_dataset))

  @tf.function
  def train_step(iterator):
    def step(features, labels):
      with tf.GradientTape() as tape:
        loss = _replica_loss(model, features, labels, 1)
      _apply(model, tape, loss)
      return loss
    return strategy.run(step, args=next(iterator))

  def run_steps(steps: int) -> float:
    losses = [coordinator.schedule(train_step, args=(batches,))
              for _ in range(steps)]
    coordinator.join()
    return float(np.mean([loss.fetch() for loss in losses]))
  return run_steps
