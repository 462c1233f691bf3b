"""Submission to Vertex AI and KFP, offline: the requests that would be sent, the checks made before sending, and one clear message per failure."""

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
import requests
import yaml
from google.api_core import grpc_helpers
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform.utils import gcs_utils
from google.cloud.aiplatform_v1.types import pipeline_job as gca_pipeline_job
from google.cloud.aiplatform_v1.types import schedule as gca_schedule

from pipeline.production import submission
from pipeline.production.submission import (SubmissionError, Submission,
                                            VertexTarget, check_images,
                                            git_labels, label_value,
                                            pipeline_job, schedule, submit,
                                            submit_to_kfp)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
IMAGE = 'europe-west4-docker.pkg.dev/repairml-prod/pipelines/repairml:abc123'
SERVICE_ACCOUNT = 'pipelines@repairml-prod.iam.gserviceaccount.com'
TARGET = VertexTarget(project='repairml-prod', region='europe-west4',
                      service_account=SERVICE_ACCOUNT,
                      pipeline_root='gs://repairml-prod-pipelines/root')
TEMPLATE_LABELS = {'tfx_runner': 'kubeflow_v2', 'tfx_version': '1-16-0'}
PARENT = 'projects/repairml-prod/locations/europe-west4'
BUCKET_CHECK = 'create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist'


@pytest.fixture(scope='module')
def template_path(tmp_path_factory) -> str:
  """A compiled pipeline job in the layout KubeflowV2DagRunner writes.

  A one-step KFP pipeline with two parameters, wrapped like TFX's output:
  displayName, labels, pipelineSpec, runtimeConfig.
  """
  from kfp import compiler, dsl  # pylint: disable=g-import-not-at-top

  @dsl.component(base_image=IMAGE)
  def train(message: str, epochs: int) -> str:
    return message * epochs

  @dsl.pipeline(name='repairml')
  def repairml(message: str = 'hello', epochs: int = 1):
    train(message=message, epochs=epochs)

  folder = tmp_path_factory.mktemp('template')
  spec_path = str(folder / 'spec.yaml')
  compiler.Compiler().compile(repairml, spec_path)
  with open(spec_path, encoding='utf-8') as f:
    spec = yaml.safe_load(f)
  template = {
      'displayName': 'repairml',
      'labels': TEMPLATE_LABELS,
      'pipelineSpec': spec,
      'runtimeConfig': {'gcsOutputDirectory': 'gs://compiled-root/ignored',
                        'parameterValues': {'epochs': 3}},
  }
  path = str(folder / 'pipeline.json')
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(template, f)
  return path


def _job(template_path, **overrides):
  args = dict(template_path=template_path, target=TARGET,
              parameter_values={'message': 'hi'}, enable_caching=False,
              labels={'git-commit': '0123456789ab'},
              job_id='repairml-20260101-030000',
              credentials=AnonymousCredentials())
  args.update(overrides)
  return pipeline_job(**args)


class _RpcError(grpc.RpcError, grpc.Call):
  """A gRPC failure as the channel reports it: a status code and details."""

  def __init__(self, code, details):
    super().__init__()
    self._code, self._details = code, details

  def code(self):
    return self._code

  def details(self):
    return self._details

  def trailing_metadata(self):
    return None


class FakeVertex:
  """Vertex AI at the gRPC channel: records each request, answers or fails.

  Every gapic client opens its channel through grpc_helpers.create_channel,
  so replacing it stops requests after serialisation, where they would go
  on the wire.
  """

  def __init__(self):
    self.requests = []          # (endpoint, method, request)
    self.bucket_checks = []     # PipelineJob.submit's pipeline-root check
    self.error = None           # a _RpcError to answer with instead

  def create_channel(self, target, **unused_kwargs):
    return _FakeChannel(self, target)

  def check_bucket(self, **kwargs):
    self.bucket_checks.append(kwargs)

  def only_request(self, method_suffix):
    assert [method for _, method, _ in self.requests] == [
        f'/google.cloud.aiplatform.v1.{method_suffix}']
    return self.requests[0]


