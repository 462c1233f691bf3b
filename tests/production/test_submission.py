"""Submission to Vertex AI and KFP, offline: the requests that would be sent, the checks made before sending, and one clear message per failure."""

import json
import logging
import os
import re
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
from google.cloud.aiplatform_v1.types import schedule_service

from pipeline.production import submission
from pipeline.production.submission import (SubmissionError, Submission,
                                            VertexTarget, check_images,
                                            git_labels, pipeline_job,
                                            schedule, submit, submit_to_kfp)

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
  """Vertex AI at the gRPC channel: records each request, answers or fails,
  and keeps the schedules it holds.

  Every gapic client opens its channel through grpc_helpers.create_channel,
  so replacing it stops requests after serialisation, where they would go
  on the wire.
  """

  def __init__(self):
    self.requests = []          # (endpoint, method, request)
    self.bucket_checks = []     # PipelineJob.submit's pipeline-root check
    self.error = None           # a _RpcError to answer with instead
    self.schedules = {}         # resource name -> Schedule
    self._next_schedule = 1234567890

  def create_channel(self, target, **unused_kwargs):
    return _FakeChannel(self, target)

  def check_bucket(self, **kwargs):
    self.bucket_checks.append(kwargs)

  def methods(self):
    return [method.rsplit('.', 1)[-1] for _, method, _ in self.requests]

  def only_request(self, method_suffix):
    assert [method for _, method, _ in self.requests] == [
        f'/google.cloud.aiplatform.v1.{method_suffix}']
    return self.requests[0]

  def request(self, method_name):
    """The one request of `method_name`, e.g. 'ScheduleService/ListSchedules'."""
    [found] = [request for _, method, request in self.requests
               if method.endswith(method_name)]
    return found

  def add_schedule(self, display_name, cron='0 1 * * *'):
    """A schedule someone created before; returns its resource name."""
    schedule = gca_schedule.Schedule(
        display_name=display_name, cron=cron,
        create_pipeline_job_request={'parent': PARENT})
    return self._create_schedule(PARENT, schedule).name

  def answer(self, method, request) -> bytes:
    """What Vertex AI returns, as the bytes on the wire."""
    if method.endswith('CreatePipelineJob'):
      job = gca_pipeline_job.PipelineJob(request.pipeline_job)
      job.name = f'{request.parent}/pipelineJobs/{request.pipeline_job_id}'
      return gca_pipeline_job.PipelineJob.serialize(job)
    if method.endswith('CreateSchedule'):
      created = self._create_schedule(request.parent, request.schedule)
      return gca_schedule.Schedule.serialize(created)
    if method.endswith('ListSchedules'):
      wanted = re.fullmatch(r'display_name="(.*)"', request.filter).group(1)
      return schedule_service.ListSchedulesResponse.serialize(
          schedule_service.ListSchedulesResponse(schedules=[
              s for s in self.schedules.values()
              if s.display_name == wanted]))
    if method.endswith('UpdateSchedule'):
      stored = self.schedules[request.schedule.name]
      for path in request.update_mask.paths:
        setattr(stored, path, getattr(request.schedule, path))
      return gca_schedule.Schedule.serialize(stored)
    if method.endswith('GetSchedule'):
      return gca_schedule.Schedule.serialize(self.schedules[request.name])
    raise AssertionError(f'unexpected request {method}')

  def _create_schedule(self, parent, schedule):
    created = gca_schedule.Schedule(schedule)
    created.name = f'{parent}/schedules/{self._next_schedule}'
    created.state = gca_schedule.Schedule.State.ACTIVE
    self._next_schedule += 1
    self.schedules[created.name] = created
    return created


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
      return response_deserializer(self._vertex.answer(method, wire))

    return call

  def close(self):
    pass


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
    ('project', 'Repair ML Prod', "project 'Repair ML Prod' is not a Google "
     'Cloud project ID: use the ID that `gcloud projects list` shows'),
    ('project', '', "project '' is not a Google Cloud project ID"),
    ('project', None, 'project must be a Google Cloud project ID, got None'),
    ('region', 'europe-west99', "region 'europe-west99' is not a Vertex AI "
     'region: use one of '),
    ('region', '', "region '' is not a Vertex AI region"),
    ('service_account', 'pipelines', "service_account 'pipelines' is not an "
     'email address'),
    ('pipeline_root', '/tmp/root', "pipeline_root '/tmp/root' is not a Cloud "
     'Storage path: use gs://BUCKET/PATH'),
    ('pipeline_root', 'gs://', "pipeline_root 'gs://' is not a Cloud Storage"),
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
  assert VertexTarget(project=project, region='us-central1',
                      service_account=SERVICE_ACCOUNT,
                      pipeline_root='gs://b').project == project


