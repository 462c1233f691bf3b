"""The pipeline compiled for Vertex AI, offline: the KFP spec, its runtime
parameters, queries, Dataflow and Vertex settings; the same graph as the local
pipeline; and what `repairml submit` would send."""

import json
import os
import re
import typing
from pathlib import Path

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

import kubeflow_runner
from fake_vertex_jobs import vertex_jobs  # pylint: disable=unused-import
from pipeline import config as config_module
from pipeline import code_version, settings
from pipeline.config import ConfigError, load_config
from pipeline.production import submission, vertex, vertex_pusher

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VERTEX_CONFIG = str(PROJECT_ROOT / 'configs' / 'vertex.yaml')
LOCAL_CONFIG = str(PROJECT_ROOT / 'configs' / 'local.yaml')
TAG = '0123456789ab'
IMAGE = ('europe-west4-docker.pkg.dev/my-gcp-project/repairml/repairml:' + TAG)
# Built from the same commit (make push-serving-image), so the same tag.
SERVING_IMAGE = ('europe-west4-docker.pkg.dev/my-gcp-project/repairml/'
                 'repairml-serving:' + TAG)

# Each node and the nodes it waits for.
UPSTREAM = {
    'RunParameters': set(),
    'BigQueryExampleGen': {'RunParameters'},
    'CuratedSchema': set(),
    'StatisticsGen': {'BigQueryExampleGen', 'CuratedSchema'},
    'ProposedSchema': {'StatisticsGen'},
    'ExampleValidator': {'CuratedSchema', 'StatisticsGen'},
    'DataGate': {'ExampleValidator'},
    'Transform': {'BigQueryExampleGen', 'CuratedSchema', 'DataGate'},
    'Tuner': {'Transform'},
    'Trainer': {'RunParameters', 'Transform', 'Tuner'},
    'LatestBlessedModel-model-resolver': set(),
    'LatestBlessedModel-model-blessing-resolver': set(),
    'Evaluator': {'BigQueryExampleGen', 'Trainer',
                  'LatestBlessedModel-model-resolver'},
    'Pusher': {'Evaluator', 'Trainer'},
}
BEAM_COMPONENTS = ('BigQueryExampleGen', 'StatisticsGen', 'Transform',
                   'Evaluator')


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
  """The job JSON `kubeflow_runner.py --config configs/vertex.yaml` writes."""
  output = tmp_path_factory.mktemp('compiled') / 'pipeline.json'
  exit_code = kubeflow_runner.main(['--config', VERTEX_CONFIG, '--output',
                                    str(output), '--image-tag', TAG])
  assert exit_code == 0
  with open(output, encoding='utf-8') as f:
    return str(output), json.load(f)


@pytest.fixture(scope='module')
def spec(compiled) -> pipeline_spec_pb2.PipelineSpec:
  _, job = compiled
  return json_format.ParseDict(job['pipelineSpec'],
                               pipeline_spec_pb2.PipelineSpec())


def _parameters(spec, task: str):
  """{name: constant value} of a task's compiled parameters."""
  inputs = spec.root.dag.tasks[task].inputs.parameters
  return {name: json_format.MessageToDict(value.runtime_value.constant)
          for name, value in inputs.items()
          if value.HasField('runtime_value')}


def _custom_config(spec, task: str):
  return json.loads(_parameters(spec, task)['custom_config'])


def test_compiles_to_a_kfp_pipeline_job_without_credentials(compiled, spec):
  _, job = compiled
  assert set(job) == {'displayName', 'labels', 'pipelineSpec',
                      'runtimeConfig'}
  assert job['displayName'] == 'repairml'
  assert spec.pipeline_info.name == 'repairml'
  assert job['runtimeConfig']['gcsOutputDirectory'] == (
      'gs://my-gcp-project-repairml/pipeline-root')


def test_every_component_waits_for_its_upstream_components(spec):
  tasks = spec.root.dag.tasks
  assert {name: set(task.dependent_tasks) for name, task in tasks.items()} == (
      UPSTREAM)


def test_every_step_runs_the_component_image_of_this_commit(spec):
  executors = spec.deployment_spec['executors']
  containers = [executor['container'] for executor in executors.values()
                if 'container' in executor]
  assert len(containers) == len(
      [t for t in UPSTREAM if not t.startswith('LatestBlessedModel')])
  for container in containers:
    assert container['image'] == IMAGE
    assert list(container['command']) == [
        'python', '-m',
        'tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor']