class _FakeChannel:

  def __init__(self, vertex, target):
    self._vertex, self._target = vertex, target

  def unary_unary(self, method, request_serializer=None,
                  response_deserializer=None, **unused_kwargs):

    def call(request, timeout=None, metadata=None, **unused):
      wire = type(request).deserialize(request_serializer(request))
      self._vertex.requests.append((self._target, method, wire))
      if self._vertex.error:
        raise self._vertex.error
      return response_deserializer(_answer(method, wire))

    return call

  def close(self):
    pass


def _answer(method, request) -> bytes:
  """What Vertex AI returns for a create: the resource, now with a name."""
  if method.endswith('CreatePipelineJob'):
    job = gca_pipeline_job.PipelineJob(request.pipeline_job)
    job.name = f'{request.parent}/pipelineJobs/{request.pipeline_job_id}'
    return gca_pipeline_job.PipelineJob.serialize(job)
  created = gca_schedule.Schedule(request.schedule)
  created.name = f'{request.parent}/schedules/1234567890'
  return gca_schedule.Schedule.serialize(created)


@pytest.fixture
def vertex(monkeypatch) -> FakeVertex:
  fake = FakeVertex()
  monkeypatch.setattr(grpc_helpers, 'create_channel', fake.create_channel)
  monkeypatch.setattr(gcs_utils, BUCKET_CHECK, fake.check_bucket)
  return fake


# Building the job ------------------------------------------------------------


def test_job_carries_template_target_parameters_and_labels(template_path):
  job = _job(template_path, labels={'git-commit': '0123456789ab',
                                    'tfx_runner': 'overridden'})
  resource = job.to_dict()

  assert resource['displayName'] == 'repairml'
  assert resource['pipelineSpec']['pipelineInfo'] == {'name': 'repairml'}
  executors = resource['pipelineSpec']['deploymentSpec']['executors']
  assert executors['exec-train']['container']['image'] == IMAGE
  assert resource['runtimeConfig']['gcsOutputDirectory'] == (
      'gs://repairml-prod-pipelines/root')
  # The compiled value of epochs stays; message comes from the caller.
  assert resource['runtimeConfig']['parameterValues'] == {'message': 'hi',
                                                          'epochs': 3}
  assert resource['labels'] == {'tfx_runner': 'overridden',
                                'tfx_version': '1-16-0',
                                'git-commit': '0123456789ab'}
  assert job.project == 'repairml-prod'
  assert job.location == 'europe-west4'
  assert job._parent == PARENT  # pylint: disable=protected-access
  assert job.job_id == 'repairml-20260101-030000'


@pytest.mark.parametrize('enable_caching', [True, False])
def test_enable_caching_is_set_on_every_task(template_path, enable_caching):
  job = _job(template_path, enable_caching=enable_caching)

  tasks = job.to_dict()['pipelineSpec']['root']['dag']['tasks']
  assert tasks
  assert {name: task['cachingOptions'] for name, task in tasks.items()} == {
      name: {'enableCache': enable_caching} for name in tasks}


def test_unknown_parameter_is_named_with_the_declared_ones(template_path):
  with pytest.raises(SubmissionError) as error:
    _job(template_path, parameter_values={'mesage': 'hi'})

  assert str(error.value) == (
      f'pipeline template {template_path} has no parameter(s) mesage; it '
      'declares: epochs, message')


def test_a_missing_template_says_to_compile_first(tmp_path):
  missing = str(tmp_path / 'pipeline.json')

  with pytest.raises(SubmissionError) as error:
    _job(missing)

  assert str(error.value) == (
      f'pipeline template {missing} does not exist: compile the pipeline '
      'first (KubeflowV2DagRunner writes the JSON file)')


@pytest.mark.parametrize('content, expected', [
    ('{"displayName": ', 'is not JSON'),
    ('{"pipelineSpec": {"root": {}}}',
     'lacks displayName, runtimeConfig, pipelineSpec.pipelineInfo, '
     'pipelineSpec.deploymentSpec, pipelineSpec.schemaVersion'),
    ('[1, 2]', 'lacks displayName, pipelineSpec, runtimeConfig'),
])
def test_a_file_that_is_not_a_compiled_job_is_rejected(tmp_path, content,
                                                       expected):
  path = tmp_path / 'pipeline.json'
  path.write_text(content)

  with pytest.raises(SubmissionError, match=expected):
    _job(str(path))


