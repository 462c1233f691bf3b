"""`repairml data report`: the HTML report of a hand-built collected table shows each section's
numbers, is self-contained and well-formed, writes TFDV's statistics beside it, and its input
errors are one line with exit code 2."""

import html
import os
import re
import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from tensorflow_metadata.proto.v0 import statistics_pb2

import cli
import collected_table as ct
from collection import report, spans
from pipeline.config import load_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, table: Path, spans: Path) -> Path:
  path = tmp_path / 'config.yaml'
  path.write_text(yaml.safe_dump({
      'base': str(PROJECT_ROOT / 'configs' / 'local.yaml'),
      'label': {'column': 'repair_labels', 'vocabulary': ct.VOCABULARY},
      'collection': {'exploration_table': str(table), 'spans': str(spans)},
      'paths': {'metadata': str(tmp_path / 'runs' / 'metadata.sqlite'),
                'log_file': str(tmp_path / 'runs' / 'logs' / 'repairml.log')},
  }))
  return path


class _Tables(HTMLParser):
  """The text of each cell of each table row, by the id of the table; and every tag's attributes."""

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.tables, self.ids, self.tags = {}, {}, []
    self._table = None
    self._row = None
    self._cell = None
    self._open_ids = []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    self.tags.append((tag, attrs))
    if tag == 'table':
      self._table = self.tables.setdefault(attrs.get('id'), [])
    elif tag == 'tr' and self._table is not None:
      self._row = []
      self._table.append(self._row)
    elif tag in ('td', 'th') and self._row is not None:
      self._cell = []
    if 'id' in attrs:
      self.ids[attrs['id']] = ''
      self._open_ids.append((tag, attrs['id']))

  def handle_endtag(self, tag):
    if tag in ('td', 'th') and self._cell is not None:
      self._row.append(' '.join(''.join(self._cell).split()))
      self._cell = None
    elif tag == 'table':
      self._table = None
    if self._open_ids and self._open_ids[-1][0] == tag:
      self._open_ids.pop()

  def handle_data(self, data):
    if self._cell is not None:
      self._cell.append(data)
    for _, element_id in self._open_ids:
      self.ids[element_id] += data


def _parsed(page: str) -> _Tables:
  parser = _Tables()
  parser.feed(page)
  parser.close()
  return parser


def _row(tables: _Tables, table: str, first_cell: str) -> list:
  (row,) = [r for r in tables.tables[table] if r and r[0] == first_cell]
  return row


@pytest.fixture(scope='module')
def written(tmp_path_factory):
  """The report of the hand-built table, written by `repairml data report` with default paths."""
  tmp_path = tmp_path_factory.mktemp('report')
  frame = ct.hand_built_table()
  table = ct.write_table(tmp_path / 'collected.duckdb', frame)
  ct.write_manifest(tmp_path / 'spans', frame)
  config = _config(tmp_path, table, tmp_path / 'spans')
  return tmp_path, config


@pytest.fixture(scope='module')
def run_output(written):
  """`repairml data report`'s exit code and what it wrote to fd 1 (capfd is function-scoped)."""
  tmp_path, config = written
  saved = os.dup(1)
  with open(tmp_path / 'stdout.txt', 'w+', encoding='utf-8') as out:
    os.dup2(out.fileno(), 1)
    try:
      code = cli.main(['data', 'report', '--config', str(config)])
    finally:
      os.dup2(saved, 1)
      os.close(saved)
    out.seek(0)
    return code, out.read()


@pytest.fixture(scope='module')
def page(written, run_output):
  tmp_path, _ = written
  assert run_output[0] == 0, run_output
  return (tmp_path / 'runs' / 'collection' / 'report.html').read_text(encoding='utf-8')


@pytest.fixture(scope='module')
def tables(page):
  return _parsed(page)


def test_the_command_prints_progress_lines_and_writes_to_runs_collection(written, run_output):
  tmp_path, _ = written
  code, out = run_output
  target = tmp_path / 'runs' / 'collection' / 'report.html'
  assert code == 0
  assert f'wrote {target}' in out or f'wrote {os.path.relpath(target)}' in out
  assert 'read 10 sessions from' in out
  assert len(out.splitlines()) == 4  # log, read, statistics, report: TF's noise went to the log
  assert (tmp_path / 'runs' / 'logs' / 'repairml.log').exists()


def test_the_collected_table_section_shows_rows_dates_and_spans_with_watermarks(tables):
  assert tables.ids['rows'] == '10'
  assert tables.ids['date-range'] == '2026-01-01 to 2026-01-02'
  assert tables.ids['span-count'] == '2'
  span_0 = _row(tables, 'spans', '0')
  span_1 = _row(tables, 'spans', '1')
  assert span_0[1:4] == ['2026-01-01', '5', '5']
  assert span_0[4:7] == ['2026-01-01T23:59:58Z', '2026-02-10T08:00:00Z', 'yes']
  assert span_1[6].startswith('no')  # claims_complete false