def test_runtime_parameters_are_declared_with_the_configured_defaults(
    compiled, spec):
  _, job = compiled
  declared = spec.root.input_definitions.parameters
  assert {name: pipeline_spec_pb2.ParameterType.ParameterTypeEnum.Name(
      parameter.parameter_type) for name, parameter in declared.items()} == {
          'car_model': 'STRING', 'date_from': 'STRING', 'date_to': 'STRING',
          'train_steps': 'NUMBER_INTEGER'}
  assert job['runtimeConfig']['parameterValues'] == {
      'car_model': '', 'date_from': '', 'date_to': '', 'train_steps': 2000}
  run_parameters = spec.root.dag.tasks['RunParameters'].inputs.parameters
  for name in declared:
    assert run_parameters[name].component_input_parameter == name


def test_example_gen_and_trainer_take_their_settings_from_the_run_parameters(
    spec):
  tasks = spec.root.dag.tasks
  for task, key in (('BigQueryExampleGen', 'input_config'),
                    ('Trainer', 'train_args')):
    produced = tasks[task].inputs.parameters[key].task_output_parameter
    assert produced.producer_task == 'RunParameters_task'
    assert produced.output_parameter_key == key


def test_the_queries_of_a_run_hold_its_filters(spec):
  # What the RunParameters step computes on Vertex AI from the compiled
  # source and a run's parameter values.
  source = _parameters(spec, 'RunParameters')['source']
  input_config, train_args = vertex.run_settings(
      'compact_suv', '2026-01-01', '2026-03-31', 500, source)

  splits = json.loads(input_config)['splits']
  assert [split['name'] for split in splits] == ['train', 'eval', 'test']
  for split in splits:
    query = split['pattern']
    assert 'FROM `my-gcp-project.repairml.sessions`' in query
    assert "`car_model` = 'compact_suv'" in query
    assert "CAST(`session_date` AS DATE) >= DATE '2026-01-01'" in query
    assert "CAST(`session_date` AS DATE) <= DATE '2026-03-31'" in query
    assert 'FARM_FINGERPRINT' in query
    # Every column of the curated schema, as a local run reads them.
    for column in ('`session_id`', '`span`', '`dtcs`', '`repair_labels`',
                   'CAST(`session_date` AS STRING) AS `session_date`'):
      assert column in query
  assert json.loads(train_args) == {'num_steps': 500}


def test_a_car_model_that_would_change_the_query_fails_the_run_parameters():
  source = json.dumps({'table': 'my-gcp-project.repairml.sessions',
                       'columns': ['session_id'], 'id_column': 'session_id',
                       'splits': {'train': 1}})
  with pytest.raises(ValueError, match='car_model'):
    vertex.run_settings("x' OR '1'='1", '', '', 100, source)


def test_beam_components_run_on_dataflow_with_the_image_setup_file(spec):
  executors = spec.deployment_spec['executors']
  for component in BEAM_COMPONENTS:
    args = list(executors[f'{component}_executor']['container']['args'])
    for expected in ('--runner=DataflowRunner', '--project=my-gcp-project',
                     '--region=europe-west4',
                     '--temp_location=gs://my-gcp-project-repairml/dataflow-tmp',
                     '--setup_file=./setup.py',
                     '--machine_type=n1-standard-4', '--max_num_workers=10'):
      assert expected in args, (component, expected)


# configs/vertex.yaml's Trainer cluster: a chief and one worker, one T4 each.
T4_MACHINE = {'machine_type': 'n1-standard-8',
              'accelerator_type': 'NVIDIA_TESLA_T4', 'accelerator_count': 1}
REPLICA_EXECUTOR = 'pipeline.components.trainer_executor.ReplicaExecutor'
SERVICE_ACCOUNT = 'repairml-pipelines@my-gcp-project.iam.gserviceaccount.com'


