"""The data collection pipeline compiled for Vertex AI, offline: its six steps
and their order, runtime parameters, the BigQuery script and parameters, the
Dataproc batch, the images, and the commands of the steps that run in the
component image (the first one is run here, as the pipeline would run it)."""

import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlglot
from google_cloud_pipeline_components.container.v1.bigquery.utils import bigquery_util

import kubeflow_runner
from collection import production, selection
from collection.rules import CollectionRules
from pipeline.config import load_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VERTEX_CONFIG = str(PROJECT_ROOT / 'configs' / 'vertex.yaml')
TAG = '0123456789ab'
IMAGE = 'europe-west4-docker.pkg.dev/my-gcp-project/repairml/repairml:' + TAG
STAGING = 'gs://my-gcp-project-repairml/collection/staging'

# Each task and the tasks it waits for (data or .after()).
UPSTREAM = {
    'resolve-dates': set(),
    'bigquery-query-job': {'resolve-dates'},
    'dataproc-create-pyspark-batch': {'bigquery-query-job', 'resolve-dates'},
    'load-exploration-table': {'dataproc-create-pyspark-batch', 'resolve-dates'},
    'publish-spans': {'load-exploration-table'},
    'data-quality-statistics': {'publish-spans', 'resolve-dates'},
}


@pytest.fixture(scope='module')
def config():
  return load_config(VERTEX_CONFIG)


@pytest.fixture(scope='module')
def job(tmp_path_factory):
  """The job JSON `kubeflow_runner.py --pipeline collection` writes."""
  output = tmp_path_factory.mktemp('compiled') / 'collection.json'
  assert kubeflow_runner.main(['--pipeline', 'collection', '--config',
                               VERTEX_CONFIG, '--output', str(output),
                               '--image-tag', TAG]) == 0
  return json.loads(output.read_text(encoding='utf-8'))


@pytest.fixture(scope='module')
def spec(job):
  return job['pipelineSpec']


def _task(spec, name):
  return spec['root']['dag']['tasks'][name]


def _constant(spec, task, parameter):
  return _task(spec, task)['inputs']['parameters'][parameter]['runtimeValue'][
      'constant']


def _from_task(spec, task, parameter):
  source = _task(spec, task)['inputs']['parameters'][parameter][
      'taskOutputParameter']
  return source['producerTask'], source['outputParameterKey']


def _container(spec, task):
  executor = spec['root']['dag']['tasks'][task]['componentRef']['name'].replace(
      'comp-', 'exec-', 1)
  return spec['deploymentSpec']['executors'][executor]['container']


def test_compiles_the_collection_pipeline_job(job, spec):
  assert job['displayName'] == 'repairml-collection'
  assert spec['pipelineInfo']['name'] == 'repairml-collection'
  assert job['runtimeConfig']['gcsOutputDirectory'] == (
      'gs://my-gcp-project-repairml/pipeline-root/collection')


def test_the_six_steps_run_one_after_the_other(spec):
  tasks = spec['root']['dag']['tasks']
  assert {name: set(task.get('dependentTasks', [])) for name, task in
          tasks.items()} == UPSTREAM
  assert tuple(production.TASKS) == tuple(UPSTREAM)  # the order: each waits for the one before
  for before, after in zip(production.TASKS, production.TASKS[1:]):
    assert before in tasks[after]['dependentTasks']


def test_no_step_is_served_from_the_cache(spec):
  # The same days collected a day later hold the claims that arrived since.
  for task in spec['root']['dag']['tasks'].values():
    assert not task.get('cachingOptions', {}).get('enableCache', False)


def test_runtime_parameters_are_the_dates_and_the_car_model(job, spec):
  parameters = spec['root']['inputDefinitions']['parameters']
  assert parameters == {
      name: {'defaultValue': '', 'isOptional': True, 'parameterType': 'STRING'}
      for name in ('date_from', 'date_to', 'car_model')}
  assert job['runtimeConfig']['parameterValues'] == {
      'date_from': '', 'date_to': '', 'car_model': ''}
  inputs = _task(spec, 'resolve-dates')['inputs']['parameters']
  assert {name: value['componentInputParameter']
          for name, value in inputs.items()} == {
              'date_from': 'date_from', 'date_to': 'date_to',
              'car_model': 'car_model'}


