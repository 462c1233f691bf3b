"""End to end on a shared store: the pipeline records its runs in a real
MariaDB server (tests/mariadb.py), and every lineage command and the UI read
them there unchanged, connecting as a user that may only SELECT.

Three runs: one that pushes, the same model judged against floors it cannot
reach, and corrupted data the gate stops. The store's checksum (MariaDB's
CHECKSUM TABLE over every table) is the same before and after each read.
"""

import os

import chromium
import pytest
from pipeline_runs import (repairml, versions, write_config,
                           write_corrupted_sessions)
from selenium.webdriver.common.by import By

import local_runner
from lineage import ui
from pipeline import metadata_store
from pipeline.config import load_config

pytestmark = pytest.mark.slow

WRITER_ENV = 'REPAIRML_E2E_WRITER_PASSWORD'
READER_ENV = 'REPAIRML_E2E_READER_PASSWORD'
DATABASE = 'lineage_e2e'


@pytest.fixture(scope='module')
def shared(mariadb, workspace, tmp_path_factory):
  """{name: (config path, RunSummary)} of the three runs on MariaDB."""
  mariadb.create_database(DATABASE)
  root = tmp_path_factory.mktemp('on-mariadb')
  store = {'mysql': {'host': mariadb.host, 'port': mariadb.port,
                     'database': DATABASE, 'user': mariadb.writer.user,
                     'password_env': WRITER_ENV,
                     'reader_user': mariadb.reader.user,
                     'reader_password_env': READER_ENV}}
  with pytest.MonkeyPatch.context() as env:
    env.setenv(WRITER_ENV, mariadb.writer.password)
    env.setenv(READER_ENV, mariadb.reader.password)
    runs = {}
    for name, data, overrides in (
        ('first', workspace / 'sessions', {}),
        ('unblessable', workspace / 'sessions',
         {'evaluation': {'macro_f1_lower_bound': 0.99}}),
        ('corrupted', write_corrupted_sessions(root / 'corrupted'), {})):
      path = write_config(root, name, str(data), log_name='first',
                          metadata=store, **overrides)
      runs[name] = (path, local_runner.run_pipeline(load_config(path)))
    yield runs


def test_the_runs_are_recorded_in_mariadb_not_in_a_file(shared):
  path, first = shared['first']
  config = load_config(path)
  assert first.status == 'pushed', first.error
  assert shared['unblessable'][1].status == 'not_blessed'
  assert shared['corrupted'][1].status == 'data_anomalies'
  assert not os.path.exists(config.paths.metadata)
  mysql = config.metadata.mysql
  assert metadata_store.describe(config) == (
      f'{mysql.host}:{mysql.port}/{DATABASE}')


def test_every_read_command_works_on_the_shared_store(capfd, shared):
  path, first = shared['first']
  unblessable = shared['unblessable'][1]
  corrupted = shared['corrupted'][1]

  code, runs = repairml(capfd, path, 'runs')
  assert code == 0
  assert {r['run_id']: r['status'] for r in runs} == {
      first.run_id: 'pushed', unblessable.run_id: 'not_blessed',
      corrupted.run_id: 'data_anomalies'}

  code, card = repairml(capfd, path, 'lineage', 'latest')
  assert code == 0
  (version,) = versions(load_config(path).paths.serving_dir)
  assert card['push']['version'] == int(version)
  assert card['model']['trained_in_run'] == first.run_id
  assert card['data']['source']['spans'] == ['span-0', 'span-1']

  code, why = repairml(capfd, path, 'why', unblessable.run_id)
  assert code == 0
  failing = [(r['rule'], r['slice']) for r in why['blessing']['rows']
             if r['outcome'] == 'fail']
  assert failing == [('macro_f1 >= lower bound', 'overall')]

  code, why = repairml(capfd, path, 'why', corrupted.run_id)
  assert code == 0 and why['status'] == 'data_anomalies'
  assert {'country', 'engine_type'} <= {a['feature'] for a in why['anomalies']}

  code, diff = repairml(capfd, path, 'diff', first.run_id, unblessable.run_id)
  assert code == 0
  assert diff['configuration'] == [{'key': 'evaluation.macro_f1_lower_bound',
                                    'a': 0.3, 'b': 0.99}]


def test_the_ui_shows_the_shared_store(browser, shared):
  path, first = shared['first']
  config = load_config(path)
  before = metadata_store.checksum(config)
  app = ui.create_app(config, ui.hosts_for('127.0.0.1'))
  with chromium.serving(app) as url:
    browser.get(url + '/')
    links = browser.find_elements(By.CLASS_NAME, 'run-link')
    assert first.run_id in {link.text for link in links}
    browser.get(url + '/models/latest')
    assert browser.find_element(By.ID, 'spans').text == 'span-0, span-1'
    chromium.save_screenshot(browser, 'lineage-ui-card-mariadb')
  assert metadata_store.checksum(config) == before