def test_trainer_runs_on_its_vertex_training_cluster(spec):
  custom_config = _custom_config(spec, 'Trainer')
  assert custom_config['ai_platform_enable_vertex'] is True
  assert custom_config['ai_platform_vertex_region'] == 'europe-west4'
  training = custom_config['ai_platform_training_args']
  assert training['project'] == 'my-gcp-project'
  # Pool 0 is the chief, pool 1 the workers; no parameter servers.
  assert training['job_spec']['worker_pool_specs'] == [
      {'machine_spec': T4_MACHINE, 'replica_count': 1,
       'container_spec': {'image_uri': IMAGE}},
      {'machine_spec': T4_MACHINE, 'replica_count': 1,
       'container_spec': {'image_uri': IMAGE}},
  ]
  assert training['job_spec']['service_account'] == SERVICE_ACCOUNT
  # The model settings travel with it, as in a local run.
  assert custom_config['training']['train_steps'] == 2000
  assert custom_config['training']['distribution'] == 'multi_worker_mirrored'
  assert _parameters(spec, 'Trainer')['run_fn'] == 'models.training.run_fn'


def test_the_trainer_step_launches_repairml_s_distributed_trainer(spec):
  args = list(spec.deployment_spec['executors']['Trainer_executor'][
      'container']['args'])
  launcher = args[args.index('--executor_class_path') + 1]
  assert launcher == 'pipeline.production.distributed_trainer.Executor'


def test_the_trainer_s_code_version_follows_the_replicas_executor(spec):
  # The replicas' executor is imported by name, like run_fn: editing it must
  # change the Trainer's cache key even under the same image tag.
  files = code_version.source_files(
      [settings.TRAINER_MODULE, vertex.DISTRIBUTED_TRAINER_MODULE])
  assert {'pipeline/production/distributed_trainer.py',
          'pipeline/components/trainer_executor.py',
          'models/distribution.py'} <= set(files)
  assert _custom_config(spec, 'Trainer')['code_version'] == (
      code_version.code_version(settings.TRAINER_MODULE,
                                vertex.DISTRIBUTED_TRAINER_MODULE))
  assert _custom_config(spec, 'Trainer')['code_version'] != (
      code_version.code_version(settings.TRAINER_MODULE))


PIPELINE_ROOT = 'gs://my-gcp-project-repairml/pipeline-root'


def _artifact(kind, uri, **properties):
  # pylint: disable-next=g-import-not-at-top
  from tfx.types import standard_artifacts
  artifact = getattr(standard_artifacts, kind)()
  artifact.uri = uri
  for name, value in properties.items():
    setattr(artifact, name, value)
  return artifact


def _run_the_trainer_step(spec):
  """Runs the compiled Trainer step's executor as Vertex AI Pipelines would:
  its compiled parameters, the train_args RunParameters computes, and
  artifacts of its inputs and outputs. Returns (inputs, outputs)."""
  # pylint: disable-next=g-import-not-at-top
  from pipeline.production import distributed_trainer
  _, train_args = vertex.run_settings(
      '', '', '', 2000, _parameters(spec, 'RunParameters')['source'])
  exec_properties = {**_parameters(spec, 'Trainer'), 'train_args': train_args}
  inputs = {
      'examples': [_artifact('Examples', f'{PIPELINE_ROOT}/Transform/'
                             'transformed_examples/7',
                             split_names='["train", "eval", "test"]')],
      'transform_graph': [_artifact('TransformGraph', f'{PIPELINE_ROOT}/'
                                    'Transform/transform_graph/7')],
      'hyperparameters': [_artifact('HyperParameters', f'{PIPELINE_ROOT}/'
                                    'Tuner/best_hyperparameters/8')],
  }
  outputs = {'model': [_artifact('Model', f'{PIPELINE_ROOT}/Trainer/model/9')],
             'model_run': [_artifact('ModelRun', f'{PIPELINE_ROOT}/Trainer/'
                                     'model_run/9')]}
  distributed_trainer.Executor().Do(inputs, outputs, exec_properties)
  return inputs, outputs


def _flag(command, name):
  return command[command.index(name) + 1]


def test_the_trainer_step_creates_one_custom_job_of_the_cluster(spec,
                                                                vertex_jobs):
  # pylint: disable-next=g-import-not-at-top
  from google.cloud.aiplatform_v1.types import accelerator_type
  _run_the_trainer_step(spec)

  ((endpoint, request),) = vertex_jobs.created
  assert endpoint == 'europe-west4-aiplatform.googleapis.com'
  assert request.parent == 'projects/my-gcp-project/locations/europe-west4'
  job = request.custom_job
  # TFX names the job (no display name is configured).
  assert re.fullmatch(r'tfx_\d{14}_[0-9a-f]{8}', job.display_name)
  assert job.job_spec.service_account == SERVICE_ACCOUNT
  pools = job.job_spec.worker_pool_specs
  assert [(pool.machine_spec.machine_type, pool.machine_spec.accelerator_type,
           pool.machine_spec.accelerator_count, pool.replica_count,
           pool.container_spec.image_uri) for pool in pools] == [
               ('n1-standard-8', accelerator_type.AcceleratorType.
                NVIDIA_TESLA_T4, 1, 1, IMAGE)] * 2
  # Vertex AI found it done at the first look: no polling.
  assert vertex_jobs.asked == [f'{request.parent}/customJobs/1']


