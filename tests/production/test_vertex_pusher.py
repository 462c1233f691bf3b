"""The Vertex AI pusher, offline: the requests the aiplatform SDK would send for a push, stopped at its gapic clients (fake_vertex.py keeps Vertex AI's state), and the checks made before any request leaves."""

import ast
from pathlib import Path

import pytest
from google.api_core import exceptions as api_exceptions
from tfx.components import Pusher
from tfx.dsl.components.base import base_executor, executor_spec
from tfx.extensions.google_cloud_ai_platform import constants
from tfx.proto.orchestration import pipeline_pb2
from tfx.types import channel, standard_artifacts
from tfx.utils import json_utils

from fake_vertex import PARENT, PROJECT, PROJECT_NUMBER, REGION
from fake_vertex import vertex  # pylint: disable=unused-import
from pipeline.production import model_registry, vertex_pusher
from pipeline.production.labels import short_hash
from pipeline.production.vertex_pusher import (Executor, PushConfigError,
                                               PushError, custom_config,
                                               pipeline_run_id, push_settings)

# The repairml serving image, tagged with the commit it was built from.
SERVING_IMAGE = ('europe-west4-docker.pkg.dev/repairml-prod/repairml/'
                 'repairml-serving:0123456789ab')
TF_SERVING_IMAGE = ('europe-docker.pkg.dev/vertex-ai/prediction/'
                    'tf2-cpu.2-15:latest')
MODEL_URI = 'gs://repairml-prod-pipelines/root/Trainer/model/7'
SERVING_URI = MODEL_URI + '/Format-Serving'
NEXT_MODEL_URI = 'gs://repairml-prod-pipelines/root/Trainer/model/8'
CODE_VERSION = '0123456789abcdef'
LOCAL_RUN_ID = '2026-01-05T03:00:00.123456'  # LocalDagRunner's format
VERTEX_JOB_ID = 'repairml-20260105030000'
PROJECT_ROOT = Path(__file__).resolve().parents[2]

SETTINGS = dict(project=PROJECT, region=REGION, serving_image=SERVING_IMAGE,
                model_display_name='repairml',
                endpoint_display_name='repairml-endpoint',
                traffic_percentage=10, machine_type='n1-standard-4',
                min_replica_count=1, max_replica_count=3,
                code_version=CODE_VERSION, serving_container='repairml')


def _config(**overrides):
  return custom_config(**dict(SETTINGS, **overrides))


# --- TFX artifacts ------------------------------------------------------------


def _model(uri=MODEL_URI, artifact_id=7):
  model = standard_artifacts.Model()
  model.uri = uri
  model.id = artifact_id
  return model


def _blessing(blessed):
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = f'gs://repairml-prod-pipelines/root/Evaluator/blessing/{blessed}'
  blessing.set_int_custom_property('blessed', blessed)
  return blessing


def _local_context(run_id=LOCAL_RUN_ID):
  return base_executor.BaseExecutor.Context(
      pipeline_run_id=run_id,
      pipeline_info=pipeline_pb2.PipelineInfo(id='repairml'))


def _vertex_context(job_id=VERTEX_JOB_ID, task='pusher-5678'):
  """What KubeflowV2's container entrypoint gives an executor on Vertex."""
  task_dir = f'gs://repairml-prod-pipelines/root/{PROJECT_NUMBER}/{job_id}/{task}'
  return base_executor.BaseExecutor.Context(
      unique_id=task, tmp_dir=f'{task_dir}/.temp')


def _push(config=None, blessed=1, model=None, context=None):
  pushed = standard_artifacts.PushedModel()
  pushed.uri = 'gs://repairml-prod-pipelines/root/Pusher/pushed_model/9'
  Executor(context if context is not None else _local_context()).Do(
      {'model': [model or _model()], 'model_blessing': [_blessing(blessed)]},
      {'pushed_model': [pushed]},
      {'custom_config': json_utils.dumps(config or _config())})
  return pushed


def _next_model(number=8):
  return _model(f'gs://repairml-prod-pipelines/root/Trainer/model/{number}',
                artifact_id=number)


# --- custom_config ------------------------------------------------------------


def test_custom_config_uses_the_tfx_extension_keys():
  config = _config(pipeline_name='repairml', labels={'team': 'diagnostics'},
                   keep_deployed=3)

  assert config == {
      constants.ENABLE_VERTEX_KEY: True,
      constants.VERTEX_REGION_KEY: REGION,
      constants.VERTEX_CONTAINER_IMAGE_URI_KEY: SERVING_IMAGE,
      constants.SERVING_ARGS_KEY: {
          'project_id': PROJECT,
          'model_display_name': 'repairml',
          'endpoint_display_name': 'repairml-endpoint',
          'traffic_percentage': 10,
          'machine_type': 'n1-standard-4',
          'min_replica_count': 1,
          'max_replica_count': 3,
          'code_version': CODE_VERSION,
          'serving_container': 'repairml',
          'keep_deployed': 3,
          'pipeline_name': 'repairml',
          'labels': {'team': 'diagnostics'},
      },
      'pusher_code_version': '',
  }
  settings = push_settings(json_utils.loads(json_utils.dumps(config)))
  assert (settings.serving.project_id, settings.region,
          settings.serving.traffic_percentage, settings.serving.keep_deployed,
          settings.serving.labels) == (PROJECT, REGION, 10, 3,
                                       {'team': 'diagnostics'})