@pytest.mark.parametrize('field, value, expected', [
    ('project', 'Repair ML Prod', "project 'Repair ML Prod' is not a Google"),
    ('project', '', "project '' is not a Google Cloud project ID"),
    ('region', 'europe-west99', "region 'europe-west99' is not a Vertex AI"),
    ('region', '', "region '' is not a Vertex AI region"),
    ('service_account', 'pipelines', "service account 'pipelines' is not an"),
    ('pipeline_root', '/tmp/root', "pipeline root '/tmp/root' is not a Cloud"),
    ('pipeline_root', 'gs://', "pipeline root 'gs://' is not a Cloud Storage"),
])
def test_an_invalid_target_is_rejected_when_built(field, value, expected):
  args = dict(project='repairml-prod', region='europe-west4',
              service_account=SERVICE_ACCOUNT,
              pipeline_root='gs://repairml-prod-pipelines/root')
  args[field] = value

  with pytest.raises(SubmissionError) as error:
    VertexTarget(**args)

  assert str(error.value).startswith(f'Vertex target: {expected}')


@pytest.mark.parametrize('project', ['repairml-prod', 'example.com:repairml',
                                     '123456789012'])
def test_project_ids_numbers_and_domain_projects_are_accepted(project):
  assert VertexTarget(project, 'us-central1', SERVICE_ACCOUNT,
                      'gs://b').project == project


@pytest.mark.parametrize('labels, expected', [
    ({'git-branch': 'Feature/X'}, "label git-branch='Feature/X' breaks"),
    ({'Git': 'x'}, "label key 'Git' breaks"),
    ({'1st': 'x'}, "label key '1st' breaks"),
    ({'note': 'x' * 64}, 'label note='),
])
def test_labels_that_break_the_rules_are_rejected(template_path, labels,
                                                  expected):
  with pytest.raises(SubmissionError, match=expected):
    _job(template_path, labels=labels)


def test_an_invalid_job_id_is_rejected(template_path):
  with pytest.raises(SubmissionError, match="job id 'Repairml_1' is not"):
    _job(template_path, job_id='Repairml_1')


def test_without_credentials_the_message_says_how_to_log_in(template_path,
                                                             monkeypatch):

  def no_credentials(**unused_kwargs):
    raise auth_exceptions.DefaultCredentialsError(
        'Your default credentials were not found.')

  monkeypatch.setattr(submission.google.auth, 'default', no_credentials)

  with pytest.raises(SubmissionError) as error:
    _job(template_path, credentials=None)

  assert str(error.value) == (
      'no Google Cloud credentials found: run `gcloud auth '
      'application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a '
      'service-account key file')


# Submitting ------------------------------------------------------------------


def test_submit_sends_one_create_request_for_the_job(template_path, vertex):
  job = _job(template_path)

  submitted = submit(job, SERVICE_ACCOUNT)

  endpoint, _, request = vertex.only_request(
      'PipelineService/CreatePipelineJob')
  assert endpoint == 'europe-west4-aiplatform.googleapis.com:443'
  assert request.parent == PARENT
  assert request.pipeline_job_id == 'repairml-20260101-030000'
  sent = request.pipeline_job
  assert sent.service_account == SERVICE_ACCOUNT
  assert sent.display_name == 'repairml'
  assert dict(sent.labels) == {**TEMPLATE_LABELS, 'git-commit': '0123456789ab'}
  assert sent.runtime_config.gcs_output_directory == (
      'gs://repairml-prod-pipelines/root')
  assert dict(sent.runtime_config.parameter_values) == {'message': 'hi',
                                                        'epochs': 3}
  assert sent.pipeline_spec['deploymentSpec']['executors']['exec-train'][
      'container']['image'] == IMAGE
  assert vertex.bucket_checks[0]['output_artifacts_gcs_dir'] == (
      'gs://repairml-prod-pipelines/root')
  assert submitted == Submission(
      name=f'{PARENT}/pipelineJobs/repairml-20260101-030000',
      url='https://console.cloud.google.com/vertex-ai/locations/europe-west4/'
      'pipelines/runs/repairml-20260101-030000?project=repairml-prod')


def test_submit_rejects_a_service_account_that_is_no_email(template_path,
                                                           vertex):
  with pytest.raises(SubmissionError, match="service account 'default' is"):
    submit(_job(template_path), 'default')
  assert not vertex.requests