def test_every_replica_runs_the_replica_executor(spec, vertex_jobs):
  # pylint: disable=g-import-not-at-top
  from tfx.types import artifact_utils
  from tfx.utils import import_utils
  from pipeline.components import trainer_executor
  inputs, outputs = _run_the_trainer_step(spec)

  commands = [list(pool.container_spec.command) for pool in
              vertex_jobs.custom_job().job_spec.worker_pool_specs]
  assert len(commands) == 2 and commands[0] == commands[1]
  command = commands[0]
  assert command[:5] == ['python', '-m', 'tfx.scripts.run_executor',
                         '--executor_class_path', REPLICA_EXECUTOR]
  # tfx.scripts.run_executor finds the class by that path.
  assert import_utils.import_class_by_path(REPLICA_EXECUTOR) is (
      trainer_executor.ReplicaExecutor)
  # And each replica gets the step's artifacts and properties.
  sent_inputs = artifact_utils.parse_artifact_dict(_flag(command, '--inputs'))
  sent_outputs = artifact_utils.parse_artifact_dict(_flag(command,
                                                          '--outputs'))
  assert {k: [a.uri for a in v] for k, v in sent_inputs.items()} == {
      k: [a.uri for a in v] for k, v in inputs.items()}
  assert {k: [a.uri for a in v] for k, v in sent_outputs.items()} == {
      k: [a.uri for a in v] for k, v in outputs.items()}
  properties = json.loads(_flag(command, '--exec-properties'))
  assert properties['run_fn'] == 'models.training.run_fn'
  assert json.loads(properties['train_args']) == {'num_steps': 2000}
  assert json.loads(properties['custom_config'])['training'][
      'distribution'] == 'multi_worker_mirrored'


def test_tuner_runs_parallel_trials_on_vertex_training(spec):
  custom_config = _custom_config(spec, 'Tuner')
  pools = custom_config['ai_platform_tuning_args']['job_spec'][
      'worker_pool_specs']
  assert [pool['replica_count'] for pool in pools] == [1, 2]
  assert all(pool['container_spec'] == {'image_uri': IMAGE} for pool in pools)
  # No accelerators configured: none asked for.
  assert all(pool['machine_spec'] == {'machine_type': 'n1-standard-4'}
             for pool in pools)
  assert json.loads(_parameters(spec, 'Tuner')['tune_args']) == {
      'num_parallel_trials': 3}
  assert custom_config['remote_trials_working_dir'].startswith(
      'gs://my-gcp-project-repairml/pipeline-root/')


def test_pusher_adds_a_version_to_one_model_and_deploys_a_canary(spec):
  serving = _custom_config(spec, 'Pusher')['ai_platform_serving_args']
  assert serving['project_id'] == 'my-gcp-project'
  assert serving['model_display_name'] == 'repairml'
  assert serving['endpoint_display_name'] == 'repairml'
  assert serving['traffic_percentage'] == 10
  assert serving['keep_deployed'] == 2
  assert serving['pipeline_name'] == 'repairml'
  assert re.fullmatch(r'[0-9a-f]{16}', serving['code_version'])
  executor = spec.deployment_spec['executors']['Pusher_executor']
  assert ('pipeline.production.vertex_pusher.Executor' in
          executor['container']['args'])


def test_the_pusher_deploys_the_serving_image_of_this_commit(compiled, spec):
  custom_config = _custom_config(spec, 'Pusher')
  _, job = compiled

  assert custom_config['ai_platform_vertex_container_image_uri'] == (
      SERVING_IMAGE)
  assert custom_config['ai_platform_serving_args']['serving_container'] == (
      'repairml')
  # Pinned in the job itself, not resolved when it runs; `repairml submit`
  # checks that it exists, with the component image.
  assert SERVING_IMAGE in json.dumps(job)
  # pylint: disable-next=protected-access
  assert submission._serving_images(job['pipelineSpec']) == {SERVING_IMAGE}
  # The executor reads it back as the container Vertex AI will run.
  container = vertex_pusher.push_settings(custom_config).container
  assert (container.image_uri, container.predict_route, container.health_route,
          container.ports) == (SERVING_IMAGE, '/predict', '/health', (8080,))


