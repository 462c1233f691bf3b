"""The Pusher executor of production runs: a blessed model becomes a new
version of one Vertex AI Model and is deployed to an endpoint as a canary.

TFX's own Vertex pusher uploads every model as a separate Vertex Model, with no
labels, and sends it all of an endpoint's traffic by default. This executor
instead adds a version to the Model that has the configured display name (or
creates that Model, version 1, on the first push), labels the version with the
pipeline, the pipeline run, the code version and the candidate model's artifact
id, and deploys it next to the versions already serving with a configurable
share of the traffic. An unblessed model is neither uploaded nor deployed.

The component is TFX's Pusher with this executor, and with the custom_config
that `custom_config()` below builds:

  tfx.components.Pusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      custom_config=vertex_pusher.custom_config(...),
      custom_executor_spec=executor_spec.ExecutorClassSpec(
          vertex_pusher.Executor))

(`tfx.extensions.google_cloud_ai_platform.Pusher` takes no executor spec.)
Every request to Google Cloud goes through the aiplatform SDK, in
`VertexModelRegistry`.
"""

import contextlib
import dataclasses
import os
import re
import warnings
from typing import Any, Dict, Iterator, Mapping, Optional

# google.api_core warns on every import that Python 3.10 is unsupported. The
# warning is harmless here (see PLATFORM.md) and would flood the executor log.
warnings.filterwarnings(
    'ignore', message='You are using a non-supported Python version',
    category=FutureWarning)

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging
from google.api_core import exceptions as api_exceptions
from google.cloud import aiplatform
from tfx.components.pusher import executor as pusher_executor
from tfx.extensions.google_cloud_ai_platform import constants
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils

from pipeline.production.submission import label_value

# Keys of custom_config[SERVING_ARGS_KEY] ('ai_platform_serving_args').
PROJECT_KEY = 'project_id'  # the key TFX's Vertex pusher reads
MODEL_DISPLAY_NAME_KEY = 'model_display_name'
ENDPOINT_DISPLAY_NAME_KEY = 'endpoint_display_name'
TRAFFIC_PERCENTAGE_KEY = 'traffic_percentage'
MACHINE_TYPE_KEY = 'machine_type'
MIN_REPLICA_COUNT_KEY = 'min_replica_count'
MAX_REPLICA_COUNT_KEY = 'max_replica_count'
CODE_VERSION_KEY = 'code_version'
IS_DEFAULT_VERSION_KEY = 'is_default_version'
PIPELINE_NAME_KEY = 'pipeline_name'
LABELS_KEY = 'labels'

_REQUIRED_SERVING_ARGS = (PROJECT_KEY, MODEL_DISPLAY_NAME_KEY,
                          ENDPOINT_DISPLAY_NAME_KEY, TRAFFIC_PERCENTAGE_KEY,
                          MACHINE_TYPE_KEY, MIN_REPLICA_COUNT_KEY,
                          MAX_REPLICA_COUNT_KEY, CODE_VERSION_KEY)
_OPTIONAL_SERVING_ARGS = (IS_DEFAULT_VERSION_KEY, PIPELINE_NAME_KEY,
                          LABELS_KEY)
# Serving args of TFX's Vertex pusher that mean something else here.
_RENAMED_SERVING_ARGS = {'project': PROJECT_KEY,
                         'endpoint_name': ENDPOINT_DISPLAY_NAME_KEY}

# The labels every pushed model version carries, when their value is known.
PIPELINE_LABEL = 'pipeline'
PIPELINE_RUN_LABEL = 'pipeline_run'
CODE_VERSION_LABEL = 'code_version'
MODEL_ARTIFACT_LABEL = 'model_artifact_id'
_RESERVED_LABELS = (PIPELINE_LABEL, PIPELINE_RUN_LABEL, CODE_VERSION_LABEL,
                    MODEL_ARTIFACT_LABEL)

