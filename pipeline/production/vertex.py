"""What changes when the pipeline runs on Google Cloud, and nothing else.

create_pipeline (pipeline/pipeline.py) builds the same graph for every runner.
When the configuration has a `vertex` section, these functions supply the
Google Cloud kind of four nodes:
- the session source: a RunParameters step turns the run's runtime parameters
  (car model, date range, training steps) into BigQueryExampleGen's queries,
  built by pipeline/production/bigquery.py, and the Trainer's TrainArgs;
- the Tuner and the Trainer from tfx.extensions.google_cloud_ai_platform, on
  Vertex Training machines from the configuration: the Tuner's flock, and
  the Trainer's cluster of worker pools (chief, workers, parameter servers),
  every replica running pipeline/production/distributed_trainer.py's
  executor;
- the Pusher, which adds a version to one Vertex AI Model and deploys it to
  an endpoint as a canary (pipeline/production/vertex_pusher.py), served by
  the serving image of the same commit as the component image, or by a
  prebuilt TF Serving image;
and the Dataflow arguments of every Beam component. `VertexPlatform`, at the
end, offers them to create_pipeline with the methods of pipeline/platform.py's
LocalPlatform.
"""

import json
import os
import posixpath
from typing import Any, Dict, List, Optional, Tuple

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.extensions.google_cloud_ai_platform.tuner import executor as tuner_executor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from models import vizier
from pipeline import settings
from pipeline.code_version import code_version
from pipeline.config import Config, TrainerCluster
from pipeline.platform import SessionSource
from pipeline.production import (bigquery, distributed_trainer,
                                 runtime_parameters, vertex_pusher)

VERTEX_PUSHER_MODULE = 'pipeline.production.vertex_pusher'
# The Trainer's launcher and the executor of its replicas.
DISTRIBUTED_TRAINER_MODULE = 'pipeline.production.distributed_trainer'
# Where the Dockerfile puts the project inside the component image.
IMAGE_WORKDIR = '/pipeline'
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def declared_parameters(config: Config) -> Dict[str, Any]:
  """{name: RuntimeParameter}, their defaults taken from the configuration."""
  return {name: tfx.dsl.experimental.RuntimeParameter(
      name=name, ptype=type(default), default=default)
          for name, default in runtime_parameters.defaults(config).items()}


def run_settings(car_model: str, date_from: str, date_to: str,
                 train_steps: int, source: str) -> Tuple[str, str]:
  """(ExampleGen's input_config, the Trainer's train_args), as proto JSON.

  `source` is the JSON of the table, columns, id column and splits. A car
  model or a date that could change a query's meaning raises the query
  builder's QueryError, which names the parameter.
  """
  source = json.loads(source)
  input_config = bigquery.input_config(
      source['table'], source['columns'], source['id_column'],
      source['splits'],
      session_filter=bigquery.SessionFilter(car_model, date_from, date_to))
  if train_steps <= 0:
    raise bigquery.QueryError(
        'train_steps', f'must be a positive number, got {train_steps}.')
  return (proto_utils.proto_to_json(input_config),
          proto_utils.proto_to_json(tfx.proto.TrainArgs(num_steps=train_steps)))


@tfx.dsl.components.component
def RunParameters(  # pylint: disable=invalid-name
    car_model: tfx.dsl.components.Parameter[str],
    date_from: tfx.dsl.components.Parameter[str],
    date_to: tfx.dsl.components.Parameter[str],
    train_steps: tfx.dsl.components.Parameter[int],
    source: tfx.dsl.components.Parameter[str],
    input_config: tfx.dsl.components.OutputArtifact[standard_artifacts.String],
    train_args: tfx.dsl.components.OutputArtifact[standard_artifacts.String]):
  """Checks a run's parameters; writes ExampleGen's queries and TrainArgs,
  before anything reads BigQuery (see run_settings)."""
  input_config.value, train_args.value = run_settings(
      car_model, date_from, date_to, train_steps, source)


def schema_columns(config: Config) -> List[str]:
  """Every column the curated schema declares, the session id first: what a
  local run reads from its files, ExampleGen reads from BigQuery."""
  schema = schema_pb2.Schema()
  with open(config.schema, encoding='utf-8') as f:
    text_format.Parse(f.read(), schema)
  names = [feature.name for feature in schema.feature]
  id_column = config.data.id_column
  return [id_column] + [name for name in names if name != id_column]


def session_source(config: Config) -> SessionSource:
  """The RunParameters and BigQueryExampleGen nodes, and the Trainer's
  train_args from the run's parameters."""
  run_parameters = RunParameters(
      **declared_parameters(config),
      source=json.dumps({
          'table': config.data.table,
          'columns': schema_columns(config),
          'id_column': config.data.id_column,
          'splits': config.splits.model_dump(),
      }))
  example_gen = tfx.extensions.google_cloud_big_query.BigQueryExampleGen(
      input_config=run_parameters.outputs['input_config'].future()[0].value,
      # The queries make the splits; ExampleGen must not split again.
      output_config=tfx.proto.Output())
  return SessionSource(
      nodes=[run_parameters, example_gen],
      train_args=run_parameters.outputs['train_args'].future()[0].value)


