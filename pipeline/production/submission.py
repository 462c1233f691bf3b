"""Sends a compiled pipeline to production: a Vertex AI Pipelines run or
schedule, or a run on a Kubeflow Pipelines cluster.

The input is the pipeline-job JSON that KubeflowV2DagRunner writes. Whatever can
be checked before a request leaves this machine (the target, the template, the
parameters, the labels, the cron string, the container images) is checked
first: the settings by strict pydantic models (validation.py), the cron string
by croniter. Every failure of Google Cloud or KFP reaches the user as one
SubmissionError that says what failed and what to do, never as a stack trace.

A schedule is kept by its display name: scheduling again updates the one
schedule of that name (its cron string and the job it starts) instead of
adding a second one.
"""

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import re
import subprocess
import tempfile
import warnings
import zoneinfo
from typing import Annotated, Any, Dict, Iterator, List, Mapping, Optional

# google.api_core warns on every import that Python 3.10 is unsupported. The
# warning is harmless here (see PLATFORM.md) and would flood the CLI output.
warnings.filterwarnings(
    'ignore', message='You are using a non-supported Python version',
    category=FutureWarning)

# pylint: disable=g-import-not-at-top,wrong-import-position
import google.auth
import pydantic
import requests
from croniter import CroniterError, croniter
from google.api_core import exceptions as api_exceptions
from google.auth import credentials as auth_credentials
from google.auth import exceptions as auth_exceptions
from google.auth.transport import requests as auth_requests
from google.cloud import aiplatform
from google.cloud.aiplatform.constants import base as aiplatform_constants
from google.protobuf import field_mask_pb2
from pydantic import AfterValidator, BaseModel, Field

from pipeline.production.labels import Labels, label_value
from pipeline.production.validation import STRICT, problem, validated

PROJECT_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform'
CONSOLE = 'https://console.cloud.google.com/vertex-ai/locations'

# Google Cloud resource rules, as the APIs enforce them.
_PROJECT_ID = re.compile(
    r'^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[0-9]+$')
_EMAIL = re.compile(r'^[^@\s]+@[^@\s]+\.[a-z]+$')
_JOB_ID = re.compile(r'[a-z][-a-z0-9]{0,127}')

# The five fields of Vertex AI's (unix) cron strings, and the values each
# takes; 7 is Sunday too.
_CRON_FIELDS = (('minute', 'minutes are 0-59'), ('hour', 'hours are 0-23'),
                ('day of month', 'days of the month are 1-31'),
                ('month', 'months are 1-12 or JAN-DEC'),
                ('day of week', 'days of the week are 0-7 or SUN-SAT (0 and 7 '
                 'are Sunday)'))
# croniter also reads Quartz and Jenkins extensions (L, W, #, ?, H, R) that
# unix cron has not: each comma-separated part must be *, a value or a range
# of values, with an optional /step. Which values and names fit which field
# is croniter's to say.
_CRON_VALUE = r'([0-9]+|[A-Za-z]{3})'  # a number, or a name such as JAN, MON
_CRON_PART = re.compile(rf'(\*|{_CRON_VALUE}(-{_CRON_VALUE})?)(/[0-9]+)?')
_CRON_TIMEZONE = re.compile(r'^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$')
_CRON_EXAMPLE = ('e.g. "0 3 * * MON" runs at 03:00 UTC every Monday, '
                 '"TZ=Europe/Berlin 0 3 * * *" at 03:00 Berlin time daily')

# Registries that accept the Google credentials that submit the job.
_GOOGLE_REGISTRY = re.compile(
    r'^(?:[a-z0-9-]+-docker\.pkg\.dev|(?:[a-z]+\.)?gcr\.io)$')
# tfx.extensions.google_cloud_ai_platform's VERTEX_CONTAINER_IMAGE_URI_KEY,
# which this client-side module does not import TFX for.
_SERVING_IMAGE_KEY = 'ai_platform_vertex_container_image_uri'
_MANIFEST_TYPES = ', '.join((
    'application/vnd.oci.image.index.v1+json',
    'application/vnd.docker.distribution.manifest.list.v2+json',
    'application/vnd.oci.image.manifest.v1+json',
    'application/vnd.docker.distribution.manifest.v2+json',
))

