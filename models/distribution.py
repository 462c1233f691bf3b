"""Where training runs: training.distribution's tf.distribute strategy, the
cluster TF_CONFIG describes, and each replica's role in it.

Vertex Training (and the local multi-worker test) starts every replica of the
Trainer with the same command and a TF_CONFIG naming the cluster and the
replica's task: chief, worker or ps. The strategies:

- none: TensorFlow's default strategy, one device;
- mirrored: the GPUs of one machine (or its CPU), synchronous;
- multi_worker_mirrored: every replica of the cluster trains in lock step,
  all-reducing gradients; the chief exports;
- parameter_server: the chief coordinates, workers compute steps
  asynchronously, parameter servers hold the variables
  (models/parameter_server.py).

Under every strategy training.batch_size is the global batch: one step is one
optimizer update on batch_size sessions, split across the replicas that
compute it, so train_steps means the same number of examples everywhere.
"""

import dataclasses
import json
import os
from typing import Optional

import tensorflow as tf

NONE = 'none'
MIRRORED = 'mirrored'
MULTI_WORKER_MIRRORED = 'multi_worker_mirrored'
PARAMETER_SERVER = 'parameter_server'

CHIEF = 'chief'


@dataclasses.dataclass(frozen=True)
class Task:
  """This process's place in the cluster: (chief, 0) when there is none."""
  type: str = CHIEF
  index: int = 0

  @property
  def is_chief(self) -> bool:
    # 'master' is the older name of the chief (TFX's own _is_chief agrees).
    return self.type == CHIEF or (self.type == 'master' and self.index == 0)

  @property
  def name(self) -> str:
    return f'{self.type}-{self.index}'


def current_task() -> Task:
  """The task TF_CONFIG names, or the lone chief without a TF_CONFIG."""
  raw = os.environ.get('TF_CONFIG') or '{}'
  try:
    tf_config = json.loads(raw)
  except json.JSONDecodeError as e:
    raise ValueError(f'TF_CONFIG is not JSON ({e}): {raw[:200]}') from None
  if not tf_config.get('cluster'):
    return Task()
  task = tf_config.get('task') or {}
  return Task(type=task.get('type', CHIEF), index=int(task.get('index', 0)))


def strategy_for(distribution: str) -> tf.distribute.Strategy:
  """The strategy of training.distribution, over the cluster of TF_CONFIG.

  Create it before any other TensorFlow operation: MultiWorkerMirrored
  configures the process's collective ops when it is built.
  """
  if distribution == NONE:
    return tf.distribute.get_strategy()
  if distribution == MIRRORED:
    return tf.distribute.MirroredStrategy()
  if distribution == MULTI_WORKER_MIRRORED:
    return tf.distribute.MultiWorkerMirroredStrategy()
  if distribution == PARAMETER_SERVER:
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if not resolver.cluster_spec().jobs:
      raise ValueError('training.distribution parameter_server needs a '
                       'cluster: TF_CONFIG names none (on Vertex AI, give '
                       'vertex.trainer workers and parameter_servers).')
    return tf.distribute.experimental.ParameterServerStrategy(resolver)
  raise ValueError(f'Unknown training.distribution {distribution!r}.')


def name_of(strategy: tf.distribute.Strategy) -> str:
  """The training.distribution a strategy implements."""
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return MULTI_WORKER_MIRRORED
  if isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy):
    return PARAMETER_SERVER
  if isinstance(strategy, tf.distribute.MirroredStrategy):
    return MIRRORED
  return NONE


def tuner_strategy_for(distribution: str) -> Optional[tf.distribute.Strategy]:
  """A Tuner trial's strategy: the devices of its own machine.

  The Tuner's machines each run their own trials (Vertex AI sets TF_CONFIG
  for the flock, not for one training cluster), so a cluster distribution
  tunes with the machine's GPUs, mirrored, and trains with the cluster.
  """
  if distribution == NONE:
    return None  # KerasTuner's own default: no strategy at all
  return tf.distribute.MirroredStrategy()


def global_batches(strategy: tf.distribute.Strategy, make_dataset,
                   batch_size: int) -> tf.data.Dataset:
  """Batches of `batch_size` sessions per step, for Keras to spread over the
  strategy's replicas.

  `make_dataset(batch_size)` returns batches repeated forever, shuffled the
  same way in every process. Keras's fit hands them to tf.distribute, which
  splits each batch into one part per replica; sharding by data gives each
  worker its own parts, so the replicas of one step see disjoint sessions,
  batch_size of them together. (Sharding by file, the default, would need a
  file per worker.)
  """
  per_replica_batch_size(strategy, batch_size)
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  return make_dataset(batch_size).with_options(options)


def per_replica_batch_size(strategy: tf.distribute.Strategy,
                           batch_size: int) -> int:
  """batch_size over the replicas of a step; it must split evenly."""
  replicas = strategy.num_replicas_in_sync
  if batch_size % replicas:
    raise ValueError(f'training.batch_size {batch_size} does not split into '
                     f'{replicas} replicas: use a multiple of {replicas}.')
  return batch_size // replicas