SA = SERVICE_ACCOUNT
ACTION = 'cannot submit pipeline job repairml-20260101-030000 to Vertex AI: '


@pytest.mark.parametrize('code, details, expected', [
    (grpc.StatusCode.PERMISSION_DENIED,
     "Permission 'aiplatform.pipelineJobs.create' denied on resource "
     "'//aiplatform.googleapis.com/projects/repairml-prod/locations/"
     "europe-west4' (or it may not exist).",
     'permission denied in project repairml-prod (Permission '
     "'aiplatform.pipelineJobs.create' denied on resource '//aiplatform."
     "googleapis.com/projects/repairml-prod/locations/europe-west4' (or it may "
     'not exist).): check that the project ID is right (a project that does '
     'not exist also answers this way) and that your account has '
     'roles/aiplatform.user in it'),
    (grpc.StatusCode.PERMISSION_DENIED,
     'Vertex AI API has not been used in project repairml-prod before or it '
     'is disabled.',
     'the Vertex AI API is not enabled in project repairml-prod: run `gcloud '
     'services enable aiplatform.googleapis.com --project repairml-prod`'),
    (grpc.StatusCode.PERMISSION_DENIED,
     f"Permission 'iam.serviceAccounts.actAs' denied on service account {SA}",
     f'your account may not run jobs as {SA} (Permission '
     f"'iam.serviceAccounts.actAs' denied on service account {SA}): get "
     'roles/iam.serviceAccountUser on that service account, or check its '
     'email'),
    (grpc.StatusCode.NOT_FOUND, 'Project repairml-prod not found.',
     'project repairml-prod or region europe-west4 was not found (Project '
     'repairml-prod not found.): check the project ID and the region in the '
     'configuration'),
    (grpc.StatusCode.INVALID_ARGUMENT,
     f'Container image {IMAGE} does not exist.',
     f'Vertex AI cannot use a container image of the pipeline (Container image '
     f'{IMAGE} does not exist.): push the image, or fix the image in the '
     'configuration and compile the pipeline again'),
    (grpc.StatusCode.UNAUTHENTICATED,
     'Request had invalid authentication credentials.',
     'the Google Cloud credentials were refused (Request had invalid '
     'authentication credentials.): run `gcloud auth application-default '
     'login` again, or check the key file in GOOGLE_APPLICATION_CREDENTIALS'),
    (grpc.StatusCode.UNAVAILABLE,
     "Getting metadata from plugin failed with error: ('invalid_grant: "
     "Token has been expired or revoked.')",
     'the Google Cloud credentials were refused (Getting metadata from plugin '
     "failed with error: ('invalid_grant: Token has been expired or "
     "revoked.')): run `gcloud auth application-default login` again, or "
     'check the key file in GOOGLE_APPLICATION_CREDENTIALS'),
    (grpc.StatusCode.UNAVAILABLE, 'DNS resolution failed',
     'cannot reach Vertex AI in europe-west4 (DNS resolution failed): check '
     'the network connection and proxy settings, then retry'),
])
def test_each_vertex_failure_is_one_message_with_what_to_do(
    template_path, vertex, code, details, expected):
  vertex.error = _RpcError(code, details)

  with pytest.raises(SubmissionError) as error:
    submit(_job(template_path), SERVICE_ACCOUNT)

  assert str(error.value) == ACTION + expected


def test_a_failed_bucket_check_is_logged_on_one_line(template_path, vertex,
                                                     monkeypatch, caplog):

  def refused(**unused_kwargs):
    raise auth_exceptions.RefreshError('invalid_grant: Bad Request')

  monkeypatch.setattr(gcs_utils, BUCKET_CHECK, refused)

  with caplog.at_level(logging.INFO):
    submit(_job(template_path), SERVICE_ACCOUNT)

  failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
  assert [r.getMessage() for r in failures] == [
      'Error when trying to get or create a GCS bucket for the pipeline '
      'output artifacts: invalid_grant: Bad Request']
  assert failures[0].exc_info is None
  assert 'Traceback' not in caplog.text
  vertex.only_request('PipelineService/CreatePipelineJob')


# Scheduling ------------------------------------------------------------------


