"""Sends a compiled pipeline to production: a Vertex AI Pipelines run or
schedule, or a run on a Kubeflow Pipelines cluster.

The input is the pipeline-job JSON that KubeflowV2DagRunner writes. Whatever can
be checked before a request leaves this machine (the target, the template, the
parameters, the labels, the cron string, the container images) is checked
first. Every failure of Google Cloud or KFP reaches the user as one
SubmissionError that says what failed and what to do, never as a stack trace.
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
from typing import Any, Dict, Iterator, List, Mapping, Optional

# google.api_core warns on every import that Python 3.10 is unsupported. The
# warning is harmless here (see PLATFORM.md) and would flood the CLI output.
warnings.filterwarnings(
    'ignore', message='You are using a non-supported Python version',
    category=FutureWarning)

# pylint: disable=g-import-not-at-top,wrong-import-position
import google.auth
import requests
from google.api_core import exceptions as api_exceptions
from google.auth import credentials as auth_credentials
from google.auth import exceptions as auth_exceptions
from google.auth.transport import requests as auth_requests
from google.cloud import aiplatform
from google.cloud.aiplatform.constants import base as aiplatform_constants

PROJECT_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform'
CONSOLE = 'https://console.cloud.google.com/vertex-ai/locations'

# Google Cloud resource and label rules, as the APIs enforce them.
_PROJECT_ID = re.compile(
    r'^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[0-9]+$')
_EMAIL = re.compile(r'^[^@\s]+@[^@\s]+\.[a-z]+$')
_JOB_ID = re.compile(r'^[a-z][-a-z0-9]{0,127}$')
_LABEL_KEY = re.compile(r'^[a-z][a-z0-9_-]{0,62}$')
_LABEL_VALUE = re.compile(r'^[a-z0-9_-]{0,63}$')
_NOT_LABEL_CHARACTERS = re.compile(r'[^a-z0-9_-]+')
_MAX_LABELS = 64

# Cron fields in order, with the values each may take. Months and weekdays may
# also be named (JAN, MON); 7 is Sunday, as in Vertex AI's cron dialect.
_CRON_FIELDS = (('minute', 0, 59), ('hour', 0, 23), ('day of month', 1, 31),
                ('month', 1, 12), ('day of week', 0, 7))
_CRON_NAMES = re.compile(
    r'^(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|'
    r'SUN|MON|TUE|WED|THU|FRI|SAT)$', re.IGNORECASE)
_CRON_TIMEZONE = re.compile(r'^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$')

# Registries that accept the Google credentials that submit the job.
_GOOGLE_REGISTRY = re.compile(
    r'^(?:[a-z0-9-]+-docker\.pkg\.dev|(?:[a-z]+\.)?gcr\.io)$')
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


@dataclasses.dataclass(frozen=True)
class VertexTarget:
  """Where and as whom pipeline jobs run on Vertex AI; checked when built."""
  project: str             # project ID, e.g. repairml-prod
  region: str              # Vertex AI region, e.g. europe-west4
  service_account: str     # email of the account the pipeline's steps run as
  pipeline_root: str       # gs://BUCKET/PATH for the pipeline's artifacts

  def __post_init__(self):
    if not _PROJECT_ID.match(self.project or ''):
      raise SubmissionError(
          f'Vertex target: project {self.project!r} is not a Google Cloud '
          'project ID: use the ID that `gcloud projects list` shows (6 to 30 '
          'lowercase letters, digits and hyphens), not the project name')
    if self.region not in aiplatform_constants.SUPPORTED_REGIONS:
      raise SubmissionError(
          f'Vertex target: region {self.region!r} is not a Vertex AI region: '
          'use one of ' +
          ', '.join(sorted(aiplatform_constants.SUPPORTED_REGIONS)))
    _check_service_account(self.service_account, 'Vertex target: ')
    if not re.match(r'^gs://[^/]+', self.pipeline_root or ''):
      raise SubmissionError(
          f'Vertex target: pipeline root {self.pipeline_root!r} is not a '
          'Cloud Storage path: use gs://BUCKET/PATH, where Vertex AI will '
          'write the artifacts of every run')


@dataclasses.dataclass(frozen=True)
class Submission:
  """What was created: its resource name (or KFP run id) and where to see it."""
  name: str
  url: str


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
  _check_labels(all_labels)
  if job_id is not None and not _JOB_ID.match(job_id):
    raise SubmissionError(
        f'job id {job_id!r} is not a valid Vertex AI job id: use at most 128 '
        'lowercase letters, digits and hyphens, starting with a letter')
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
  """Creates a Vertex AI schedule that starts `job` at every `cron` time.

  `cron` has five fields (minute hour day-of-month month day-of-week) and may
  start with a time zone, as in "CRON_TZ=Europe/Amsterdam 0 3 * * *"; without
  one, Vertex AI reads it in UTC.
  """
  _check_cron(cron)
  if not display_name or len(display_name) > 128:
    raise SubmissionError(
        f'schedule name {display_name!r} must have 1 to 128 characters')
  if max_concurrent_run_count < 1:
    raise SubmissionError(
        f'max_concurrent_run_count is {max_concurrent_run_count}: allow at '
        'least 1 run at a time')
  _check_service_account(service_account)
  action = f'cannot create schedule {display_name!r} on Vertex AI'
  with _as_submission_error(action, job.project, job.location, service_account):
    created = job.create_schedule(
        cron=cron,
        display_name=display_name,
        max_concurrent_run_count=max_concurrent_run_count,
        service_account=service_account)
  return Submission(created.resource_name, _console_url(created.resource_name))


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
  step starts, often an hour into the run. This asks the registry first,
  through the Docker Registry API that Artifact Registry and Container
  Registry serve. Images in other registries are not checked. `session` is an
  authorised requests session; by default one with the job's credentials.
  """
  executors = job.pipeline_spec.get('deploymentSpec', {}).get('executors', {})
  images = sorted({executor['container']['image']
                   for executor in executors.values()
                   if 'container' in executor})
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
        'container image(s) not found: {}: build and push them (`docker push '
        'IMAGE`), or fix the image in the configuration and compile the '
        'pipeline again'.format(', '.join(missing)))
  return google_hosted


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


