"""The Pusher executor of production runs: a blessed model becomes a version
of one Vertex AI Model and is deployed to an endpoint as a canary.

TFX's own Vertex pusher uploads every model as a separate Vertex Model, with no
labels, and sends it all of an endpoint's traffic by default. This executor
instead adds a version to the Model that has the configured display name (or
creates that Model, version 1, on the first push), labels the version with the
pipeline, the pipeline run, the code version and the candidate model, and
deploys it next to the versions already serving with a configurable share of
the traffic. An unblessed model is neither uploaded nor deployed.

Each version is served by one of two containers (`serving_container`):
- `repairml` (the default): the serving image (Dockerfile, stage `serving`),
  which runs `repairml serve` as a Vertex AI custom container, so that the
  endpoint answers with the same JSON as the local server: label names,
  recommended_labels, top_k. The Model is uploaded with that server's routes
  and port (REPAIRML_PREDICT_ROUTE, REPAIRML_HEALTH_ROUTE, REPAIRML_PORT
  below); Vertex AI passes them to the container as AIP_PREDICT_ROUTE,
  AIP_HEALTH_ROUTE and AIP_HTTP_PORT, and a copy of the SavedModel as
  AIP_STORAGE_URI, which the server copies in (serving/model_source.py).
- `tf_serving`: a prebuilt TF Serving image of Vertex AI, with its own routes
  and port. It answers with the SavedModel's bare output tensors.

A push is safe to retry (Vertex AI Pipelines retries a failed task, and a
cached Trainer hands the next run the same model):
- Its identity is the label `model_uri_hash`, a digest of the gs:// URI of the
  SavedModel. That URI names one set of files in Cloud Storage; the MLMD
  artifact id (the label `model_artifact_id`, kept for people) does not, since
  every metadata store counts from 1. A version that carries the identity
  already is reused rather than uploaded again, and not deployed again if it
  is deployed.
- A version becomes the Model's default only when it serves all of the
  endpoint's traffic: on a push to an empty endpoint, at 100 %, or when
  `repairml promote` (promotion.py) makes it so. A canary stays a
  non-default version.
- If the deploy fails, the version this push uploaded is deleted again (or,
  if that fails too, labelled push_state=failed) and the push fails with one
  line saying so; the endpoint's traffic is untouched.
- After a deploy, this Model's deployments beyond `keep_deployed` are
  undeployed, oldest first; the new version keeps its share, and the
  others share the traffic of those undeployed. The deployment of the
  Model's default version (the model the canary is compared with) is kept
  too, unless keep_deployed is 1.

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
model_registry.py. This module runs in the component image: it imports no
client-side code (submission.py).
"""

import dataclasses
import os
import re
from typing import Annotated, Any, Dict, Literal, Mapping, Optional

from absl import logging
from pydantic import BaseModel, Field, StringConstraints, field_validator
from pydantic import model_validator
from tfx.components.pusher import executor as pusher_executor
from tfx.extensions.google_cloud_ai_platform import constants
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils

from pipeline.production import labels as gcp_labels
from pipeline.production.model_registry import (DEFAULT_ALIAS, EndpointState,
                                                ModelVersion,
                                                ServingContainer,
                                                VertexError,
                                                VertexModelRegistry,
                                                traffic_without)
from pipeline.production.validation import STRICT, validated

# Keys of custom_config[SERVING_ARGS_KEY] ('ai_platform_serving_args').
PROJECT_KEY = 'project_id'  # the key TFX's Vertex pusher reads
# Serving args of TFX's Vertex pusher (or of this one, once) that mean
# something else here, and what to do instead.
_RETIRED_SERVING_ARGS = {
    'project': f"use '{PROJECT_KEY}' instead",
    'endpoint_name': "use 'endpoint_display_name' instead",
    'is_default_version': (
        'a version becomes the default when it takes all of the endpoint\'s '
        'traffic, or with `repairml promote`; remove the key'),
}