_NO_CREDENTIALS = (
    'no Google Cloud credentials found: run `gcloud auth application-default '
    'login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key '
    'file')


class SubmissionError(Exception):
  """A submission failed or would fail; the message says what and what to do."""


def _project_id(value: str) -> str:
  if not _PROJECT_ID.match(value):
    raise ValueError(
        f'{value!r} is not a Google Cloud project ID: use the ID that `gcloud '
        'projects list` shows (6 to 30 lowercase letters, digits and '
        'hyphens), not the project name')
  return value


def _region(value: str) -> str:
  if value not in aiplatform_constants.SUPPORTED_REGIONS:
    raise ValueError(
        f'{value!r} is not a Vertex AI region: use one of ' +
        ', '.join(sorted(aiplatform_constants.SUPPORTED_REGIONS)))
  return value


def _email(value: str) -> str:
  if not _EMAIL.match(value):
    raise ValueError(
        f'{value!r} is not an email address: use the email of the account '
        'the pipeline runs as, e.g. pipelines@PROJECT.iam.gserviceaccount.com')
  return value


def _cloud_storage_path(value: str) -> str:
  if not re.match(r'^gs://[^/]+', value):
    raise ValueError(
        f'{value!r} is not a Cloud Storage path: use gs://BUCKET/PATH, where '
        'Vertex AI will write the artifacts of every run')
  return value


def _job_id(value: str) -> str:
  if not _JOB_ID.fullmatch(value):
    raise ValueError(
        f'{value!r} is not a valid Vertex AI job id: use at most 128 '
        'lowercase letters, digits and hyphens, starting with a letter')
  return value


ServiceAccount = Annotated[str, AfterValidator(_email)]
_SERVICE_ACCOUNT = pydantic.TypeAdapter(ServiceAccount)


class VertexTarget(BaseModel):
  """Where and as whom pipeline jobs run on Vertex AI; checked when built."""
  model_config = STRICT

  # project ID, e.g. repairml-prod
  project: Annotated[str, AfterValidator(_project_id)] = Field(
      description='a Google Cloud project ID')
  # Vertex AI region, e.g. europe-west4
  region: Annotated[str, AfterValidator(_region)] = Field(
      description='a Vertex AI region')
  # email of the account the pipeline's steps run as
  service_account: ServiceAccount = Field(
      description='the email of a service account')
  # gs://BUCKET/PATH for the pipeline's artifacts
  pipeline_root: Annotated[str, AfterValidator(_cloud_storage_path)] = Field(
      description='a gs://BUCKET/PATH')

  def __init__(self, **values: Any):
    # Built in code with keywords, so the error is a SubmissionError, as
    # every other failure of a submission.
    try:
      super().__init__(**values)
    except pydantic.ValidationError as error:
      raise SubmissionError(problem(error, 'Vertex target: ',
                                    VertexTarget)) from None


class _JobSettings(BaseModel):
  """What a pipeline job carries beyond its template and parameters."""
  model_config = STRICT

  labels: Labels = Field(description='a mapping of label keys to values')
  job_id: Optional[Annotated[str, AfterValidator(_job_id)]] = Field(
      None, description='a Vertex AI job id')


