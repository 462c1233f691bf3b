"""Vertex AI's model and endpoint services in memory, behind the aiplatform
SDK's gapic clients: what test_vertex_pusher.py and test_promotion.py push,
promote and look at.

The SDK runs unchanged down to its ModelServiceClient and
EndpointServiceClient; their methods are replaced by FakeVertex's, which
record each request and keep the state a real Vertex AI would: the Models and
their versions, labels, aliases and serving containers, the endpoints and
their deployed models and traffic split. The rules that make a push hard to
get right are enforced as Vertex AI enforces them: one default version per
Model, the first version of a new Model is the default, a deployed or default
version cannot be deleted, nor a Model's last version, a traffic split adds
up to 100 and sends nothing to a model being undeployed, and an uploaded
model names the image of its serving container.
"""

import datetime
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
from tfx.dsl.io import fileio

PROJECT = 'repairml-prod'
PROJECT_NUMBER = '123456789'  # Vertex AI names resources by project number
REGION = 'europe-west4'
PARENT = f'projects/{PROJECT}/locations/{REGION}'
_START = datetime.datetime(2026, 1, 5, 3, 0, tzinfo=datetime.timezone.utc)


class _Operation:
  """A long-running operation that has finished with `response`."""

  def __init__(self, response=None):
    self._response = response
    self.operation = pytypes.SimpleNamespace(name=f'{PARENT}/operations/1')

  def result(self, timeout=None):
    del timeout
    return self._response


def _copy(message):
  return type(message).deserialize(type(message).serialize(message))


def _display_name(request) -> str:
  return re.fullmatch(r'display_name="(.*)"', request['filter']).group(1)


def _label_filter(text):
  """{key: value} of a filter such as 'labels.a="x" AND labels.b="y"'."""
  if not text:
    return {}
  return dict(re.fullmatch(r'labels\.([a-z0-9_-]+)="([^"]*)"', part).groups()
              for part in text.split(' AND '))


def _refused(message):
  return api_exceptions.FailedPrecondition(message)