def test_the_bigquery_step_runs_the_selection_script_with_its_parameters(
    spec, config):
  assert _constant(spec, 'bigquery-query-job', 'query') == (
      selection.bigquery_statements('my-gcp-project.repairml_raw', STAGING))
  assert _from_task(spec, 'bigquery-query-job', 'query_parameters') == (
      'resolve-dates', 'query_parameters')
  assert _constant(spec, 'bigquery-query-job', 'location') == 'europe-west4'
  assert _constant(spec, 'bigquery-query-job', 'project') == 'my-gcp-project'
  assert _constant(spec, 'bigquery-query-job',
                   'job_configuration_query') == {'parameterMode': 'NAMED'}


def test_the_dataproc_batch_runs_the_collection_job(spec):
  constant = lambda name: _constant(spec, 'dataproc-create-pyspark-batch',
                                    name)
  assert constant('main_python_file_uri') == (
      'gs://my-gcp-project-repairml/collection/code/job.py')
  assert constant('python_file_uris') == [
      'gs://my-gcp-project-repairml/collection/code/collection.zip']
  assert constant('runtime_config_version') == '2.2'
  assert constant('location') == 'europe-west4'
  assert constant('service_account') == (
      'repairml-pipelines@my-gcp-project.iam.gserviceaccount.com')
  assert _from_task(spec, 'dataproc-create-pyspark-batch', 'args') == (
      'resolve-dates', 'job_args')


def test_the_steps_of_the_component_image_run_this_commits_image(spec):
  for task in ('resolve-dates', 'load-exploration-table', 'publish-spans',
               'data-quality-statistics'):
    assert _container(spec, task)['image'] == IMAGE
  for task in ('bigquery-query-job', 'dataproc-create-pyspark-batch'):
    assert _container(spec, task)['image'].startswith(
        'gcr.io/ml-pipeline/google-cloud-pipeline-components:2.3.0')


def test_the_exploration_step_loads_the_modeling_table_by_day(spec, config):
  command = _container(spec, 'load-exploration-table')['command']
  assert command[:4] == ['python', '-m', 'collection.exploration',
                         'load-bigquery']
  options = dict(zip(command[4::2], command[5::2]))
  assert options['--table'] == config.data.table == (
      'my-gcp-project.repairml.sessions')
  assert options['--exploration-uri'] == f'{STAGING}/job/exploration'
  assert options['--date-from'] == "{{$.inputs.parameters['date_from']}}"
  assert _from_task(spec, 'load-exploration-table', 'date_from') == (
      'resolve-dates', 'out_date_from')
  assert _from_task(spec, 'load-exploration-table', 'date_to') == (
      'resolve-dates', 'out_date_to')


def test_the_publish_step_publishes_the_jobs_spans(spec):
  assert _container(spec, 'publish-spans')['command'] == [
      'python', '-m', 'collection.spans', 'publish', '--job-dir',
      f'{STAGING}/job', '--spans', 'gs://my-gcp-project-repairml/spans']


def test_the_last_step_loads_the_runs_data_quality_statistics(spec, config):
  task = _task(spec, 'data-quality-statistics')
  assert task['taskInfo']['name'] == 'data-quality statistics (BigQuery)'
  assert set(task['dependentTasks']) == {'publish-spans', 'resolve-dates'}
  command = _container(spec, 'data-quality-statistics')['command']
  assert command[:4] == ['python', '-m', 'collection.bigquery_stats',
                         'publish']
  options = dict(zip(command[4::2], command[5::2]))
  assert len(options) * 2 == len(command) - 4  # flags and values only
  assert options == {
      '--table': 'my-gcp-project.repairml.sessions',
      '--spans': 'gs://my-gcp-project-repairml/spans',
      # statistics_dataset "" in configs/vertex.yaml: the exploration
      # table's dataset.
      '--dataset': 'my-gcp-project.repairml',
      '--date-from': "{{$.inputs.parameters['date_from']}}",
      '--date-to': "{{$.inputs.parameters['date_to']}}",
      '--vocabulary-json': json.dumps(config.label.vocabulary),
      '--label-column': 'repair_labels',
      '--project': 'my-gcp-project',
      '--location': 'europe-west4',
  }
  assert json.loads(options['--vocabulary-json']) == config.label.vocabulary
  assert _from_task(spec, 'data-quality-statistics', 'date_from') == (
      'resolve-dates', 'out_date_from')
  assert _from_task(spec, 'data-quality-statistics', 'date_to') == (
      'resolve-dates', 'out_date_to')