def check_cron(cron: str) -> str:
  """`cron`, if Vertex AI can run it: five fields (minute hour day-of-month
  month day-of-week), after an optional "TZ=" or "CRON_TZ=" time zone.

  Raises:
    ValueError: saying what is wrong, with an example.
  """
  expression = cron.strip()
  timezone = _CRON_TIMEZONE.match(expression)
  if timezone:
    try:
      zoneinfo.ZoneInfo(timezone.group(1))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
      raise ValueError(
          f'{cron!r} has the unknown time zone {timezone.group(1)!r}: use an '
          f'IANA name such as Europe/Berlin; {_CRON_EXAMPLE}') from error
    expression = timezone.group(2)
  fields = expression.split()
  if len(fields) != len(_CRON_FIELDS):
    raise ValueError(
        f'{cron!r} has {len(fields)} fields, not 5: write "minute hour '
        f'day-of-month month day-of-week"; {_CRON_EXAMPLE}')
  for index, (name, values) in enumerate(_CRON_FIELDS):
    wrong = _cron_field_problem(fields, index)
    if wrong:
      raise ValueError(
          f'{cron!r}: the {name} {fields[index]!r} {wrong}; {values}, with '
          f'lists (1,15), ranges (1-5) and steps (*/10); {_CRON_EXAMPLE}')
  try:
    # strict: also a day that none of the months has, such as 31 2.
    croniter.expand(expression, strict=True)
  except CroniterError as error:
    raise ValueError(
        f'{cron!r} never runs: none of its months has that day of the month; '
        f'{_CRON_EXAMPLE}') from error
  return cron


def _cron_field_problem(fields: List[str], index: int) -> Optional[str]:
  """What is wrong with fields[index] of a cron string, or None."""
  text = fields[index]
  if not all(_CRON_PART.fullmatch(part) for part in text.split(',')):
    return 'is not *, a value or a range, with an optional /step'
  # The field alone, every other one *, so croniter's verdict is about it.
  alone = ' '.join(text if i == index else '*' for i in range(len(fields)))
  try:
    croniter.expand(alone)
  except CroniterError:
    return 'is not valid'
  # croniter reads a reversed range (5-1) as one that wraps around the end of
  # the field; unix cron, and Vertex AI, refuse it.
  names = croniter.ALPHACONV[index]
  for part in text.split(','):
    low, _, high = part.split('/')[0].partition('-')
    if high and int(names.get(low.lower(), low)) > int(
        names.get(high.lower(), high)):
      return 'is a range from high to low'
  return None


_MAX_DISPLAY_NAME_LENGTH = 128


class _ScheduleSettings(BaseModel):
  """A schedule's settings; the display name is the schedule's identity."""
  model_config = STRICT

  cron: Annotated[str, AfterValidator(check_cron)] = Field(
      description='a five-field cron string such as "0 3 * * MON"')
  # It goes into a list filter between double quotes.
  display_name: Annotated[str, pydantic.StringConstraints(
      pattern=r'^[^"\\]+$', max_length=_MAX_DISPLAY_NAME_LENGTH)] = Field(
          description=f'1 to {_MAX_DISPLAY_NAME_LENGTH} characters, without '
          'double quotes or backslashes')
  max_concurrent_run_count: int = Field(
      ge=1, description='an integer >= 1 (runs at a time)')
  service_account: ServiceAccount = Field(
      description='the email of a service account')


@dataclasses.dataclass(frozen=True)
class Submission:
  """What was created: its resource name (or KFP run id) and where to see it."""
  name: str
  url: str
  created: bool = True   # False: an existing schedule was updated


def pipeline_job(template_path: str,
                 target: VertexTarget,
                 parameter_values: Mapping[str, Any],
                 enable_caching: bool,
                 labels: Mapping[str, str],
                 job_id: Optional[str] = None,
                 credentials: Optional[auth_credentials.Credentials] = None
                ) -> aiplatform.PipelineJob:
  """Builds, but does not send, the Vertex AI pipeline job for a template.

  The job keeps the template's own labels (TFX's version labels); `labels`
  are added to them and win on a clash. `enable_caching` applies to every
  task. Without `credentials`, Application Default Credentials are used.
  """
  template = _read_template(template_path)
  _check_parameters(template, parameter_values, template_path)
  all_labels = {**template.get('labels', {}), **labels}
  validated(_JobSettings, {'labels': all_labels, 'job_id': job_id},
            'pipeline job: ', SubmissionError)
  credentials = credentials or default_credentials()
  try:
    return aiplatform.PipelineJob(
        display_name=template['displayName'],
        template_path=template_path,
        job_id=job_id,
        pipeline_root=target.pipeline_root,
        parameter_values=dict(parameter_values),
        enable_caching=enable_caching,
        labels=all_labels,
        project=target.project,
        location=target.region,
        credentials=credentials)
  except (ValueError, TypeError) as error:
    raise SubmissionError(
        f'cannot build a Vertex AI pipeline job from {template_path}: {error}: '
        'fix the parameters, or compile the pipeline again') from error