def test_keep_deployed_defaults_to_two():
  config = _config()
  del config[constants.SERVING_ARGS_KEY]['keep_deployed']

  assert push_settings(config).serving.keep_deployed == 2


def test_the_pusher_component_takes_the_config_and_the_executor():
  config = _config()
  model = channel.Channel(type=standard_artifacts.Model)
  blessing = channel.Channel(type=standard_artifacts.ModelBlessing)

  pusher = Pusher(
      model=model, model_blessing=blessing, custom_config=config,
      custom_executor_spec=executor_spec.ExecutorClassSpec(Executor))

  assert pusher.executor_spec.executor_class is Executor
  assert json_utils.loads(pusher.exec_properties['custom_config']) == config


ARGS = 'custom_config.ai_platform_serving_args'


@pytest.mark.parametrize('overrides, message', [
    ({'traffic_percentage': 101}, f'{ARGS}.traffic_percentage must be an '
     'integer in 0..100, got 101'),
    ({'traffic_percentage': -1}, f'{ARGS}.traffic_percentage must be an '
     'integer in 0..100, got -1'),
    ({'traffic_percentage': 12.5}, f'{ARGS}.traffic_percentage must be an '
     'integer in 0..100, got 12.5'),
    # Strict: neither a bool nor a numeric string passes for a number.
    ({'traffic_percentage': True}, f'{ARGS}.traffic_percentage must be an '
     'integer in 0..100, got True'),
    ({'traffic_percentage': '10'}, f'{ARGS}.traffic_percentage must be an '
     "integer in 0..100, got '10'"),
    ({'model_display_name': ''}, f'{ARGS}.model_display_name must be a '
     'non-empty string of at most 128 characters, without double quotes or '
     "backslashes, got ''"),
    ({'endpoint_display_name': '  '}, f'{ARGS}.endpoint_display_name must be '
     'a non-empty string'),
    ({'model_display_name': 'repair"ml'}, f'{ARGS}.model_display_name must '
     'be a non-empty string of at most 128 characters, without double quotes'),
    ({'model_display_name': 'x' * 129}, f'{ARGS}.model_display_name must '
     'be a non-empty string of at most 128 characters'),
    ({'project': ''}, f"{ARGS}.project_id must be a non-empty string, got ''"),
    ({'region': ''}, 'custom_config.ai_platform_vertex_region must be a '
     "non-empty string, got ''"),
    ({'serving_image': None}, 'custom_config.ai_platform_vertex_container_'
     'image_uri must be a non-empty string, got None'),
    ({'serving_container': 'tfserving'}, f"{ARGS}.serving_container must be "
     "'repairml' or 'tf_serving', got 'tfserving'"),
    # A repairml version must say which build of the server it runs.
    ({'serving_image': 'europe-west4-docker.pkg.dev/p/repairml/serving'},
     'custom_config has ai_platform_vertex_container_image_uri '
     'europe-west4-docker.pkg.dev/p/repairml/serving without a tag, but '
     "serving_container 'repairml' needs one"),
    ({'serving_image': 'localhost:5000/repairml-serving'},
     'custom_config has ai_platform_vertex_container_image_uri '
     'localhost:5000/repairml-serving without a tag'),
    ({'code_version': ''}, f'{ARGS}.code_version must be a non-empty string'),
    ({'machine_type': ''}, f'{ARGS}.machine_type must be a non-empty string'),
    ({'min_replica_count': 0}, f'{ARGS}.min_replica_count must be an integer '
     '>= 1, got 0'),
    ({'max_replica_count': 1, 'min_replica_count': 2},
     f'{ARGS}.max_replica_count (1) is below min_replica_count (2): raise it, '
     'or lower min_replica_count'),
    ({'keep_deployed': 0}, f'{ARGS}.keep_deployed must be an integer >= 1, '
     'got 0'),
    ({'labels': {'Team': 'x'}}, f"{ARGS}.labels has the key 'Team', which "
     "breaks Google Cloud's label rules: start with a lowercase letter"),
    ({'labels': {'pipeline_run': 'x'}}, f"{ARGS}.labels has the key "
     "'pipeline_run', which the pusher sets itself: remove it"),
    ({'labels': {'model_uri_hash': 'x'}}, f"{ARGS}.labels has the key "
     "'model_uri_hash', which the pusher sets itself"),
    ({'labels': {'team': 3}}, f'{ARGS}.labels.team must be a string, got 3'),
    ({'labels': {f'l{i}': 'x' for i in range(60)}}, f'{ARGS}.labels has 60 '
     "labels; with the pusher's own 6 a model version may carry at most 64"),
])
def test_invalid_settings_are_refused_naming_the_key(overrides, message):
  with pytest.raises(PushConfigError) as raised:
    _config(**overrides)

  assert str(raised.value).startswith(message)
  assert '\n' not in str(raised.value)


