"""The Vertex AI pusher, offline: the requests the aiplatform SDK would send for a push, stopped at its gapic clients, and the checks made before any request leaves."""

import re
import types as pytypes

import google.auth
import pytest
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform import initializer
from google.cloud.aiplatform_v1.services.endpoint_service import \
    EndpointServiceClient
from google.cloud.aiplatform_v1.services.model_service import \
    ModelServiceClient
from google.cloud.aiplatform_v1.types import endpoint as gca_endpoint
from google.cloud.aiplatform_v1.types import endpoint_service
from google.cloud.aiplatform_v1.types import model as gca_model
from google.cloud.aiplatform_v1.types import model_service
from tfx.components import Pusher
from tfx.dsl.components.base import base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.extensions.google_cloud_ai_platform import constants
from tfx.proto.orchestration import pipeline_pb2
from tfx.types import channel, standard_artifacts
from tfx.utils import json_utils

from pipeline.production.vertex_pusher import (Executor, PushConfigError,
                                               custom_config, label_value,
                                               pipeline_run_id, push_settings)

PROJECT = 'repairml-prod'
PROJECT_NUMBER = '123456789'  # Vertex AI names resources by project number
REGION = 'europe-west4'
PARENT = f'projects/{PROJECT}/locations/{REGION}'
SERVING_IMAGE = 'europe-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest'
MODEL_URI = 'gs://repairml-prod-pipelines/root/Trainer/model/7'
SERVING_URI = MODEL_URI + '/Format-Serving'
CODE_VERSION = '0123456789abcdef'
LOCAL_RUN_ID = '2026-01-05T03:00:00.123456'  # LocalDagRunner's format
VERTEX_JOB_ID = 'repairml-20260105030000'

SETTINGS = dict(project=PROJECT, region=REGION, serving_image=SERVING_IMAGE,
                model_display_name='repairml',
                endpoint_display_name='repairml-endpoint',
                traffic_percentage=10, machine_type='n1-standard-4',
                min_replica_count=1, max_replica_count=3,
                code_version=CODE_VERSION)


def _config(**overrides):
  return custom_config(**dict(SETTINGS, **overrides))


# --- Vertex AI behind the SDK's gapic clients ---------------------------------


class _Operation:
  """A long-running operation that has finished with `response`."""

  def __init__(self, response):
    self._response = response
    self.operation = pytypes.SimpleNamespace(name=f'{PARENT}/operations/1')

  def result(self, timeout=None):
    del timeout
    return self._response


def _copy(message):
  return type(message).deserialize(type(message).serialize(message))


def _display_name(request) -> str:
  return re.fullmatch(r'display_name="(.*)"', request['filter']).group(1)