def test_a_statistics_dataset_of_its_own_goes_to_the_last_step(tmp_path):
  text = Path(VERTEX_CONFIG).read_text(encoding='utf-8').replace(
      'base: local.yaml', f'base: {PROJECT_ROOT}/configs/local.yaml')
  assert '    statistics_dataset: ""\n' in text
  config_file = tmp_path / 'vertex.yaml'
  config_file.write_text(text.replace(
      '    statistics_dataset: ""\n',
      '    statistics_dataset: my-gcp-project.repairml_quality\n'),
                         encoding='utf-8')
  output = tmp_path / 'collection.json'
  assert kubeflow_runner.main(['--pipeline', 'collection', '--config',
                               str(config_file), '--output', str(output),
                               '--image-tag', TAG]) == 0
  spec = json.loads(output.read_text(encoding='utf-8'))['pipelineSpec']
  command = _container(spec, 'data-quality-statistics')['command']
  assert command[command.index('--dataset') + 1] == (
      'my-gcp-project.repairml_quality')


def _run_resolve_step(spec, tmp_path, date_from, date_to, car_model):
  """The resolve-dates container's command, run here as KFP would run it."""
  runtime = {'date_from': date_from, 'date_to': date_to,
             'car_model': car_model}
  outputs = {}
  command = []
  for part in _container(spec, 'resolve-dates')['command']:
    if part.startswith("{{$.inputs.parameters['"):
      part = runtime[part.split("'")[1]]
    elif part.startswith("{{$.outputs.parameters['"):
      name = part.split("'")[1]
      outputs[name] = tmp_path / 'outputs' / name
      part = str(outputs[name])
    command.append(part)
  assert command[:3] == ['python', '-m', 'collection.pipeline_steps']
  result = subprocess.run([sys.executable] + command[1:], cwd=PROJECT_ROOT,
                          capture_output=True, text=True)
  return result, {name: path.read_text() if path.exists() else None
                  for name, path in outputs.items()}


def test_the_resolve_step_gives_the_job_its_arguments_and_bigquery_its_parameters(
    spec, config, tmp_path):
  result, outputs = _run_resolve_step(spec, tmp_path, '2026-03-01',
                                      '2026-03-03', 'compact_suv')
  assert result.returncode == 0, result.stderr
  assert result.stdout == 'collecting 2026-03-01..2026-03-03, car model compact_suv\n'
  assert outputs['out_date_from'] == '2026-03-01'
  assert outputs['out_date_to'] == '2026-03-03'
  rules = config.collection.collection_rules
  assert json.loads(outputs['job_args']) == [
      '--selection', f'{STAGING}/selection', '--output', f'{STAGING}/job',
      '--rules-json', rules.to_json(), '--date-from', '2026-03-01',
      '--date-to', '2026-03-03', '--span-epoch', '2026-01-01']
  assert CollectionRules.from_json(json.loads(outputs['job_args'])[5]) == rules
  assert json.loads(outputs['query_parameters']) == (
      selection.bigquery_query_parameters('2026-03-01', '2026-03-03',
                                          'compact_suv', rules))


def test_without_dates_the_resolve_step_collects_the_window_up_to_yesterday(
    spec, tmp_path):
  result, outputs = _run_resolve_step(spec, tmp_path, '', '', '')
  assert result.returncode == 0, result.stderr
  today = datetime.datetime.now(datetime.timezone.utc).date()
  assert outputs['out_date_to'] == (today - datetime.timedelta(days=1)).isoformat()
  assert outputs['out_date_from'] == (today - datetime.timedelta(days=45)).isoformat()