def test_a_target_takes_no_other_keys():
  with pytest.raises(SubmissionError, match=(
      '^Vertex target: network is not a key of Vertex target; its keys are '
      'project, region, service_account, pipeline_root$')):
    VertexTarget(project='repairml-prod', region='europe-west4',
                 service_account=SERVICE_ACCOUNT, pipeline_root='gs://b',
                 network='default')


@pytest.mark.parametrize('labels, expected', [
    ({'git-branch': 'Feature/X'}, "^pipeline job: labels.git-branch is "
     "'Feature/X', which breaks Google Cloud's label rules"),
    ({'Git': 'x'}, "^pipeline job: labels has the key 'Git', which breaks "
     "Google Cloud's label rules"),
    ({'1st': 'x'}, "labels has the key '1st', which breaks"),
    ({'note': 'x' * 64}, 'labels.note is '),
])
def test_labels_that_break_the_rules_are_rejected(template_path, labels,
                                                  expected):
  with pytest.raises(SubmissionError, match=expected):
    _job(template_path, labels=labels)


def test_an_invalid_job_id_is_rejected(template_path):
  with pytest.raises(SubmissionError, match="^pipeline job: job_id "
                     "'Repairml_1' is not a valid Vertex AI job id"):
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


SCHEDULES = 'ScheduleService'


def test_the_first_schedule_of_a_name_is_created(template_path, vertex):
  job = _job(template_path)

  created = schedule(job, 'CRON_TZ=Europe/Amsterdam 0 3 * * MON-FRI',
                     'repairml nightly', SERVICE_ACCOUNT,
                     max_concurrent_run_count=2)

  assert vertex.methods() == [f'{SCHEDULES}/ListSchedules',
                              f'{SCHEDULES}/CreateSchedule']
  listing = vertex.request('ListSchedules')
  assert listing.parent == PARENT
  assert listing.filter == 'display_name="repairml nightly"'
  endpoint, _, request = vertex.requests[1]
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
  assert list(vertex.schedules) == [created.name]


def test_scheduling_again_updates_the_schedule_of_that_name(template_path,
                                                            vertex):
  first = schedule(_job(template_path), '0 3 * * *', 'repairml nightly',
                   SERVICE_ACCOUNT)
  vertex.requests.clear()
  newer_job = _job(template_path, parameter_values={'message': 'bye'},
                   labels={'git-commit': 'fedcba987654'})

  again = schedule(newer_job, 'TZ=Europe/Berlin 30 4 * * MON',
                   'repairml nightly', SERVICE_ACCOUNT,
                   max_concurrent_run_count=2)

  assert vertex.methods() == [f'{SCHEDULES}/ListSchedules',
                              f'{SCHEDULES}/UpdateSchedule']
  update = vertex.request('UpdateSchedule')
  assert update.schedule.name == first.name
  assert list(update.update_mask.paths) == [
      'cron', 'max_concurrent_run_count', 'create_pipeline_job_request']
  assert again == Submission(first.name, first.url, created=False)
  # One schedule still, with the new cron string and the new job.
  [kept] = vertex.schedules.values()
  assert kept.display_name == 'repairml nightly'
  assert kept.cron == 'TZ=Europe/Berlin 30 4 * * MON'
  assert kept.max_concurrent_run_count == 2
  job = kept.create_pipeline_job_request
  assert job.parent == PARENT
  assert job.pipeline_job.service_account == SERVICE_ACCOUNT
  assert job.pipeline_job.labels['git-commit'] == 'fedcba987654'
  assert dict(job.pipeline_job.runtime_config.parameter_values) == {
      'message': 'bye', 'epochs': 3}
  assert job.pipeline_job.pipeline_spec['pipelineInfo'] == {'name': 'repairml'}


