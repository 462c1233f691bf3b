"""`repairml runs --vertex` and `lineage --vertex`, at the gRPC boundary.

The Vertex AI SDK runs unchanged down to its channel; the channel records
the request that would go on the wire and answers with the PipelineJobs a
real Vertex AI returns for a pushed run and a run the data gate stopped.
"""

import datetime
import json

import google.auth
import pytest
from google.api_core import grpc_helpers
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform import initializer
from google.cloud.aiplatform_v1.types import pipeline_job as gca_pipeline_job
from google.cloud.aiplatform_v1.types import pipeline_service, pipeline_state

import cli

PROJECT = 'my-gcp-project'
REGION = 'europe-west4'
PARENT = f'projects/{PROJECT}/locations/{REGION}'
VERTEX_CONFIG = 'configs/vertex.yaml'
START = datetime.datetime(2026, 11, 30, 1, 0, tzinfo=datetime.timezone.utc)
TASK = gca_pipeline_job.PipelineTaskDetail.State
QUERY = ('SELECT * FROM `my-gcp-project.repairml.sessions` WHERE '
         "`car_model` = 'compact_suv'")


def _task(name, state=TASK.SUCCEEDED, outputs=None, parameters=None):
  return {'task_name': name, 'state': state,
          'execution': {'metadata': {f'input:{k}': v for k, v in
                                     (parameters or {}).items()}},
          'outputs': {key: {'artifacts': [{'uri': uri, 'metadata': metadata}]}
                      for key, (uri, metadata) in (outputs or {}).items()}}


def _pushed_job():
  return gca_pipeline_job.PipelineJob(
      name=f'{PARENT}/pipelineJobs/repairml-20261130-020000',
      create_time=START + datetime.timedelta(hours=1),
      end_time=START + datetime.timedelta(hours=1, minutes=42),
      state=pipeline_state.PipelineState.PIPELINE_STATE_SUCCEEDED,
      labels={'git-commit': 'abcdef123456', 'git-branch': 'main',
              'git-dirty': 'false', 'config-sha256': 'c' * 32,
              'lock-sha256': 'l' * 32},
      runtime_config={'parameter_values': {'car_model': 'compact_suv',
                                           'train_steps': 2000}},
      job_detail={'task_details': [
          _task('repairml'),
          _task('BigQueryExampleGen', parameters={'input_config': json.dumps(
              {'splits': [{'name': 'train', 'pattern': QUERY}]})},
                outputs={'examples': ('gs://root/examples/1', {})}),
          _task('CuratedSchema', TASK.SKIPPED,
                outputs={'schema': ('gs://root/schema/2', {})}),
          _task('DataGate'),
          _task('Trainer', outputs={'model': ('gs://root/model/3', {})}),
          _task('Evaluator', outputs={
              'blessing': ('gs://root/blessing/4', {'blessed': 1})}),
          _task('Pusher', outputs={'pushed_model': (
              'gs://root/pushed/5',
              {'pushed': 1, 'pushed_version': '7',
               'pushed_destination': 'projects/1/locations/r/models/9@7'})}),
      ]})


def _stopped_job():
  return gca_pipeline_job.PipelineJob(
      name=f'{PARENT}/pipelineJobs/repairml-20261130-010000',
      create_time=START, end_time=START + datetime.timedelta(minutes=9),
      state=pipeline_state.PipelineState.PIPELINE_STATE_FAILED,
      job_detail={'task_details': [_task('BigQueryExampleGen'),
                                   _task('DataGate', TASK.FAILED)]})


def _listed(job):
  """A job as ListPipelineJobs may return it: without its steps."""
  listed = gca_pipeline_job.PipelineJob(job)
  listed.job_detail = gca_pipeline_job.PipelineJobDetail()
  return listed


