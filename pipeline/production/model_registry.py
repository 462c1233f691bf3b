"""Every request the push and the promotion send to Vertex AI, through the
aiplatform SDK: the Model's versions, their serving containers, labels and
aliases, and the endpoint's deployed models and traffic split.

The Pusher's executor (vertex_pusher.py, in the component image) and
`repairml promote` (promotion.py, on your machine) both use
`VertexModelRegistry`, so the two speak to Vertex AI the same way. The SDK's
objects do not leave this module: callers get the small frozen records
below, which say what the push and the promotion decide on.
"""

import contextlib
import dataclasses
import datetime
import warnings
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

# google.api_core warns on every import that Python 3.10 is unsupported. The
# warning is harmless here (see PLATFORM.md) and would flood the logs.
warnings.filterwarnings(
    'ignore', message='You are using a non-supported Python version',
    category=FutureWarning)

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud import aiplatform
from google.protobuf import field_mask_pb2

DEFAULT_ALIAS = 'default'


class VertexError(RuntimeError):
  """Vertex AI refused or failed a request; the message names the step."""


@dataclasses.dataclass(frozen=True)
class ServingContainer:
  """How Vertex AI runs the container that serves a model version (the
  Model's containerSpec). A route or port left out is Vertex AI's default,
  which a prebuilt image such as TF Serving's expects."""
  image_uri: str
  predict_route: Optional[str] = None
  health_route: Optional[str] = None
  ports: Tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class ModelVersion:
  """One version of a Vertex Model."""
  resource_name: str  # projects/<p>/locations/<r>/models/<id>
  version_id: str
  labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
  aliases: Tuple[str, ...] = ()
  serving_image: str = ''  # the image of its serving container

  @property
  def versioned_name(self) -> str:
    return f'{self.resource_name}@{self.version_id}'

  @property
  def is_default(self) -> bool:
    return DEFAULT_ALIAS in self.aliases


@dataclasses.dataclass(frozen=True)
class DeployedModel:
  """A model version deployed to an endpoint."""
  id: str
  model: str          # the Model's resource name, without a version
  version_id: str
  create_time: datetime.datetime


@dataclasses.dataclass(frozen=True)
class EndpointState:
  """An endpoint, what is deployed to it and its traffic split, deployed
  model id -> percentage (a deployed model that is absent gets none)."""
  resource_name: str
  deployed_models: Tuple[DeployedModel, ...] = ()
  traffic_split: Mapping[str, int] = dataclasses.field(default_factory=dict)

  def deployment_of(self, version: ModelVersion) -> Optional[DeployedModel]:
    """The deployment of `version` here (the newest, if several), or None."""
    found = [d for d in self.deployments_of(version.resource_name)
             if d.version_id == version.version_id]
    return found[-1] if found else None

  def deployments_of(self, model: str) -> List[DeployedModel]:
    """The deployments of any version of `model`, oldest first."""
    return sorted((d for d in self.deployed_models if d.model == model),
                  key=lambda d: d.create_time)

  def share(self, deployed_model_id: str) -> int:
    return self.traffic_split.get(deployed_model_id, 0)