class FakeVertex:
  """Vertex AI's model and endpoint services, in memory.

  Every gapic call the SDK makes is recorded in `requests` as (method,
  request), with the request proto, or the keyword arguments of a flattened
  call. `fail[method] = error` makes that method raise.
  """

  _METHODS = {
      ModelServiceClient: ('list_models', 'upload_model', 'get_model'),
      EndpointServiceClient: ('list_endpoints', 'create_endpoint',
                              'get_endpoint', 'deploy_model'),
  }

  def __init__(self, monkeypatch):
    self.requests = []
    self.fail = {}
    self.models = {}     # model resource name -> its versions, oldest first
    self.endpoints = {}  # endpoint resource name -> Endpoint
    self._next_id = 1000
    for client, methods in self._METHODS.items():
      for method in methods:
        monkeypatch.setattr(client, method, self._recorder(method))

  def _recorder(self, method):
    handle = getattr(self, '_' + method)

    def call(client, request=None, **kwargs):
      del client
      for transport_detail in ('retry', 'timeout', 'metadata'):
        kwargs.pop(transport_detail, None)
      self.requests.append((method, request if request is not None
                            else kwargs))
      if method in self.fail:
        raise self.fail[method]
      return handle(request, **kwargs)

    return call

  def calls(self, method):
    return [request for name, request in self.requests if name == method]

  def _new_name(self, collection):
    self._next_id += 1
    return (f'projects/{PROJECT_NUMBER}/locations/{REGION}/{collection}/'
            f'{self._next_id}')

  # Models.
  def _list_models(self, request):
    wanted = _display_name(request)
    return [_copy(versions[0]) for versions in self.models.values()
            if versions[0].display_name == wanted]

  def _upload_model(self, request):
    model = _copy(request.model)
    model.supported_deployment_resources_types = [
        gca_model.Model.DeploymentResourcesType.DEDICATED_RESOURCES]
    if request.parent_model:
      model.name = request.parent_model
      versions = self.models[request.parent_model]
    else:
      model.name = self._new_name('models')
      versions = self.models.setdefault(model.name, [])
    model.version_id = str(len(versions) + 1)
    if 'default' in model.version_aliases:
      for version in versions:
        version.version_aliases = [
            alias for alias in version.version_aliases if alias != 'default']
    versions.append(model)
    return _Operation(model_service.UploadModelResponse(
        model=model.name, model_version_id=model.version_id))

  def _get_model(self, request, name):
    del request
    resource, _, version_id = name.partition('@')
    for version in self.models.get(resource, []):
      if version.version_id == version_id:
        return _copy(version)
    raise api_exceptions.NotFound(f'Model {name} not found')

  def add_model(self, display_name):
    """A Model someone uploaded before; returns its resource name."""
    self._upload_model(model_service.UploadModelRequest(
        parent=PARENT, model=gca_model.Model(display_name=display_name,
                                             version_aliases=['default'])))
    return list(self.models)[-1]

  # Endpoints.
  def _list_endpoints(self, request):
    wanted = _display_name(request)
    return [_copy(e) for e in self.endpoints.values()
            if e.display_name == wanted]

  def _create_endpoint(self, request, parent, endpoint, endpoint_id):
    del request, parent, endpoint_id
    created = _copy(endpoint)
    created.name = self._new_name('endpoints')
    self.endpoints[created.name] = created
    return _Operation(_copy(created))

  def _get_endpoint(self, request, name):
    del request
    if name not in self.endpoints:
      raise api_exceptions.NotFound(f'Endpoint {name} not found')
    return _copy(self.endpoints[name])

  def _deploy_model(self, request, endpoint, deployed_model, traffic_split):
    del request
    target = self.endpoints[endpoint]
    deployed = _copy(deployed_model)
    deployed.id = str(self._next_id + 1)
    self._next_id += 1
    deployed.model_version_id = deployed.model.partition('@')[2]
    target.deployed_models.append(deployed)
    split = dict(traffic_split)
    split[deployed.id] = split.pop('0')
    target.traffic_split = split
    return _Operation(endpoint_service.DeployModelResponse(
        deployed_model=deployed))

  def add_endpoint(self, display_name, serving_model=None):
    """An endpoint that exists already, with `serving_model` taking all its
    traffic if given; returns its resource name and the deployed model id."""
    endpoint = gca_endpoint.Endpoint(name=self._new_name('endpoints'),
                                     display_name=display_name)
    deployed_id = ''
    if serving_model:
      deployed_id = str(self._next_id + 1)
      self._next_id += 1
      endpoint.deployed_models = [gca_endpoint.DeployedModel(
          id=deployed_id, model=serving_model, model_version_id='1')]
      endpoint.traffic_split = {deployed_id: 100}
    self.endpoints[endpoint.name] = endpoint
    return endpoint.name, deployed_id


@pytest.fixture
def vertex(monkeypatch) -> FakeVertex:
  """The SDK with anonymous credentials and a fresh global configuration,
  talking to FakeVertex; GCS holds no Estimator export (GetModelPath looks
  for one before it takes Format-Serving)."""
  monkeypatch.setattr(initializer, 'global_config', initializer._Config())  # pylint: disable=protected-access
  monkeypatch.setattr(google.auth, 'default',
                      lambda *args, **kwargs: (AnonymousCredentials(),
                                               PROJECT))
  real_exists = fileio.exists
  monkeypatch.setattr(fileio, 'exists', lambda path: (
      False if str(path).startswith('gs://') else real_exists(path)))
  return FakeVertex(monkeypatch)


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


# --- custom_config ------------------------------------------------------------


def test_custom_config_uses_the_tfx_extension_keys():
  config = _config(pipeline_name='repairml', labels={'team': 'diagnostics'})

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
          'is_default_version': True,
          'pipeline_name': 'repairml',
          'labels': {'team': 'diagnostics'},
      },
  }
  settings = push_settings(json_utils.loads(json_utils.dumps(config)))
  assert (settings.project, settings.region, settings.traffic_percentage,
          settings.labels) == (PROJECT, REGION, 10, {'team': 'diagnostics'})


