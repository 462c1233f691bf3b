"""The end-to-end workspace, shared by the pipeline and the lineage tests.

It is built on first use: 3,000 generated sessions in two spans, a first run
that pushes and a run on corrupted data that the data gate stops. The
lineage tests fork it (`lineage_workspace`) and add a run with one
configuration key changed and one forced not to bless. Further runs are the
tests' own.
"""

import shutil

import pytest
from pipeline_runs import CHANGED_KEY, write_config, write_corrupted_sessions

import local_runner
from data.generator import generate_sessions, write_spans
from pipeline.config import load_config


@pytest.fixture(scope='session')
def workspace(tmp_path_factory):
  root = tmp_path_factory.mktemp('e2e')
  write_spans(generate_sessions(3000, seed=5, spans=2), root / 'sessions')
  return root


@pytest.fixture(scope='session')
def first_run(workspace):
  """(config, RunSummary, summary path) of a first run, which pushes."""
  config = load_config(write_config(workspace, 'first',
                                    str(workspace / 'sessions')))
  summary_path = str(workspace / 'first_summary.json')
  summary = local_runner.run_pipeline(config, summary_path)
  return config, summary, summary_path


@pytest.fixture(scope='session')
def anomaly_run(first_run, workspace):
  """(exit code, summary path, config path) of a run on corrupted data,
  after the first run."""
  config_path = write_config(
      workspace, 'corrupted', write_corrupted_sessions(workspace / 'corrupted'))
  summary_path = str(workspace / 'corrupted_summary.json')
  exit_code = local_runner.main(['--config', config_path, '--summary',
                                 summary_path])
  return exit_code, summary_path, config_path


@pytest.fixture(scope='session')
def lineage_workspace(first_run, anomaly_run, workspace, tmp_path_factory):
  """A fork of the workspace after its first and corrupted-data runs: a copy
  of its ML Metadata store and serving directory (the artifacts stay where
  they are), so that the lineage tests' own runs change neither the history
  the pipeline tests see nor theirs. Its first.yaml is the first run's
  configuration, pointed at the fork."""
  fork = tmp_path_factory.mktemp('lineage')
  shutil.copy(workspace / 'metadata.sqlite', fork / 'metadata.sqlite')
  shutil.copytree(workspace / 'serving', fork / 'serving')
  write_config(fork, 'first', str(workspace / 'sessions'))
  return fork


@pytest.fixture(scope='session')
def changed_key_run(lineage_workspace, workspace):
  """In the fork: the first run's configuration with one key changed."""
  section, key = CHANGED_KEY.split('.')
  path = write_config(lineage_workspace, 'changed',
                      str(workspace / 'sessions'), log_name='first',
                      **{section: {key: 0.02}})
  return path, local_runner.run_pipeline(load_config(path))


@pytest.fixture(scope='session')
def unblessable_run(lineage_workspace, workspace):
  """In the fork: the first run's model judged against floors it cannot
  reach, overall and on every slice of 100+ test sessions."""
  path = write_config(lineage_workspace, 'unblessable',
                      str(workspace / 'sessions'), log_name='first',
                      evaluation={'macro_f1_lower_bound': 0.99,
                                  'slice_macro_f1_floor': 0.99})
  return path, local_runner.run_pipeline(load_config(path))