@pytest.mark.parametrize('edit, message', [
    (lambda c: c.pop(constants.ENABLE_VERTEX_KEY),
     'custom_config.ai_platform_enable_vertex is missing: set it to true: '
     'this executor pushes to Vertex AI only'),
    (lambda c: c.update({constants.ENABLE_VERTEX_KEY: 'true'}),
     'custom_config.ai_platform_enable_vertex must be true'),
    (lambda c: c[constants.SERVING_ARGS_KEY].update(endpoint_name='x'),
     f"{ARGS} has the key 'endpoint_name', which this executor does not "
     "read: use 'endpoint_display_name' instead"),
    (lambda c: c[constants.SERVING_ARGS_KEY].update(is_default_version=True),
     f"{ARGS} has the key 'is_default_version', which this executor does not "
     "read: a version becomes the default when it takes all of the "
     "endpoint's traffic, or with `repairml promote`"),
    (lambda c: c[constants.SERVING_ARGS_KEY].update(traffic_split={'0': 100}),
     f'{ARGS}.traffic_split is not a key of {ARGS}; its keys are project_id, '
     'model_display_name'),
    (lambda c: c[constants.SERVING_ARGS_KEY].pop('code_version'),
     f'{ARGS}.code_version is missing: set it to a non-empty string'),
    # Which server the image is decides the routes: never guessed.
    (lambda c: c[constants.SERVING_ARGS_KEY].pop('serving_container'),
     f"{ARGS}.serving_container is missing: set it to 'repairml' or "
     "'tf_serving'"),
    (lambda c: c.pop(constants.SERVING_ARGS_KEY),
     'custom_config.ai_platform_serving_args is missing: set it to a '
     'mapping: build it with vertex_pusher.custom_config(...)'),
])
def test_a_hand_written_config_is_checked_too(edit, message):
  config = _config()
  edit(config)

  with pytest.raises(PushConfigError) as raised:
    push_settings(config)

  assert str(raised.value).startswith(message)


def test_a_config_that_is_no_mapping_is_refused():
  with pytest.raises(PushConfigError, match=r'^custom_config must be a '
                     r'mapping, got None$'):
    push_settings(None)


def test_an_invalid_config_fails_before_any_request(vertex):
  config = _config()
  config[constants.SERVING_ARGS_KEY]['traffic_percentage'] = 150

  with pytest.raises(PushConfigError, match='traffic_percentage'):
    _push(config)

  assert not vertex.requests


def test_an_invalid_config_fails_also_for_an_unblessed_model(vertex):
  config = _config()
  config[constants.SERVING_ARGS_KEY]['traffic_percentage'] = 150

  with pytest.raises(PushConfigError, match='traffic_percentage'):
    _push(config, blessed=0)

  assert not vertex.requests


def _project_imports(module: str, seen=None):
  """The project modules `module` imports, directly or through others."""
  seen = set() if seen is None else seen
  path = PROJECT_ROOT.joinpath(*module.split('.')).with_suffix('.py')
  if module in seen or not path.exists():
    return seen
  seen.add(module)
  for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
    names = []
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names = [node.module] + [f'{node.module}.{alias.name}'
                               for alias in node.names]
    for name in names:
      if name.split('.')[0] in ('pipeline', 'serving', 'models', 'data'):
        _project_imports(name, seen)
  return seen


def test_the_executor_does_not_import_client_side_code():
  # The executor runs in the component image, which needs none of the
  # submission code (credentials, git, the KFP client).
  imported = _project_imports('pipeline.production.vertex_pusher')

  assert 'pipeline.production.labels' in imported
  assert 'pipeline.production.model_registry' in imported
  assert 'pipeline.production.submission' not in imported


# --- Labels and the pipeline run ----------------------------------------------


def test_the_run_id_comes_from_the_context_of_the_portable_launcher():
  assert pipeline_run_id(_local_context()) == LOCAL_RUN_ID


def test_on_vertex_the_run_id_is_the_job_that_owns_the_task_directory():
  assert pipeline_run_id(_vertex_context()) == VERTEX_JOB_ID


@pytest.mark.parametrize('context', [
    None,
    base_executor.BaseExecutor.Context(),
    # KFP's open-source launcher: a local output file, no job in the path.
    base_executor.BaseExecutor.Context(unique_id='kfp_outputs',
                                       tmp_dir='/tmp/kfp_outputs/.temp'),
    # A task directory whose name is not the task's id.
    base_executor.BaseExecutor.Context(
        unique_id='pusher-1',
        tmp_dir=f'gs://root/{PROJECT_NUMBER}/{VERTEX_JOB_ID}/other/.temp'),
])
def test_an_unknown_run_id_is_none(context):
  assert pipeline_run_id(context) is None