def test_a_bad_date_fails_the_resolve_step_in_one_line(spec, tmp_path):
  result, outputs = _run_resolve_step(spec, tmp_path, '2026-13-01', '', '')
  assert result.returncode == 2
  assert result.stderr.count('\n') == 1 and '--date-from' in result.stderr
  assert outputs['job_args'] is None


def test_the_bigquery_launcher_sends_the_script_and_its_named_parameters(
    spec, tmp_path, monkeypatch):
  """GCPC's own launcher code builds the job request from the compiled inputs
  (as the component's ConcatPlaceholders join them); it stops before HTTP."""
  _, outputs = _run_resolve_step(spec, tmp_path, '2026-03-01', '2026-03-03', '')
  query = _constant(spec, 'bigquery-query-job', 'query')
  payload = ('{"configuration": {"query": ' + json.dumps(
      _constant(spec, 'bigquery-query-job', 'job_configuration_query')) +
             ', "labels": ' + json.dumps(
                 _constant(spec, 'bigquery-query-job', 'labels')) + '}}')
  override = ('{"query": "' + query + '", "query_parameters": ' +
              outputs['query_parameters'] +
              ', "destination_encryption_configuration": {"kmsKeyName": ""}}')
  sent = []
  monkeypatch.setattr(bigquery_util, 'create_job',
                      lambda project, location, request, creds, resources:
                      sent.append((project, location, request)))
  bigquery_util.create_query_job('my-gcp-project', 'europe-west4', payload,
                                 override, None, str(tmp_path / 'resources'))
  [(project, location, request)] = sent
  body = request['configuration']['query']
  assert (project, location) == ('my-gcp-project', 'europe-west4')
  assert body['query'] == query and body['useLegacySql'] is False
  assert body['parameterMode'] == 'NAMED'
  assert [p['name'] for p in body['query_parameters']] == [
      'date_from', 'date_to', 'car_model', 'min_claim_delay_days',
      'max_claim_delay_days']
  assert len(sqlglot.parse(body['query'], read='bigquery')) == 5