def test_a_schedule_of_another_name_is_left_alone(template_path, vertex):
  other = vertex.add_schedule('someone else nightly')

  created = schedule(_job(template_path), '0 3 * * *', 'repairml nightly',
                     SERVICE_ACCOUNT)

  assert created.created
  assert set(vertex.schedules) == {other, created.name}
  assert vertex.schedules[other].cron == '0 1 * * *'


def test_two_schedules_of_that_name_are_not_guessed_between(template_path,
                                                            vertex):
  first = vertex.add_schedule('repairml nightly')
  second = vertex.add_schedule('repairml nightly')

  with pytest.raises(SubmissionError) as error:
    schedule(_job(template_path), '0 3 * * *', 'repairml nightly',
             SERVICE_ACCOUNT)

  assert str(error.value) == (
      "2 Vertex AI schedules in project repairml-prod, region europe-west4 "
      f"are called 'repairml nightly' ({first}, {second}), so it is unclear "
      'which one to update: delete all but one (Vertex AI > Pipelines > '
      'Schedules), then schedule again')
  assert vertex.methods() == [f'{SCHEDULES}/ListSchedules']
  assert {s.cron for s in vertex.schedules.values()} == {'0 1 * * *'}


EXAMPLE = ('e.g. "0 3 * * MON" runs at 03:00 UTC every Monday, '
           '"TZ=Europe/Berlin 0 3 * * *" at 03:00 Berlin time daily')


@pytest.mark.parametrize('cron, expected', [
    ('JAN * * * *', "schedule: cron 'JAN * * * *': the minute 'JAN' is not "
     'valid; minutes are 0-59, with lists (1,15), ranges (1-5) and steps '
     f'(*/10); {EXAMPLE}'),
    ('5-1 * * * *', "schedule: cron '5-1 * * * *': the minute '5-1' is a "
     'range from high to low; minutes are 0-59'),
    ('0 3 * * SAT-SUN', "the day of week 'SAT-SUN' is a range from high to "
     'low; days of the week are 0-7 or SUN-SAT (0 and 7 are Sunday)'),
    ('0 3 * *', "schedule: cron '0 3 * *' has 4 fields, not 5: write "
     f'"minute hour day-of-month month day-of-week"; {EXAMPLE}'),
    ('0 3 * * * *', 'has 6 fields, not 5'),
    ('@daily', 'has 1 fields, not 5'),
    ('', 'has 0 fields, not 5'),
    ('60 3 * * *', "the minute '60' is not valid; minutes are 0-59"),
    ('0 24 * * *', "the hour '24' is not valid; hours are 0-23"),
    ('0 3 0 * *', "the day of month '0' is not valid; days of the month are "
     '1-31'),
    ('0 3 * 13 *', "the month '13' is not valid; months are 1-12 or JAN-DEC"),
    ('0 3 * MON *', "the month 'MON' is not valid"),
    ('*/0 3 * * *', "the minute '*/0' is not valid"),
    ('0 3 * * 1;2', "the day of week '1;2' is not *, a value or a range, "
     'with an optional /step'),
    # croniter's extensions, which Vertex AI's cron has not.
    ('0 3 L * *', "the day of month 'L' is not *, a value or a range"),
    ('0 3 * * 1#2', "the day of week '1#2' is not *, a value or a range"),
    ('0 3 ? * *', "the day of month '?' is not *, a value or a range"),
    ('H 3 * * *', "the minute 'H' is not *, a value or a range"),
    ('0 3 31 2 *', "cron '0 3 31 2 *' never runs: none of its months has "
     'that day of the month'),
    ('TZ=Mars/Olympus 0 3 * * *', "cron 'TZ=Mars/Olympus 0 3 * * *' has "
     "the unknown time zone 'Mars/Olympus': use an IANA name"),
    (None, 'schedule: cron must be a five-field cron string such as '
     '"0 3 * * MON", got None'),
])
def test_schedule_rejects_a_bad_cron_before_any_request(template_path, vertex,
                                                        cron, expected):
  job = _job(template_path)

  with pytest.raises(SubmissionError) as error:
    schedule(job, cron, 'repairml nightly', SERVICE_ACCOUNT)
  assert expected in str(error.value)
  assert '\n' not in str(error.value)
  assert not vertex.requests