# --- Pushing ------------------------------------------------------------------


def test_the_first_push_creates_the_model_and_the_endpoint(vertex):
  pushed = _push()

  assert vertex.changes() == ['create_endpoint', 'upload_model',
                              'deploy_model']
  [listing] = vertex.calls('list_models')
  assert listing == {'parent': PARENT, 'filter': 'display_name="repairml"'}
  # No Model yet, so no version of it to look for.
  assert not vertex.calls('list_model_versions')
  [upload] = vertex.calls('upload_model')
  assert upload.parent == PARENT
  assert upload.parent_model == ''
  assert upload.model.display_name == 'repairml'
  assert upload.model.artifact_uri == SERVING_URI
  # `repairml serve` in the serving image, as a custom container: Vertex AI
  # passes the routes and the port to it as AIP_PREDICT_ROUTE,
  # AIP_HEALTH_ROUTE and AIP_HTTP_PORT, and artifact_uri as AIP_STORAGE_URI.
  assert vertex.uploaded_containers() == [{
      'image_uri': SERVING_IMAGE,
      'predict_route': '/predict',
      'health_route': '/health',
      'ports': [{'container_port': 8080}],
  }]
  assert upload.model.version_description == (
      f'{SERVING_URI}, pipeline run {LOCAL_RUN_ID}')
  assert dict(upload.model.labels) == {
      'pipeline': 'repairml',
      'pipeline_run': '2026-01-05t03-00-00-123456',
      'code_version': CODE_VERSION,
      'model_artifact_id': '7',
      'model_uri_hash': short_hash(SERVING_URI),
  }
  [created] = vertex.calls('create_endpoint')
  assert created['parent'] == PARENT
  assert created['endpoint'].display_name == 'repairml-endpoint'

  [endpoint_name] = vertex.endpoints
  [model_name] = vertex.models
  [deploy] = vertex.calls('deploy_model')
  assert deploy['endpoint'] == endpoint_name
  assert deploy['deployed_model'].model == f'{model_name}@1'
  assert deploy['deployed_model'].display_name == 'repairml-v1'
  # A canary needs something to share the traffic with: on an empty endpoint
  # the only model serves everything.
  assert dict(deploy['traffic_split']) == {'0': 100}
  resources = deploy['deployed_model'].dedicated_resources
  assert resources.machine_spec.machine_type == 'n1-standard-4'
  assert (resources.min_replica_count, resources.max_replica_count) == (1, 3)
  # The first version of a Model is its default.
  assert vertex.default_version(model_name) == '1'

  [(deployed_id, _)] = vertex.deployed(endpoint_name)
  assert pushed.get_int_custom_property('pushed') == 1
  assert pushed.get_string_custom_property('pushed_destination') == (
      f'{model_name}@1')
  assert pushed.get_string_custom_property('pushed_version') == '1'
  assert pushed.get_string_custom_property('endpoint') == endpoint_name
  assert pushed.get_string_custom_property('deployed_model_id') == deployed_id
  assert pushed.get_int_custom_property('traffic_percentage') == 100


def test_with_tf_serving_the_prebuilt_image_is_uploaded_with_its_defaults(
    vertex):
  _push(_config(serving_image=TF_SERVING_IMAGE, serving_container='tf_serving'))

  # No routes and no port: the prebuilt image serves TF Serving's own, which
  # are Vertex AI's defaults.
  assert vertex.uploaded_containers() == [{'image_uri': TF_SERVING_IMAGE}]
  [upload] = vertex.calls('upload_model')
  assert upload.model.artifact_uri == SERVING_URI


def test_the_routes_and_port_are_those_the_serving_image_serves():
  # The image's defaults (for a plain `docker run`) and the Model's
  # containerSpec must agree, or a local run of the image tests another
  # contract than the endpoint serves.
  # pylint: disable-next=g-import-not-at-top
  from test_image import environment, stage
  image_defaults = environment(stage('serving'))

  assert (image_defaults['AIP_PREDICT_ROUTE'],
          image_defaults['AIP_HEALTH_ROUTE'],
          image_defaults['AIP_HTTP_PORT']) == (
              vertex_pusher.REPAIRML_PREDICT_ROUTE,
              vertex_pusher.REPAIRML_HEALTH_ROUTE,
              str(vertex_pusher.REPAIRML_PORT))