def test_the_pusher_component_takes_the_config_and_the_executor():
  config = _config()
  model = channel.Channel(type=standard_artifacts.Model)
  blessing = channel.Channel(type=standard_artifacts.ModelBlessing)

  pusher = Pusher(
      model=model, model_blessing=blessing, custom_config=config,
      custom_executor_spec=executor_spec.ExecutorClassSpec(Executor))

  assert pusher.executor_spec.executor_class is Executor
  assert json_utils.loads(pusher.exec_properties['custom_config']) == config


@pytest.mark.parametrize('overrides, message', [
    ({'traffic_percentage': 101}, r'traffic_percentage must be an integer in '
     r'0\.\.100, got 101'),
    ({'traffic_percentage': -1}, r'traffic_percentage .* got -1'),
    ({'traffic_percentage': 12.5}, r'traffic_percentage .* got 12\.5'),
    ({'traffic_percentage': True}, r'traffic_percentage .* got True'),
    ({'model_display_name': ''}, r'model_display_name must be a non-empty'),
    ({'endpoint_display_name': '  '}, r'endpoint_display_name must be a '
     r'non-empty'),
    ({'model_display_name': 'repair"ml'}, r'model_display_name .* without '
     r'double quotes'),
    ({'project': ''}, r'project_id must be a non-empty'),
    ({'region': ''}, r'ai_platform_vertex_region must be a non-empty'),
    ({'serving_image': None}, r'container_image_uri must be a non-empty'),
    ({'code_version': ''}, r'code_version must be a non-empty'),
    ({'machine_type': ''}, r'machine_type must be a non-empty'),
    ({'min_replica_count': 0}, r'min_replica_count must be an integer >= 1'),
    ({'max_replica_count': 1, 'min_replica_count': 2},
     r'max_replica_count \(1\) is below min_replica_count \(2\)'),
    ({'labels': {'Team': 'x'}}, r"key 'Team', which breaks Google Cloud's "
     r'label rules'),
    ({'labels': {'pipeline_run': 'x'}}, r'labels\.pipeline_run is set by the '
     r'pusher itself'),
    ({'labels': {'team': 3}}, r'labels\.team must be a string'),
])
def test_invalid_settings_are_refused_naming_the_key(overrides, message):
  with pytest.raises(PushConfigError, match=message):
    _config(**overrides)


@pytest.mark.parametrize('edit, message', [
    (lambda c: c.pop(constants.ENABLE_VERTEX_KEY),
     r'ai_platform_enable_vertex must be True'),
    (lambda c: c[constants.SERVING_ARGS_KEY].update(endpoint_name='x'),
     r"endpoint_name is not read by this executor: use "
     r"'endpoint_display_name'"),
    (lambda c: c[constants.SERVING_ARGS_KEY].update(traffic_split={'0': 100}),
     r"unknown key 'traffic_split'"),
    (lambda c: c.pop(constants.SERVING_ARGS_KEY),
     r'ai_platform_serving_args must be a dict, got None'),
])
def test_a_hand_written_config_is_checked_too(edit, message):
  config = _config()
  edit(config)

  with pytest.raises(PushConfigError, match=message):
    push_settings(config)


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


# --- Labels and the pipeline run ----------------------------------------------