class _Channel:
  """Records each request as it would go on the wire; answers List (jobs
  without their steps) and Get (a job with them)."""

  def __init__(self, requests):
    self._requests = requests

  def unary_unary(self, method, request_serializer=None,
                  response_deserializer=None, **unused):
    def call(request, timeout=None, metadata=None, **unused_kwargs):
      wire = type(request).deserialize(request_serializer(request))
      self._requests.append((method, wire))
      jobs = [_stopped_job(), _pushed_job()]   # oldest first
      if method.endswith('PipelineService/ListPipelineJobs'):
        response = pipeline_service.ListPipelineJobsResponse(
            pipeline_jobs=[_listed(job) for job in jobs])
        return response_deserializer(
            pipeline_service.ListPipelineJobsResponse.serialize(response))
      assert method.endswith('PipelineService/GetPipelineJob'), method
      (job,) = [job for job in jobs if job.name == wire.name]
      return response_deserializer(gca_pipeline_job.PipelineJob.serialize(job))
    return call

  def close(self):
    pass


@pytest.fixture
def requests(monkeypatch):
  sent = []
  monkeypatch.setattr(initializer, 'global_config', initializer._Config())  # pylint: disable=protected-access
  monkeypatch.setattr(google.auth, 'default', lambda *a, **k: (
      AnonymousCredentials(), PROJECT))
  monkeypatch.setattr(grpc_helpers, 'create_channel',
                      lambda target, **unused: _Channel(sent))
  return sent


def _json(capfd, *args):
  capfd.readouterr()
  assert cli.main([*args, '--config', VERTEX_CONFIG, '--vertex',
                   '--json']) == 0
  return json.loads(capfd.readouterr().out)


def test_runs_lists_the_pipeline_jobs_with_their_outcome(requests, capfd):
  runs = _json(capfd, 'runs')

  (method, request), *gets = requests
  assert method == '/google.cloud.aiplatform.v1.PipelineService/ListPipelineJobs'
  assert [m.rsplit('/', 1)[1] for m, _ in gets] == ['GetPipelineJob'] * 2
  assert request.parent == PARENT
  assert request.filter == 'pipeline_name="repairml"'
  assert [r['run_id'] for r in runs] == ['repairml-20261130-020000',
                                         'repairml-20261130-010000']
  pushed, stopped = runs
  assert pushed['status'] == 'pushed' and pushed['pushed_version'] == '7'
  assert pushed['cached'] == ['CuratedSchema']
  assert pushed['seconds'] == 42 * 60
  assert stopped['status'] == 'data_anomalies'
  assert stopped['pushed_version'] is None


def test_lineage_shows_the_queries_parameters_code_and_push(requests, capfd):
  card = _json(capfd, 'lineage', 'latest')

  assert card['run']['run_id'] == 'repairml-20261130-020000'
  assert card['data']['source']['queries'] == [{'split': 'train',
                                                'query': QUERY}]
  assert card['data']['source']['runtime_parameters'] == {
      'car_model': 'compact_suv', 'train_steps': 2000}
  assert card['training'] == {'git_commit': 'abcdef123456', 'git_dirty': False,
                              'git_branch': 'main', 'config_sha256': 'c' * 32,
                              'lock_sha256': 'l' * 32}
  assert card['schema']['uri'] == 'gs://root/schema/2'
  assert card['blessing']['blessed'] == 1
  assert card['push']['pushed_destination'].endswith('models/9@7')


def test_an_unknown_job_is_a_clear_error(requests, capfd):
  capfd.readouterr()
  assert cli.main(['lineage', 'no-such-job', '--config', VERTEX_CONFIG,
                   '--vertex']) == 2
  err = capfd.readouterr().err
  assert "no pipeline job 'no-such-job'" in err and 'Traceback' not in err


def test_vertex_needs_a_vertex_configuration(capfd):
  capfd.readouterr()
  assert cli.main(['runs', '--config', 'configs/local.yaml', '--vertex']) == 2
  assert 'vertex section' in capfd.readouterr().err


def test_the_tables_name_the_jobs_and_the_provenance(requests, capfd):
  capfd.readouterr()
  assert cli.main(['runs', '--config', VERTEX_CONFIG, '--vertex']) == 0
  runs = capfd.readouterr().out
  assert 'repairml-20261130-020000' in runs and 'data_anomalies' in runs
  assert cli.main(['lineage', 'repairml-20261130-020000', '--config',
                   VERTEX_CONFIG, '--vertex']) == 0
  card = capfd.readouterr().out
  assert QUERY in card and 'commit abcdef123456' in card
  assert 'projects/1/locations/r/models/9@7' in card