# Google Cloud's label rules, restricted to ASCII.
_LABEL_KEY = re.compile(r'^[a-z][a-z0-9_-]{0,62}$')
_MAX_LABELS = 64
_MAX_DISPLAY_NAME_LENGTH = 128

# Vertex AI Pipelines runs a TFX executor through KubeflowV2's container
# entrypoint, which gives it no pipeline run id. The entrypoint does name the
# task directory, <pipeline root>/<project number>/<pipeline job id>/<task>,
# and puts the executor's temp directory at <task directory>/.temp/<task>/.
_VERTEX_TASK_DIR = re.compile(
    r'^(?:gs://|/gcs/).+/\d+/(?P<job>[^/]+)/(?P<task>[^/]+)$')


class PushConfigError(ValueError):
  """The Pusher's custom_config is wrong; the message names the key."""


@dataclasses.dataclass(frozen=True)
class PushSettings:
  """What a push needs, read and checked from the Pusher's custom_config."""
  project: str
  region: str
  serving_image: str
  model_display_name: str
  endpoint_display_name: str
  traffic_percentage: int
  machine_type: str
  min_replica_count: int
  max_replica_count: int
  code_version: str
  is_default_version: bool = True
  pipeline_name: str = ''
  labels: Mapping[str, str] = dataclasses.field(default_factory=dict)