class FakeVertex:
  """Vertex AI's model and endpoint services, in memory.

  Every gapic call the SDK makes is recorded in `requests` as (method,
  request), with the request proto, or the keyword arguments of a flattened
  call. `fail[method] = error` makes that method raise before it changes
  anything; `lose_response[method] = error` makes it change the state and
  then raise, as a call whose answer never arrives.
  """

  _METHODS = {
      ModelServiceClient: ('list_models', 'upload_model', 'get_model',
                           'list_model_versions', 'delete_model_version',
                           'delete_model', 'merge_version_aliases',
                           'update_model'),
      EndpointServiceClient: ('list_endpoints', 'create_endpoint',
                              'get_endpoint', 'deploy_model',
                              'undeploy_model', 'update_endpoint'),
  }

  def __init__(self, monkeypatch):
    self.requests = []
    self.fail = {}
    self.lose_response = {}
    self.models = {}       # model resource name -> its versions, oldest first
    self.model_labels = {}  # model resource name -> the Model's own labels
    self.endpoints = {}    # endpoint resource name -> Endpoint
    self._next_id = 1000
    self._clock = 0
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
      answer = handle(request, **kwargs)
      if method in self.lose_response:
        raise self.lose_response.pop(method)
      return answer

    return call

  def calls(self, method):
    return [request for name, request in self.requests if name == method]

  def uploaded_containers(self):
    """The serving container of each upload, as the fields the request set:
    {'image_uri', 'predict_route', 'health_route', 'ports', 'env', ...}.
    Compared whole, it shows a field set by mistake as well as one missing."""
    return [type(upload.model.container_spec).to_dict(
        upload.model.container_spec,
        always_print_fields_with_no_presence=False)
            for upload in self.calls('upload_model')]

  def changes(self):
    """The methods called that change something, in order."""
    return [method for method, _ in self.requests
            if not method.startswith(('get_', 'list_'))]

  def state(self):
    """Everything a push can change, to compare two states."""
    return (
        {name: [(v.version_id, sorted(v.version_aliases), dict(v.labels))
                for v in versions] for name, versions in self.models.items()},
        {name: (sorted((d.id, d.model, d.model_version_id)
                       for d in e.deployed_models), dict(e.traffic_split))
         for name, e in self.endpoints.items()})

  def _new_name(self, collection):
    self._next_id += 1
    return (f'projects/{PROJECT_NUMBER}/locations/{REGION}/{collection}/'
            f'{self._next_id}')

  def _now(self):
    self._clock += 1
    return _START + datetime.timedelta(minutes=self._clock)

  # Models. -------------------------------------------------------------------

  def _list_models(self, request):
    wanted = _display_name(request)
    return [_copy(self._default(versions))
            for versions in self.models.values()
            if versions[0].display_name == wanted]

  def _upload_model(self, request):
    if not request.model.container_spec.image_uri:
      raise api_exceptions.InvalidArgument(
          'Model.container_spec.image_uri is required for a custom-trained '
          'model')
    model = _copy(request.model)
    model.supported_deployment_resources_types = [
        gca_model.Model.DeploymentResourcesType.DEDICATED_RESOURCES]
    if request.parent_model:
      model.name = request.parent_model
      versions = self.models[request.parent_model]
    else:
      model.name = self._new_name('models')
      versions = self.models.setdefault(model.name, [])
      # The first version of a Model is its default, asked for or not.
      if 'default' not in model.version_aliases:
        model.version_aliases.append('default')
    model.version_id = str(len(versions) + 1)
    model.version_create_time = self._now()
    for alias in model.version_aliases:
      self._take_alias(versions, alias)
    versions.append(model)
    return _Operation(model_service.UploadModelResponse(
        model=model.name, model_version_id=model.version_id))

  def _get_model(self, request, name):
    del request
    return _copy(self._version(name))

  def _list_model_versions(self, request):
    wanted = _label_filter(request.filter)
    return [_copy(version) for version in self.models.get(request.name, [])
            if all(version.labels.get(k) == v for k, v in wanted.items())]

  def _delete_model_version(self, request, name):
    del request
    version = self._version(name)
    versions = self.models[version.name]
    if len(versions) == 1:
      raise _refused(f'Model {version.name} has only this version: delete '
                     'the Model instead')
    if 'default' in version.version_aliases:
      raise _refused(f'{name} is the default version and cannot be deleted')
    if self._deployed(version):
      raise _refused(f'{name} is deployed and cannot be deleted')
    versions.remove(version)
    return _Operation()

  def _delete_model(self, request, name):
    del request
    if any(self._deployed(v) for v in self.models.get(name, [])):
      raise _refused(f'Model {name} has a deployed version')
    if name not in self.models:
      raise api_exceptions.NotFound(f'Model {name} not found')
    del self.models[name]
    return _Operation()

  def _merge_version_aliases(self, request, name, version_aliases):
    del request
    version = self._version(name)
    for alias in version_aliases:
      if alias.startswith('-'):
        if alias[1:] == 'default':
          raise _refused('the default alias can only be moved, not removed')
        version.version_aliases = [a for a in version.version_aliases
                                   if a != alias[1:]]
      else:
        self._take_alias(self.models[version.name], alias)
        version.version_aliases.append(alias)
    return _copy(version)

  def _update_model(self, request, model, update_mask):
    del request
    assert list(update_mask.paths) == ['labels'], update_mask
    if '@' not in model.name:
      # Without "@<version>" the API updates the Model's own labels.
      self.model_labels[model.name] = dict(model.labels)
      return _copy(self._version(model.name))
    version = self._version(model.name)
    version.labels = dict(model.labels)
    return _copy(version)

  def _version(self, name):
    """The version `name` means: <model>, <model>@<id> or <model>@<alias>."""
    resource, _, wanted = name.partition('@')
    versions = self.models.get(resource, [])
    for version in versions:
      if (version.version_id == wanted or wanted in version.version_aliases or
          (not wanted and 'default' in version.version_aliases)):
        return version
    raise api_exceptions.NotFound(f'Model {name} not found')

  def _default(self, versions):
    return next(v for v in versions if 'default' in v.version_aliases)

  @staticmethod
  def _take_alias(versions, alias):
    for version in versions:
      version.version_aliases = [a for a in version.version_aliases
                                 if a != alias]

  def _deployed(self, version):
    return any(d.model == version.name and
               d.model_version_id == version.version_id
               for e in self.endpoints.values() for d in e.deployed_models)

  def add_model(self, display_name, versions=1,
                serving_image='europe-docker.pkg.dev/p/r/earlier-server:1'):
    """A Model someone uploaded before, with `versions` versions (the first
    is the default) served by `serving_image`; returns its resource name."""
    container = gca_model.ModelContainerSpec(image_uri=serving_image)
    self._upload_model(model_service.UploadModelRequest(
        parent=PARENT, model=gca_model.Model(display_name=display_name,
                                             container_spec=container)))
    name = list(self.models)[-1]
    for _ in range(versions - 1):
      self._upload_model(model_service.UploadModelRequest(
          parent=PARENT, parent_model=name,
          model=gca_model.Model(display_name=display_name,
                                container_spec=container)))
    return name

  def default_version(self, model):
    return self._default(self.models[model]).version_id

  # Endpoints. ----------------------------------------------------------------

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
    # Vertex AI answers with the Model's name and the version apart.
    deployed.model, _, deployed.model_version_id = (
        deployed_model.model.partition('@'))
    deployed.create_time = self._now()
    split = dict(traffic_split)
    split[deployed.id] = split.pop('0')
    self._check_split(split, [d.id for d in target.deployed_models] +
                      [deployed.id])
    target.deployed_models.append(deployed)
    target.traffic_split = split
    return _Operation(endpoint_service.DeployModelResponse(
        deployed_model=deployed))

  def _undeploy_model(self, request, endpoint, deployed_model_id,
                      traffic_split):
    del request
    target = self.endpoints[endpoint]
    remaining = [d for d in target.deployed_models
                 if d.id != deployed_model_id]
    if len(remaining) == len(target.deployed_models):
      raise api_exceptions.NotFound(f'{deployed_model_id} is not deployed')
    split = dict(traffic_split) or {
        k: v for k, v in target.traffic_split.items()
        if k != deployed_model_id}
    if split.get(deployed_model_id):
      raise _refused(f'{deployed_model_id} would keep traffic')
    if remaining:
      self._check_split(split, [d.id for d in remaining])
    target.deployed_models = remaining
    target.traffic_split = split if remaining else {}
    return _Operation(endpoint_service.UndeployModelResponse())

  def _update_endpoint(self, request, endpoint, update_mask):
    del request
    assert list(update_mask.paths) == ['traffic_split'], update_mask
    target = self.endpoints[endpoint.name]
    self._check_split(dict(endpoint.traffic_split),
                      [d.id for d in target.deployed_models])
    target.traffic_split = dict(endpoint.traffic_split)
    return _copy(target)

  @staticmethod
  def _check_split(split, deployed_ids):
    if sum(split.values()) != 100 or not set(split) <= set(deployed_ids):
      raise api_exceptions.InvalidArgument(
          f'traffic split {split} must add up to 100 over the deployed '
          f'models {deployed_ids}')

  def add_endpoint(self, display_name, serving=(), traffic=None):
    """An endpoint that exists already, with the model versions `serving`
    ('<model>@<version>', oldest first) deployed, sharing the traffic as
    `traffic` says (default: all to the last); returns its resource name
    and the deployed model ids."""
    endpoint = gca_endpoint.Endpoint(name=self._new_name('endpoints'),
                                     display_name=display_name)
    ids = []
    for versioned in serving:
      self._next_id += 1
      model, _, version = versioned.partition('@')
      endpoint.deployed_models.append(gca_endpoint.DeployedModel(
          id=str(self._next_id), model=model, model_version_id=version,
          create_time=self._now()))
      ids.append(str(self._next_id))
    if ids:
      endpoint.traffic_split = dict(zip(ids, traffic or
                                        [0] * (len(ids) - 1) + [100]))
    self.endpoints[endpoint.name] = endpoint
    return endpoint.name, ids

  def traffic(self, endpoint):
    return dict(self.endpoints[endpoint].traffic_split)

  def deployed(self, endpoint):
    """[(deployed model id, version id)] of an endpoint, oldest first."""
    return [(d.id, d.model_version_id)
            for d in self.endpoints[endpoint].deployed_models]


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