def test_a_model_pushed_before_keeps_its_server_and_says_so(vertex, caplog):
  earlier_image = SERVING_IMAGE.rsplit(':', 1)[0] + ':aaaaaaaaaaaa'
  _push(_config(serving_image=earlier_image))

  with caplog.at_level('WARNING'):
    _push(_config())

  # The model is the push's identity: the version is reused, not uploaded
  # again with the new server.
  assert len(vertex.calls('upload_model')) == 1
  assert vertex.uploaded_containers()[0]['image_uri'] == earlier_image
  [model_name] = vertex.models
  assert (f'{model_name}@1 was uploaded with the serving image '
          f'{earlier_image}, not {SERVING_IMAGE}') in caplog.text


def test_the_second_push_deploys_a_canary_that_is_not_the_default(vertex):
  first = _push()
  [model_name] = vertex.models
  [endpoint_name] = vertex.endpoints
  first_deployed = first.get_string_custom_property('deployed_model_id')
  vertex.requests.clear()

  second = _push(model=_next_model(),
                 context=_local_context('2026-01-06T03:00:00'))

  [lookup] = vertex.calls('list_model_versions')
  assert lookup.name == model_name
  assert lookup.filter == (
      f'labels.model_uri_hash="{short_hash(NEXT_MODEL_URI + "/Format-Serving")}"')
  [upload] = vertex.calls('upload_model')
  assert upload.parent_model == model_name
  assert upload.model.artifact_uri == NEXT_MODEL_URI + '/Format-Serving'
  assert upload.model.labels['pipeline_run'] == '2026-01-06t03-00-00'
  assert upload.model.labels['model_artifact_id'] == '8'
  # A canary is uploaded as a non-default version and stays one.
  assert list(upload.model.version_aliases) == []
  assert not vertex.calls('merge_version_aliases')
  assert vertex.default_version(model_name) == '1'
  assert not vertex.calls('create_endpoint')
  [deploy] = vertex.calls('deploy_model')
  assert deploy['endpoint'] == endpoint_name
  assert deploy['deployed_model'].model == f'{model_name}@2'
  assert dict(deploy['traffic_split']) == {first_deployed: 90, '0': 10}

  second_deployed = second.get_string_custom_property('deployed_model_id')
  assert vertex.traffic(endpoint_name) == {first_deployed: 90,
                                           second_deployed: 10}
  assert [v.version_id for v in vertex.models[model_name]] == ['1', '2']
  assert second.get_string_custom_property('pushed_destination') == (
      f'{model_name}@2')
  assert second.get_int_custom_property('traffic_percentage') == 10


def test_a_push_extends_a_model_and_an_endpoint_that_exist_already(vertex):
  model_name = vertex.add_model('repairml')
  endpoint_name, [serving] = vertex.add_endpoint(
      'repairml-endpoint', serving=[f'{model_name}@1'])
  vertex.add_model('another-model')

  pushed = _push(_config(traffic_percentage=25))

  [upload] = vertex.calls('upload_model')
  assert upload.parent_model == model_name
  [deploy] = vertex.calls('deploy_model')
  assert deploy['endpoint'] == endpoint_name
  assert dict(deploy['traffic_split']) == {serving: 75, '0': 25}
  assert pushed.get_string_custom_property('pushed_destination') == (
      f'{model_name}@2')
  assert pushed.get_int_custom_property('traffic_percentage') == 25
  assert vertex.default_version(model_name) == '1'


def test_a_version_that_takes_all_traffic_becomes_the_default(vertex):
  # The Model exists, but nothing serves on its endpoint (a new endpoint).
  model_name = vertex.add_model('repairml')

  pushed = _push()

  [upload] = vertex.calls('upload_model')
  assert list(upload.model.version_aliases) == []
  [merge] = vertex.calls('merge_version_aliases')
  assert merge == {'name': f'{model_name}@2', 'version_aliases': ['default']}
  # The alias moved only after the deploy succeeded.
  assert vertex.changes() == ['create_endpoint', 'upload_model',
                              'deploy_model', 'merge_version_aliases']
  assert vertex.default_version(model_name) == '2'
  assert pushed.get_int_custom_property('traffic_percentage') == 100


def test_on_vertex_the_labels_name_the_pipeline_job(vertex):
  _push(_config(pipeline_name='repairml-prod-pipeline',
                labels={'team': 'Diagnostics EU'}),
        context=_vertex_context())

  [upload] = vertex.calls('upload_model')
  assert dict(upload.model.labels) == {
      'pipeline': 'repairml-prod-pipeline',
      'pipeline_run': VERTEX_JOB_ID,
      'code_version': CODE_VERSION,
      'model_artifact_id': '7',
      'model_uri_hash': short_hash(SERVING_URI),
      'team': 'diagnostics-eu',
  }


def test_without_a_run_id_the_version_has_no_run_label(vertex):
  _push(context=base_executor.BaseExecutor.Context())

  [upload] = vertex.calls('upload_model')
  assert 'pipeline_run' not in upload.model.labels
  assert 'pipeline' not in upload.model.labels
  assert upload.model.labels['code_version'] == CODE_VERSION
  assert upload.model.version_description.endswith('pipeline run unknown')