def custom_config(project: str,
                  region: str,
                  serving_image: str,
                  model_display_name: str,
                  endpoint_display_name: str,
                  traffic_percentage: int,
                  machine_type: str,
                  min_replica_count: int,
                  max_replica_count: int,
                  code_version: str,
                  *,
                  pipeline_name: str = '',
                  is_default_version: bool = True,
                  labels: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
  """The Pusher's custom_config, checked now rather than at push time.

  Args:
    project: the Google Cloud project of the Model and the endpoint.
    region: their Vertex AI region, e.g. 'europe-west4'.
    serving_image: the serving container image of every uploaded version.
    model_display_name: the Vertex Model that pushes add versions to.
    endpoint_display_name: the endpoint each version is deployed to; it is
      created on the first push if no endpoint has this name.
    traffic_percentage: the new version's share of the endpoint's traffic,
      0..100; the versions already deployed keep the rest, in their current
      proportions. An endpoint with nothing deployed gives it 100.
    machine_type: the machine type of the new deployment.
    min_replica_count: its minimum number of replicas (>= 1).
    max_replica_count: its maximum number of replicas (>= min_replica_count).
    code_version: the version of the code that built the model; it becomes
      the `code_version` label of the model version.
    pipeline_name: the `pipeline` label when the orchestrator does not tell
      the executor the pipeline's name (Vertex AI Pipelines does not).
    is_default_version: whether the new version becomes the Model's default.
    labels: more labels for each model version; the keys must follow Google
      Cloud's label rules and may not be one of the labels set here.

  Returns:
    {ENABLE_VERTEX_KEY: True, VERTEX_REGION_KEY: region,
     VERTEX_CONTAINER_IMAGE_URI_KEY: serving_image,
     SERVING_ARGS_KEY: {'project_id', 'model_display_name',
       'endpoint_display_name', 'traffic_percentage', 'machine_type',
       'min_replica_count', 'max_replica_count', 'code_version',
       'is_default_version', 'pipeline_name', 'labels'}}

  Raises:
    PushConfigError: if a value is invalid.
  """
  config = {
      constants.ENABLE_VERTEX_KEY: True,
      constants.VERTEX_REGION_KEY: region,
      constants.VERTEX_CONTAINER_IMAGE_URI_KEY: serving_image,
      constants.SERVING_ARGS_KEY: {
          PROJECT_KEY: project,
          MODEL_DISPLAY_NAME_KEY: model_display_name,
          ENDPOINT_DISPLAY_NAME_KEY: endpoint_display_name,
          TRAFFIC_PERCENTAGE_KEY: traffic_percentage,
          MACHINE_TYPE_KEY: machine_type,
          MIN_REPLICA_COUNT_KEY: min_replica_count,
          MAX_REPLICA_COUNT_KEY: max_replica_count,
          CODE_VERSION_KEY: code_version,
          IS_DEFAULT_VERSION_KEY: is_default_version,
          PIPELINE_NAME_KEY: pipeline_name,
          LABELS_KEY: dict(labels or {}),
      },
  }
  push_settings(config)
  return config


def push_settings(config: Any) -> PushSettings:
  """Reads and checks the Pusher's custom_config (see `custom_config()`)."""
  if not isinstance(config, dict):
    raise PushConfigError(
        f'custom_config must be a dict, got {config!r}: build it with '
        'vertex_pusher.custom_config(...)')
  if config.get(constants.ENABLE_VERTEX_KEY) is not True:
    raise PushConfigError(
        f'custom_config.{constants.ENABLE_VERTEX_KEY} must be True: this '
        'executor pushes to Vertex AI only')
  region = _text(config, constants.VERTEX_REGION_KEY, 'custom_config')
  serving_image = _text(config, constants.VERTEX_CONTAINER_IMAGE_URI_KEY,
                        'custom_config')
  args = config.get(constants.SERVING_ARGS_KEY)
  where = f'custom_config.{constants.SERVING_ARGS_KEY}'
  if not isinstance(args, dict):
    raise PushConfigError(f'{where} must be a dict, got {args!r}')
  _check_keys(args, where)

  settings = PushSettings(
      project=_text(args, PROJECT_KEY, where),
      region=region,
      serving_image=serving_image,
      model_display_name=_display_name(args, MODEL_DISPLAY_NAME_KEY, where),
      endpoint_display_name=_display_name(args, ENDPOINT_DISPLAY_NAME_KEY,
                                          where),
      traffic_percentage=_integer(args, TRAFFIC_PERCENTAGE_KEY, where, 0, 100),
      machine_type=_text(args, MACHINE_TYPE_KEY, where),
      min_replica_count=_integer(args, MIN_REPLICA_COUNT_KEY, where, 1),
      max_replica_count=_integer(args, MAX_REPLICA_COUNT_KEY, where, 1),
      code_version=_text(args, CODE_VERSION_KEY, where),
      is_default_version=args.get(IS_DEFAULT_VERSION_KEY, True),
      pipeline_name=args.get(PIPELINE_NAME_KEY, ''),
      labels=_extra_labels(args.get(LABELS_KEY, {}), f'{where}.{LABELS_KEY}'))
  if settings.max_replica_count < settings.min_replica_count:
    raise PushConfigError(
        f'{where}.{MAX_REPLICA_COUNT_KEY} ({settings.max_replica_count}) is '
        f'below {MIN_REPLICA_COUNT_KEY} ({settings.min_replica_count})')
  if not isinstance(settings.is_default_version, bool):
    raise PushConfigError(f'{where}.{IS_DEFAULT_VERSION_KEY} must be true or '
                          f'false, got {settings.is_default_version!r}')
  if not isinstance(settings.pipeline_name, str):
    raise PushConfigError(f'{where}.{PIPELINE_NAME_KEY} must be a string, '
                          f'got {settings.pipeline_name!r}')
  return settings


def _check_keys(args: Mapping[str, Any], where: str) -> None:
  for key in args:
    if key in _RENAMED_SERVING_ARGS:
      raise PushConfigError(
          f'{where}.{key} is not read by this executor: use '
          f'{_RENAMED_SERVING_ARGS[key]!r} instead')
    if key not in _REQUIRED_SERVING_ARGS + _OPTIONAL_SERVING_ARGS:
      raise PushConfigError(
          f'{where} has the unknown key {key!r}; the keys are '
          f'{", ".join(_REQUIRED_SERVING_ARGS + _OPTIONAL_SERVING_ARGS)}')


def _text(args: Mapping[str, Any], key: str, where: str) -> str:
  value = args.get(key)
  if not isinstance(value, str) or not value.strip():
    raise PushConfigError(
        f'{where}.{key} must be a non-empty string, got {value!r}')
  return value


def _display_name(args: Mapping[str, Any], key: str, where: str) -> str:
  # The name goes into a list filter between double quotes.
  name = _text(args, key, where)
  if len(name) > _MAX_DISPLAY_NAME_LENGTH or '"' in name or '\\' in name:
    raise PushConfigError(
        f'{where}.{key} {name!r} must be at most {_MAX_DISPLAY_NAME_LENGTH} '
        'characters, without double quotes or backslashes')
  return name


def _integer(args: Mapping[str, Any], key: str, where: str, low: int,
             high: Optional[int] = None) -> int:
  value = args.get(key)
  if (not isinstance(value, int) or isinstance(value, bool) or value < low or
      (high is not None and value > high)):
    bounds = f'in {low}..{high}' if high is not None else f'>= {low}'
    raise PushConfigError(f'{where}.{key} must be an integer {bounds}, got '
                          f'{value!r}')
  return value


def _extra_labels(labels: Any, where: str) -> Dict[str, str]:
  if not isinstance(labels, dict):
    raise PushConfigError(f'{where} must be a dict, got {labels!r}')
  if len(labels) + len(_RESERVED_LABELS) > _MAX_LABELS:
    raise PushConfigError(
        f'{where} has {len(labels)} labels; with the pusher\'s own '
        f'{len(_RESERVED_LABELS)} a model version may carry at most '
        f'{_MAX_LABELS}')
  for key, value in labels.items():
    if not isinstance(key, str) or not _LABEL_KEY.match(key):
      raise PushConfigError(
          f'{where} has the key {key!r}, which breaks Google Cloud\'s label '
          'rules: start with a lowercase letter, then at most 62 lowercase '
          'letters, digits, "_" or "-"')
    if key in _RESERVED_LABELS:
      raise PushConfigError(f'{where}.{key} is set by the pusher itself')
    if not isinstance(value, str):
      raise PushConfigError(f'{where}.{key} must be a string, got {value!r}')
  return {key: label_value(value) for key, value in labels.items()}


def version_labels(settings: PushSettings, pipeline_name: str,
                   pipeline_run: Optional[str],
                   model_artifact_id: Optional[int]) -> Dict[str, str]:
  """The labels of a pushed model version; an unknown value has no label."""
  labels = dict(settings.labels)
  labels[CODE_VERSION_LABEL] = label_value(settings.code_version)
  if pipeline_name:
    labels[PIPELINE_LABEL] = label_value(pipeline_name)
  if pipeline_run:
    labels[PIPELINE_RUN_LABEL] = label_value(pipeline_run)
  if model_artifact_id:
    labels[MODEL_ARTIFACT_LABEL] = label_value(str(model_artifact_id))
  return labels


def pipeline_run_id(context: Optional[Any]) -> Optional[str]:
  """The id of the pipeline run an executor runs in, or None if unknown.

  TFX's portable launcher (LocalDagRunner, BeamDagRunner) passes it in the
  executor context. On Vertex AI Pipelines it is the pipeline job id, the
  parent of the task directory that the context's temp path lies in.
  """
  if context is None:
    return None
  if context.pipeline_run_id:
    return context.pipeline_run_id
  try:
    tmp_path = context.get_tmp_path().rstrip('/')  # <task dir>/.temp/<task>
  except RuntimeError:
    return None
  temp_dir = os.path.dirname(tmp_path)
  match = _VERTEX_TASK_DIR.match(os.path.dirname(temp_dir))
  if (os.path.basename(temp_dir) != '.temp' or not match or
      match['task'] != os.path.basename(tmp_path)):
    return None
  return match['job']


def _pipeline_name(context: Optional[Any], settings: PushSettings) -> str:
  if context is not None and context.pipeline_info is not None:
    return context.pipeline_info.id or settings.pipeline_name
  return settings.pipeline_name


@dataclasses.dataclass(frozen=True)
class ModelVersion:
  """One version of a Vertex Model."""
  resource_name: str  # projects/<p>/locations/<r>/models/<id>
  version_id: str

  @property
  def versioned_name(self) -> str:
    return f'{self.resource_name}@{self.version_id}'


@dataclasses.dataclass(frozen=True)
class EndpointState:
  """An endpoint and its traffic split, deployed model id -> percentage."""
  resource_name: str
  traffic_split: Dict[str, int]


@dataclasses.dataclass(frozen=True)
class Deployment:
  """A model version deployed to an endpoint."""
  endpoint: str
  deployed_model_id: str
  traffic_split: Dict[str, int]


class VertexModelRegistry:
  """The requests a push sends to Vertex AI, all through the aiplatform SDK.

  A refusal or a missing resource (PermissionDenied, NotFound) becomes one
  RuntimeError that names the step, the project and the region.
  """

  def __init__(self, project: str, region: str):
    self._project = project
    self._region = region

  def find_model(self, display_name: str) -> Optional[str]:
    """The resource name of the Model called `display_name`, or None."""
    model = self._only_one_named(aiplatform.Model, 'Model', 'Models',
                                 display_name, 'add a version to',
                                 'model_display_name')
    return model.resource_name if model else None

  def _only_one_named(self, resource_class, kind: str, kinds: str,
                      display_name: str, purpose: str, setting: str):
    """The one resource of `resource_class` called `display_name`, or None."""
    with self._step(f'looking up the {kind} "{display_name}"'):
      found = resource_class.list(
          filter=f'display_name="{display_name}"', project=self._project,
          location=self._region)
    if len(found) > 1:
      raise RuntimeError(
          f'{len(found)} Vertex AI {kinds} in project {self._project}, region '
          f'{self._region} are called "{display_name}" '
          f'({", ".join(r.resource_name for r in found)}), so the pusher '
          f'cannot tell which one to {purpose}: rename or delete all but '
          f'one, or use another {setting}')
    return found[0] if found else None

  def upload_version(self, display_name: str, artifact_uri: str,
                     serving_image: str, parent_model: Optional[str],
                     labels: Mapping[str, str], is_default_version: bool,
                     description: str) -> ModelVersion:
    """Uploads the SavedModel at `artifact_uri` as a new version of
    `parent_model`, or as a new Model if `parent_model` is None."""
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
          serving_container_image_uri=serving_image,
          parent_model=parent_model,
          is_default_version=is_default_version,
          labels=dict(labels),
          version_description=description,
          project=self._project,
          location=self._region)
    return ModelVersion(model.resource_name, model.version_id)

  def find_or_create_endpoint(self, display_name: str) -> EndpointState:
    """The endpoint called `display_name`, created if there is none."""
    endpoint = self._only_one_named(aiplatform.Endpoint, 'endpoint',
                                    'endpoints', display_name, 'deploy to',
                                    'endpoint_display_name')
    if endpoint is None:
      logging.info('No endpoint "%s" in project %s, region %s; creating it.',
                   display_name, self._project, self._region)
      with self._step(f'creating the endpoint "{display_name}"'):
        endpoint = aiplatform.Endpoint.create(
            display_name=display_name, project=self._project,
            location=self._region)
    return EndpointState(endpoint.resource_name,
                         dict(endpoint.gca_resource.traffic_split))

  def deploy(self, version: ModelVersion, endpoint: EndpointState,
             deployed_model_display_name: str, traffic_percentage: int,
             machine_type: str, min_replica_count: int,
             max_replica_count: int) -> Deployment:
    """Deploys `version` to `endpoint` with `traffic_percentage` of its
    traffic; the models deployed before share the rest in proportion."""
    with self._step(f'deploying {version.versioned_name} to '
                    f'{endpoint.resource_name}'):
      model = aiplatform.Model(model_name=version.resource_name,
                               version=version.version_id,
                               project=self._project, location=self._region)
      target = aiplatform.Endpoint(endpoint_name=endpoint.resource_name,
                                   project=self._project,
                                   location=self._region)
      deployed_to = model.deploy(
          endpoint=target,
          deployed_model_display_name=deployed_model_display_name,
          traffic_percentage=traffic_percentage,
          machine_type=machine_type,
          min_replica_count=min_replica_count,
          max_replica_count=max_replica_count)
    resource = deployed_to.gca_resource
    ids = [d.id for d in resource.deployed_models
           if d.model.split('@')[0] == version.resource_name and
           d.model_version_id in ('', version.version_id)]
    return Deployment(endpoint=deployed_to.resource_name,
                      deployed_model_id=ids[-1] if ids else '',
                      traffic_split=dict(resource.traffic_split))

  @contextlib.contextmanager
  def _step(self, what: str) -> Iterator[None]:
    try:
      yield
    except (api_exceptions.PermissionDenied,
            api_exceptions.NotFound) as error:
      raise RuntimeError(
          f'Vertex AI refused {what} in project {self._project}, region '
          f'{self._region}: {type(error).__name__}: {error.message}. Check that the project and the region are the '
          'ones meant, that Vertex AI is enabled there, and that the service '
          'account running the pipeline has the Vertex AI User role '
          '(roles/aiplatform.user) in the project.') from error


