"""End to end: the lineage commands over the real runs of the e2e workspace.

The runs of the lineage workspace (conftest.py): a first run that pushes, a
run the data gate stops, one with one configuration key changed, and one
forced not to bless; and here, one that fails. Every command is the real
`repairml` command, in this process, reading the real ML Metadata store;
the store's checksum is the same before and after each read.
"""

import hashlib
import json
import os
import subprocess
import sys

import pytest
from pipeline_runs import CHANGED_KEY, repairml, versions, write_config

import cli
from lineage import reproduce
from models import export, versions as model_versions
from pipeline import run_provenance
from pipeline.config import load_config

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def test_runs_lists_every_run_newest_first_with_its_status(
    capfd, first_run, anomaly_run, changed_key_run, unblessable_run,
    workspace):
  config, first, _ = first_run
  _, changed = changed_key_run
  _, unblessable = unblessable_run
  with open(anomaly_run[1], encoding='utf-8') as f:
    anomaly_id = json.load(f)['run_id']

  code, runs = repairml(capfd, str(workspace / 'first.yaml'),
                        'runs')

  assert code == 0
  by_id = {run['run_id']: run for run in runs}
  assert by_id[first.run_id]['status'] == 'pushed'
  assert by_id[anomaly_id]['status'] == 'data_anomalies'
  assert by_id[changed.run_id]['status'] == 'pushed'
  assert by_id[unblessable.run_id]['status'] == 'not_blessed'
  started = [run['started_ms'] for run in runs]
  assert started == sorted(started, reverse=True)
  (version,) = versions(config.paths.serving_dir)
  assert by_id[first.run_id]['pushed_version'] == int(version)
  assert by_id[first.run_id]['cached'] == []
  assert by_id[first.run_id]['macro_f1'] == pytest.approx(
      first.metrics['macro_f1'])
  # One key of the Evaluator's changed: everything before it is cached.
  assert {'FileBasedExampleGen', 'Transform', 'Tuner', 'Trainer'} <= set(
      by_id[changed.run_id]['cached'])
  assert 'Evaluator' in by_id[changed.run_id]['ran']
  assert by_id[unblessable.run_id]['pushed_version'] is None
  assert 'Transform' not in by_id[anomaly_id]['ran'] + by_id[anomaly_id][
      'cached']


def test_lineage_latest_names_the_spans_schema_hyperparameters_code_and_metrics(
    capfd, first_run, changed_key_run, unblessable_run, workspace):
  config, first, _ = first_run

  code, card = repairml(capfd, str(workspace / 'first.yaml'), 'lineage',
                        'latest')

  assert code == 0
  (version,) = versions(config.paths.serving_dir)
  served = model_versions.read_provenance(
      os.path.join(config.paths.serving_dir, version))
  assert card['model']['artifact_id'] == served['model_artifact_id']
  assert card['model']['trained_in_run'] == first.run_id
  assert card['push']['pushed'] and card['push']['version'] == int(version)
  data = card['data']
  assert data['source']['spans'] == ['span-0', 'span-1']
  assert sum(data['rows'].values()) == 3000
  assert data['example_gen']['input_fingerprint'].startswith(
      'split:sessions,num_files:2,')
  assert data['anomalies'] == []
  with open(os.path.join(ROOT, 'schema', 'schema.pbtxt'), 'rb') as f:
    assert card['schema']['sha256'] == hashlib.sha256(f.read()).hexdigest()
  hyper = card['hyperparameters']
  assert hyper['source'] == 'tuner' and hyper['trials'] == 1
  assert set(hyper['values']) == {'learning_rate', 'hidden_units',
                                  'hidden_layers', 'embedding_dim', 'dropout',
                                  'loss'}
  commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
  assert card['training']['git_commit'] == commit
  assert card['training']['config_sha256'] == run_provenance.provenance(
      config)['repairml_config_sha256']
  assert card['training']['packages']['tfx'] == '1.16.0'
  evaluation = card['evaluation']
  assert evaluation['candidate']['macro_f1'] == pytest.approx(
      first.metrics['macro_f1'])
  assert {s['slice'] for s in evaluation['slices']} == set(
      first.metrics['slices'])
  assert evaluation['blessing']['blessed'] is True

  # The same card by serving version, by model artifact id and by run id.
  for name in (version, f'artifact:{served["model_artifact_id"]}',
               first.run_id):
    code, again = repairml(capfd, str(workspace / 'first.yaml'),
                           'lineage', name)
    assert code == 0 and again['model'] == card['model'], name