def submit(job: aiplatform.PipelineJob, service_account: str) -> Submission:
  """Starts one run of `job` on Vertex AI, as `service_account`."""
  _check_service_account(service_account)
  action = f'cannot submit pipeline job {job.job_id} to Vertex AI'
  with _as_submission_error(action, job.project, job.location, service_account):
    job.submit(service_account=service_account)
  return Submission(job.resource_name, _console_url(job.resource_name))


def schedule(job: aiplatform.PipelineJob,
             cron: str,
             display_name: str,
             service_account: str,
             max_concurrent_run_count: int = 1) -> Submission:
  """Makes the Vertex AI schedule `display_name` start `job` at every `cron`
  time: creates it, or updates the one schedule of that name.

  `cron` has five fields (minute hour day-of-month month day-of-week) and may
  start with a time zone, as in "CRON_TZ=Europe/Amsterdam 0 3 * * *"; without
  one, Vertex AI reads it in UTC. More than one schedule of that name is an
  error: which one to keep is the user's call.
  """
  settings = validated(
      _ScheduleSettings,
      dict(cron=cron, display_name=display_name,
           max_concurrent_run_count=max_concurrent_run_count,
           service_account=service_account),
      'schedule: ', SubmissionError)
  where = (job.project, job.location, service_account)
  with _as_submission_error(f'cannot look up schedule {display_name!r} on '
                            'Vertex AI', *where):
    existing = aiplatform.PipelineJobSchedule.list(
        filter=f'display_name="{display_name}"', project=job.project,
        location=job.location, credentials=job.credentials)
  if len(existing) > 1:
    raise SubmissionError(
        f'{len(existing)} Vertex AI schedules in project {job.project}, region '
        f'{job.location} are called {display_name!r} '
        f'({", ".join(s.resource_name for s in existing)}), so it is unclear '
        'which one to update: delete all but one (Vertex AI > Pipelines > '
        'Schedules), then schedule again')
  if existing:
    with _as_submission_error(f'cannot update schedule {display_name!r} on '
                              'Vertex AI', *where):
      updated = _update_schedule(existing[0], job, settings)
    return Submission(updated.name, _console_url(updated.name), created=False)
  with _as_submission_error(f'cannot create schedule {display_name!r} on '
                            'Vertex AI', *where):
    created = job.create_schedule(
        cron=settings.cron,
        display_name=settings.display_name,
        max_concurrent_run_count=settings.max_concurrent_run_count,
        service_account=settings.service_account)
  return Submission(created.resource_name, _console_url(created.resource_name))


def _update_schedule(current: aiplatform.PipelineJobSchedule,
                     job: aiplatform.PipelineJob,
                     settings: _ScheduleSettings):
  """Gives the schedule `current` the cron string and the job of `settings`
  and `job`; returns the updated Schedule resource."""
  # PipelineJobSchedule.update() changes only when a schedule runs, not the
  # job it starts, so the request goes through the schedule's own client.
  # UpdateSchedule takes a new job request (what it may not change is the
  # kind of request). The SDK builds that request as create_schedule does.
  wanted = aiplatform.PipelineJobSchedule(
      pipeline_job=job, display_name=settings.display_name,
      credentials=job.credentials, project=job.project, location=job.location)
  replacement = type(current.gca_resource)(
      name=current.resource_name,
      display_name=settings.display_name,
      cron=settings.cron,
      max_concurrent_run_count=settings.max_concurrent_run_count,
      # The SDK keeps the schedule it has not sent in _gca_resource; the
      # public gca_resource insists on one that exists.
      create_pipeline_job_request=wanted._gca_resource  # pylint: disable=protected-access
      .create_pipeline_job_request)
  replacement.create_pipeline_job_request.pipeline_job.service_account = (
      settings.service_account)
  return current.api_client.update_schedule(
      schedule=replacement,
      update_mask=field_mask_pb2.FieldMask(paths=[
          'cron', 'max_concurrent_run_count', 'create_pipeline_job_request']))