def _vertex_config(tmp_path, vertex_yaml):
  path = tmp_path / 'vertex.yaml'
  path.write_text(f'base: {VERTEX_CONFIG}\nvertex:\n{vertex_yaml}',
                  encoding='utf-8')
  return load_config(str(path))


def _pusher_config(config):
  # pylint: disable=g-import-not-at-top
  from tfx.types import channel, standard_artifacts
  pusher = vertex.pusher(config, '0' * 16, IMAGE, model=channel.Channel(
      type=standard_artifacts.Model))
  return json.loads(pusher.exec_properties['custom_config'])


def test_a_serving_image_of_its_own_gets_the_component_image_tag(tmp_path):
  config = _vertex_config(
      tmp_path, '  serving_image: europe-docker.pkg.dev/ops/images/server\n')

  assert _pusher_config(config)['ai_platform_vertex_container_image_uri'] == (
      f'europe-docker.pkg.dev/ops/images/server:{TAG}')


def test_with_tf_serving_the_pusher_deploys_the_prebuilt_image(tmp_path):
  config = _vertex_config(tmp_path, '  endpoint:\n'
                          '    serving_container: tf_serving\n')

  custom_config = _pusher_config(config)

  assert custom_config['ai_platform_vertex_container_image_uri'] == (
      config_module.TF_SERVING_IMAGE)
  assert custom_config['ai_platform_serving_args']['serving_container'] == (
      'tf_serving')


def _config(tmp_path, yaml_text):
  """configs/vertex.yaml with `yaml_text` laid over it, from a temp copy."""
  path = tmp_path / 'vertex.yaml'
  path.write_text(f'base: {VERTEX_CONFIG}\n{yaml_text}', encoding='utf-8')
  return load_config(str(path))


def _trainer_pools(config):
  # pylint: disable=g-import-not-at-top
  from tfx.types import channel, standard_artifacts
  trainer = vertex.trainer(config, IMAGE, {}, run_fn=settings.RUN_FN,
                           examples=channel.Channel(
                               type=standard_artifacts.Examples))
  custom_config = json.loads(trainer.exec_properties['custom_config'])
  return custom_config['ai_platform_training_args']['job_spec'][
      'worker_pool_specs']


def test_parameter_servers_are_the_third_pool(tmp_path):
  config = _config(tmp_path, """
training:
  distribution: parameter_server
vertex:
  trainer:
    workers:
      replica_count: 2
    parameter_servers:
      replica_count: 1
      machine_type: n1-highmem-4
""")

  assert _trainer_pools(config) == [
      {'machine_spec': T4_MACHINE, 'replica_count': 1,
       'container_spec': {'image_uri': IMAGE}},
      {'machine_spec': T4_MACHINE, 'replica_count': 2,
       'container_spec': {'image_uri': IMAGE}},
      {'machine_spec': {'machine_type': 'n1-highmem-4'}, 'replica_count': 1,
       'container_spec': {'image_uri': IMAGE}},
  ]


def test_one_machine_s_gpus_are_one_pool(tmp_path):
  config = _config(tmp_path, """
training:
  distribution: mirrored
vertex:
  trainer:
    chief:
      accelerator_count: 4
    workers:
      replica_count: 0
""")

  assert _trainer_pools(config) == [
      {'machine_spec': {**T4_MACHINE, 'accelerator_count': 4},
       'replica_count': 1, 'container_spec': {'image_uri': IMAGE}}]


def test_an_unused_pool_before_a_used_one_stays_as_an_empty_placeholder():
  # Vertex AI knows a pool by its place. The configuration never asks for
  # this (parameter servers need workers), the pools function keeps to it.
  cluster = config_module.TrainerCluster(
      chief=config_module.Machines(machine_type='n1-standard-4'),
      parameter_servers=config_module.Machines(machine_type='n1-highmem-4'))

  assert vertex.trainer_worker_pools(cluster, IMAGE) == [
      {'machine_spec': {'machine_type': 'n1-standard-4'}, 'replica_count': 1,
       'container_spec': {'image_uri': IMAGE}},
      {},
      {'machine_spec': {'machine_type': 'n1-highmem-4'}, 'replica_count': 1,
       'container_spec': {'image_uri': IMAGE}},
  ]