def test_schedule_sends_one_create_schedule_request(template_path, vertex):
  job = _job(template_path)

  created = schedule(job, 'CRON_TZ=Europe/Amsterdam 0 3 * * MON-FRI',
                     'repairml nightly', SERVICE_ACCOUNT,
                     max_concurrent_run_count=2)

  endpoint, _, request = vertex.only_request('ScheduleService/CreateSchedule')
  assert endpoint == 'europe-west4-aiplatform.googleapis.com:443'
  assert request.parent == PARENT
  sent = request.schedule
  assert sent.display_name == 'repairml nightly'
  assert sent.cron == 'CRON_TZ=Europe/Amsterdam 0 3 * * MON-FRI'
  assert sent.max_concurrent_run_count == 2
  run = sent.create_pipeline_job_request
  assert run.parent == PARENT
  assert run.pipeline_job.service_account == SERVICE_ACCOUNT
  assert dict(run.pipeline_job.labels) == {**TEMPLATE_LABELS,
                                           'git-commit': '0123456789ab'}
  assert run.pipeline_job.runtime_config.gcs_output_directory == (
      'gs://repairml-prod-pipelines/root')
  assert dict(run.pipeline_job.runtime_config.parameter_values) == {
      'message': 'hi', 'epochs': 3}
  assert run.pipeline_job.pipeline_spec['pipelineInfo'] == {'name': 'repairml'}
  assert created == Submission(
      name=f'{PARENT}/schedules/1234567890',
      url='https://console.cloud.google.com/vertex-ai/locations/europe-west4/'
      'pipelines/schedules/1234567890?project=repairml-prod')


@pytest.mark.parametrize('cron, expected', [
    ('0 3 * *', 'has 4 fields, not 5'),
    ('0 3 * * * *', 'has 6 fields, not 5'),
    ('', 'has 0 fields, not 5'),
    ('60 3 * * *', "minute '60' must lie between 0 and 59"),
    ('0 24 * * *', "hour '24' must lie between 0 and 23"),
    ('0 3 0 * *', "day of month '0' must lie between 1 and 31"),
    ('0 3 * 13 *', "month '13' must lie between 1 and 12"),
    ('*/0 3 * * *', "minute '\\*/0' has a step of 0"),
    ('0 3 * * 1;2', "day of week '1;2' is not a number"),
    ('TZ=Mars/Olympus 0 3 * * *', "unknown time zone 'Mars/Olympus'"),
])
def test_schedule_rejects_a_bad_cron_before_any_request(template_path, vertex,
                                                        cron, expected):
  job = _job(template_path)

  with pytest.raises(SubmissionError, match=expected):
    schedule(job, cron, 'repairml nightly', SERVICE_ACCOUNT)
  assert not vertex.requests


@pytest.mark.parametrize('cron', ['0 3 * * *', '*/15 0-6,22 1 JAN,jul 0',
                                  'TZ=UTC 30 2 * * 7'])
def test_schedule_accepts_valid_crons(template_path, vertex, cron):
  schedule(_job(template_path), cron, 'repairml nightly', SERVICE_ACCOUNT)

  _, _, request = vertex.only_request('ScheduleService/CreateSchedule')
  assert request.schedule.cron == cron


def test_schedule_failure_is_one_message(template_path, vertex):
  vertex.error = _RpcError(grpc.StatusCode.NOT_FOUND, 'Location not found.')

  with pytest.raises(SubmissionError) as error:
    schedule(_job(template_path), '0 3 * * *', 'nightly', SERVICE_ACCOUNT)

  assert str(error.value).startswith(
      "cannot create schedule 'nightly' on Vertex AI: project repairml-prod "
      'or region europe-west4 was not found')


# Container images ------------------------------------------------------------


class FakeRegistry:
  """An authorised requests session that answers HEAD on manifests."""

  def __init__(self, status_code=200, error=None):
    self.status_code, self.error = status_code, error
    self.heads = []

  def head(self, url, headers=None, timeout=None):
    self.heads.append((url, headers))
    if self.error:
      raise self.error
    response = requests.Response()
    response.status_code = self.status_code
    return response


def test_check_images_asks_the_registry_for_each_manifest(template_path):
  registry = FakeRegistry(200)

  assert check_images(_job(template_path), session=registry) == [IMAGE]

  [(url, headers)] = registry.heads
  assert url == ('https://europe-west4-docker.pkg.dev/v2/repairml-prod/'
                 'pipelines/repairml/manifests/abc123')
  assert 'application/vnd.oci.image.index.v1+json' in headers['Accept']