def test_a_span_whose_table_rows_differ_from_the_manifest_is_flagged(tmp_path):
  frame = ct.hand_built_table()
  table = ct.write_table(tmp_path / 'collected.duckdb', frame[frame['span'] == 0])
  ct.write_manifest(tmp_path / 'spans', frame)
  config = load_config(str(_config(tmp_path, table, tmp_path / 'spans')))
  written_path = report.write_report(config, str(tmp_path / 'r.html'))

  tables = _parsed(Path(written_path).read_text())
  assert _row(tables, 'spans', '1')[2:4] == ['5', '0 differs from the manifest']
  assert (tmp_path / 'statistics.pb').exists()  # beside the report, wherever it goes


def test_tfdv_statistics_are_tables_per_feature(tables):
  mileage = _row(tables, 'numeric-features', 'mileage_km')
  # feature, type, count, missing, mean, std, min, median, max, zeros
  assert mileage[1:4] == ['INT', '10', '0']
  assert mileage[4] == '102,600'  # (10000 + ... + 18000 + 900000) / 10
  assert mileage[6] == '10,000' and mileage[8] == '900,000'
  battery = _row(tables, 'numeric-features', 'battery_voltage')
  assert battery[1:4] == ['FLOAT', '8', '2']
  labels = _row(tables, 'categorical-features', 'repair_labels')
  # feature, kind, count, missing, unique, avg list length, top values
  assert labels[1:5] == ['list', '10', '0', '4']
  assert labels[5] == '0.50'  # 2 + 1 + 2 labels over 10 sessions
  assert labels[6].startswith('part:battery_12v (2)')
  assert _row(tables, 'categorical-features', 'engine_type')[5] == '-'


def test_statistics_pb_is_tfdvs_proto_of_every_row(written, page):
  tmp_path, _ = written
  statistics = statistics_pb2.DatasetFeatureStatisticsList()
  statistics.ParseFromString((tmp_path / 'runs' / 'collection' / 'statistics.pb').read_bytes())
  (dataset,) = statistics.datasets
  assert dataset.num_examples == 10
  names = {'.'.join(f.path.step) for f in dataset.features}
  assert {'session_id', 'mileage_km', 'dtcs', 'repair_labels'} <= names
  assert 'claim_ids' not in names  # the modeling table's columns only


def test_missing_values_count_nulls_per_column(tables):
  assert _row(tables, 'missing', 'battery_voltage')[1:3] == ['2', '20.0%']
  assert _row(tables, 'missing', 'mileage_km')[1:3] == ['0', '0.0%']
  claim_delay = _row(tables, 'missing', 'claim_delay_days')
  assert claim_delay[1:3] == ['7', '70.0%']
  assert '0 missing among sessions with a claim' in claim_delay[3]


def test_a_known_outlier_is_counted_with_tukeys_fences(tables):
  # Sorted mileages 10000..18000 and 900000: Q1 = 12250, Q3 = 16750 (linear interpolation),
  # IQR 4500, fences 12250 - 6750 = 5500 and 16750 + 6750 = 23500.
  row = _row(tables, 'outliers', 'mileage_km')
  # column, values, Q1, Q3, lower fence, upper fence, below, above, outliers, share
  assert row[1:] == ['10', '12,250', '16,750', '5500', '23,500', '0', '1', '1', '10.0%']


def test_every_numeric_column_has_a_histogram(page, tables):
  histograms = re.search(r'<div class="charts" id="histograms">(.*?)</div>', page, re.S).group(1)
  titles = re.findall(r'<svg[^>]*><title>([^<]*)</title>', histograms)
  assert titles == [r[0] for r in tables.tables['outliers'][1:]]
  assert 'span' not in titles and 'mileage_km' in titles


def test_join_coverage_per_day_and_overall(tables):
  assert tables.ids['coverage-overall'] == '30.0%'
  assert _row(tables, 'coverage', '2026-01-01')[1:] == ['5', '2', '40.0%']
  assert _row(tables, 'coverage', '2026-01-02')[1:] == ['5', '1', '20.0%']


def test_claim_delays_median_and_95th_percentile(tables):
  # Delays 2, 10, 30: median 10; p95 at rank 0.95 * 2 = 1.9, 10 + 0.9 * 20 = 28.
  assert tables.ids['delay-median'] == '10'
  assert tables.ids['delay-p95'] == '28'