def test_an_unblessed_model_is_not_pushed(vertex):
  pushed = _push(blessed=0)

  assert not vertex.requests
  assert pushed.get_int_custom_property('pushed') == 0
  assert not pushed.has_custom_property('pushed_destination')


def test_a_model_outside_cloud_storage_is_refused_before_upload(vertex,
                                                                tmp_path):
  local = tmp_path / 'model'
  (local / 'Format-Serving').mkdir(parents=True)
  (local / 'Format-Serving' / 'saved_model.pb').write_bytes(b'graph')

  with pytest.raises(ValueError, match=r'not in Cloud Storage.*gs://'):
    _push(model=_model(uri=str(local)))

  assert not vertex.calls('upload_model')


def test_two_models_with_the_display_name_are_not_guessed_between(vertex):
  first, second = vertex.add_model('repairml'), vertex.add_model('repairml')

  with pytest.raises(RuntimeError, match=(
      rf'2 Vertex AI Models in project {PROJECT}, region {REGION} are called '
      rf'"repairml" \({first}, {second}\)')):
    _push()

  assert not vertex.calls('upload_model')


def test_permission_denied_becomes_one_message_naming_project_and_region(
    vertex):
  vertex.fail['list_models'] = api_exceptions.PermissionDenied(
      'Permission aiplatform.models.list denied')

  with pytest.raises(RuntimeError) as raised:
    _push()

  message = str(raised.value)
  assert message.startswith(
      f'Vertex AI refused looking up the Model "repairml" in project '
      f'{PROJECT}, region {REGION}: PermissionDenied: Permission '
      'aiplatform.models.list denied.')
  assert 'roles/aiplatform.user' in message
  assert '\n' not in message
  assert isinstance(raised.value.__cause__, api_exceptions.PermissionDenied)
  assert not vertex.calls('upload_model')


# --- Retrying a push ----------------------------------------------------------


def _serving_endpoint(vertex):
  """The Model at version 1, serving all traffic of its endpoint."""
  model_name = vertex.add_model('repairml')
  endpoint_name, [serving] = vertex.add_endpoint(
      'repairml-endpoint', serving=[f'{model_name}@1'])
  return model_name, endpoint_name, serving


def test_pushing_the_same_model_twice_gives_one_version(vertex):
  model_name, endpoint_name, serving = _serving_endpoint(vertex)
  first = _push()
  after_first = vertex.state()
  vertex.requests.clear()

  again = _push()

  assert not vertex.calls('upload_model')
  assert not vertex.calls('deploy_model')
  assert vertex.changes() == []
  assert vertex.state() == after_first
  assert [v.version_id for v in vertex.models[model_name]] == ['1', '2']
  canary = first.get_string_custom_property('deployed_model_id')
  assert vertex.traffic(endpoint_name) == {serving: 90, canary: 10}
  for name in ('pushed_destination', 'pushed_version', 'endpoint',
               'deployed_model_id'):
    assert (again.get_string_custom_property(name) ==
            first.get_string_custom_property(name))
  assert again.get_int_custom_property('traffic_percentage') == 10


def test_the_identity_is_the_model_uri_not_the_artifact_id(vertex):
  # Another metadata store counts its artifacts from 1 as well: the same id
  # with another URI is another model.
  _serving_endpoint(vertex)
  _push(model=_model(MODEL_URI, artifact_id=7))
  vertex.requests.clear()

  _push(model=_model(NEXT_MODEL_URI, artifact_id=7))

  [upload] = vertex.calls('upload_model')
  assert upload.model.labels['model_uri_hash'] == short_hash(
      NEXT_MODEL_URI + '/Format-Serving')


def test_a_retry_after_a_lost_upload_answer_deploys_that_upload(vertex):
  model_name, endpoint_name, _ = _serving_endpoint(vertex)
  vertex.lose_response['upload_model'] = api_exceptions.DeadlineExceeded(
      'Deadline exceeded')
  with pytest.raises(RuntimeError, match='DeadlineExceeded'):
    _push()
  assert [v.version_id for v in vertex.models[model_name]] == ['1', '2']
  vertex.requests.clear()

  pushed = _push()

  assert not vertex.calls('upload_model')
  [deploy] = vertex.calls('deploy_model')
  assert deploy['deployed_model'].model == f'{model_name}@2'
  assert [v.version_id for v in vertex.models[model_name]] == ['1', '2']
  assert pushed.get_string_custom_property('pushed_version') == '2'
  assert len(vertex.deployed(endpoint_name)) == 2