def image_path(path: str) -> str:
  """Where a file of this checkout is inside the component image."""
  if '://' in path or not path.startswith(PROJECT_ROOT + os.sep):
    return path
  return posixpath.join(IMAGE_WORKDIR, *os.path.relpath(
      path, PROJECT_ROOT).split(os.sep))


def beam_pipeline_args(config: Config) -> List[str]:
  """Dataflow for every Beam component, plus any configured extra args."""
  vertex = config.vertex
  return [
      '--runner=DataflowRunner',
      f'--project={vertex.project}',
      f'--region={vertex.region}',
      f'--temp_location={vertex.dataflow.temp_location}',
      f'--service_account_email={vertex.service_account}',
      # Dataflow workers install repairml from the image's checkout.
      '--setup_file=./setup.py',
      f'--machine_type={vertex.dataflow.machine_type}',
      f'--max_num_workers={vertex.dataflow.max_num_workers}',
  ] + list(config.beam_args)


# Vertex AI reads a pool's role from its place in worker_pool_specs: the chief
# (workerpool0, exactly one replica), the workers, the parameter servers. Its
# TF_CONFIG names their tasks chief, worker and ps.
TRAINER_POOLS = ('chief', 'workers', 'parameter_servers')


def trainer_image(config: Config, component_image: str) -> str:
  """The image every replica of the Trainer runs: vertex.trainer.image with
  the component image's tag (a build of the same commit, e.g. with GPU
  libraries), or the component image itself when that is ''."""
  image = config.vertex.trainer.image
  return f'{image}:{image_tag(component_image)}' if image else component_image


def _machine_spec(machines) -> Dict[str, Any]:
  """Vertex AI's MachineSpec of a Machines or a TunerFlock."""
  spec = {'machine_type': machines.machine_type}
  if machines.accelerator_type:
    spec['accelerator_type'] = machines.accelerator_type
    spec['accelerator_count'] = machines.accelerator_count
  return spec


def _worker_pool(machines, image: str, replicas: int) -> Dict[str, Any]:
  return {'machine_spec': _machine_spec(machines),
          'replica_count': replicas,
          'container_spec': {'image_uri': image}}


def trainer_worker_pools(cluster: TrainerCluster,
                         image: str) -> List[Dict[str, Any]]:
  """The cluster's worker_pool_specs, in Vertex AI's order (TRAINER_POOLS).

  Pools without replicas are left out at the end. One before a pool that is
  used stays in as `{}`, since the order says which pool is which (Vertex
  AI's distributed training guide). The configuration never asks for that
  (parameter servers need workers), and it would not reach Vertex AI empty:
  TFX's VertexJobClient gives every pool without a container_spec TFX's own
  image and the executor command (training_clients.py, create_training_job).
  """
  pools = [getattr(cluster, name) for name in TRAINER_POOLS]
  specs = [_worker_pool(machines, image, machines.replica_count)
           if machines.replica_count else {} for machines in pools]
  while specs and not specs[-1]:
    specs.pop()
  return specs


def trainer_custom_config(config: Config, image: str,
                          model_settings: Dict[str, Any]) -> Dict[str, Any]:
  """The Trainer's settings plus its Vertex Training cluster: the pools of
  vertex.trainer, each replica running `trainer_image(config, image)`."""
  vertex = config.vertex
  return {
      **model_settings,
      tfx.extensions.google_cloud_ai_platform.ENABLE_VERTEX_KEY: True,
      tfx.extensions.google_cloud_ai_platform.VERTEX_REGION_KEY: vertex.region,
      tfx.extensions.google_cloud_ai_platform.TRAINING_ARGS_KEY: {
          'project': vertex.project,
          'job_spec': {
              'worker_pool_specs': trainer_worker_pools(
                  vertex.trainer, trainer_image(config, image)),
              'service_account': vertex.service_account,
          },
      },
  }


def tuner_custom_config(config: Config, image: str,
                        model_settings: Dict[str, Any]) -> Dict[str, Any]:
  """The Tuner's settings plus its flock of Vertex Training workers: one
  chief and parallel_trials - 1 workers, each running trials on a machine
  of vertex.tuner (with its accelerators, if any); and who decides the
  trials (vertex.tuner.service): with vizier, the project, region and
  pipeline name of the Vizier study (models/vizier.py)."""
  vertex = config.vertex
  parallel = vertex.tuner.parallel_trials
  pools = [_worker_pool(vertex.tuner, image, 1)]
  if parallel > 1:
    pools.append(_worker_pool(vertex.tuner, image, parallel - 1))
  return {
      **model_settings,
      tfx.extensions.google_cloud_ai_platform.ENABLE_VERTEX_KEY: True,
      tfx.extensions.google_cloud_ai_platform.VERTEX_REGION_KEY: vertex.region,
      tuner_executor.TUNING_ARGS_KEY: {
          'project': vertex.project,
          'job_spec': {'worker_pool_specs': pools,
                       'service_account': vertex.service_account},
      },
      tuner_executor.REMOTE_TRIALS_WORKING_DIR_KEY: posixpath.join(
          config.paths.pipeline_root, 'tuner_trials'),
      vizier.SETTINGS_KEY: vizier.tuner_settings(
          vertex.tuner.service, vertex.project, vertex.region,
          config.pipeline_name),
  }