def test_label_frequencies_in_vocabulary_order_with_flags(tables):
  rows = tables.tables['labels'][1:]
  assert [r[0] for r in rows] == ct.VOCABULARY + [ct.ODD_LABEL]
  assert rows[0][1:] == ['2', '20.0%', '']
  assert rows[2] == ['part:dpf', '0', '0.0%', 'never occurs']
  assert rows[3][1:3] == ['1', '10.0%']
  assert rows[4] == [ct.ODD_LABEL, '1', '10.0%', 'not in the vocabulary']


def test_label_chart_flags_the_same_labels(page):
  chart = re.search(r'<svg[^>]*><title>Sessions per repair label</title>.*?</svg>', page, re.S).group(0)
  assert '1 (not in the vocabulary)' in html.unescape(chart)
  assert '0 (never occurs)' in chart
  assert chart.count('<rect class="bar"') == len(ct.VOCABULARY) + 1


def test_text_from_the_data_is_escaped(page):
  assert ct.ODD_LABEL not in page
  assert html.escape(ct.ODD_LABEL) in page


def test_rule_counts_per_span_with_totals_and_explanations(tables):
  # span k's count number j is 100 * (k + 1) + j (collected_table.rule_counts).
  uploads = _row(tables, 'rule-counts-per-span', 'uploads')
  assert uploads[1:4] == ['100', '200', '300']
  assert 'uploads' in uploads[4]
  orphans = _row(tables, 'rule-counts-per-span', 'orphan_claims')
  assert orphans[1:4] == ['111', '211', '322']
  names = [r[0] for r in tables.tables['rule-counts-per-span'][1:]]
  assert names == list(ct.COUNT_NAMES)
  for row in tables.tables['rule-counts-per-span'][1:]:
    assert row[-1] and row[-1] != report.UNDOCUMENTED, row
  # The run's total also holds orphan claims of no in-range session (5 more here).
  assert _row(tables, 'rule-counts-per-run', 'orphan_claims')[1] == '327'


def test_the_page_is_self_contained(page, tables):
  assert 'http://' not in page and 'https://' not in page
  for tag, attrs in tables.tags:
    assert tag not in ('script', 'link', 'img', 'iframe', 'object'), tag
    assert not {'src', 'srcset'} & set(attrs), (tag, attrs)
    assert (attrs.get('href') or '#').startswith('#'), attrs  # links within the page only
  assert '@import' not in page and 'url(' not in page


def test_the_page_parses_and_every_section_is_there(tables):
  for section in ('collected-table', 'feature-statistics', 'missing-outliers', 'join-coverage',
                  'label-frequencies', 'rule-counts'):
    assert section in tables.ids, section


def test_every_svg_chart_parses_as_xml(page):
  charts = re.findall(r'<svg.*?</svg>', page, re.S)
  assert len(charts) >= 3 + 7  # coverage, delays, labels and a histogram per numeric column
  for chart in charts:
    root = ElementTree.fromstring(chart)
    assert root.tag == 'svg' and root.find('title').text


@pytest.mark.parametrize('missing', ['table', 'manifest'])
def test_a_missing_input_is_one_line_and_exit_2(missing, tmp_path, capfd):
  frame = ct.hand_built_table()
  table = tmp_path / 'collected.duckdb'
  if missing != 'table':
    ct.write_table(table, frame)
  if missing != 'manifest':
    ct.write_manifest(tmp_path / 'spans', frame)
  config = _config(tmp_path, table, tmp_path / 'spans')

  code = cli.main(['data', 'report', '--config', str(config)])

  err = capfd.readouterr().err
  assert code == 2
  assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err
  missing_path = table if missing == 'table' else tmp_path / 'spans' / 'manifest.json'
  assert str(missing_path) in err
  assert 'run `repairml collect` first' in err
  assert not (tmp_path / 'runs' / 'collection').exists()


@pytest.mark.parametrize('case, fragment', [
    ('no table in the file', 'holds no table collected_sessions'),
    ('manifest not json', 'cannot read the span manifest'),
    ('manifest of another format', 'is not a span manifest of format 1'),
    ('manifest with a malformed count', 'a span or run has a malformed value'),
])
def test_an_unusable_input_is_one_line_and_exit_2(case, fragment, tmp_path, capfd):
  import duckdb  # pylint: disable=g-import-not-at-top
  frame = ct.hand_built_table()
  table = tmp_path / 'collected.duckdb'
  ct.write_table(table, frame)
  manifest = ct.write_manifest(tmp_path / 'spans', frame)
  if case == 'no table in the file':
    with duckdb.connect(str(table)) as connection:
      connection.execute('DROP TABLE collected_sessions')
  elif case == 'manifest not json':
    manifest.write_text('{"format": 1, "spans": ')
  elif case == 'manifest with a malformed count':
    manifest.write_text(manifest.read_text().replace('"rows": 5', '"rows": "five"', 1))
  else:
    manifest.write_text('{"format": 2, "spans": {}}')

  code = report.main(['--config', str(_config(tmp_path, table, tmp_path / 'spans'))])

  err = capfd.readouterr().err
  assert code == 2
  assert fragment in err
  assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err


