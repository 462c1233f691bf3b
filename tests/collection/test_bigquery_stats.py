"""The report's statistics as BigQuery rows, and the load jobs google-cloud-bigquery would send for
them, stopped at the client's HTTP transport (no network): the multipart upload of each load job,
its job configuration and its newline-delimited JSON rows."""

import datetime
import email.parser
import email.policy
import json
from urllib.parse import parse_qs, urlparse

import pytest
import requests
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