class Executor(pusher_executor.Executor):
  """Pushes a blessed model to Vertex AI as a new version of one Model."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    # Checked before the blessing, so a bad config fails every run, not only
    # the first one with a blessed model.
    settings = push_settings(json_utils.loads(
        exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY,
                            'null')))
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(model_push)
      return
    model_path = self.GetModelPath(input_dict)
    models = input_dict.get(standard_component_specs.MODEL_KEY)
    model_artifact_id = (artifact_utils.get_single_instance(models).id
                         if models else None)
    run_id = pipeline_run_id(self._context)
    if not run_id:
      logging.warning('The pipeline run id is unknown here; the model '
                      'version gets no %s label.', PIPELINE_RUN_LABEL)
    labels = version_labels(settings, _pipeline_name(self._context, settings),
                            run_id, model_artifact_id)

    registry = VertexModelRegistry(settings.project, settings.region)
    parent_model = registry.find_model(settings.model_display_name)
    version = registry.upload_version(
        display_name=settings.model_display_name,
        artifact_uri=model_path,
        serving_image=settings.serving_image,
        parent_model=parent_model,
        labels=labels,
        is_default_version=settings.is_default_version,
        description=f'{model_path}, pipeline run {run_id or "unknown"}')
    logging.info('Uploaded %s with labels %s.', version.versioned_name, labels)

    endpoint = registry.find_or_create_endpoint(settings.endpoint_display_name)
    traffic_percentage = settings.traffic_percentage
    if not endpoint.traffic_split:
      # Vertex AI sends all traffic to the only deployed model.
      logging.warning('Nothing serves on %s yet, so %s gets 100%% of its '
                      'traffic, not the configured %d%%.',
                      endpoint.resource_name, version.versioned_name,
                      traffic_percentage)
      traffic_percentage = 100
    deployment = registry.deploy(
        version, endpoint,
        deployed_model_display_name=(
            f'{settings.model_display_name}-v{version.version_id}'),
        traffic_percentage=traffic_percentage,
        machine_type=settings.machine_type,
        min_replica_count=settings.min_replica_count,
        max_replica_count=settings.max_replica_count)
    logging.info('Deployed %s to %s; traffic split %s.',
                 version.versioned_name, deployment.endpoint,
                 deployment.traffic_split)

    self._MarkPushed(model_push, pushed_destination=version.versioned_name,
                     pushed_version=version.version_id)
    model_push.set_string_custom_property('endpoint', deployment.endpoint)
    model_push.set_string_custom_property('deployed_model_id',
                                          deployment.deployed_model_id)
    model_push.set_int_custom_property('traffic_percentage',
                                       traffic_percentage)