def test_a_trainer_image_of_its_own_gets_the_component_image_tag(tmp_path):
  gpu_image = 'europe-docker.pkg.dev/ops/images/repairml-gpu'
  config = _config(tmp_path, f'vertex:\n  trainer:\n    image: {gpu_image}\n')

  pools = _trainer_pools(config)

  assert [pool['container_spec'] for pool in pools] == [
      {'image_uri': f'{gpu_image}:{TAG}'}] * 2
  # The Tuner's trials keep the component image.
  tuner_pools = vertex.tuner_custom_config(config, IMAGE, {})[
      'ai_platform_tuning_args']['job_spec']['worker_pool_specs']
  assert {pool['container_spec']['image_uri'] for pool in tuner_pools} == {
      IMAGE}


def test_the_tuner_s_machines_get_its_accelerators(tmp_path):
  config = _config(tmp_path, 'vertex:\n  tuner:\n    accelerator_type: '
                   'NVIDIA_L4\n    accelerator_count: 1\n')

  pools = vertex.tuner_custom_config(config, IMAGE, {})[
      'ai_platform_tuning_args']['job_spec']['worker_pool_specs']

  assert [(pool['machine_spec'], pool['replica_count']) for pool in pools] == [
      ({'machine_type': 'n1-standard-4', 'accelerator_type': 'NVIDIA_L4',
        'accelerator_count': 1}, 1),
      ({'machine_type': 'n1-standard-4', 'accelerator_type': 'NVIDIA_L4',
        'accelerator_count': 1}, 2)]


def test_the_serving_image_needs_a_tagged_component_image():
  with pytest.raises(ValueError, match='has no tag'):
    vertex.serving_image(load_config(VERTEX_CONFIG),
                         'europe-west4-docker.pkg.dev/p/repairml/repairml')


def test_the_configuration_and_the_pusher_know_the_same_servers():
  assert typing.get_args(config_module.ServingContainer) == typing.get_args(
      vertex_pusher.ServingContainerKind) == (vertex_pusher.REPAIRML,
                                              vertex_pusher.TF_SERVING)


@pytest.mark.parametrize('vertex_yaml, message', [
    ('  endpoint:\n    serving_image: us-docker.pkg.dev/vertex-ai/x:latest\n',
     r'vertex\.endpoint\.serving_image: no longer read: the Pusher deploys '
     r'the repairml serving image \(vertex\.serving_image\) by default; for '
     r'the prebuilt TF Serving image set serving_container: tf_serving and '
     r'tf_serving_image\.$'),
    ('  endpoint:\n    serving_container: tensorflow\n',
     r"vertex\.endpoint\.serving_container: must be one of 'repairml' or "
     r"'tf_serving', got 'tensorflow'\.$"),
    ('  serving_image: europe-docker.pkg.dev/p/r/serving:v1\n',
     r'vertex\.serving_image: leave the tag out'),
    ('  serving_image: ""\n', r'vertex\.serving_image: must not be empty\.$'),
])
def test_serving_settings_are_checked_when_loaded(tmp_path, vertex_yaml,
                                                   message):
  with pytest.raises(ConfigError, match=message) as raised:
    _vertex_config(tmp_path, vertex_yaml)
  assert '\n' not in str(raised.value)


@pytest.mark.parametrize('keep_deployed', [0, -1])
def test_keep_deployed_must_be_positive(tmp_path, keep_deployed):
  config = tmp_path / 'vertex.yaml'
  config.write_text(f'base: {VERTEX_CONFIG}\nvertex:\n  endpoint:\n'
                    f'    keep_deployed: {keep_deployed}\n', encoding='utf-8')

  with pytest.raises(ConfigError, match=(
      rf'vertex\.endpoint\.keep_deployed: must be a positive number, got '
      rf'{keep_deployed}')):
    load_config(str(config))


def test_the_curated_schema_is_read_from_the_component_image(spec):
  assert _parameters(spec, 'CuratedSchema')['schema_file'] == (
      f'{vertex.IMAGE_WORKDIR}/schema/schema.pbtxt')


def test_the_dockerfile_puts_the_project_where_the_pipeline_looks():
  dockerfile = (PROJECT_ROOT / 'Dockerfile').read_text(encoding='utf-8')
  assert f'WORKDIR {vertex.IMAGE_WORKDIR}' in dockerfile.splitlines()