@pytest.mark.parametrize('cron', [
    '0 3 * * 1', 'TZ=Europe/Berlin 0 3 * * MON', '0 3 * * *',
    '*/15 0-6,22 1 JAN,jul 0', 'TZ=UTC 30 2 * * 7', '0 3 * * 5-7',
    'CRON_TZ=America/New_York 0 9-17/2 * * MON-FRI', '0 0 29 2 *'])
def test_schedule_accepts_valid_crons(template_path, vertex, cron):
  schedule(_job(template_path), cron, 'repairml nightly', SERVICE_ACCOUNT)

  assert vertex.request('CreateSchedule').schedule.cron == cron


@pytest.mark.parametrize('name, count, expected', [
    ('repairml "nightly"', 1, 'schedule: display_name must be 1 to 128 '
     'characters, without double quotes or backslashes, got'),
    ('', 1, 'schedule: display_name must be 1 to 128 characters'),
    ('x' * 129, 1, 'schedule: display_name must be 1 to 128 characters'),
    ('nightly', 0, 'schedule: max_concurrent_run_count must be an integer >= '
     '1 \\(runs at a time\\), got 0'),
])
def test_schedule_settings_are_checked_before_any_request(
    template_path, vertex, name, count, expected):
  with pytest.raises(SubmissionError, match=expected):
    schedule(_job(template_path), '0 3 * * *', name, SERVICE_ACCOUNT,
             max_concurrent_run_count=count)
  assert not vertex.requests


def test_schedule_failure_is_one_message(template_path, vertex):
  vertex.error = _RpcError(grpc.StatusCode.NOT_FOUND, 'Location not found.')

  with pytest.raises(SubmissionError) as error:
    schedule(_job(template_path), '0 3 * * *', 'nightly', SERVICE_ACCOUNT)

  assert str(error.value).startswith(
      "cannot look up schedule 'nightly' on Vertex AI: project repairml-prod "
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
      f'container image(s) not found: {IMAGE}: build and push them (make '
      'push-image, make push-serving-image), or fix the image in the '
      'configuration and compile the pipeline again')


class _PusherJob:
  """A job whose one step is a Pusher that deploys `serving_image`."""

  def __init__(self, serving_image):
    self.pipeline_spec = {
        'deploymentSpec': {'executors': {
            'Pusher_executor': {'container': {'image': IMAGE}}}},
        'root': {'dag': {'tasks': {'Pusher': {'inputs': {'parameters': {
            'custom_config': {'runtimeValue': {'constant': json.dumps({
                'ai_platform_vertex_container_image_uri': serving_image,
                'ai_platform_serving_args': {}})}}}}}}}},
    }


class _MissingServingImage(FakeRegistry):
  """Has every image but the serving image."""

  def head(self, url, headers=None, timeout=None):
    self.status_code = 404 if 'repairml-serving' in url else 200
    return super().head(url, headers, timeout)


def test_the_serving_image_the_pusher_deploys_is_checked_too():
  serving_image = ('europe-west4-docker.pkg.dev/repairml-prod/pipelines/'
                   'repairml-serving:abc123')
  registry = _MissingServingImage()

  # Missing, it would fail the Pusher, the last step of the run.
  with pytest.raises(SubmissionError, match=(
      rf'^container image\(s\) not found: {re.escape(serving_image)}: ')):
    check_images(_PusherJob(serving_image), session=registry)

  assert sorted(url for url, _ in registry.heads) == [
      'https://europe-west4-docker.pkg.dev/v2/repairml-prod/pipelines/'
      'repairml-serving/manifests/abc123',
      'https://europe-west4-docker.pkg.dev/v2/repairml-prod/pipelines/'
      'repairml/manifests/abc123']


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


# Git labels ------------------------------------------------------------------


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