def submit_to_kfp(template_path: str,
                  host: str,
                  parameter_values: Mapping[str, Any],
                  enable_caching: bool,
                  experiment: Optional[str] = None,
                  pipeline_root: Optional[str] = None,
                  client: Any = None) -> Submission:
  """Starts one run of the template on a Kubeflow Pipelines cluster.

  `client` is a kfp.Client; by default one is made for `host`. The pipeline
  root defaults to the one compiled into the template, and the template's
  compiled parameter values are the defaults for `parameter_values`.
  """
  template = _read_template(template_path)
  _check_parameters(template, parameter_values, template_path)
  if not host:
    raise SubmissionError(
        'no Kubeflow Pipelines host given: pass the URL of the KFP API, '
        'e.g. http://localhost:8080 after `kubectl port-forward`')
  arguments = {**_compiled_parameter_values(template), **parameter_values}
  run_name = '{} {}'.format(
      template['displayName'],
      datetime.datetime.now().strftime('%Y-%m-%d %H-%M-%S'))
  with tempfile.TemporaryDirectory() as package_dir:
    # kfp.Client reads only .yaml (or zipped) files that hold a bare pipeline
    # spec, not the job JSON around it. JSON is YAML, so dump the spec as is.
    package = os.path.join(package_dir, 'pipeline.yaml')
    with open(package, 'w', encoding='utf-8') as f:
      json.dump(template['pipelineSpec'], f)
    with _as_kfp_submission_error(host):
      if client is None:
        # Imported here: kfp takes seconds to import, and only KFP runs need it.
        import kfp  # pylint: disable=g-import-not-at-top
        client = kfp.Client(host=host)
      result = client.create_run_from_pipeline_package(
          pipeline_file=package,
          arguments=arguments,
          run_name=run_name,
          experiment_name=experiment,
          pipeline_root=(pipeline_root or
                         template['runtimeConfig'].get('gcsOutputDirectory')),
          enable_caching=enable_caching)
  return Submission(result.run_id,
                    f'{host.rstrip("/")}/#/runs/details/{result.run_id}')


def check_images(job: aiplatform.PipelineJob,
                 session: Optional[requests.Session] = None) -> List[str]:
  """Checks that the job's container images exist; returns those checked.

  Vertex AI accepts a job whose image does not exist and fails only when the
  step starts, often an hour into the run; a missing serving image fails the
  Pusher, the last step. This asks the registry first, through the Docker
  Registry API that Artifact Registry and Container Registry serve. Images in
  other registries are not checked. `session` is an authorised requests
  session; by default one with the job's credentials.
  """
  executors = job.pipeline_spec.get('deploymentSpec', {}).get('executors', {})
  images = sorted({executor['container']['image']
                   for executor in executors.values()
                   if 'container' in executor} |
                  _serving_images(job.pipeline_spec))
  google_hosted = [image for image in images
                   if _GOOGLE_REGISTRY.match(image.split('/', 1)[0])]
  if session is None:
    session = auth_requests.AuthorizedSession(
        auth_credentials.with_scopes_if_required(
            job.credentials, [CLOUD_PLATFORM_SCOPE]))
  missing = []
  for image in google_hosted:
    try:
      response = session.head(_manifest_url(image),
                              headers={'Accept': _MANIFEST_TYPES}, timeout=30)
    except auth_exceptions.GoogleAuthError as error:
      raise SubmissionError(f'cannot check image {image}: '
                            f'{_credentials_problem(error)}') from error
    except requests.RequestException as error:
      raise SubmissionError(
          f'cannot reach the registry of image {image} ({error}): check the '
          'network connection and proxy settings, then retry') from error
    if response.status_code == 404:
      missing.append(image)
    elif response.status_code in (401, 403):
      raise SubmissionError(
          f'not allowed to read image {image} (HTTP {response.status_code}): '
          'grant your account roles/artifactregistry.reader on its '
          'repository, or check the image name')
    elif response.status_code != 200:
      raise SubmissionError(
          f'the registry answered HTTP {response.status_code} for image '
          f'{image}: retry, or check the image name')
  if missing:
    raise SubmissionError(
        'container image(s) not found: {}: build and push them (make '
        'push-image, make push-serving-image), or fix the image in the '
        'configuration and compile the pipeline again'.format(
            ', '.join(missing)))
  return google_hosted