def _graph(pipeline):
  """{node id: upstream node ids}, with the ExampleGen kind made neutral."""
  rename = {'FileBasedExampleGen': 'ExampleGen',
            'BigQueryExampleGen': 'ExampleGen'}
  return {rename.get(node.id, node.id): {rename.get(up.id, up.id)
                                         for up in node.upstream_nodes
                                         if up.id != 'RunParameters'}
          for node in pipeline.components if node.id != 'RunParameters'}


def test_local_and_vertex_pipelines_have_the_same_graph():
  from pipeline.pipeline import create_pipeline  # pylint: disable=g-import-not-at-top
  local = create_pipeline(load_config(LOCAL_CONFIG))
  production = create_pipeline(load_config(VERTEX_CONFIG), image=IMAGE)

  assert _graph(local) == _graph(production)
  kinds = lambda p: {n.id: f'{type(n).__module__}.{type(n).__name__}'  # pylint: disable=unnecessary-lambda-assignment
                     for n in p.components}
  differing = {node for node, kind in kinds(production).items()
               if kinds(local).get(node) != kind}
  # Only the data source differs in kind; the Tuner and Trainer are the
  # Vertex Training extensions; the Pusher carries the Vertex executor.
  assert differing == {'RunParameters', 'BigQueryExampleGen', 'Tuner',
                       'Trainer'}


def test_a_configuration_without_a_vertex_section_is_refused(capsys):
  assert kubeflow_runner.main(['--config', LOCAL_CONFIG, '--output',
                               os.devnull]) == 2
  err = capsys.readouterr().err
  assert 'no vertex section' in err and 'Traceback' not in err


def test_an_unsafe_car_model_is_refused_before_compiling(tmp_path, capsys):
  output = tmp_path / 'pipeline.json'
  assert kubeflow_runner.main([
      '--config', VERTEX_CONFIG, '--output', str(output), '--image-tag', TAG,
      '--submit', '--car-model', "x'; DROP TABLE sessions; --"]) == 2
  err = capsys.readouterr().err
  assert err.startswith('repairml: --car-model:') and 'Traceback' not in err
  assert not output.exists()


def test_a_bad_cron_is_refused_before_compiling(tmp_path, capsys):
  output = tmp_path / 'pipeline.json'
  assert kubeflow_runner.main([
      '--config', VERTEX_CONFIG, '--output', str(output), '--image-tag', TAG,
      '--schedule', '5-1 * * * *']) == 2
  err = capsys.readouterr().err
  assert err.startswith("repairml: --schedule '5-1 * * * *': the minute "
                        "'5-1' is a range from high to low")
  assert err.count('\n') == 1 and 'Traceback' not in err
  assert not output.exists()


class _Args:
  """The parsed command line of a submission."""

  def __init__(self, **given):
    self.car_model = self.date_from = self.date_to = None
    self.train_steps = self.schedule = self.kfp_host = None
    self.no_cache = False
    self.__dict__.update(given)


def _send(compiled, args, terminal):
  template, _ = compiled
  config = load_config(VERTEX_CONFIG)
  values = kubeflow_runner.parameter_values(config, args)
  kubeflow_runner.send(config, args, values, template, IMAGE, terminal)


def test_submit_sends_the_compiled_job_with_its_parameters_and_labels(
    compiled, recorded, capsys):
  import sys  # pylint: disable=g-import-not-at-top
  _send(compiled, _Args(car_model='compact_suv', train_steps=500,
                        no_cache=True), sys.stdout)

  job = recorded['job']
  assert recorded['checked'] is job
  assert recorded['service_account'] == (
      'repairml-pipelines@my-gcp-project.iam.gserviceaccount.com')
  resource = job.to_dict()
  runtime_config = resource['runtimeConfig']
  assert runtime_config['gcsOutputDirectory'] == (
      'gs://my-gcp-project-repairml/pipeline-root')
  assert runtime_config['parameterValues'] == {
      'car_model': 'compact_suv', 'train_steps': 500, 'date_from': '',
      'date_to': ''}
  assert resource['labels']['image-tag'] == TAG
  assert re.fullmatch(r'[0-9a-f]{12}', resource['labels']['git-commit'])
  assert resource['labels']['tfx_runner'] == 'kubeflow_v2'
  # The hashes `repairml lineage --vertex` shows, as a local run records them.
  from pipeline import run_provenance  # pylint: disable=g-import-not-at-top
  recorded_hashes = run_provenance.provenance(load_config(VERTEX_CONFIG))
  assert resource['labels']['config-sha256'] == recorded_hashes[
      'repairml_config_sha256'][:32]
  assert resource['labels']['lock-sha256'] == recorded_hashes[
      'repairml_lock_sha256'][:32]
  assert job.project == 'my-gcp-project'
  assert job.location == 'europe-west4'
  # --no-cache turns caching off in every task.
  tasks = resource['pipelineSpec']['root']['dag']['tasks']
  assert all(not task['cachingOptions'].get('enableCache', False)
             for task in tasks.values())
  assert 'submitted to Vertex AI Pipelines' in capsys.readouterr().out


