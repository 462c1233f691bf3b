"""The report's statistics as BigQuery rows, and the load jobs google-cloud-bigquery would send for
them, stopped at the client's HTTP transport (no network): the multipart upload of each load job,
its job configuration and its newline-delimited JSON rows. The publish command (the pipeline's last
step) at the same boundary: the parameterised query that reads the exploration table's days, answered
with rows in BigQuery's REST format, and the load jobs that follow."""

import datetime
import email.parser
import email.policy
import json
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest
import requests
import sqlglot
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

import collected_table as ct
from collection import bigquery_stats, report

PROJECT = 'repairml-prod'
DATASET = f'{PROJECT}.collection_stats'
DATE = datetime.date(2026, 1, 2)
RUN_ID = 'collect-20260210-080000'
REPORTED_AT = datetime.datetime(2026, 2, 10, 9, 30, tzinfo=datetime.timezone.utc)


class FakeBigQueryHttp:
  """Stands in for the client's authorized requests.Session: records every request and answers
  a job insertion with the job, done (or failed, with `fail_with`)."""

  def __init__(self, fail_with=None):
    self.requests = []
    self.fail_with = fail_with
    self.is_mtls = False

  def request(self, method, url, data=None, headers=None, timeout=None, **kwargs):
    del timeout, kwargs
    body = data.read() if hasattr(data, 'read') else data
    self.requests.append({'method': method, 'url': url, 'headers': dict(headers or {}), 'body': body})
    if method == 'POST' and '/upload/bigquery/v2/' in url:
      job, _ = multipart_parts(self.requests[-1])
      job['status'] = ({'state': 'DONE', 'errorResult': {'reason': 'invalid', 'message': self.fail_with}}
                       if self.fail_with else {'state': 'DONE'})
      job.setdefault('jobReference', {})['projectId'] = PROJECT
      return _response(200, job)
    return _response(404, {'error': {'code': 404, 'message': f'not faked: {method} {url}'}})


def _response(status: int, payload: dict) -> requests.Response:
  response = requests.Response()
  response.status_code = status
  response._content = json.dumps(payload).encode()  # pylint: disable=protected-access
  response.headers['content-type'] = 'application/json'
  return response


def multipart_parts(request):
  """A multipart upload's two parts: the job resource (JSON) and the data (NDJSON rows)."""
  content_type = request['headers']['content-type']
  if isinstance(content_type, bytes):  # google-resumable-media sends it as bytes
    content_type = content_type.decode()
  message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
      f'Content-Type: {content_type}\r\n\r\n'.encode() + request['body'])
  metadata, data = [part.get_payload(decode=True) for part in message.iter_parts()]
  return json.loads(metadata), [json.loads(line) for line in data.decode().splitlines() if line]


@pytest.fixture(scope='module')
def collection_report():
  frame = ct.hand_built_table()
  manifest = json.loads(ct.write_manifest_text(frame))
  return report.build_report(frame, manifest, ct.VOCABULARY, table_path='t.duckdb', manifest_path='m.json')


@pytest.fixture(scope='module')
def rows(collection_report):
  return bigquery_stats.statistics_rows(collection_report, RUN_ID, DATE, reported_at=REPORTED_AT)


def _client(http):
  return bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(), _http=http)


def test_every_row_carries_the_run_id_and_date(rows):
  assert set(rows) == set(bigquery_stats.TABLE_SCHEMAS)
  for table, table_rows in rows.items():
    assert table_rows, table
    for row in table_rows:
      assert (row['run_id'], row['collection_date']) == (RUN_ID, '2026-01-02')
      assert row['reported_at'] == '2026-02-10T09:30:00+00:00'
      assert set(row) <= {f.name for f in bigquery_stats.TABLE_SCHEMAS[table]}, table


def test_the_run_id_and_date_default_to_the_manifests_latest_run(collection_report):
  rows = bigquery_stats.statistics_rows(collection_report, reported_at=REPORTED_AT)

  (summary,) = rows['collection_table_summary']
  assert (summary['run_id'], summary['collection_date']) == (RUN_ID, '2026-01-02')  # its date_to


def test_the_summary_row_holds_coverage_and_delays(rows):
  (summary,) = rows['collection_table_summary']
  assert summary['sessions'] == 10 and summary['spans'] == 2
  assert summary['claim_coverage'] == pytest.approx(0.3)
  assert (summary['claim_delay_median_days'], summary['claim_delay_p95_days']) == (10.0, 28.0)
  assert summary['labels_never_occurring'] == 1 and summary['labels_not_in_vocabulary'] == 1