# The labels every pushed model version carries, when their value is known.
PIPELINE_LABEL = 'pipeline'
PIPELINE_RUN_LABEL = 'pipeline_run'
CODE_VERSION_LABEL = 'code_version'
MODEL_ARTIFACT_LABEL = 'model_artifact_id'
# The push's identity: a digest of the model's gs:// URI (see the docstring).
IDENTITY_LABEL = 'model_uri_hash'
# Set on a version whose deploy failed and which could not be deleted.
PUSH_STATE_LABEL = 'push_state'
PUSH_FAILED = 'failed'
_RESERVED_LABELS = (PIPELINE_LABEL, PIPELINE_RUN_LABEL, CODE_VERSION_LABEL,
                    MODEL_ARTIFACT_LABEL, IDENTITY_LABEL, PUSH_STATE_LABEL)

_MAX_DISPLAY_NAME_LENGTH = 128

# The servers a version can be deployed with (see the module docstring).
REPAIRML = 'repairml'
TF_SERVING = 'tf_serving'
ServingContainerKind = Literal['repairml', 'tf_serving']
# How Vertex AI reaches `repairml serve` in the serving image: the routes it
# answers (it reads them back from AIP_PREDICT_ROUTE and AIP_HEALTH_ROUTE) and
# the port Vertex AI sends to, 8080, its default. The image's own defaults are
# the same (Dockerfile; tests/production/test_image.py).
REPAIRML_PREDICT_ROUTE = '/predict'
REPAIRML_HEALTH_ROUTE = '/health'
REPAIRML_PORT = 8080

# Vertex AI Pipelines runs a TFX executor through KubeflowV2's container
# entrypoint, which gives it no pipeline run id. The entrypoint does name the
# task directory, <pipeline root>/<project number>/<pipeline job id>/<task>,
# and puts the executor's temp directory at <task directory>/.temp/<task>/.
_VERTEX_TASK_DIR = re.compile(
    r'^(?:gs://|/gcs/).+/\d+/(?P<job>[^/]+)/(?P<task>[^/]+)$')


class PushConfigError(ValueError):
  """The Pusher's custom_config is wrong; the message names the key."""


class PushError(RuntimeError):
  """A push failed; the message says what failed and what was left behind."""


# Rust's regex engine (pydantic's) has no look-ahead: "not blank" is
# "has a character that is not a space".
_NonBlank = StringConstraints(pattern=r'\S')
_TEXT = 'a non-empty string'
# The display name goes into a list filter between double quotes.
_DisplayName = Annotated[str, StringConstraints(
    pattern=r'^[^"\\]*[^"\\\s][^"\\]*$', max_length=_MAX_DISPLAY_NAME_LENGTH)]
_DISPLAY_NAME = (f'a non-empty string of at most {_MAX_DISPLAY_NAME_LENGTH} '
                 'characters, without double quotes or backslashes')


class ServingArgs(BaseModel):
  """custom_config['ai_platform_serving_args']; see custom_config()."""
  model_config = STRICT

  project_id: Annotated[str, _NonBlank] = Field(description=_TEXT)
  model_display_name: _DisplayName = Field(description=_DISPLAY_NAME)
  endpoint_display_name: _DisplayName = Field(description=_DISPLAY_NAME)
  traffic_percentage: int = Field(ge=0, le=100,
                                  description='an integer in 0..100')
  machine_type: Annotated[str, _NonBlank] = Field(description=_TEXT)
  min_replica_count: int = Field(ge=1, description='an integer >= 1')
  max_replica_count: int = Field(ge=1, description='an integer >= 1')
  code_version: Annotated[str, _NonBlank] = Field(description=_TEXT)
  serving_container: ServingContainerKind = Field(
      description=f"'{REPAIRML}' or '{TF_SERVING}'")
  keep_deployed: int = Field(2, ge=1, description='an integer >= 1')
  pipeline_name: str = Field('', description='a string')
  labels: Dict[gcp_labels.LabelKey, str] = Field(
      default_factory=dict,
      description='a mapping of label keys to strings')

  @model_validator(mode='before')
  @classmethod
  def _no_retired_keys(cls, args: Any) -> Any:
    for key in args if isinstance(args, dict) else ():
      if key in _RETIRED_SERVING_ARGS:
        raise ValueError(f'has the key {key!r}, which this executor does not '
                         f'read: {_RETIRED_SERVING_ARGS[key]}')
    return args

  @field_validator('max_replica_count')
  @classmethod
  def _at_least_min(cls, value: int, info) -> int:
    low = info.data.get('min_replica_count')
    if low is not None and value < low:
      raise ValueError(f'({value}) is below min_replica_count ({low}): raise '
                       'it, or lower min_replica_count')
    return value

  @field_validator('labels')
  @classmethod
  def _room_for_own_labels(cls, labels: Dict[str, str]) -> Dict[str, str]:
    for key in labels:
      if key in _RESERVED_LABELS:
        raise ValueError(f'has the key {key!r}, which the pusher sets '
                         'itself: remove it')
    if len(labels) + len(_RESERVED_LABELS) > gcp_labels.MAX_LABELS:
      raise ValueError(
          f'has {len(labels)} labels; with the pusher\'s own '
          f'{len(_RESERVED_LABELS)} a model version may carry at most '
          f'{gcp_labels.MAX_LABELS}')
    return labels