def test_diff_shows_exactly_the_changed_key(capfd, first_run,
                                            changed_key_run, workspace):
  _, first, _ = first_run
  _, changed = changed_key_run

  code, diff = repairml(capfd, str(workspace / 'first.yaml'), 'diff',
                        first.run_id, changed.run_id)

  assert code == 0
  assert diff['configuration'] == [
      {'key': CHANGED_KEY, 'a': 0.01, 'b': 0.02}]
  for part in ('code', 'data', 'drift', 'hyperparameters', 'metrics'):
    assert diff[part] == [], part
  assert diff['schema'] is None


def test_diff_measures_the_drift_of_the_data(capfd, first_run, anomaly_run,
                                             workspace):
  _, first, _ = first_run
  with open(anomaly_run[1], encoding='utf-8') as f:
    anomaly_id = json.load(f)['run_id']

  code, diff = repairml(capfd, str(workspace / 'first.yaml'), 'diff',
                        first.run_id, anomaly_id)

  assert code == 0
  changed = {row['key'] for row in diff['data']}
  assert {'rows', 'fingerprint', 'spans'} <= changed
  drift = {row['feature']: row for row in diff['drift']}
  # Every session's country is now XX: the L-infinity distance is ~1.
  assert drift['country']['measure'] == 'L-infinity'
  assert drift['country']['distance'] > 0.9
  assert diff['drift'][0]['feature'] == 'country'


def test_why_explains_a_run_that_was_not_blessed_down_to_rule_and_slice(
    capfd, unblessable_run, workspace):
  _, summary = unblessable_run

  code, why = repairml(capfd, str(workspace / 'first.yaml'), 'why',
                       summary.run_id)

  assert code == 0
  assert why['status'] == 'not_blessed'
  failing = [r for r in why['blessing']['rows'] if r['outcome'] == 'fail']
  overall = [r for r in failing if r['slice'] == 'overall']
  assert [r['rule'] for r in overall] == ['macro_f1 >= lower bound']
  assert overall[0]['threshold'] == '>= 0.99'
  assert overall[0]['value'] == pytest.approx(summary.metrics['macro_f1'])
  slices = {r['slice'] for r in failing if r['slice'] != 'overall'}
  # The same slices the run's own summary names, each with 100+ sessions.
  assert slices == {failure.split(':')[0] for failure in
                    summary.blessing_failures} - {'overall'}
  assert slices and all(r['examples'] >= 100 for r in failing
                        if r['slice'] != 'overall')
  assert not [r for r in why['blessing']['rows'] if r['outcome'] == 'fail'
              and r['slice'] != 'overall' and r['examples'] < 100]

  capfd.readouterr()
  assert cli.main(['why', summary.run_id, '--config',
                   str(workspace / 'first.yaml')]) == 0
  text = capfd.readouterr().out
  assert 'NOT BLESSED' in text and 'FAIL  macro_f1 >= lower bound' in text


def test_why_explains_the_run_the_data_gate_stopped(capfd, anomaly_run):
  _, summary_path, config_path = anomaly_run
  with open(summary_path, encoding='utf-8') as f:
    run_id = json.load(f)['run_id']

  code, why = repairml(capfd, config_path, 'why', run_id)

  assert code == 0
  assert why['status'] == 'data_anomalies'
  by_feature = {a['feature']: a for a in why['anomalies']}
  assert by_feature['engine_type']['kind'] == 'SCHEMA_MISSING_COLUMN'
  assert 'restore it in the source' in by_feature['engine_type']['what_to_do']
  assert by_feature['country']['kind'] == 'ENUM_TYPE_UNEXPECTED_STRING_VALUES'
  assert {a['split'] for a in why['anomalies']} <= {'train', 'eval', 'test'}


def test_why_names_the_failed_step_and_its_last_error_lines(capfd, first_run,
                                                           workspace):
  broken = workspace / 'broken' / 'span-0'
  broken.mkdir(parents=True)
  (broken / 'sessions.parquet').write_bytes(b'these bytes are not parquet')
  path = write_config(workspace, 'broken',
                      str(workspace / 'broken'))
  # A process of its own, as a user runs it: its log file gets everything
  # the libraries print (in this process, pytest captures their logging).
  summary_path = workspace / 'broken_summary.json'
  ran = subprocess.run([sys.executable, os.path.join(ROOT, 'local_runner.py'),
                        '--config', path, '--summary', str(summary_path)],
                       cwd=ROOT, capture_output=True, text=True, check=False)
  assert ran.returncode == 1, ran.stderr
  with open(summary_path, encoding='utf-8') as f:
    run_id = json.load(f)['run_id']

  code, found = repairml(capfd, path, 'why', run_id)

  assert code == 0
  assert found['status'] == 'failed'
  assert found['failed_step'] == 'FileBasedExampleGen'
  assert found['log'][-1].startswith('pyarrow.lib.ArrowInvalid: Parquet magic')
  assert found['error'] == found['log'][-1]