def _serving_images(pipeline_spec: Mapping[str, Any]) -> set:
  """The serving images that tasks upload models with: the Pusher's
  custom_config names it under TFX's Vertex key (vertex_pusher.py)."""
  images = set()
  tasks = pipeline_spec.get('root', {}).get('dag', {}).get('tasks', {})
  for task in tasks.values():
    constant = (task.get('inputs', {}).get('parameters', {})
                .get('custom_config', {}).get('runtimeValue', {})
                .get('constant'))
    try:
      custom_config = json.loads(constant) if isinstance(constant, str) else {}
    except ValueError:
      continue
    image = (custom_config.get(_SERVING_IMAGE_KEY)
             if isinstance(custom_config, dict) else None)
    if isinstance(image, str) and image:
      images.add(image)
  return images


def default_credentials() -> auth_credentials.Credentials:
  """Application Default Credentials; SubmissionError says how to log in."""
  try:
    credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
  except auth_exceptions.DefaultCredentialsError as error:
    raise SubmissionError(_NO_CREDENTIALS) from error
  return credentials


def git_labels(repo_dir: str = PROJECT_ROOT) -> Dict[str, str]:
  """Labels that tie a job to the code it runs: commit, branch, dirty flag.

  "Dirty" means tracked files differ from the commit. Untracked files do not
  count, because compiled templates and run outputs are written inside the
  checkout.
  """
  commit = _git(repo_dir, 'rev-parse', '--short=12', 'HEAD')
  branch = _git(repo_dir, 'rev-parse', '--abbrev-ref', 'HEAD')
  changes = _git(repo_dir, 'status', '--porcelain', '--untracked-files=no')
  return {
      'git-commit': label_value(commit),
      'git-branch': label_value(branch),
      'git-dirty': 'true' if changes else 'false',
  }


def _read_template(template_path: str) -> Dict[str, Any]:
  """The compiled pipeline job, after checking it is one."""
  if not os.path.isfile(template_path):
    raise SubmissionError(
        f'pipeline template {template_path} does not exist: compile the '
        'pipeline first (KubeflowV2DagRunner writes the JSON file)')
  try:
    with open(template_path, encoding='utf-8') as f:
      template = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise SubmissionError(
        f'pipeline template {template_path} is not JSON ({error}): compile '
        'the pipeline again') from error
  spec = template.get('pipelineSpec') if isinstance(template, dict) else None
  missing = [key for key in ('displayName', 'pipelineSpec', 'runtimeConfig')
             if not isinstance(template, dict) or key not in template]
  if isinstance(spec, dict):
    missing += ['pipelineSpec.' + key
                for key in ('pipelineInfo', 'root', 'deploymentSpec',
                            'schemaVersion')
                if key not in spec]
  if missing:
    raise SubmissionError(
        f'{template_path} is not a compiled KFP pipeline job: it lacks '
        f'{", ".join(missing)}: pass the JSON file that KubeflowV2DagRunner '
        'writes')
  return template


def _check_parameters(template: Dict[str, Any], parameter_values: Mapping[str,
                                                                          Any],
                      template_path: str) -> None:
  declared = (template['pipelineSpec']['root'].get('inputDefinitions', {})
              .get('parameters', {}))
  unknown = sorted(set(parameter_values) - set(declared))
  if unknown:
    raise SubmissionError(
        f'pipeline template {template_path} has no parameter(s) '
        f'{", ".join(unknown)}; it declares: '
        f'{", ".join(sorted(declared)) or "none"}')