def test_feature_rows_join_tfdv_missing_values_and_outliers(rows):
  features = {r['feature']: r for r in rows['collection_feature_stats']}
  mileage = features['mileage_km']
  assert (mileage['type'], mileage['count'], mileage['missing']) == ('INT', 10, 0)
  assert (mileage['lower_fence'], mileage['upper_fence'], mileage['outliers']) == (5500.0, 23500.0, 1)
  assert mileage['mean'] == pytest.approx(102600)
  battery = features['battery_voltage']
  assert (battery['missing'], battery['missing_share']) == (2, pytest.approx(0.2))
  labels = features['repair_labels']
  assert labels['is_list'] and labels['unique'] == 4
  assert labels['top_values'][0] == {'value': 'part:battery_12v', 'frequency': 2}
  assert features['claim_delay_days']['missing'] == 7  # a join column: no TFDV fields
  assert 'mean' not in features['claim_delay_days']


def test_label_and_rule_count_rows(rows):
  labels = [(r['label'], r['sessions'], r['in_vocabulary']) for r in rows['collection_label_frequencies']]
  assert labels == [('part:battery_12v', 2, True), ('part:coolant', 1, True), ('part:dpf', 0, True),
                    ('op:replace_12v_battery', 1, True), (ct.ODD_LABEL, 1, False)]
  counts = {(r['scope'], r['span'], r['count_name']): r['value'] for r in rows['collection_rule_counts']}
  assert counts[('span', 0, 'uploads')] == 100 and counts[('span', 1, 'uploads')] == 200
  assert counts[('run', None, 'orphan_claims')] == 327
  assert len(counts) == 3 * len(ct.COUNT_NAMES)
  coverage = [(r['session_date'], r['sessions_with_claim']) for r in rows['collection_join_coverage']]
  assert coverage == [('2026-01-01', 2), ('2026-01-02', 1)]


def test_rows_are_json_for_bigquery(rows):
  json.dumps(rows, allow_nan=False)  # NaN is not JSON; BigQuery would refuse the load


def test_each_table_is_one_load_job_that_replaces_the_dates_partition(rows):
  http = FakeBigQueryHttp()

  jobs = bigquery_stats.load_statistics(_client(http), DATASET, rows, DATE)

  uploads = [r for r in http.requests if r['method'] == 'POST']
  assert len(jobs) == len(uploads) == len(bigquery_stats.TABLE_SCHEMAS)
  for request in uploads:
    url = urlparse(request['url'])
    assert url.path == f'/upload/bigquery/v2/projects/{PROJECT}/jobs'
    assert parse_qs(url.query)['uploadType'] == ['multipart']
    job, data = multipart_parts(request)
    load = job['configuration']['load']
    table = load['destinationTable']['tableId'].split('$')[0]
    assert load['destinationTable'] == {'projectId': PROJECT, 'datasetId': 'collection_stats',
                                        'tableId': f'{table}$20260102'}
    assert load['writeDisposition'] == 'WRITE_TRUNCATE'
    assert load['createDisposition'] == 'CREATE_IF_NEEDED'
    assert load['schemaUpdateOptions'] == ['ALLOW_FIELD_ADDITION']
    assert load['sourceFormat'] == 'NEWLINE_DELIMITED_JSON'
    assert load['timePartitioning'] == {'type': 'DAY', 'field': 'collection_date'}
    assert [f['name'] for f in load['schema']['fields']] == [
        f.name for f in bigquery_stats.TABLE_SCHEMAS[table]]
    assert job['jobReference']['jobId'].startswith(f'repairml_collection_stats_{table}_')
    assert data == rows[table]


def test_the_feature_table_schema_has_a_repeated_record_of_top_values():
  (top_values,) = [f for f in bigquery_stats.TABLE_SCHEMAS['collection_feature_stats']
                   if f.name == 'top_values']
  assert top_values.mode == 'REPEATED' and top_values.field_type == 'RECORD'
  assert [f.name for f in top_values.fields] == ['value', 'frequency']


def test_a_failed_load_names_the_table_and_the_reason(rows):
  http = FakeBigQueryHttp(fail_with='Provided Schema does not match Table')

  with pytest.raises(bigquery_stats.StatisticsLoadError,
                     match=r'loading collection_table_summary\$20260102 into .* failed: .*does not match'):
    bigquery_stats.load_statistics(_client(http), DATASET, rows, DATE)


def test_rows_of_another_date_are_refused_before_anything_is_sent(rows):
  http = FakeBigQueryHttp()

  with pytest.raises(ValueError, match='collection_date 2026-01-03'):
    bigquery_stats.load_statistics(_client(http), DATASET, rows, datetime.date(2026, 1, 3))
  assert not http.requests