def label_value(text: str) -> str:
  """`text` as a Google Cloud label value: lowercase, [a-z0-9_-], <= 63 long."""
  return _NOT_LABEL_CHARACTERS.sub('-', text.lower())[:63]


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


def _check_labels(labels: Mapping[str, str]) -> None:
  if len(labels) > _MAX_LABELS:
    raise SubmissionError(f'{len(labels)} labels: Google Cloud allows at most '
                          f'{_MAX_LABELS} per job')
  for key, value in labels.items():
    if not isinstance(key, str) or not _LABEL_KEY.match(key):
      raise SubmissionError(
          f'label key {key!r} breaks Google Cloud\'s label rules: use at most '
          '63 lowercase letters, digits, "_" and "-", starting with a letter')
    if not isinstance(value, str) or not _LABEL_VALUE.match(value):
      raise SubmissionError(
          f'label {key}={value!r} breaks Google Cloud\'s label rules: pass the '
          'value through label_value()')


def _check_service_account(service_account: str, context: str = '') -> None:
  if not _EMAIL.match(service_account or ''):
    raise SubmissionError(
        f'{context}service account {service_account!r} is not an email '
        'address: use the email of the account the pipeline runs as, e.g. '
        'pipelines@PROJECT.iam.gserviceaccount.com')


def _check_cron(cron: str) -> None:
  """Raises SubmissionError unless `cron` is a five-field cron string."""
  expression = (cron or '').strip()
  timezone = _CRON_TIMEZONE.match(expression)
  if timezone:
    try:
      zoneinfo.ZoneInfo(timezone.group(1))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
      raise SubmissionError(
          f'cron {cron!r}: unknown time zone {timezone.group(1)!r}: use an '
          'IANA name such as Europe/Amsterdam') from error
    expression = timezone.group(2)
  fields = expression.split()
  if len(fields) != len(_CRON_FIELDS):
    raise SubmissionError(
        f'cron {cron!r} has {len(fields)} fields, not 5: write "minute hour '
        'day-of-month month day-of-week", e.g. "0 3 * * *" for 03:00 daily')
  for text, (name, lowest, highest) in zip(fields, _CRON_FIELDS):
    for part in text.split(','):
      problem = _cron_part_problem(part, lowest, highest)
      if problem:
        raise SubmissionError(f'cron {cron!r}: {name} {text!r} {problem}')


def _cron_part_problem(part: str, lowest: int, highest: int) -> Optional[str]:
  """Why one comma-separated part of a cron field is invalid, or None."""
  match = re.match(r'^(\*|\w+(?:-\w+)?)(?:/(\d+))?$', part)
  if not match:
    return 'is not a number, a range, a list, a step or *'
  if match.group(2) is not None and int(match.group(2)) == 0:
    return 'has a step of 0'
  if match.group(1) == '*':
    return None
  for value in match.group(1).split('-'):
    if _CRON_NAMES.match(value):
      continue
    if not value.isdigit() or not lowest <= int(value) <= highest:
      return f'must lie between {lowest} and {highest}'
  return None


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