def _compiled_parameter_values(template: Dict[str, Any]) -> Dict[str, Any]:
  """The parameter values compiled into the template's runtime config."""
  runtime_config = template['runtimeConfig']
  if 'parameterValues' in runtime_config:       # pipeline spec 2.1
    return dict(runtime_config['parameterValues'])
  # Pipeline spec 2.0 wraps each value: {"stringValue": "x"}, {"intValue": 1}.
  return {name: next(iter(value.values()))
          for name, value in runtime_config.get('parameters', {}).items()
          if value}


def _check_service_account(service_account: Any) -> None:
  validated(_SERVICE_ACCOUNT, service_account, 'service account ',
            SubmissionError)


def _manifest_url(image: str) -> str:
  """The Docker Registry API URL of an image's manifest."""
  host, path = image.split('/', 1)
  if '@' in path:
    path, reference = path.split('@', 1)
  elif ':' in path.rsplit('/', 1)[-1]:
    path, reference = path.rsplit(':', 1)
  else:
    reference = 'latest'
  return f'https://{host}/v2/{path}/manifests/{reference}'


def _console_url(resource_name: str) -> str:
  """The Cloud console page of a pipeline job or schedule."""
  match = re.match(r'^projects/([^/]+)/locations/([^/]+)/'
                   r'(pipelineJobs|schedules)/([^/]+)$', resource_name)
  if not match:
    return ''
  project, location, kind, name = match.groups()
  page = 'runs' if kind == 'pipelineJobs' else 'schedules'
  return f'{CONSOLE}/{location}/pipelines/{page}/{name}?project={project}'


def _git(repo_dir: str, *args: str) -> str:
  try:
    result = subprocess.run(['git', '-C', repo_dir, *args], check=True,
                            capture_output=True, text=True, timeout=30)
  except FileNotFoundError as error:
    raise SubmissionError(
        'git is not installed: install it, so that the job records which '
        'commit it runs') from error
  except subprocess.CalledProcessError as error:
    raise SubmissionError(
        f'cannot read the git commit of {repo_dir} ({error.stderr.strip()}): '
        'submit from a clone of the repository with at least one commit, so '
        'that the job records which code it runs') from error
  return result.stdout.strip()


def _credentials_problem(error: Exception) -> str:
  if isinstance(error, auth_exceptions.DefaultCredentialsError):
    return _NO_CREDENTIALS
  return (f'the Google Cloud credentials were refused ({_detail(error)}): run '
          '`gcloud auth application-default login` again, or check the key '
          'file in GOOGLE_APPLICATION_CREDENTIALS')


def _vertex_problem(error: Exception, project: str, region: str,
                    service_account: str) -> str:
  """What went wrong on Vertex AI, and what to do about it."""
  detail = _detail(error)
  text = detail.lower()
  if isinstance(error, auth_exceptions.GoogleAuthError):
    if isinstance(error, auth_exceptions.TransportError):
      return (f'cannot reach Google Cloud to authenticate ({detail}): check '
              'the network connection and proxy settings, then retry')
    return _credentials_problem(error)
  if (isinstance(error, api_exceptions.Unauthenticated) or
      'getting metadata from plugin failed' in text):
    # An expired or revoked login reaches gRPC as a failed metadata plugin.
    return _credentials_problem(error)
  if 'image' in text and isinstance(
      error, (api_exceptions.InvalidArgument, api_exceptions.NotFound,
              api_exceptions.FailedPrecondition)):
    return (f'Vertex AI cannot use a container image of the pipeline '
            f'({detail}): push the image, or fix the image in the '
            'configuration and compile the pipeline again')
  if isinstance(error, api_exceptions.PermissionDenied):
    if 'actas' in text or 'serviceaccounts' in text:
      return (f'your account may not run jobs as {service_account} '
              f'({detail}): get roles/iam.serviceAccountUser on that service '
              'account, or check its email')
    if 'service_disabled' in text or 'has not been used' in text or (
        'is disabled' in text):
      return (f'the Vertex AI API is not enabled in project {project}: run '
              f'`gcloud services enable aiplatform.googleapis.com --project '
              f'{project}`')
    return (f'permission denied in project {project} ({detail}): check that '
            'the project ID is right (a project that does not exist also '
            'answers this way) and that your account has roles/aiplatform.user '
            'in it')
  if isinstance(error, api_exceptions.NotFound):
    return (f'project {project} or region {region} was not found ({detail}): '
            'check the project ID and the region in the configuration')
  if isinstance(error, api_exceptions.InvalidArgument):
    if 'project' in text or 'location' in text:
      return (f'Vertex AI rejected project {project} in region {region} '
              f'({detail}): check the project ID and the region in the '
              'configuration')
    return (f'Vertex AI rejected the request ({detail}): check the parameters, '
            'or compile the pipeline again')
  if isinstance(error, (api_exceptions.ServiceUnavailable,
                        api_exceptions.DeadlineExceeded,
                        api_exceptions.RetryError)):
    return (f'cannot reach Vertex AI in {region} ({detail}): check the network '
            'connection and proxy settings, then retry')
  return f'Vertex AI answered with an error ({detail})'


