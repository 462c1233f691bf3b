"""End to end: `repairml ui` in a real headless Chromium, over the real runs
of the e2e workspace (conftest.py).

The UI is served by uvicorn on 127.0.0.1, as `repairml ui` serves it; the
browser clicks from the runs list through to a model's provenance card, a
run's graph, an artifact's lineage, the why table and a diff. Each page's
screenshot is saved to test-artifacts/screenshots/.
"""

import hashlib
import json
import os

import chromium
import pytest
from pipeline_runs import CHANGED_KEY
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from starlette.testclient import TestClient

from lineage import ui
from pipeline import metadata_store
from pipeline.config import load_config

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


@pytest.fixture(scope='module')
def config(first_run, anomaly_run, changed_key_run, unblessable_run,
           workspace):
  return load_config(str(workspace / 'first.yaml'))


@pytest.fixture(scope='module')
def ui_url(config):
  """The UI over the workspace's store, as `repairml ui` serves it."""
  app = ui.create_app(config, ui.hosts_for('127.0.0.1'))
  with chromium.serving(app) as url:
    yield url


def _rows(browser, table_id):
  return [[cell.text for cell in row.find_elements(By.TAG_NAME, 'td')]
          for row in browser.find_elements(By.CSS_SELECTOR,
                                           f'#{table_id} tr')[1:]]


def test_from_the_runs_list_to_a_models_provenance(browser, ui_url, config,
                                                   first_run, anomaly_run,
                                                   unblessable_run):
  _, first, _ = first_run
  with open(anomaly_run[1], encoding='utf-8') as f:
    anomaly_id = json.load(f)['run_id']
  before = metadata_store.checksum(config)

  browser.get(ui_url + '/')
  statuses = {row[0]: row[3] for row in _rows(browser, 'runs')}
  assert statuses[first.run_id] == 'pushed'
  assert statuses[anomaly_id] == 'data_anomalies'
  assert statuses[unblessable_run[1].run_id] == 'not_blessed'
  chromium.save_screenshot(browser, 'lineage-ui-runs')

  row = browser.find_element(By.CSS_SELECTOR,
                             f'tr.run[data-run="{first.run_id}"]')
  row.find_element(By.CLASS_NAME, 'model-link').click()

  assert browser.title.startswith('model #')
  assert browser.find_element(By.ID, 'spans').text == 'span-0, span-1'
  with open(os.path.join(ROOT, 'schema', 'schema.pbtxt'), 'rb') as f:
    assert browser.find_element(By.ID, 'schema-sha256').text == (
        hashlib.sha256(f.read()).hexdigest())
  assert 'serving version' in browser.find_element(By.ID, 'push').text
  metrics = {row[0]: row[1] for row in _rows(browser, 'metrics')}
  assert float(metrics['macro_f1']) == pytest.approx(
      first.metrics['macro_f1'], abs=1e-4)
  bars = browser.find_elements(By.CSS_SELECTOR, '#slice-chart rect.bar')
  assert bars and all(float(b.get_attribute('width')) > 0 for b in bars)
  chromium.save_screenshot(browser, 'lineage-ui-card')

  browser.find_element(By.LINK_TEXT, first.run_id).click()
  nodes = browser.find_elements(By.CSS_SELECTOR, '#graph g.node')
  assert len(nodes) == 12
  assert {n.get_attribute('data-state') for n in nodes} == {'complete'}
  chromium.save_screenshot(browser, 'lineage-ui-run')

  (model_link,) = [link for link in browser.find_elements(
      By.CSS_SELECTOR, '#step-Trainer a.artifact-link')
                    if link.text.startswith('Model #')]
  model_link.click()
  assert browser.find_element(By.TAG_NAME, 'h1').text.startswith('Model #')
  upstream = ' '.join(' '.join(row) for row in _rows(browser, 'upstream'))
  assert 'TransformGraph' in upstream and 'Schema' in upstream
  chromium.save_screenshot(browser, 'lineage-ui-artifact')
  assert metadata_store.checksum(config) == before


def test_the_why_table_and_the_diff(browser, ui_url, config, first_run,
                                    changed_key_run, unblessable_run):
  _, first, _ = first_run
  _, changed = changed_key_run
  _, unblessable = unblessable_run

  browser.get(ui_url + '/')
  row = browser.find_element(By.CSS_SELECTOR,
                             f'tr.run[data-run="{unblessable.run_id}"]')
  row.find_element(By.LINK_TEXT, 'why').click()
  failing = [r for r in _rows(browser, 'rules') if r[0] == 'FAIL']
  assert ['macro_f1 >= lower bound', 'overall'] in [r[1:3] for r in failing]
  assert all(int(r[3]) >= 100 for r in failing)
  chromium.save_screenshot(browser, 'lineage-ui-why')

  browser.get(ui_url + '/')
  Select(browser.find_element(By.NAME, 'a')).select_by_value(first.run_id)
  Select(browser.find_element(By.NAME, 'b')).select_by_value(changed.run_id)
  browser.find_element(By.CSS_SELECTOR, 'form button').click()
  assert _rows(browser, 'configuration') == [[CHANGED_KEY, '0.0100',
                                              '0.0200']]
  assert browser.find_element(By.ID, 'hyperparameters-none').text == (
      'no change')
  chromium.save_screenshot(browser, 'lineage-ui-diff')


def test_what_it_displays_is_escaped_and_foreign_hosts_are_refused(config):
  client = TestClient(ui.create_app(config, ui.hosts_for('127.0.0.1')),
                      base_url='http://127.0.0.1:8080')

  answer = client.get('/why/<script>alert(1)</script>')

  assert answer.status_code == 404
  assert '<script>alert(1)</script>' not in answer.text
  assert '&lt;script&gt;alert(1)&lt;/script&gt;' in answer.text
  assert "script-src" not in answer.headers['content-security-policy']
  assert client.get('/artifacts/1?hops=99').status_code == 400
  foreign = TestClient(client.app, base_url='http://attacker.example')
  assert foreign.get('/').status_code == 400
