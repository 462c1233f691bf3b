"""The Trainer on local clusters, as Vertex Training runs it.

Each cluster is real: one process per replica on 127.0.0.1, each running the
command Vertex AI runs on its replicas (TFX's run_executor with
ReplicaExecutor, models/local_cluster.py) with its own TF_CONFIG, on CPU. They
train on the first run's transformed sessions, with its hyperparameters,
train_args and custom_config, changed only in training.distribution. The
first run's own Trainer (no strategy, Keras's fit) is the single-worker
reference.

Tolerance: the cluster's model must score within METRIC_TOLERANCE of the
reference's test macro and micro F1. Two replicas see the same sessions per
step, split differently and in another order, so the models differ a little:
measured 0.0003 (macro) and 0.002 (micro) apart for multi_worker_mirrored; a
parameter_server cluster with one worker applies the same updates in the same
order, and scores the same to 4 decimals. The tolerance catches a cluster
that learns less or something else; it cannot see differences below 0.03.
"""

import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import f1_score

from lineage.history import History
from models import local_cluster
from pipeline import metadata_store

pytestmark = pytest.mark.slow

METRIC_TOLERANCE = 0.03


@pytest.fixture(scope='module')
def first_trainer(first_run) -> local_cluster.RecordedTrainer:
  config, summary, _ = first_run
  history = History(metadata_store.open_store(config, read_only=True),
                    config.pipeline_name)
  return local_cluster.recorded_trainer(history, history.run(summary.run_id))


@pytest.fixture(scope='module')
def held_out_records(first_trainer):
  return [record.numpy() for record in tf.data.TFRecordDataset(
      first_trainer.test_examples, compression_type='GZIP')]


@pytest.fixture(scope='module')
def reference_scores(first_trainer, held_out_records):
  """(macro F1, micro F1) of the first run's own model: the single machine."""
  macro, micro, _ = _scores(first_trainer.model_dir, held_out_records)
  return macro, micro


def _train_on_cluster(first_trainer, folder, distribution, **replicas):
  ran = local_cluster.run(
      first_trainer.inputs, local_cluster.outputs_in(str(folder)),
      first_trainer.with_distribution(distribution), str(folder / 'logs'),
      **replicas)
  logs = {replica.name: open(replica.log_path, encoding='utf-8',
                             errors='replace').read() for replica in ran}
  return ran, str(folder / 'model'), logs


@pytest.fixture(scope='module')
def multi_worker(first_trainer, tmp_path_factory):
  return _train_on_cluster(first_trainer,
                           tmp_path_factory.mktemp('multi_worker'),
                           'multi_worker_mirrored', workers=1)


@pytest.fixture(scope='module')
def parameter_server(first_trainer, tmp_path_factory):
  return _train_on_cluster(first_trainer,
                           tmp_path_factory.mktemp('parameter_server'),
                           'parameter_server', workers=1, parameter_servers=1)


def _scores(model_dir, records):
  """(macro F1, micro F1, recommended) of a SavedModel on serialized
  examples, as served, scored by scikit-learn."""
  model = tf.saved_model.load(model_dir)
  examples = tf.constant(records)
  recommended = model.signatures['serving_default'](
      examples=examples)['recommended'].numpy()
  truth = model.signatures['transform_features'](
      examples=examples)['repair_labels_xf'].numpy() > 0.5
  return (f1_score(truth, recommended, average='macro', zero_division=0),
          f1_score(truth, recommended, average='micro', zero_division=0),
          recommended)


def test_both_workers_train_in_lock_step_and_only_the_chief_exports(
    multi_worker):
  replicas, model_dir, logs = multi_worker

  assert [(r.name, r.returncode) for r in replicas] == [('chief-0', 0),
                                                        ('worker-0', 0)]
  for log in logs.values():
    assert 'num_workers = 2' in log
    assert 'Training under multi_worker_mirrored: 2 replicas per step' in log
  assert 'Running as worker-0 of the cluster' in logs['worker-0']
  # TFX's check that run_fn wrote the model ran on the chief alone.
  assert 'Training complete. Model written' in logs['chief-0']
  assert 'Training complete' not in logs['worker-0']
  assert os.listdir(model_dir) == ['Format-Serving']


def test_the_chief_exports_a_model_that_loads_and_predicts(
    multi_worker, held_out_records, first_run):
  config = first_run[0]

  _, _, recommended = _scores(
      os.path.join(multi_worker[1], 'Format-Serving'), held_out_records)

  assert recommended.shape == (len(held_out_records), config.num_labels)
  assert set(np.unique(recommended)) <= {0, 1}
  assert recommended.sum() > 0


def test_multi_worker_metrics_match_the_single_worker_run(
    multi_worker, reference_scores, held_out_records):
  macro, micro, _ = _scores(os.path.join(multi_worker[1], 'Format-Serving'),
                            held_out_records)
  reference_macro, reference_micro = reference_scores

  assert macro == pytest.approx(reference_macro, abs=METRIC_TOLERANCE)
  assert micro == pytest.approx(reference_micro, abs=METRIC_TOLERANCE)
  assert reference_macro > 0.3  # a trained model, not two trivial ones


def test_parameter_server_cluster_trains_with_variables_on_the_server(
    parameter_server, reference_scores, held_out_records):
  replicas, model_dir, logs = parameter_server

  outcomes = {r.name: r.returncode for r in replicas}
  assert outcomes['chief-0'] == 0
  # The worker and the parameter server serve until the chief has finished,
  # then are stopped (on Vertex AI, the job ends with the chief).
  for name in ('worker-0', 'ps-0'):
    assert 'Started server with target' in logs[name]
    assert f'Running as {name} of the cluster' in logs[name]
  assert ('Training under parameter_server: 1 replicas per step, '
          'variables on /job:ps/replica:0/task:0') in logs['chief-0']
  macro, micro, _ = _scores(os.path.join(model_dir, 'Format-Serving'),
                            held_out_records)
  reference_macro, reference_micro = reference_scores
  assert macro == pytest.approx(reference_macro, abs=METRIC_TOLERANCE)
  assert micro == pytest.approx(reference_micro, abs=METRIC_TOLERANCE)