class VertexModelRegistry:
  """The requests a push or a promotion sends to Vertex AI.

  Any refusal or failure of a request becomes one VertexError that names the
  step, the project and the region, and says what to check.
  """

  def __init__(self, project: str, region: str):
    self._project = project
    self._region = region

  @property
  def where(self) -> str:
    return f'project {self._project}, region {self._region}'

  # The Model and its versions. ----------------------------------------------

  def find_model(self, display_name: str) -> Optional[str]:
    """The resource name of the Model called `display_name`, or None."""
    model = self._only_one_named(aiplatform.Model, 'Model', 'Models',
                                 display_name, 'add a version to',
                                 'model_display_name')
    return model.resource_name if model else None

  def versions(self, model: str,
               labels: Optional[Mapping[str, str]] = None
               ) -> List[ModelVersion]:
    """The versions of `model`, oldest first; only those that carry all of
    `labels`, if given. Each comes with its labels and aliases."""
    label_filter = ' AND '.join(f'labels.{key}="{value}"'
                                for key, value in (labels or {}).items())
    with self._step(f'listing the versions of {model}'):
      found = self._registry(model).list_versions(filter=label_filter or None)
      # The listing leaves out the labels; each version's own record has them.
      versions = [self.version(model, info.version_id) for info in found]
    return sorted(versions, key=lambda v: int(v.version_id))

  def version(self, model: str, version_id: str) -> ModelVersion:
    """One version of `model`, with its labels and aliases."""
    with self._step(f'reading {model}@{version_id}'):
      resource = aiplatform.Model(model_name=model, version=version_id,
                                  project=self._project,
                                  location=self._region).gca_resource
    return _model_version(model, resource)

  def upload_version(self, display_name: str, artifact_uri: str,
                     container: ServingContainer, parent_model: Optional[str],
                     labels: Mapping[str, str], is_default_version: bool,
                     description: str) -> ModelVersion:
    """Uploads the SavedModel at `artifact_uri` as a new version of
    `parent_model`, or as a new Model if `parent_model` is None (whose first
    version Vertex AI always makes the default), served by `container`."""
    if not artifact_uri.startswith('gs://'):
      # The SDK would copy a local directory to a staging bucket of its own.
      raise ValueError(
          f'the model to push is at {artifact_uri}, not in Cloud Storage: '
          'Vertex AI serves models from gs:// paths only; run the pipeline '
          'with a gs:// pipeline root')
    with self._step(f'uploading a version of the Model "{display_name}"'):
      model = aiplatform.Model.upload(
          display_name=display_name,
          artifact_uri=artifact_uri,
          serving_container_image_uri=container.image_uri,
          serving_container_predict_route=container.predict_route,
          serving_container_health_route=container.health_route,
          serving_container_ports=list(container.ports) or None,
          parent_model=parent_model,
          is_default_version=is_default_version,
          labels=dict(labels),
          version_description=description,
          project=self._project,
          location=self._region)
      resource = model.gca_resource
    return _model_version(model.resource_name, resource)

  def delete_version(self, version: ModelVersion, whole_model: bool) -> None:
    """Deletes `version`; with `whole_model`, the Model it is the only
    version of (Vertex AI refuses to delete a Model's last version)."""
    with self._step(f'deleting {version.versioned_name}'):
      if whole_model:
        aiplatform.Model(model_name=version.resource_name,
                         project=self._project,
                         location=self._region).delete()
      else:
        self._registry(version.resource_name).delete_version(
            version.version_id)

  def set_labels(self, version: ModelVersion,
                 labels: Mapping[str, str]) -> ModelVersion:
    """Replaces the labels of `version` (not of its Model)."""
    with self._step(f'labelling {version.versioned_name}'):
      model = aiplatform.Model(model_name=version.resource_name,
                               version=version.version_id,
                               project=self._project, location=self._region)
      # ModelRegistry.update_version sends the name as GetModel returns it,
      # without "@<version>", which the API reads as an update of the Model's
      # own labels. The versioned name makes it an update of this version.
      updated = type(model.gca_resource)(model.gca_resource)
      updated.name = version.versioned_name
      updated.labels = dict(labels)
      model.api_client.update_model(
          model=updated, update_mask=field_mask_pb2.FieldMask(paths=['labels']))
    return dataclasses.replace(version, labels=dict(labels))

  def make_default(self, version: ModelVersion) -> ModelVersion:
    """Moves the Model's `default` alias to `version`."""
    with self._step(f'making {version.versioned_name} the default version'):
      # An alias names one version of a Model: adding it here removes it
      # from the version that had it.
      self._registry(version.resource_name).add_version_aliases(
          [DEFAULT_ALIAS], version.version_id)
    return dataclasses.replace(
        version, aliases=tuple(sorted({*version.aliases, DEFAULT_ALIAS})))

  def _registry(self, model: str) -> aiplatform.models.ModelRegistry:
    return aiplatform.models.ModelRegistry(model, location=self._region,
                                           project=self._project)

  # The endpoint. -------------------------------------------------------------

  def find_endpoint(self, display_name: str) -> Optional[EndpointState]:
    """The endpoint called `display_name`, or None."""
    endpoint = self._only_one_named(aiplatform.Endpoint, 'endpoint',
                                    'endpoints', display_name, 'deploy to',
                                    'endpoint_display_name')
    return _endpoint_state(endpoint.gca_resource) if endpoint else None

  def find_or_create_endpoint(self, display_name: str) -> EndpointState:
    """The endpoint called `display_name`, created if there is none."""
    found = self.find_endpoint(display_name)
    if found is not None:
      return found
    logging.info('No endpoint "%s" in %s; creating it.', display_name,
                 self.where)
    with self._step(f'creating the endpoint "{display_name}"'):
      endpoint = aiplatform.Endpoint.create(
          display_name=display_name, project=self._project,
          location=self._region)
    return _endpoint_state(endpoint.gca_resource)

  def deploy(self, version: ModelVersion, endpoint: EndpointState,
             deployed_model_display_name: str, traffic_percentage: int,
             machine_type: str, min_replica_count: int,
             max_replica_count: int) -> EndpointState:
    """Deploys `version` to `endpoint` with `traffic_percentage` of its
    traffic; the models deployed before share the rest in proportion."""
    with self._step(f'deploying {version.versioned_name} to '
                    f'{endpoint.resource_name}'):
      model = aiplatform.Model(model_name=version.resource_name,
                               version=version.version_id,
                               project=self._project, location=self._region)
      deployed_to = model.deploy(
          endpoint=self._endpoint(endpoint),
          deployed_model_display_name=deployed_model_display_name,
          traffic_percentage=traffic_percentage,
          machine_type=machine_type,
          min_replica_count=min_replica_count,
          max_replica_count=max_replica_count)
    return _endpoint_state(deployed_to.gca_resource)

  def undeploy(self, endpoint: EndpointState, deployed_model_id: str,
               traffic_split: Mapping[str, int]) -> EndpointState:
    """Undeploys one deployed model; `traffic_split` becomes the endpoint's
    (it must not route traffic to the undeployed model)."""
    with self._step(f'undeploying {deployed_model_id} from '
                    f'{endpoint.resource_name}'):
      target = self._endpoint(endpoint)
      target.undeploy(deployed_model_id=deployed_model_id,
                      traffic_split=dict(traffic_split))
    return _endpoint_state(target.gca_resource)

  def set_traffic(self, endpoint: EndpointState,
                  traffic_split: Mapping[str, int]) -> EndpointState:
    """Makes `traffic_split` the endpoint's traffic split."""
    with self._step(f'changing the traffic split of {endpoint.resource_name}'):
      updated = self._endpoint(endpoint).update(
          traffic_split=dict(traffic_split))
    return _endpoint_state(updated.gca_resource)

  def _endpoint(self, endpoint: EndpointState) -> aiplatform.Endpoint:
    return aiplatform.Endpoint(endpoint_name=endpoint.resource_name,
                               project=self._project, location=self._region)

  # Both. ----------------------------------------------------------------------

  def _only_one_named(self, resource_class, kind: str, kinds: str,
                      display_name: str, purpose: str, setting: str):
    """The one resource of `resource_class` called `display_name`, or None."""
    with self._step(f'looking up the {kind} "{display_name}"'):
      found = resource_class.list(
          filter=f'display_name="{display_name}"', project=self._project,
          location=self._region)
    if len(found) > 1:
      raise VertexError(
          f'{len(found)} Vertex AI {kinds} in {self.where} are called '
          f'"{display_name}" ({", ".join(r.resource_name for r in found)}), '
          f'so the pusher cannot tell which one to {purpose}: rename or '
          f'delete all but one, or use another {setting}')
    return found[0] if found else None

  @contextlib.contextmanager
  def _step(self, what: str) -> Iterator[None]:
    try:
      yield
    except (api_exceptions.PermissionDenied,
            api_exceptions.NotFound) as error:
      raise VertexError(
          f'Vertex AI refused {what} in {self.where}: '
          f'{type(error).__name__}: {error.message}. Check that the project '
          'and the region are the ones meant, that Vertex AI is enabled '
          'there, and that the account has the Vertex AI User role '
          '(roles/aiplatform.user) in the project.') from error
    except auth_exceptions.GoogleAuthError as error:
      raise VertexError(
          f'no usable Google Cloud credentials for {what} in {self.where} '
          f'({type(error).__name__}: {_one_line(error)}): run `gcloud auth '
          'application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS '
          'to a service-account key file') from error
    except (api_exceptions.GoogleAPICallError,
            api_exceptions.RetryError) as error:
      raise VertexError(
          f'Vertex AI failed {what} in {self.where}: {type(error).__name__}: '
          f'{_one_line(error)}. Retry; if it fails again, look at the Model '
          'and the endpoint in the Vertex AI console.') from error