def test_chromium_draws_the_charts_from_the_file_alone(written, page, browser):
  """Opened from disk with no server and no network, every chart has a size on screen."""
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  import chromium  # pylint: disable=g-import-not-at-top
  tmp_path, _ = written
  browser.get((tmp_path / 'runs' / 'collection' / 'report.html').as_uri())

  assert browser.find_element(By.TAG_NAME, 'h1').text == 'The collected table'
  svgs = browser.find_elements(By.CSS_SELECTOR, 'svg.chart')
  assert len(svgs) == page.count('<svg class="chart"')
  for svg in svgs:
    assert svg.size['width'] > 100 and svg.size['height'] > 50
  bars = browser.find_elements(By.CSS_SELECTOR, 'svg.chart rect.bar')
  assert any(bar.size['width'] > 0 for bar in bars)
  assert browser.execute_script(
      "return performance.getEntriesByType('resource').length") == 0  # nothing fetched
  chromium.save_screenshot(browser, 'collection_report')


def test_an_output_that_cannot_be_written_is_one_line_and_exit_2(written, page, tmp_path, capfd):
  _, config = written
  blocker = tmp_path / 'a-file'
  blocker.write_text('not a folder')

  code = cli.main(['data', 'report', '--config', str(config), '--output', str(blocker / 'report.html')])

  err = capfd.readouterr().err
  assert code == 2
  assert f'cannot write the report to {blocker / "report.html"}' in err and '--output' in err
  assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err


def test_a_failure_inside_the_report_is_one_line_exit_1_with_the_traceback_in_the_log(
    written, page, tmp_path, capfd, monkeypatch):
  _, config = written
  def broken(*args, **kwargs):
    raise RuntimeError('TFDV ran out of patience\nsecond line')
  monkeypatch.setattr(report, 'build_report', broken)
  output = tmp_path / 'report.html'

  code = cli.main(['data', 'report', '--config', str(config), '--output', str(output)])

  err = capfd.readouterr().err
  log = Path(load_config(str(config)).paths.log_file).read_text()
  assert code == 1
  assert 'failed, and wrote no report: RuntimeError: TFDV ran out of patience (full log: ' in err
  assert len(err.strip().splitlines()) == 1
  assert 'Traceback' in log and 'second line' in log
  assert not output.exists()


def test_the_report_reads_the_manifest_that_publishing_writes(tmp_path):
  """collection/spans.py's publish() writes the manifest from a job's output; the report reads it."""
  import json  # pylint: disable=g-import-not-at-top
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  from data.generator import SESSION_SCHEMA  # pylint: disable=g-import-not-at-top
  frame = ct.hand_built_table()
  job = tmp_path / 'job'
  days = {}
  for span, group in frame.groupby('span'):
    (job / 'sessions' / f'_span={span}').mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(group[SESSION_SCHEMA.names], schema=SESSION_SCHEMA,
                                        preserve_index=False),
                   job / 'sessions' / f'_span={span}' / 'part-0.parquet')
    days[group['session_date'].iloc[0]] = ct.rule_counts(int(span))
  total = {name: days['2026-01-01'][name] + days['2026-01-02'][name] for name in ct.COUNT_NAMES}
  (job / 'rule_counts.json').write_text(json.dumps({
      'date_from': '2026-01-01', 'date_to': '2026-01-02', 'rules': {'max_claim_delay_days': 45},
      'watermarks': {'uploads_max_ts': '2026-01-02T23:59:00Z', 'claims_max_submitted_ts': '2026-02-15T10:00:00Z'},
      'days': days, 'total': total}))
  spans.publish(str(job), str(tmp_path / 'spans'))
  table = ct.write_table(tmp_path / 'collected.duckdb', frame)
  config = load_config(str(_config(tmp_path, table, tmp_path / 'spans')))

  tables = _parsed(Path(report.write_report(config, str(tmp_path / 'report.html'))).read_text())

  assert _row(tables, 'spans', '0')[1:7] == ['2026-01-01', '5', '5', '2026-01-02T23:59:00Z',
                                             '2026-02-15T10:00:00Z', 'yes']  # 02-15 >= 01-01 + 45 days
  assert _row(tables, 'spans', '1')[6].startswith('no')  # 02-15 < 01-02 + 45 days (02-16)
  assert _row(tables, 'rule-counts-per-span', 'uploads')[1:4] == ['100', '200', '300']
  assert tables.tables['rule-counts-per-run'][0][1].startswith('2026-01-01..2026-01-02')