class PushSettings(BaseModel):
  """The Pusher's custom_config, with the keys of TFX's Vertex extension."""
  model_config = STRICT

  ai_platform_enable_vertex: Literal[True] = Field(
      description='true: this executor pushes to Vertex AI only')
  ai_platform_vertex_region: Annotated[str, _NonBlank] = Field(
      description=_TEXT)
  ai_platform_vertex_container_image_uri: Annotated[str, _NonBlank] = Field(
      description=_TEXT)
  ai_platform_serving_args: ServingArgs = Field(
      description='a mapping: build it with vertex_pusher.custom_config(...)')
  # This executor's own code version (pipeline/code_version.py): read by
  # nobody, it makes a change to the push code a change of the cache key.
  pusher_code_version: str = Field('', description='a string')

  @model_validator(mode='after')
  def _repairml_image_names_its_build(self) -> 'PushSettings':
    image = self.ai_platform_vertex_container_image_uri
    if (self.ai_platform_serving_args.serving_container == REPAIRML and
        ':' not in image.rsplit('/', 1)[-1] and '@' not in image):
      raise ValueError(
          f'has {constants.VERTEX_CONTAINER_IMAGE_URI_KEY} {image} without a '
          f"tag, but serving_container '{REPAIRML}' needs one: name the build "
          'of the serving image, e.g. <image>:<git commit> (make '
          'push-serving-image), so that a model version keeps the server it '
          'was pushed with')
    return self

  @property
  def region(self) -> str:
    return self.ai_platform_vertex_region

  @property
  def serving_image(self) -> str:
    return self.ai_platform_vertex_container_image_uri

  @property
  def serving(self) -> ServingArgs:
    return self.ai_platform_serving_args

  @property
  def container(self) -> ServingContainer:
    """The serving container every uploaded version gets."""
    if self.serving.serving_container == TF_SERVING:
      # The prebuilt image's own routes and port are Vertex AI's defaults.
      return ServingContainer(self.serving_image)
    return ServingContainer(self.serving_image,
                            predict_route=REPAIRML_PREDICT_ROUTE,
                            health_route=REPAIRML_HEALTH_ROUTE,
                            ports=(REPAIRML_PORT,))


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
                  serving_container: str,
                  keep_deployed: int = 2,
                  pipeline_name: str = '',
                  labels: Optional[Mapping[str, str]] = None,
                  pusher_code_version: str = '') -> Dict[str, Any]:
  """The Pusher's custom_config, checked now rather than at push time.

  Args:
    project: the Google Cloud project of the Model and the endpoint.
    region: their Vertex AI region, e.g. 'europe-west4'.
    serving_image: the serving container image of every uploaded version:
      repairml's serving image with its tag, or a TF Serving image.
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
    serving_container: what `serving_image` is: 'repairml', the serving
      image of this project, uploaded with the routes and port of `repairml
      serve`; or 'tf_serving', a prebuilt TF Serving image of Vertex AI,
      uploaded with Vertex AI's defaults.
    keep_deployed: how many versions of the Model stay deployed after a push
      (>= 1); older ones are undeployed.
    pipeline_name: the `pipeline` label when the orchestrator does not tell
      the executor the pipeline's name (Vertex AI Pipelines does not).
    labels: more labels for each model version; the keys must follow Google
      Cloud's label rules and may not be one of the labels set here.
    pusher_code_version: the code version of this executor, so that TFX's
      cache sees a change to it.

  Returns:
    {ENABLE_VERTEX_KEY: True, VERTEX_REGION_KEY: region,
     VERTEX_CONTAINER_IMAGE_URI_KEY: serving_image,
     SERVING_ARGS_KEY: {'project_id', 'model_display_name',
       'endpoint_display_name', 'traffic_percentage', 'machine_type',
       'min_replica_count', 'max_replica_count', 'code_version',
       'serving_container', 'keep_deployed', 'pipeline_name', 'labels'}}

  Raises:
    PushConfigError: if a value is invalid.
  """
  config = {
      constants.ENABLE_VERTEX_KEY: True,
      constants.VERTEX_REGION_KEY: region,
      constants.VERTEX_CONTAINER_IMAGE_URI_KEY: serving_image,
      constants.SERVING_ARGS_KEY: {
          PROJECT_KEY: project,
          'model_display_name': model_display_name,
          'endpoint_display_name': endpoint_display_name,
          'traffic_percentage': traffic_percentage,
          'machine_type': machine_type,
          'min_replica_count': min_replica_count,
          'max_replica_count': max_replica_count,
          'code_version': code_version,
          'serving_container': serving_container,
          'keep_deployed': keep_deployed,
          'pipeline_name': pipeline_name,
          'labels': dict(labels or {}),
      },
      'pusher_code_version': pusher_code_version,
  }
  push_settings(config)
  return config