def test_compile_collection_in_a_fresh_process_writes_the_default_output(
    tmp_path):
  result = subprocess.run(
      [str(PROJECT_ROOT / '.venv' / 'bin' / 'repairml'), 'compile',
       '--pipeline', 'collection', '--config', VERTEX_CONFIG, '--image-tag',
       TAG], cwd=tmp_path, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  compiled = tmp_path / 'runs' / 'collection_pipeline.json'
  assert f'compiled {compiled}' in result.stdout
  job = json.loads(compiled.read_text(encoding='utf-8'))
  assert set(job['pipelineSpec']['root']['dag']['tasks']) == set(UPSTREAM)


def test_a_configuration_without_vertex_collection_is_refused(tmp_path,
                                                              capsys):
  text = Path(VERTEX_CONFIG).read_text(encoding='utf-8').replace(
      'base: local.yaml', f'base: {PROJECT_ROOT}/configs/local.yaml')
  start = text.index('  # The data collection pipeline')
  end = text.index('\n# The data collection in production')
  config_file = tmp_path / 'vertex.yaml'
  config_file.write_text(text[:start] + text[end:], encoding='utf-8')
  assert kubeflow_runner.main(['--pipeline', 'collection', '--config',
                               str(config_file), '--output',
                               str(tmp_path / 'x.json'), '--image-tag',
                               TAG]) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'vertex.collection' in err
  assert not (tmp_path / 'x.json').exists()


@pytest.mark.parametrize('key, value, problem', [
    ('raw_dataset', 'my-gcp-project.raw`;--', 'raw_dataset'),
    ('statistics_dataset', 'my-gcp-project.stats`;--', 'statistics_dataset'),
    ('staging_uri', "gs://bucket/it's", 'staging_uri'),
])
def test_unsafe_collection_settings_are_refused_on_load(tmp_path, capsys, key,
                                                        value, problem):
  text = Path(VERTEX_CONFIG).read_text(encoding='utf-8')
  text = text.replace('base: local.yaml',
                      f'base: {PROJECT_ROOT}/configs/local.yaml')
  lines = [f'    {key}: "{value}"' if line.startswith(f'    {key}:') else line
           for line in text.splitlines()]
  config_file = tmp_path / 'vertex.yaml'
  config_file.write_text('\n'.join(lines), encoding='utf-8')
  assert kubeflow_runner.main(['--pipeline', 'collection', '--config',
                               str(config_file), '--image-tag', TAG]) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and f'vertex.collection.{problem}' in err


def test_collection_runtime_parameters_are_checked_before_sending():
  assert production.checked_values(date_from='2026-03-01', car_model='') == {
      'date_from': '2026-03-01', 'car_model': ''}
  with pytest.raises(Exception, match='--date-to'):
    production.checked_values(date_to='03/01/2026')
  with pytest.raises(Exception, match='after --date-to'):
    production.checked_values(date_from='2026-03-02', date_to='2026-03-01')
  with pytest.raises(Exception, match='--car-model'):
    production.checked_values(car_model="x' OR '1'='1")


def test_schedule_without_a_cron_schedules_the_collection_daily(
    tmp_path, recorded, capfd):
  assert kubeflow_runner.main([
      '--pipeline', 'collection', '--config', VERTEX_CONFIG, '--output',
      str(tmp_path / 'collection.json'), '--image-tag', TAG,
      '--schedule']) == 0
  assert recorded['cron'] == '0 4 * * *'
  assert recorded['display_name'] == 'repairml collection schedule'
  job = recorded['job']
  assert job.job_id.startswith('repairml-collection-')
  assert set(job.pipeline_spec['root']['dag']['tasks']) == set(UPSTREAM)
  assert recorded['checked'] is job
  assert 'scheduled "0 4 * * *"' in capfd.readouterr().out


def test_submit_sends_the_collection_with_its_runtime_parameters(
    tmp_path, recorded):
  assert kubeflow_runner.main([
      '--pipeline', 'collection', '--config', VERTEX_CONFIG, '--output',
      str(tmp_path / 'collection.json'), '--image-tag', TAG, '--submit',
      '--date-from', '2026-03-01', '--date-to', '2026-03-03']) == 0
  parameters = recorded['job']._gca_resource.runtime_config.parameter_values  # pylint: disable=protected-access
  assert dict(parameters) == {
      'date_from': '2026-03-01', 'date_to': '2026-03-03', 'car_model': ''}


def test_train_steps_is_not_a_collection_parameter(tmp_path, capsys):
  assert kubeflow_runner.main([
      '--pipeline', 'collection', '--config', VERTEX_CONFIG, '--output',
      str(tmp_path / 'collection.json'), '--image-tag', TAG, '--submit',
      '--train-steps', '10']) == 2
  assert '--train-steps' in capsys.readouterr().err
  assert not (tmp_path / 'collection.json').exists()


def test_the_modeling_pipeline_still_needs_a_cron_to_schedule(tmp_path,
                                                              capsys):
  assert kubeflow_runner.main([
      '--config', VERTEX_CONFIG, '--output', str(tmp_path / 'p.json'),
      '--image-tag', TAG, '--schedule']) == 2
  assert 'cron' in capsys.readouterr().err


def test_local_spans_are_refused_for_the_production_collection(tmp_path,
                                                               capsys):
  text = Path(VERTEX_CONFIG).read_text(encoding='utf-8').replace(
      'base: local.yaml', f'base: {PROJECT_ROOT}/configs/local.yaml')
  config_file = tmp_path / 'vertex.yaml'
  config_file.write_text(
      text[:text.index('\n# The data collection in production')] + '\n',
      encoding='utf-8')
  assert kubeflow_runner.main(['--pipeline', 'collection', '--config',
                               str(config_file), '--image-tag', TAG]) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'collection.spans' in err and 'gs://' in err