def test_unknown_runs_and_models_are_clear_errors(capfd, first_run,
                                                  workspace):
  config_path = str(workspace / 'first.yaml')
  for args, expected in ((['why', 'no-such-run'], "no run 'no-such-run'"),
                         (['lineage', '999'], 'no serving version 999'),
                         (['lineage', 'artifact:1'], 'no Model artifact')):
    capfd.readouterr()
    assert cli.main([*args, '--config', config_path]) == 2
    err = capfd.readouterr().err
    assert expected in err and 'Traceback' not in err, err


def test_reproduce_refuses_another_commit(capfd, first_run, workspace,
                                          monkeypatch):
  _, first, _ = first_run
  real = run_provenance.provenance_of_checkout()
  monkeypatch.setattr(run_provenance, 'provenance_of_checkout',
                      lambda *_: {**real, 'commit': 'f' * 40, 'dirty': False})

  code = cli.main(['reproduce', first.run_id, '--config',
                   str(workspace / 'first.yaml')])

  err = capfd.readouterr().err
  assert code == 2
  assert f'but {"f" * 40} is checked out' in err and 'Traceback' not in err
  assert not os.path.exists(workspace / 'reproduce')


def test_reproduce_refuses_data_that_changed_since_the_run(anomaly_run):
  from lineage.history import History  # pylint: disable=g-import-not-at-top
  from pipeline import metadata_store  # pylint: disable=g-import-not-at-top
  _, summary_path, config_path = anomaly_run
  config = load_config(config_path)
  with open(summary_path, encoding='utf-8') as f:
    run_id = json.load(f)['run_id']
  history = History(metadata_store.open_store(config, read_only=True),
                    config.pipeline_name)
  run = history.run(run_id)
  assert not [r for r in reproduce.refusals(history, run) if 'data' in r]

  # One more file where the run read its sessions.
  extra = os.path.join(config.data.root, 'span-1')
  os.makedirs(extra)
  with open(os.path.join(config.data.root, 'span-0', 'sessions.parquet'),
            'rb') as source, open(os.path.join(extra, 'sessions.parquet'),
                                  'wb') as copy:
    copy.write(source.read())

  (changed,) = [r for r in reproduce.refusals(history, run) if 'data' in r]
  assert changed.startswith('the data changed since the run')
  assert 'num_files:1' in changed and 'num_files:2' in changed


def test_reproduce_matches_the_recorded_metrics_within_the_tolerance(
    capfd, first_run, workspace):
  from lineage.history import History  # pylint: disable=g-import-not-at-top
  from pipeline import metadata_store  # pylint: disable=g-import-not-at-top
  _, first, _ = first_run
  config = load_config(str(workspace / 'first.yaml'))
  history = History(metadata_store.open_store(config, read_only=True),
                    config.pipeline_name)
  # A work tree with uncommitted changes is refused for that reason alone;
  # the test then forces, as a user would.
  reasons = reproduce.refusals(history, history.run(first.run_id))
  assert all('uncommitted changes' in reason for reason in reasons), reasons
  root = workspace / 'reproduction'
  before = metadata_store.checksum(config)

  code = cli.main(['reproduce', first.run_id, '--config',
                   config.source_path, '--root', str(root), '--json'] +
                  (['--force'] if reasons else []))

  result = json.loads(capfd.readouterr().out)
  assert code == 0, result
  assert result['matches'] and result['tolerance'] == reproduce.TOLERANCE
  assert {row['metric'] for row in result['metrics']} >= {
      'macro_f1', 'micro_f1', 'macro_auc', 'macro_pr_auc'}
  for row in result['metrics']:
    assert row['within'], row
  # Nothing came from the first run's cache: a store of its own.
  assert os.path.isfile(root / 'metadata.sqlite')
  assert result['reproduction_status'] == 'pushed'
  assert export.load_thresholds(result['reproduction_model_dir']) == (
      pytest.approx(export.load_thresholds(first.pushed_model_dir),
                    abs=reproduce.TOLERANCE))
  # The recorded store and the served versions are untouched.
  assert metadata_store.checksum(config) == before
  assert len(versions(config.paths.serving_dir)) == 1