def push_settings(config: Any) -> PushSettings:
  """Reads and checks the Pusher's custom_config (see `custom_config()`)."""
  return validated(PushSettings, config, 'custom_config.', PushConfigError)


def version_labels(settings: PushSettings, pipeline_name: str,
                   pipeline_run: Optional[str],
                   model_artifact_id: Optional[int]) -> Dict[str, str]:
  """The labels of a pushed model version, but its identity (see push());
  an unknown value has no label."""
  value = gcp_labels.label_value
  labels = {key: value(text) for key, text in settings.serving.labels.items()}
  labels[CODE_VERSION_LABEL] = value(settings.serving.code_version)
  if pipeline_name:
    labels[PIPELINE_LABEL] = value(pipeline_name)
  if pipeline_run:
    labels[PIPELINE_RUN_LABEL] = value(pipeline_run)
  if model_artifact_id:
    labels[MODEL_ARTIFACT_LABEL] = value(str(model_artifact_id))
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
    return context.pipeline_info.id or settings.serving.pipeline_name
  return settings.serving.pipeline_name


@dataclasses.dataclass(frozen=True)
class PushResult:
  """Where a push left the model."""
  version: ModelVersion
  endpoint: str
  deployed_model_id: str
  traffic_percentage: int   # the version's share of the endpoint's traffic
  uploaded: bool            # False: an earlier push had uploaded it