def test_a_retry_after_a_lost_deploy_answer_ends_as_one_push(vertex):
  # The deploy happened, but its answer was lost: the push took it for a
  # failure, could not delete the (deployed) version, and labelled it.
  model_name, endpoint_name, serving = _serving_endpoint(vertex)
  vertex.lose_response['deploy_model'] = api_exceptions.ServiceUnavailable(
      'Connection reset')
  with pytest.raises(PushError, match='labelled push_state=failed'):
    _push()
  assert vertex.models[model_name][1].labels['push_state'] == 'failed'
  vertex.requests.clear()

  pushed = _push()

  assert not vertex.calls('upload_model')
  assert not vertex.calls('deploy_model')
  [relabel] = vertex.calls('update_model')
  assert relabel['model'].name == f'{model_name}@2'
  assert 'push_state' not in vertex.models[model_name][1].labels
  [(_, first_version), (canary, second_version)] = vertex.deployed(
      endpoint_name)
  assert (first_version, second_version) == ('1', '2')
  assert vertex.traffic(endpoint_name) == {serving: 90, canary: 10}
  assert pushed.get_string_custom_property('deployed_model_id') == canary


# --- A failed deploy ----------------------------------------------------------


def test_a_failed_deploy_deletes_the_version_it_uploaded(vertex):
  model_name, endpoint_name, serving = _serving_endpoint(vertex)
  before = vertex.state()
  vertex.fail['deploy_model'] = api_exceptions.ResourceExhausted(
      'Quota exceeded for n1-standard-4 in europe-west4')

  with pytest.raises(PushError) as raised:
    _push()

  message = str(raised.value)
  assert '\n' not in message
  assert message.startswith(
      f'Vertex AI failed deploying {model_name}@2 to {endpoint_name} in '
      f'project {PROJECT}, region {REGION}: ResourceExhausted: Quota '
      'exceeded for n1-standard-4 in europe-west4.')
  assert message.endswith(
      f'The push failed; the version it uploaded ({model_name}@2) is deleted '
      'again, so the Model and the endpoint are as they were.')
  [delete] = vertex.calls('delete_model_version')
  assert delete == {'name': f'{model_name}@2'}
  assert vertex.state() == before
  assert vertex.traffic(endpoint_name) == {serving: 100}


def test_a_failed_first_deploy_deletes_the_model_it_created(vertex):
  vertex.fail['deploy_model'] = api_exceptions.InvalidArgument(
      'Machine type n1-standard-4 is not supported')

  with pytest.raises(PushError, match=r'the Model it created \(.*@1\) is '
                     'deleted again'):
    _push()

  [deploy] = vertex.calls('deploy_model')
  created = deploy['deployed_model'].model.partition('@')[0]
  [delete] = vertex.calls('delete_model')
  assert delete == {'name': created}
  assert vertex.models == {}
  [endpoint_name] = vertex.endpoints
  assert vertex.traffic(endpoint_name) == {}


def test_a_version_that_cannot_be_deleted_is_labelled_failed(vertex):
  model_name, endpoint_name, serving = _serving_endpoint(vertex)
  vertex.fail['deploy_model'] = api_exceptions.InternalServerError('Boom')
  vertex.fail['delete_model_version'] = api_exceptions.ServiceUnavailable(
      'Try again later')

  with pytest.raises(PushError) as raised:
    _push()

  message = str(raised.value)
  assert 'InternalServerError: Boom' in message
  assert ('deleting the version it uploaded failed too (Vertex AI failed '
          f'deleting {model_name}@2') in message
  assert (f'so {model_name}@2 is labelled push_state=failed: delete it by '
          'hand') in message
  [relabel] = vertex.calls('update_model')
  assert relabel['model'].name == f'{model_name}@2'
  assert list(relabel['update_mask'].paths) == ['labels']
  failed = vertex.models[model_name][1]
  assert failed.labels['push_state'] == 'failed'
  assert failed.labels['model_uri_hash'] == short_hash(SERVING_URI)
  assert vertex.traffic(endpoint_name) == {serving: 100}


def test_a_missing_endpoint_at_deploy_time_is_reported_with_the_step(vertex):
  vertex.fail['deploy_model'] = api_exceptions.NotFound(
      'Endpoint was deleted')

  with pytest.raises(RuntimeError, match=(
      rf'Vertex AI refused deploying projects/{PROJECT_NUMBER}/locations/'
      rf'{REGION}/models/\d+@1 to projects/{PROJECT_NUMBER}/locations/'
      rf'{REGION}/endpoints/\d+ in project {PROJECT}, region {REGION}: '
      r'NotFound: Endpoint was deleted')):
    _push()


# --- keep_deployed ------------------------------------------------------------


def test_within_keep_deployed_nothing_is_undeployed(vertex):
  _serving_endpoint(vertex)

  _push(_config(keep_deployed=2))

  assert not vertex.calls('undeploy_model')