@pytest.mark.parametrize('text, value', [
    ('repairml-20260105030000', 'repairml-20260105030000'),
    (LOCAL_RUN_ID, '2026-01-05t03-00-00-123456'),
    ('Repair ML/v2.1+RC', 'repair-ml-v2-1-rc'),
    ('under_score-dash', 'under_score-dash'),
    ('', ''),
    ('x' * 80, 'x' * 63),
])
def test_label_values_follow_google_cloud_rules(text, value):
  assert label_value(text) == value
  assert re.fullmatch(r'[a-z0-9_-]{0,63}', label_value(text))


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

  # The SDK also reads the model and the endpoint back, as often as it likes.
  assert [method for method, _ in vertex.requests
          if not method.startswith('get_')] == [
              'list_models', 'upload_model', 'list_endpoints',
              'create_endpoint', 'deploy_model']
  [listing] = vertex.calls('list_models')
  assert listing == {'parent': PARENT, 'filter': 'display_name="repairml"'}
  [upload] = vertex.calls('upload_model')
  assert upload.parent == PARENT
  assert upload.parent_model == ''
  assert upload.model.display_name == 'repairml'
  assert upload.model.artifact_uri == SERVING_URI
  assert upload.model.container_spec.image_uri == SERVING_IMAGE
  assert list(upload.model.version_aliases) == ['default']
  assert upload.model.version_description == (
      f'{SERVING_URI}, pipeline run {LOCAL_RUN_ID}')
  assert dict(upload.model.labels) == {
      'pipeline': 'repairml',
      'pipeline_run': '2026-01-05t03-00-00-123456',
      'code_version': CODE_VERSION,
      'model_artifact_id': '7',
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

  deployed_id = vertex.endpoints[endpoint_name].deployed_models[0].id
  assert pushed.get_int_custom_property('pushed') == 1
  assert pushed.get_string_custom_property('pushed_destination') == (
      f'{model_name}@1')
  assert pushed.get_string_custom_property('pushed_version') == '1'
  assert pushed.get_string_custom_property('endpoint') == endpoint_name
  assert pushed.get_string_custom_property('deployed_model_id') == deployed_id
  assert pushed.get_int_custom_property('traffic_percentage') == 100


def test_the_second_push_adds_a_version_and_deploys_it_as_a_canary(vertex):
  first = _push()
  [model_name] = vertex.models
  [endpoint_name] = vertex.endpoints
  first_deployed = first.get_string_custom_property('deployed_model_id')
  vertex.requests.clear()

  second = _push(model=_model('gs://repairml-prod-pipelines/root/Trainer/'
                              'model/8', artifact_id=8),
                 context=_local_context('2026-01-06T03:00:00'))

  [upload] = vertex.calls('upload_model')
  assert upload.parent_model == model_name
  assert upload.model.display_name == 'repairml'
  assert upload.model.artifact_uri == (
      'gs://repairml-prod-pipelines/root/Trainer/model/8/Format-Serving')
  assert upload.model.labels['pipeline_run'] == '2026-01-06t03-00-00'
  assert upload.model.labels['model_artifact_id'] == '8'
  assert not vertex.calls('create_endpoint')
  [deploy] = vertex.calls('deploy_model')
  assert deploy['endpoint'] == endpoint_name
  assert deploy['deployed_model'].model == f'{model_name}@2'
  assert dict(deploy['traffic_split']) == {first_deployed: 90, '0': 10}

  second_deployed = second.get_string_custom_property('deployed_model_id')
  assert second_deployed not in ('', first_deployed)
  assert dict(vertex.endpoints[endpoint_name].traffic_split) == {
      first_deployed: 90, second_deployed: 10}
  assert [v.version_id for v in vertex.models[model_name]] == ['1', '2']
  assert second.get_string_custom_property('pushed_destination') == (
      f'{model_name}@2')
  assert second.get_int_custom_property('traffic_percentage') == 10


def test_a_push_extends_a_model_and_an_endpoint_that_exist_already(vertex):
  model_name = vertex.add_model('repairml')
  endpoint_name, serving = vertex.add_endpoint(
      'repairml-endpoint', serving_model=f'{model_name}@1')
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


def test_a_version_that_is_not_the_default_keeps_the_default_alias(vertex):
  model_name = vertex.add_model('repairml')

  _push(_config(is_default_version=False))

  [upload] = vertex.calls('upload_model')
  assert list(upload.model.version_aliases) == []
  assert list(vertex.models[model_name][0].version_aliases) == ['default']


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
  assert isinstance(raised.value.__cause__, api_exceptions.PermissionDenied)
  assert not vertex.calls('upload_model')


def test_a_missing_endpoint_at_deploy_time_is_reported_with_the_step(vertex):
  vertex.fail['deploy_model'] = api_exceptions.NotFound(
      'Endpoint was deleted')

  with pytest.raises(RuntimeError, match=(
      rf'Vertex AI refused deploying projects/{PROJECT_NUMBER}/locations/'
      rf'{REGION}/models/\d+@1 to projects/{PROJECT_NUMBER}/locations/'
      rf'{REGION}/endpoints/\d+ in project {PROJECT}, region {REGION}: '
      r'NotFound: Endpoint was deleted')):
    _push()