def test_schedule_creates_a_schedule_of_the_compiled_job(compiled, recorded):
  import io  # pylint: disable=g-import-not-at-top
  terminal = io.StringIO()
  _send(compiled, _Args(schedule='0 3 * * 1'), terminal)

  assert recorded['cron'] == '0 3 * * 1'
  assert recorded['job'].to_dict()['runtimeConfig']['parameterValues'][
      'train_steps'] == 2000
  assert 'scheduled "0 3 * * 1"' in terminal.getvalue()


def test_scheduling_again_says_it_updated_the_schedule(compiled, recorded,
                                                       monkeypatch):
  import io  # pylint: disable=g-import-not-at-top
  names = []
  monkeypatch.setattr(
      submission, 'schedule',
      lambda job, cron, display_name, service_account: (
          names.append(display_name) or submission.Submission(
              'projects/p/schedules/s', 'https://console/s', created=False)))
  terminal = io.StringIO()

  _send(compiled, _Args(schedule='0 3 * * 1'), terminal)

  # The display name, which identifies the schedule, is the same every time.
  assert names == ['repairml schedule']
  assert terminal.getvalue().startswith(
      'scheduled "0 3 * * 1" (updated the schedule "repairml schedule"): '
      'projects/p/schedules/s')


def test_kfp_host_starts_a_run_on_the_kubeflow_cluster(compiled, monkeypatch):
  import io  # pylint: disable=g-import-not-at-top
  import kfp  # pylint: disable=g-import-not-at-top
  runs = []

  class FakeClient:

    def __init__(self, host):
      self.host = host

    def create_run_from_pipeline_package(self, **kwargs):
      runs.append((self.host, kwargs))
      return type('Run', (), {'run_id': 'run-1'})()

  monkeypatch.setattr(kfp, 'Client', FakeClient)
  _send(compiled, _Args(kfp_host='http://localhost:8080',
                        date_from='2026-01-01'), io.StringIO())

  ((host, kwargs),) = runs
  assert host == 'http://localhost:8080'
  assert kwargs['arguments']['date_from'] == '2026-01-01'
  assert kwargs['arguments']['train_steps'] == 2000
  assert kwargs['pipeline_root'] == 'gs://my-gcp-project-repairml/pipeline-root'


def test_a_cloud_refusal_is_one_line_and_exit_code_1(compiled, monkeypatch,
                                                      tmp_path, capfd):
  template, _ = compiled

  def compile_from_fixture(config, output, tag):
    del config, tag
    with open(template, encoding='utf-8') as source, open(
        output, 'w', encoding='utf-8') as target:
      target.write(source.read())
    return IMAGE

  def no_credentials():
    raise submission.SubmissionError(
        'no Google Cloud credentials: run `gcloud auth application-default '
        'login`')

  monkeypatch.setattr(kubeflow_runner, 'compile_pipeline',
                      compile_from_fixture)
  monkeypatch.setattr(submission, 'default_credentials', no_credentials)
  log_file = tmp_path / 'repairml.log'
  config = tmp_path / 'vertex.yaml'
  config.write_text(f'base: {VERTEX_CONFIG}\npaths:\n  log_file: {log_file}\n',
                    encoding='utf-8')

  exit_code = kubeflow_runner.main(['--config', str(config), '--output',
                                    str(tmp_path / 'pipeline.json'),
                                    '--image-tag', TAG, '--submit'])

  assert exit_code == 1
  out = capfd.readouterr().out
  assert 'repairml: no Google Cloud credentials' in out
  assert 'Traceback' not in out
