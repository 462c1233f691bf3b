"""A Trainer cluster on this machine: one process per replica, on loopback,
each running what Vertex Training runs on its replicas.

Vertex AI starts every replica of the Trainer's CustomJob with one command,
TFX's run_executor with the Trainer's executor, inputs, outputs and
properties (built by TFX's own job client), and gives each replica a
TF_CONFIG naming the cluster and its task. `run` does the same here with
processes: a chief, `workers` workers and `parameter_servers` parameter
servers, with free ports on 127.0.0.1 and CPU only. It is how the
distributed training is tested and benchmarked without a cloud, and how to
try a distribution on a laptop before paying for one.
"""

import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List

import portpicker
from tfx import types
from tfx.extensions.google_cloud_ai_platform import training_clients
# Imported so that artifacts read from ML Metadata get their standard classes.
from tfx.types import standard_artifacts

# What Vertex AI runs on each replica (pipeline/production/vertex.py).
REPLICA_EXECUTOR = 'pipeline.components.trainer_executor.ReplicaExecutor'


@dataclasses.dataclass(frozen=True)
class Replica:
  """One finished (or stopped) process of the cluster."""
  type: str
  index: int
  returncode: int
  log_path: str

  @property
  def name(self) -> str:
    return f'{self.type}-{self.index}'


class ClusterError(RuntimeError):
  """A replica that computes steps failed or did not finish in time."""


@dataclasses.dataclass(frozen=True)
class RecordedTrainer:
  """A finished run's Trainer, as ML Metadata recorded it: what to run
  again on a cluster, and the model it made."""
  inputs: Dict[str, List[types.Artifact]]
  exec_properties: Dict[str, Any]
  model_dir: str            # the run's exported model (Format-Serving)
  test_examples: List[str]  # the run's test split, gzipped tf.Example files

  def with_distribution(self, distribution: str,
                        train_steps: int = 0) -> Dict[str, Any]:
    """The Trainer's properties with training.distribution (and, if given,
    the step count) changed."""
    settings = json.loads(self.exec_properties['custom_config'])
    settings['training']['distribution'] = distribution
    properties = {**self.exec_properties,
                  'custom_config': json.dumps(settings, sort_keys=True)}
    if train_steps:
      properties['train_args'] = json.dumps({'num_steps': train_steps})
    return properties


def recorded_trainer(history, run) -> RecordedTrainer:
  """The Trainer of `run` (lineage.history's History and Run)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfx.types import artifact_utils  # pylint: disable=g-import-not-at-top
  trainer = run.step('Trainer')
  if trainer is None or trainer.output('model') is None:
    raise ValueError(f'Run {run.run_id} has no trained model to train again.')
  model = history.tfx_artifact(trainer.output('model'))
  examples = history.tfx_artifact(run.example_gen.output('examples'))
  test_split = artifact_utils.get_split_uri([examples], 'test')
  return RecordedTrainer(
      inputs={key: [history.tfx_artifact(i) for i in ids]
              for key, ids in trainer.inputs.items()},
      exec_properties=dict(trainer.properties),
      model_dir=os.path.join(model.uri, 'Format-Serving'),
      test_examples=sorted(tf.io.gfile.glob(os.path.join(test_split, '*'))))


def outputs_in(folder: str) -> Dict[str, List[types.Artifact]]:
  """The Trainer's output artifacts, in FOLDER/model and FOLDER/model_run."""
  model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
  model.uri = os.path.join(folder, 'model')
  model_run.uri = os.path.join(folder, 'model_run')
  return {'model': [model], 'model_run': [model_run]}


def cluster_spec(workers: int, parameter_servers: int) -> Dict[str, List[str]]:
  """{job: [host:port]}: TF_CONFIG's cluster, on free loopback ports."""
  def addresses(count):
    return [f'127.0.0.1:{portpicker.pick_unused_port()}' for _ in range(count)]
  cluster = {'chief': addresses(1)}
  if workers:
    cluster['worker'] = addresses(workers)
  if parameter_servers:
    cluster['ps'] = addresses(parameter_servers)
  return cluster


def replica_command(input_dict: Dict[str, List[types.Artifact]],
                    output_dict: Dict[str, List[types.Artifact]],
                    exec_properties: Dict[str, Any]) -> List[str]:
  """The command of every replica, as TFX's Vertex job client builds it
  (generate_container_command needs no client: it is called unbound), with
  this interpreter for the image's `python`."""
  command = training_clients.AbstractJobClient.generate_container_command(
      None, input_dict, output_dict, exec_properties, REPLICA_EXECUTOR)
  assert command[0] == 'python', command
  return [sys.executable] + command[1:]