@pytest.mark.parametrize('dataset', ['', 'a.b.c', 'proj.data set', 'p.d;DROP'])
def test_a_malformed_dataset_is_refused(rows, dataset):
  with pytest.raises(ValueError, match='dataset must be'):
    bigquery_stats.load_statistics(_client(FakeBigQueryHttp()), dataset, rows, DATE)


# --- The pipeline's step: `python -m collection.bigquery_stats publish` ------------------------

TABLE = 'my-gcp-project.repairml.sessions'
RUN = '2026-01-01..2026-01-02'  # the run id the publish step records for the range
# The exploration table's BigQuery types (EXPLORATION_SCHEMA as the load jobs of exploration.py
# create it): name -> (type, mode).
BIGQUERY_COLUMNS = {
    'session_id': ('STRING', 'NULLABLE'), 'session_date': ('STRING', 'NULLABLE'),
    'span': ('INTEGER', 'NULLABLE'), 'car_model': ('STRING', 'NULLABLE'),
    'engine_type': ('STRING', 'NULLABLE'), 'country': ('STRING', 'NULLABLE'),
    'build_year': ('INTEGER', 'NULLABLE'), 'mileage_km': ('INTEGER', 'NULLABLE'),
    'battery_voltage': ('FLOAT', 'NULLABLE'), 'coolant_temp_c': ('FLOAT', 'NULLABLE'),
    'fuel_trim_pct': ('FLOAT', 'NULLABLE'), 'dtcs': ('STRING', 'REPEATED'),
    'symptoms': ('STRING', 'REPEATED'), 'repair_labels': ('STRING', 'REPEATED'),
    'vin': ('STRING', 'NULLABLE'), 'workshop_id': ('STRING', 'NULLABLE'),
    'session_ts': ('TIMESTAMP', 'NULLABLE'), 'uploads': ('INTEGER', 'NULLABLE'),
    'claim_ids': ('STRING', 'REPEATED'), 'repair_date': ('DATE', 'NULLABLE'),
    'claim_delay_days': ('INTEGER', 'NULLABLE'), 'claim_submitted_ts': ('TIMESTAMP', 'NULLABLE'),
}