def test_the_oldest_canaries_beyond_keep_deployed_are_undeployed(vertex):
  model_name = vertex.add_model('repairml', versions=3)
  # Version 1 is the default and serves most; 2 and 3 are older canaries.
  endpoint_name, [stable, oldest, older] = vertex.add_endpoint(
      'repairml-endpoint',
      serving=[f'{model_name}@1', f'{model_name}@2', f'{model_name}@3'],
      traffic=[80, 15, 5])
  other_model = vertex.add_model('another-model')
  _, [foreign] = vertex.add_endpoint('unused', serving=[f'{other_model}@1'])

  pushed = _push(_config(keep_deployed=2))

  new = pushed.get_string_custom_property('deployed_model_id')
  undeploys = vertex.calls('undeploy_model')
  assert [u['deployed_model_id'] for u in undeploys] == [oldest, older]
  # The new version keeps its 10 %; the default version takes the rest.
  for undeploy in undeploys:
    assert dict(undeploy['traffic_split']) == {stable: 90, new: 10}
  assert vertex.deployed(endpoint_name) == [(stable, '1'), (new, '4')]
  assert vertex.traffic(endpoint_name) == {stable: 90, new: 10}
  assert vertex.default_version(model_name) == '1'
  assert pushed.get_int_custom_property('traffic_percentage') == 10
  assert foreign not in {u['deployed_model_id'] for u in undeploys}


def test_undeployed_traffic_is_shared_in_proportion(vertex):
  model_name = vertex.add_model('repairml', versions=3)
  endpoint_name, [old, stable, canary] = vertex.add_endpoint(
      'repairml-endpoint',
      serving=[f'{model_name}@1', f'{model_name}@2', f'{model_name}@3'],
      traffic=[20, 60, 20])
  # Version 2 was promoted: it is the default.
  vertex.models[model_name][0].version_aliases = []
  vertex.models[model_name][1].version_aliases = ['default']

  pushed = _push(_config(keep_deployed=3, traffic_percentage=20))

  new = pushed.get_string_custom_property('deployed_model_id')
  # After the deploy: 1 -> 16, 2 -> 48, 3 -> 16, new -> 20. The 16 of the
  # oldest go to 2 and 3 in proportion (3:1); the new version keeps 20.
  [undeploy] = vertex.calls('undeploy_model')
  assert undeploy['deployed_model_id'] == old
  assert vertex.traffic(endpoint_name) == {stable: 60, canary: 20, new: 20}


def test_keep_deployed_one_replaces_the_serving_version(vertex):
  model_name, endpoint_name, serving = _serving_endpoint(vertex)

  pushed = _push(_config(keep_deployed=1))

  [undeploy] = vertex.calls('undeploy_model')
  new = pushed.get_string_custom_property('deployed_model_id')
  assert undeploy['deployed_model_id'] == serving
  assert dict(undeploy['traffic_split']) == {new: 100}
  assert vertex.deployed(endpoint_name) == [(new, '2')]
  # Alone, it serves everything, so it is the default now.
  assert vertex.default_version(model_name) == '2'
  assert pushed.get_int_custom_property('traffic_percentage') == 100


def test_a_failure_after_the_deploy_keeps_the_deployment_for_a_retry(vertex):
  model_name, endpoint_name, serving = _serving_endpoint(vertex)
  vertex.fail['undeploy_model'] = api_exceptions.ServiceUnavailable(
      'Try again later')

  with pytest.raises(PushError) as raised:
    _push(_config(keep_deployed=1))

  message = str(raised.value)
  assert message.startswith(f'Vertex AI failed undeploying {serving} from '
                            f'{endpoint_name}')
  assert (f'{model_name}@2 is deployed on {endpoint_name} as ') in message
  assert message.endswith('but the push did not finish: run the pipeline '
                          'again, which reuses the deployment and finishes '
                          'it.')
  assert not vertex.calls('delete_model_version')
  del vertex.fail['undeploy_model']
  vertex.requests.clear()

  pushed = _push(_config(keep_deployed=1))

  assert not vertex.calls('upload_model') and not vertex.calls('deploy_model')
  new = pushed.get_string_custom_property('deployed_model_id')
  assert vertex.deployed(endpoint_name) == [(new, '2')]
  assert vertex.default_version(model_name) == '2'


@pytest.mark.parametrize('split, removed, expected', [
    ({'a': 81, 'b': 9, 'n': 10}, ['b'], {'a': 90, 'n': 10}),
    ({'a': 45, 'b': 45, 'c': 0, 'n': 10}, ['c'], {'a': 45, 'b': 45, 'n': 10}),
    ({'a': 50, 'b': 25, 'c': 15, 'n': 10}, ['a'], {'b': 56, 'c': 34, 'n': 10}),
    ({'a': 0, 'b': 0, 'c': 90, 'n': 10}, ['c'], {'a': 45, 'b': 45, 'n': 10}),
    ({'a': 90, 'n': 10}, ['a'], {'n': 100}),
    ({'a': 1, 'b': 1, 'c': 1, 'n': 97}, [], {'a': 1, 'b': 1, 'c': 1, 'n': 97}),
])
def test_traffic_without_keeps_the_fixed_share_and_sums_to_100(
    split, removed, expected):
  result = model_registry.traffic_without(split, list(split), removed,
                                          fixed='n')

  assert result == expected
  assert sum(result.values()) == 100