def push(registry: VertexModelRegistry, settings: PushSettings,
         model_path: str, labels: Mapping[str, str],
         description: str) -> PushResult:
  """Makes the SavedModel at `model_path` a deployed version of the Model.

  Pushing the same `model_path` again ends in the same state: the version
  found by its identity label is reused (see the module docstring).
  """
  args = settings.serving
  identity = {IDENTITY_LABEL: gcp_labels.short_hash(model_path)}
  model = registry.find_model(args.model_display_name)
  endpoint = registry.find_or_create_endpoint(args.endpoint_display_name)
  version = _pushed_before(registry, model, identity, endpoint,
                           settings.serving_image)
  uploaded = version is None
  if uploaded:
    version = registry.upload_version(
        display_name=args.model_display_name,
        artifact_uri=model_path,
        container=settings.container,
        parent_model=model,
        labels={**labels, **identity},
        # Made the default below, once it serves all traffic: a default that
        # never deployed, or a canary as the default, would mislead anyone
        # who uses the Model without naming a version.
        is_default_version=False,
        description=description)
    logging.info('Uploaded %s with labels %s.', version.versioned_name,
                 version.labels)

  deployment = endpoint.deployment_of(version)
  if deployment is None:
    endpoint = _deploy(registry, settings, version, endpoint,
                       undo=uploaded, whole_model=model is None)
    deployment = endpoint.deployment_of(version)
    if deployment is None:
      raise PushError(
          f'Vertex AI reports no deployment of {version.versioned_name} on '
          f'{endpoint.resource_name} after deploying it: look at the '
          'endpoint in the Vertex AI console, then run the pipeline again')
  else:
    logging.info('%s is deployed on %s already (deployed model %s); not '
                 'deploying it again.', version.versioned_name,
                 endpoint.resource_name, deployment.id)

  try:
    endpoint = _undeploy_beyond(registry, endpoint, version, deployment.id,
                                args.keep_deployed)
    share = endpoint.share(deployment.id)
    if share == 100 and not version.is_default:
      version = registry.make_default(version)
      logging.info('%s serves all traffic, so it is now the default version.',
                   version.versioned_name)
    if PUSH_STATE_LABEL in version.labels:
      # An earlier, failed push of this model left the mark; it is pushed now.
      version = registry.set_labels(version, {
          k: v for k, v in version.labels.items() if k != PUSH_STATE_LABEL})
  except VertexError as error:
    # The version serves now, so it stays; a retry finds it and finishes.
    raise PushError(
        f'{error} {version.versioned_name} is deployed on '
        f'{endpoint.resource_name} as {deployment.id}, but the push did not '
        'finish: run the pipeline again, which reuses the deployment and '
        'finishes it.') from error
  return PushResult(version, endpoint.resource_name, deployment.id, share,
                    uploaded)


def _pushed_before(registry: VertexModelRegistry, model: Optional[str],
                   identity: Mapping[str, str], endpoint: EndpointState,
                   serving_image: str) -> Optional[ModelVersion]:
  """The version an earlier push of this model uploaded, or None."""
  if model is None:
    return None
  found = registry.versions(model, labels=identity)
  if not found:
    return None
  deployed = [v for v in found if endpoint.deployment_of(v)]
  chosen = (deployed or found)[-1]
  if len(found) > 1:
    logging.warning('%d versions of %s carry %s; using %s.', len(found),
                    model, identity, chosen.versioned_name)
  logging.info('%s holds this model already (%s); not uploading it again.',
               chosen.versioned_name, identity)
  if chosen.serving_image and chosen.serving_image != serving_image:
    # The model is the identity, so the version stays what it was uploaded
    # as; a Model version's container cannot change.
    logging.warning('%s was uploaded with the serving image %s, not %s as '
                    'configured now; it keeps serving with %s.',
                    chosen.versioned_name, chosen.serving_image, serving_image,
                    chosen.serving_image)
  return chosen


def _deploy(registry: VertexModelRegistry, settings: PushSettings,
            version: ModelVersion, endpoint: EndpointState, undo: bool,
            whole_model: bool) -> EndpointState:
  """Deploys `version`; if that fails and `undo`, deletes it again."""
  args = settings.serving
  traffic_percentage = args.traffic_percentage
  if not endpoint.traffic_split:
    # Vertex AI sends all traffic to the only deployed model.
    logging.warning('Nothing serves on %s yet, so %s gets 100%% of its '
                    'traffic, not the configured %d%%.',
                    endpoint.resource_name, version.versioned_name,
                    traffic_percentage)
    traffic_percentage = 100
  try:
    return registry.deploy(
        version, endpoint,
        deployed_model_display_name=(
            f'{args.model_display_name}-v{version.version_id}'),
        traffic_percentage=traffic_percentage,
        machine_type=args.machine_type,
        min_replica_count=args.min_replica_count,
        max_replica_count=args.max_replica_count)
  # Whatever stopped the deploy (a refusal, a timeout, the SDK's own checks),
  # the version must not stay behind as if it had been pushed.
  except Exception as error:  # pylint: disable=broad-except
    cause = (str(error) if isinstance(error, VertexError) else
             f'deploying {version.versioned_name} to '
             f'{endpoint.resource_name} failed: {type(error).__name__}: '
             f'{error}.')
    if not undo:
      outcome = (f'{version.versioned_name} was uploaded by an earlier push '
                 'of this model and stays; run the pipeline again once the '
                 'cause is fixed')
    else:
      outcome = _undo_upload(registry, version, whole_model)
    raise PushError(f'{cause} The push failed; {outcome}.') from error