def _cell(value, kind, mode):
  """One value as BigQuery's REST API returns it (strings; TIMESTAMP as int64 microseconds)."""
  if mode == 'REPEATED':
    return [{'v': str(v)} for v in value]
  if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)) or (
      value is pd.NA):
    return None
  if kind == 'TIMESTAMP':
    return str(pd.Timestamp(value).value // 1000)
  if kind == 'DATE':
    return value.isoformat()
  return str(value)


def _rest_rows(frame):
  return [{'f': [{'v': _cell(row[name], kind, mode)} for name, (kind, mode) in BIGQUERY_COLUMNS.items()]}
          for row in frame.to_dict('records')]


class FakeBigQueryWithTable(FakeBigQueryHttp):
  """FakeBigQueryHttp that also answers the query job: its insertion (done at once), its results
  (the exploration rows, one page) and its reload."""

  def __init__(self, rows, fail_with=None):
    super().__init__(fail_with)
    self.rows = rows
    self.jobs = {}

  def request(self, method, url, data=None, headers=None, timeout=None, **kwargs):
    path = urlparse(url).path
    if method == 'POST' and path == f'/bigquery/v2/projects/{PROJECT}/jobs':
      body = data.read() if hasattr(data, 'read') else data
      self.requests.append({'method': method, 'url': url, 'headers': dict(headers or {}), 'body': body})
      job = json.loads(body)
      job['status'] = {'state': 'DONE'}
      job['configuration']['query']['destinationTable'] = {
          'projectId': PROJECT, 'datasetId': '_anonymous', 'tableId': 'anon_result'}
      self.jobs[job['jobReference']['jobId']] = job
      return _response(200, job)
    if method == 'GET' and path.startswith(f'/bigquery/v2/projects/{PROJECT}/queries/'):
      self.requests.append({'method': method, 'url': url, 'headers': dict(headers or {}), 'body': None})
      job_id = path.rsplit('/', 1)[1]
      return _response(200, {
          'jobReference': self.jobs[job_id]['jobReference'], 'jobComplete': True,
          'schema': {'fields': [{'name': n, 'type': t, 'mode': m} for n, (t, m) in BIGQUERY_COLUMNS.items()]},
          'totalRows': str(len(self.rows)), 'rows': self.rows})
    if method == 'GET' and path.startswith(f'/bigquery/v2/projects/{PROJECT}/jobs/'):
      self.requests.append({'method': method, 'url': url, 'headers': dict(headers or {}), 'body': None})
      return _response(200, self.jobs[path.rsplit('/', 1)[1]])
    return super().request(method, url, data=data, headers=headers, timeout=timeout, **kwargs)


@pytest.fixture
def spans_dir(tmp_path):
  frame = ct.hand_built_table()
  total = {name: 1000 + k for k, name in enumerate(ct.COUNT_NAMES)}
  ct.write_manifest(tmp_path / 'spans', frame,
                    runs=[{'run_id': RUN, 'date_from': '2026-01-01', 'date_to': '2026-01-02', 'total': total}])
  return tmp_path / 'spans'


def _publish(monkeypatch, http, *options):
  """The publish command as the pipeline runs it, its client's HTTP in `http`; `options` come last
  (argparse keeps an option's last value)."""
  made = []
  real_client = bigquery.Client

  def client(project=None, location=None):
    made.append((project, location))
    return real_client(project=project, location=location, credentials=AnonymousCredentials(), _http=http)

  monkeypatch.setattr(bigquery, 'Client', client)
  code = bigquery_stats.main(['publish', '--table', TABLE, '--date-from', '2026-01-01',
                              '--date-to', '2026-01-02', '--vocabulary-json', json.dumps(ct.VOCABULARY),
                              '--project', PROJECT, '--location', 'europe-west4', *options])
  return code, made


def test_publish_reads_the_days_with_a_parameterised_query_and_loads_the_five_tables(
    monkeypatch, spans_dir, capsys):
  http = FakeBigQueryWithTable(_rest_rows(ct.hand_built_table()))

  code, made = _publish(monkeypatch, http, '--spans', str(spans_dir), '--dataset', DATASET)

  assert code == 0, capsys.readouterr().err
  assert made == [(PROJECT, 'europe-west4')]
  (query_insert,) = [r for r in http.requests if r['method'] == 'POST' and '/upload/' not in r['url']]
  job = json.loads(query_insert['body'])
  assert job['jobReference']['location'] == 'europe-west4'
  query = job['configuration']['query']
  assert query['useLegacySql'] is False
  assert query['query'].startswith(f'SELECT * FROM `{TABLE}`\n')
  assert 'session_date BETWEEN CAST(@date_from AS STRING) AND CAST(@date_to AS STRING)' in query['query']
  assert 'session_ts >= TIMESTAMP(@date_from)' in query['query']  # the partition filter
  assert query['queryParameters'] == [
      {'name': 'date_from', 'parameterType': {'type': 'DATE'}, 'parameterValue': {'value': '2026-01-01'}},
      {'name': 'date_to', 'parameterType': {'type': 'DATE'}, 'parameterValue': {'value': '2026-01-02'}}]
  assert '2026-01-0' not in query['query']  # the dates are parameters, not text
  assert len(sqlglot.parse(query['query'], read='bigquery')) == 1

  uploads = [r for r in http.requests if '/upload/bigquery/v2/' in r['url']]
  loaded = {}
  for request in uploads:
    load_job, data = multipart_parts(request)
    destination = load_job['configuration']['load']['destinationTable']
    assert (destination['projectId'], destination['datasetId']) == (PROJECT, 'collection_stats')
    loaded[destination['tableId']] = data
  assert set(loaded) == {f'{table}$20260102' for table in bigquery_stats.TABLE_SCHEMAS}
  for data in loaded.values():
    assert {(row['run_id'], row['collection_date']) for row in data} == {(RUN, '2026-01-02')}
  (summary,) = loaded['collection_table_summary$20260102']
  assert (summary['sessions'], summary['spans']) == (10, 2)
  assert summary['claim_coverage'] == pytest.approx(0.3)
  assert (summary['first_session_date'], summary['last_session_date']) == ('2026-01-01', '2026-01-02')
  features = {r['feature']: r for r in loaded['collection_feature_stats$20260102']}
  assert (features['mileage_km']['outliers'], features['battery_voltage']['missing']) == (1, 2)
  assert features['claim_delay_days']['missing'] == 7
  labels = [(r['label'], r['sessions']) for r in loaded['collection_label_frequencies$20260102']]
  assert labels == [('part:battery_12v', 2), ('part:coolant', 1), ('part:dpf', 0),
                    ('op:replace_12v_battery', 1), (ct.ODD_LABEL, 1)]
  counts = {(r['scope'], r['count_name']): r['value'] for r in loaded['collection_rule_counts$20260102']
            if r['scope'] == 'run'}
  assert counts[('run', 'uploads')] == 1000  # the manifest's run of this range
  out = capsys.readouterr().out
  assert f'read 10 sessions of {RUN} from {TABLE}' in out
  assert f'into {DATASET}.collection_feature_stats$20260102' in out


def test_without_a_dataset_the_statistics_go_to_the_exploration_tables_dataset(monkeypatch, spans_dir):
  http = FakeBigQueryWithTable(_rest_rows(ct.hand_built_table()))

  code, _ = _publish(monkeypatch, http, '--spans', str(spans_dir))

  assert code == 0
  datasets = {multipart_parts(r)[0]['configuration']['load']['destinationTable']['datasetId']
              for r in http.requests if '/upload/' in r['url']}
  assert datasets == {'repairml'}


def test_a_manifest_without_the_run_is_one_line_and_nothing_is_sent(monkeypatch, tmp_path, capsys):
  ct.write_manifest(tmp_path / 'spans', ct.hand_built_table())  # its run is another range
  http = FakeBigQueryWithTable([])

  code, _ = _publish(monkeypatch, http, '--spans', str(tmp_path / 'spans'))

  err = capsys.readouterr().err
  assert code == 2 and err.count('\n') == 1
  assert f'records no collection run {RUN}' in err
  assert not http.requests


def test_days_without_sessions_are_one_line_and_load_nothing(monkeypatch, spans_dir, capsys):
  http = FakeBigQueryWithTable([])

  code, _ = _publish(monkeypatch, http, '--spans', str(spans_dir))

  err = capsys.readouterr().err
  assert code == 2 and err.count('\n') == 1 and 'holds no sessions of 2026-01-01..2026-01-02' in err
  assert not [r for r in http.requests if '/upload/' in r['url']]


def test_a_failed_statistics_load_is_one_line_exit_1(monkeypatch, spans_dir, capsys):
  http = FakeBigQueryWithTable(_rest_rows(ct.hand_built_table()), fail_with='Access Denied: Dataset')

  code, _ = _publish(monkeypatch, http, '--spans', str(spans_dir))

  err = capsys.readouterr().err
  assert code == 1 and err.count('\n') == 1 and 'Access Denied' in err


@pytest.mark.parametrize('options, problem', [
    (['--spans', 'gs://b/spans', '--dataset', 'p.d;DROP'], '--dataset'),
    (['--spans', 'gs://b/spans', '--vocabulary-json', '{"a": 1}'], '--vocabulary-json'),
])
def test_unusable_options_are_refused_before_connecting(monkeypatch, capsys, options, problem):
  http = FakeBigQueryWithTable([])

  code, made = _publish(monkeypatch, http, *options)

  err = capsys.readouterr().err
  assert code == 2 and err.count('\n') == 1 and problem in err
  assert not made and not http.requests


def test_a_bad_date_or_table_is_one_line_exit_2(capsys):
  for argv in (['--table', TABLE, '--date-from', '2026-01-03', '--date-to', '2026-01-02'],
               ['--table', 'sessions', '--date-from', '2026-01-01', '--date-to', '2026-01-02']):
    code = bigquery_stats.main(['publish', '--spans', 'gs://b/spans', '--vocabulary-json', '["a", "b"]', *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count('\n') == 1, err


def test_the_read_query_selects_exactly_the_days_sessions():
  """The query's BigQuery SQL, transpiled by sqlglot and run on DuckDB with the same parameters."""
  import duckdb  # pylint: disable=g-import-not-at-top

  sql, parameters = bigquery_stats.exploration_query(TABLE, datetime.date(2026, 1, 1), datetime.date(2026, 1, 2))
  with duckdb.connect() as connection:
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute('ATTACH \':memory:\' AS "my-gcp-project"')
    connection.execute('CREATE SCHEMA "my-gcp-project".repairml')
    connection.execute('CREATE TABLE "my-gcp-project".repairml.sessions '
                       '(session_id VARCHAR, session_date VARCHAR, session_ts TIMESTAMPTZ)')
    connection.execute("""INSERT INTO "my-gcp-project".repairml.sessions VALUES
        ('s0', '2025-12-31', '2025-12-31 23:59:59.999+00'), ('s1', '2026-01-01', '2026-01-01 00:00:00+00'),
        ('s2', '2026-01-02', '2026-01-02 23:59:59.999+00'), ('s3', '2026-01-03', '2026-01-03 00:00:00+00'),
        ('s4', '2026-01-01', '2026-01-01 12:00:00+00')""")
    rows = connection.execute(sqlglot.transpile(sql, read='bigquery', write='duckdb')[0],
                              {p.name: p.value for p in parameters}).fetchall()
  assert [(r[0], r[1]) for r in rows] == [('s1', '2026-01-01'), ('s4', '2026-01-01'), ('s2', '2026-01-02')]