def test_a_missing_image_is_named_with_what_to_do(template_path):
  with pytest.raises(SubmissionError) as error:
    check_images(_job(template_path), session=FakeRegistry(404))

  assert str(error.value) == (
      f'container image(s) not found: {IMAGE}: build and push them (`docker '
      'push IMAGE`), or fix the image in the configuration and compile the '
      'pipeline again')


@pytest.mark.parametrize('registry, expected', [
    (FakeRegistry(403), f'not allowed to read image {IMAGE} (HTTP 403): grant '
     'your account roles/artifactregistry.reader'),
    (FakeRegistry(error=auth_exceptions.RefreshError('invalid_grant')),
     f'cannot check image {IMAGE}: the Google Cloud credentials were refused '
     '(invalid_grant): run `gcloud auth application-default login` again'),
    (FakeRegistry(error=requests.ConnectionError('no route to host')),
     f'cannot reach the registry of image {IMAGE} (no route to host)'),
])
def test_image_check_failures_are_one_message(template_path, registry,
                                              expected):
  with pytest.raises(SubmissionError) as error:
    check_images(_job(template_path), session=registry)

  assert str(error.value).startswith(expected)


@pytest.mark.parametrize('image, url', [
    ('gcr.io/tfx-oss-public/tfx:1.16.0',
     'https://gcr.io/v2/tfx-oss-public/tfx/manifests/1.16.0'),
    ('eu.gcr.io/p/a/b', 'https://eu.gcr.io/v2/p/a/b/manifests/latest'),
    ('us-docker.pkg.dev/p/r/img@sha256:abcd',
     'https://us-docker.pkg.dev/v2/p/r/img/manifests/sha256:abcd'),
])
def test_manifest_urls_follow_the_docker_registry_api(image, url):
  # pylint: disable-next=protected-access
  assert submission._manifest_url(image) == url


# Kubeflow Pipelines ----------------------------------------------------------


class FakeKfpClient:
  """kfp.Client's create_run_from_pipeline_package, recorded."""

  def __init__(self, error=None):
    self.error = error
    self.calls = []

  def create_run_from_pipeline_package(self, pipeline_file, **kwargs):
    # The file is temporary: read it now, the way kfp.Client reads it.
    from kfp.client import client as kfp_client  # pylint: disable=g-import-not-at-top
    # pylint: disable-next=protected-access
    spec = kfp_client._extract_pipeline_yaml(pipeline_file).pipeline_spec
    self.calls.append(dict(pipeline_file=pipeline_file, spec=spec, **kwargs))
    if self.error:
      raise self.error

    class Result:
      run_id = 'run-42'

    return Result()


def test_kfp_run_gets_the_bare_spec_parameters_root_and_experiment(
    template_path):
  client = FakeKfpClient()

  submitted = submit_to_kfp(template_path, 'http://localhost:8080/',
                            {'message': 'hi'}, enable_caching=False,
                            experiment='nightly', client=client)

  [call] = client.calls
  assert call['pipeline_file'].endswith('.yaml')
  assert not os.path.exists(call['pipeline_file'])
  assert call['spec'].pipeline_info.name == 'repairml'
  assert call['arguments'] == {'message': 'hi', 'epochs': 3}
  assert call['experiment_name'] == 'nightly'
  assert call['pipeline_root'] == 'gs://compiled-root/ignored'
  assert call['enable_caching'] is False
  assert call['run_name'].startswith('repairml ')
  assert submitted == Submission(
      'run-42', 'http://localhost:8080/#/runs/details/run-42')


def test_kfp_pipeline_root_can_be_overridden(template_path):
  client = FakeKfpClient()

  submit_to_kfp(template_path, 'http://kfp', {}, enable_caching=True,
                pipeline_root='minio://mlpipeline/root', client=client)

  assert client.calls[0]['pipeline_root'] == 'minio://mlpipeline/root'
  assert client.calls[0]['arguments'] == {'epochs': 3}