def tuner(config: Config, image: str, model_settings: Dict[str, Any],
          **inputs) -> tfx.extensions.google_cloud_ai_platform.Tuner:
  return tfx.extensions.google_cloud_ai_platform.Tuner(
      tune_args=tfx.proto.TuneArgs(
          num_parallel_trials=config.vertex.tuner.parallel_trials),
      custom_config=tuner_custom_config(config, image, model_settings),
      **inputs)


def trainer(config: Config, image: str, model_settings: Dict[str, Any],
            **inputs) -> distributed_trainer.Trainer:
  """The Vertex Training Trainer, whose every replica runs
  pipeline/components/trainer_executor.py's ReplicaExecutor."""
  return distributed_trainer.Trainer(
      custom_config=trainer_custom_config(config, image, model_settings),
      **inputs)


def image_tag(image: str) -> str:
  """The tag of an image reference such as europe-docker.pkg.dev/p/r/x:tag."""
  name, _, tag = image.rpartition(':')
  if not name or '/' in tag or '@' in image:
    raise ValueError(f'The image {image} has no tag.')
  return tag


def serving_image(config: Config, component_image: str) -> str:
  """The image that serves every version the Pusher deploys.

  repairml's serving image is built from the same commit as the component
  image (make push-image, make push-serving-image), so it takes the
  component image's tag: the git commit, or --image-tag. tf_serving takes
  the configured TF Serving image as it is.
  """
  vertex = config.vertex
  if vertex.endpoint.serving_container == vertex_pusher.TF_SERVING:
    return vertex.endpoint.tf_serving_image
  return f'{vertex.serving_image}:{image_tag(component_image)}'


def pusher(config: Config, model_code_version: str, component_image: str,
           **inputs) -> tfx.components.Pusher:
  """Adds the blessed model as a new version of one Vertex AI Model, served
  by `serving_image()`, and deploys it to the endpoint with the configured
  share of traffic, keeping `vertex.endpoint.keep_deployed` versions deployed.

  The custom_config keys are the Vertex Pusher extension's; its component
  class takes no custom executor, so the standard one carries ours.
  """
  vertex, endpoint = config.vertex, config.vertex.endpoint
  return tfx.components.Pusher(
      custom_config=vertex_pusher.custom_config(
          project=vertex.project, region=vertex.region,
          serving_image=serving_image(config, component_image),
          serving_container=endpoint.serving_container,
          model_display_name=endpoint.model_display_name,
          endpoint_display_name=endpoint.endpoint_display_name,
          traffic_percentage=endpoint.traffic_percentage,
          machine_type=endpoint.machine_type,
          min_replica_count=endpoint.min_replica_count,
          max_replica_count=endpoint.max_replica_count,
          code_version=model_code_version,
          keep_deployed=endpoint.keep_deployed,
          pipeline_name=config.pipeline_name,
          pusher_code_version=code_version(VERTEX_PUSHER_MODULE)),
      custom_executor_spec=executor_spec.ExecutorClassSpec(
          vertex_pusher.Executor),
      **inputs)


class VertexPlatform:
  """Google Cloud: BigQuery, Vertex Training, Vertex AI endpoints, Dataflow.

  The same methods as pipeline/platform.py's LocalPlatform.
  """

  def __init__(self, config: Config, image: Optional[str]):
    if not image:
      raise ValueError('A Vertex AI pipeline needs the component image.')
    self._config = config
    self._image = image

  def session_source(self) -> SessionSource:
    return session_source(self._config)

  def schema_file(self) -> str:
    return image_path(self._config.schema)

  def tuner(self, **inputs):
    return tuner(self._config, self._image,
                 settings.model_settings(self._config, settings.TUNER_MODULE),
                 **inputs)

  def trainer(self, **inputs):
    return trainer(self._config, self._image, settings.model_settings(
        self._config, executor_module=DISTRIBUTED_TRAINER_MODULE), **inputs)

  def pusher(self, **inputs):
    # The version's code_version label names the code that built the model.
    return pusher(self._config, code_version(settings.TRAINER_MODULE),
                  self._image, **inputs)

  def beam_pipeline_args(self) -> List[str]:
    return beam_pipeline_args(self._config)