def _detail(error: Exception) -> str:
  """The server's message, on one line and without the status code."""
  message = getattr(error, 'message', None) or str(error)
  return ' '.join(str(message).split())[:400]


@contextlib.contextmanager
def _as_submission_error(action: str, project: str, region: str,
                         service_account: str) -> Iterator[None]:
  """Turns Google Cloud failures inside the block into one SubmissionError."""
  with _one_line_library_errors():
    try:
      yield
    except (api_exceptions.GoogleAPICallError, api_exceptions.RetryError,
            auth_exceptions.GoogleAuthError) as error:
      raise SubmissionError(
          f'{action}: '
          f'{_vertex_problem(error, project, region, service_account)}'
      ) from error


@contextlib.contextmanager
def _as_kfp_submission_error(host: str) -> Iterator[None]:
  """Turns KFP client failures inside the block into one SubmissionError."""
  import kfp_server_api  # pylint: disable=g-import-not-at-top
  import urllib3  # pylint: disable=g-import-not-at-top
  try:
    yield
  except kfp_server_api.ApiException as error:
    if error.status in (401, 403):
      advice = ('log in to the cluster, or check that your account may create '
                'runs')
    elif error.status == 404:
      advice = 'check that the host is the KFP API URL'
    else:
      advice = 'check the pipeline parameters and the cluster\'s KFP version'
    raise SubmissionError(
        f'Kubeflow Pipelines at {host} refused the run (HTTP {error.status} '
        f'{error.reason}): {advice}') from error
  except (urllib3.exceptions.HTTPError, requests.RequestException,
          ConnectionError, TimeoutError) as error:
    raise SubmissionError(
        f'cannot reach Kubeflow Pipelines at {host} ({_detail(error)}): check '
        'the URL, and that the cluster is reachable (e.g. `kubectl '
        'port-forward`)') from error


class _OneLine(logging.Filter):
  """Keeps a library's logged failure to its message, without the traceback."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.exc_info and record.exc_info[1] is not None:
      record.msg = f'{record.getMessage()}: {_detail(record.exc_info[1])}'
      record.args = None
      record.exc_info = None
      record.exc_text = None
    return True


@contextlib.contextmanager
def _one_line_library_errors() -> Iterator[None]:
  """While submitting, library-logged failures stay one line each.

  PipelineJob.submit logs a full traceback when its best-effort check of the
  pipeline-root bucket fails, and gRPC logs one when refreshing credentials
  fails; the real error then reaches the user as a SubmissionError.
  """
  loggers = [logging.getLogger(name) for name in (
      'google.cloud.aiplatform.pipeline_jobs', 'grpc._plugin_wrapping')]
  one_line = _OneLine()
  for logger in loggers:
    logger.addFilter(one_line)
  try:
    yield
  finally:
    for logger in loggers:
      logger.removeFilter(one_line)