def run(input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any], log_dir: str, workers: int = 1,
        parameter_servers: int = 0,
        timeout_seconds: float = 900) -> List[Replica]:
  """Runs the Trainer on a local cluster; returns every replica's outcome.

  The chief and the workers must exit 0 (else ClusterError, naming the
  replica and its log). Parameter servers, and the workers of a
  parameter_server cluster, serve until the chief has finished, as on
  Vertex AI; they are then stopped.
  """
  os.makedirs(log_dir, exist_ok=True)
  cluster = cluster_spec(workers, parameter_servers)
  command = replica_command(input_dict, output_dict, exec_properties)
  processes = {}
  for job, addresses in cluster.items():
    for index in range(len(addresses)):
      tf_config = {'cluster': cluster, 'task': {'type': job, 'index': index}}
      log_path = os.path.join(log_dir, f'{job}-{index}.log')
      env = {**os.environ, 'TF_CONFIG': json.dumps(tf_config),
             'CUDA_VISIBLE_DEVICES': '-1'}
      with open(log_path, 'wb') as log:
        processes[(job, index, log_path)] = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT)
  servers_only = parameter_servers > 0
  must_finish = [key for key in processes
                 if key[0] == 'chief' or (key[0] == 'worker' and
                                          not servers_only)]
  deadline = time.monotonic() + timeout_seconds
  try:
    for key in must_finish:
      try:
        processes[key].wait(max(1.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        raise ClusterError(f'{key[0]}-{key[1]} did not finish within '
                           f'{timeout_seconds:.0f} s; see {key[2]}.') from None
  finally:
    for process in processes.values():
      if process.poll() is None:
        process.terminate()
    for process in processes.values():
      process.wait()
  replicas = [Replica(job, index, processes[(job, index, log)].returncode,
                      log) for job, index, log in processes]
  for replica in replicas:
    if (replica.type, replica.index, replica.log_path) in must_finish and (
        replica.returncode != 0):
      raise ClusterError(f'{replica.name} failed (exit {replica.returncode});'
                         f' see {replica.log_path}.')
  return replicas


def main(argv=None) -> int:
  """python -m models.local_cluster: a finished run's Trainer, again, on a
  local cluster of --workers workers (and --parameter-servers)."""
  import argparse  # pylint: disable=g-import-not-at-top
  from lineage.history import History, NotFound  # pylint: disable=g-import-not-at-top
  from pipeline import metadata_store  # pylint: disable=g-import-not-at-top
  from pipeline.config import ConfigError, load_config  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog='python -m models.local_cluster', description=main.__doc__)
  parser.add_argument('--config', default='configs/local.yaml')
  parser.add_argument('--run', default='latest',
                      help='the run whose Trainer to train again')
  parser.add_argument('--distribution', default='multi_worker_mirrored',
                      choices=['multi_worker_mirrored', 'parameter_server'])
  parser.add_argument('--workers', type=int, default=1)
  parser.add_argument('--parameter-servers', type=int, default=0)
  parser.add_argument('--train-steps', type=int, default=0,
                      help='default: the run\'s')
  parser.add_argument('--output', default='runs/local_cluster',
                      help='where the model, its run folder and the '
                      'replicas\' logs go')
  args = parser.parse_args(argv)
  if min(args.workers, args.parameter_servers, args.train_steps) < 0:
    parser.error('--workers, --parameter-servers and --train-steps must not '
                 'be negative.')
  if args.distribution == 'parameter_server' and not (
      args.workers and args.parameter_servers):
    parser.error('--distribution parameter_server needs --workers and '
                 '--parameter-servers of at least 1 each.')
  try:
    config = load_config(args.config)
    history = History(metadata_store.open_store(config, read_only=True),
                      config.pipeline_name)
    trainer = recorded_trainer(history, history.run(args.run))
    output = os.path.abspath(args.output)
    print(f'Training run {args.run}\'s Trainer under {args.distribution} on '
          f'a chief, {args.workers} worker(s) and {args.parameter_servers} '
          f'parameter server(s); logs in {output}/logs', flush=True)
    replicas = run(trainer.inputs, outputs_in(output),
                   trainer.with_distribution(args.distribution,
                                             args.train_steps),
                   os.path.join(output, 'logs'), workers=args.workers,
                   parameter_servers=args.parameter_servers)
  except (ConfigError, NotFound, ClusterError, ValueError,
          metadata_store.StoreError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  for replica in replicas:
    print(f'{replica.name}: exit {replica.returncode}')
  print(f'Model: {os.path.join(output, "model", "Format-Serving")}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