def test_kfp_reads_spec_2_0_compiled_values(tmp_path, template_path):
  with open(template_path, encoding='utf-8') as f:
    template = json.load(f)
  template['runtimeConfig'] = {'gcsOutputDirectory': 'gs://r',
                               'parameters': {'epochs': {'intValue': 5}}}
  path = tmp_path / 'pipeline.json'
  path.write_text(json.dumps(template))
  client = FakeKfpClient()

  submit_to_kfp(str(path), 'http://kfp', {}, enable_caching=True,
                client=client)

  assert client.calls[0]['arguments'] == {'epochs': 5}


def test_kfp_failures_are_one_message(template_path):
  import kfp_server_api  # pylint: disable=g-import-not-at-top
  denied = FakeKfpClient(kfp_server_api.ApiException(status=403,
                                                     reason='Forbidden'))
  unreachable = FakeKfpClient(ConnectionError('Connection refused'))

  with pytest.raises(SubmissionError) as error:
    submit_to_kfp(template_path, 'http://kfp', {}, True, client=denied)
  assert str(error.value) == (
      'Kubeflow Pipelines at http://kfp refused the run (HTTP 403 Forbidden): '
      'log in to the cluster, or check that your account may create runs')

  with pytest.raises(SubmissionError) as error:
    submit_to_kfp(template_path, 'http://kfp', {}, True, client=unreachable)
  assert str(error.value).startswith(
      'cannot reach Kubeflow Pipelines at http://kfp (Connection refused)')


def test_kfp_checks_parameters_and_host_before_calling(template_path):
  client = FakeKfpClient()

  with pytest.raises(SubmissionError, match='has no parameter'):
    submit_to_kfp(template_path, 'http://kfp', {'lr': 0.1}, True, client=client)
  with pytest.raises(SubmissionError, match='no Kubeflow Pipelines host'):
    submit_to_kfp(template_path, '', {}, True, client=client)
  assert not client.calls


# Labels ----------------------------------------------------------------------


@pytest.mark.parametrize('text, expected', [
    ('0123abc', '0123abc'),
    ('Feature/Label_Test.1', 'feature-label_test-1'),
    ('jane.doe@example.com', 'jane-doe-example-com'),
    ('a  b//c', 'a-b-c'),
    ('Grüße', 'gr-e'),
    ('x' * 70, 'x' * 63),
    ('', ''),
])
def test_label_value_satisfies_the_label_rules(text, expected):
  assert label_value(text) == expected


@pytest.fixture
def clone(tmp_path) -> str:
  """A throwaway clone of this repository, to change without touching it."""
  if not (PROJECT_ROOT / '.git').exists() or not shutil.which('git'):
    pytest.skip('needs a git checkout of the project and git')
  path = str(tmp_path / 'clone')
  subprocess.run(['git', 'clone', '-q', '--shared', str(PROJECT_ROOT), path],
                 check=True)
  return path


def test_git_labels_name_the_commit_and_branch_of_a_clean_checkout(clone):
  head = subprocess.run(['git', '-C', clone, 'rev-parse', 'HEAD'], check=True,
                        capture_output=True, text=True).stdout.strip()
  subprocess.run(['git', '-C', clone, 'checkout', '-q', '-b',
                  'Feature/Label_Test.1'], check=True)

  labels = git_labels(clone)

  assert labels == {'git-commit': head[:12],
                    'git-branch': 'feature-label_test-1',
                    'git-dirty': 'false'}


def test_git_labels_mark_changed_tracked_files_as_dirty(clone):
  with open(os.path.join(clone, 'README.md'), 'a', encoding='utf-8') as f:
    f.write('\nchanged\n')
  Path(clone, 'untracked.json').write_text('{}')

  assert git_labels(clone)['git-dirty'] == 'true'


def test_untracked_files_do_not_make_a_checkout_dirty(clone):
  Path(clone, 'pipeline.json').write_text('{}')

  assert git_labels(clone)['git-dirty'] == 'false'


def test_git_labels_outside_a_checkout_say_what_to_do(tmp_path):
  with pytest.raises(SubmissionError, match='submit from a clone of the '
                     'repository'):
    git_labels(str(tmp_path))


def test_git_labels_are_accepted_by_pipeline_job(template_path, clone):
  job = _job(template_path, labels=git_labels(clone))

  assert job.to_dict()['labels']['git-dirty'] in ('true', 'false')