def _undo_upload(registry: VertexModelRegistry, version: ModelVersion,
                 whole_model: bool) -> str:
  """Deletes a version whose deploy failed; says what became of it."""
  try:
    registry.delete_version(version, whole_model)
  except VertexError as delete_error:
    failed = {**version.labels, PUSH_STATE_LABEL: PUSH_FAILED}
    try:
      registry.set_labels(version, failed)
    except VertexError as label_error:
      return (f'deleting the version it uploaded failed too ({delete_error}), '
              f'and so did labelling it ({label_error}): delete '
              f'{version.versioned_name} by hand')
    return (f'deleting the version it uploaded failed too ({delete_error}), '
            f'so {version.versioned_name} is labelled '
            f'{PUSH_STATE_LABEL}={PUSH_FAILED}: delete it by hand once the '
            'cause is fixed (a retry of this push reuses it)')
  what = 'the Model it created' if whole_model else 'the version it uploaded'
  return (f'{what} ({version.versioned_name}) is deleted again, so the Model '
          'and the endpoint are as they were')


def _undeploy_beyond(registry: VertexModelRegistry, endpoint: EndpointState,
                     version: ModelVersion, deployed_model_id: str,
                     keep: int) -> EndpointState:
  """Undeploys the Model's deployments beyond `keep`, oldest first, but not
  that of `version`, nor (if keep > 1) that of the default version."""
  ours = endpoint.deployments_of(version.resource_name)
  if len(ours) <= keep:
    return endpoint
  protected = {deployed_model_id}
  if keep > 1 and not version.is_default:
    default = registry.version(version.resource_name, DEFAULT_ALIAS)
    stable = endpoint.deployment_of(default)
    if stable is not None:
      protected.add(stable.id)
  candidates = [d for d in ours if d.id not in protected]
  removed = [d.id for d in candidates[:len(ours) - keep]]
  split = traffic_without(endpoint.traffic_split,
                          [d.id for d in endpoint.deployed_models], removed,
                          fixed=deployed_model_id)
  logging.info('%d versions of %s are deployed on %s, %d are to be kept: '
               'undeploying %s; traffic split %s.', len(ours),
               version.resource_name, endpoint.resource_name, keep,
               ', '.join(removed), split)
  for deployed in removed:
    endpoint = registry.undeploy(endpoint, deployed, split)
  return endpoint


class Executor(pusher_executor.Executor):
  """Pushes a blessed model to Vertex AI as a version of one Model."""

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

    result = push(
        VertexModelRegistry(settings.serving.project_id, settings.region),
        settings, model_path, labels,
        description=f'{model_path}, pipeline run {run_id or "unknown"}')
    logging.info('%s is deployed to %s as %s with %d%% of the traffic.',
                 result.version.versioned_name, result.endpoint,
                 result.deployed_model_id, result.traffic_percentage)

    self._MarkPushed(model_push,
                     pushed_destination=result.version.versioned_name,
                     pushed_version=result.version.version_id)
    model_push.set_string_custom_property('endpoint', result.endpoint)
    model_push.set_string_custom_property('deployed_model_id',
                                          result.deployed_model_id)
    model_push.set_int_custom_property('traffic_percentage',
                                       result.traffic_percentage)