def _one_line(error: Exception) -> str:
  return ' '.join(str(getattr(error, 'message', None) or error).split())[:400]


def _model_version(model: str, resource) -> ModelVersion:
  """The record of a Model resource (google.cloud.aiplatform_v1 proto)."""
  return ModelVersion(model, resource.version_id, dict(resource.labels),
                      tuple(resource.version_aliases),
                      resource.container_spec.image_uri)


def _endpoint_state(resource) -> EndpointState:
  """The record of an endpoint resource (google.cloud.aiplatform_v1 proto)."""
  deployed = []
  for model in resource.deployed_models:
    name, _, version = model.model.partition('@')
    deployed.append(DeployedModel(
        id=model.id, model=name,
        version_id=model.model_version_id or version,
        create_time=_time(model.create_time)))
  return EndpointState(resource.name, tuple(deployed),
                       dict(resource.traffic_split))


def _time(timestamp) -> datetime.datetime:
  """A proto timestamp as an aware datetime; unset is the epoch."""
  if isinstance(timestamp, datetime.datetime):
    return (timestamp if timestamp.tzinfo else
            timestamp.replace(tzinfo=datetime.timezone.utc))
  return datetime.datetime.fromtimestamp(0, datetime.timezone.utc)


def traffic_without(split: Mapping[str, int], deployed: Sequence[str],
                    removed: Sequence[str], fixed: str) -> Dict[str, int]:
  """The traffic split once `removed` are undeployed: `fixed` keeps its
  share; the other deployed models share the rest in proportion to what they
  had (equally if they had nothing); alone, `fixed` takes everything.

  Args:
    split: the current split, deployed model id -> percentage.
    deployed: the ids of every model deployed now.
    removed: the ids about to be undeployed.
    fixed: the id whose share does not change.
  """
  others = [i for i in deployed if i not in removed and i != fixed]
  if not others:
    return {fixed: 100}
  weights = [split.get(i, 0) for i in others]
  if not any(weights):
    weights = [1] * len(others)
  shares = _largest_remainder(weights, 100 - split.get(fixed, 0))
  return {fixed: split.get(fixed, 0), **dict(zip(others, shares))}


def _largest_remainder(weights: Sequence[int], total: int) -> List[int]:
  """Integer shares of `total` in proportion to `weights`, summing to it."""
  exact = [w * total / sum(weights) for w in weights]
  shares = [int(x) for x in exact]
  by_remainder = sorted(range(len(exact)), key=lambda i: shares[i] - exact[i])
  for i in by_remainder[:total - sum(shares)]:
    shares[i] += 1
  return shares
