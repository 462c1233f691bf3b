"""The end-to-end workspace, shared by the pipeline and the lineage tests.

It is built on first use: the raw sources of 3,000 generated sessions in two
spans, collected into spans by `repairml collect` (the Spark job included), a
first run on them that pushes, a run on corrupted data that the data gate stops, a run with one
configuration key changed and one forced not to bless. Further runs are the
tests' own.

The pipeline tests (test_local_pipeline.py) assert on the store's history:
which blessing an identical rerun repeats. The lineage tests only add runs,
and find theirs by id. So the pipeline tests run first.
"""

from pathlib import Path

import pytest
from pipeline_runs import CHANGED_KEY, GENERATED, collection_config
from pipeline_runs import write_config, write_corrupted_sessions

import local_runner
from collection import cli as collection_cli
from data.generator import generate_sessions
from data.raw_sources import raw_sources, write_raw_sources
from pipeline.config import load_config

E2E_DIR = Path(__file__).resolve().parent
RUN_FIRST = 'test_local_pipeline.py'


def pytest_collection_modifyitems(items):
  """Puts this folder's pipeline tests before its other tests, each group in
  its own order; tests elsewhere keep their places."""
  slots = [i for i, item in enumerate(items)
           if Path(item.path).parent == E2E_DIR]
  ordered = sorted((items[i] for i in slots),
                   key=lambda item: Path(item.path).name != RUN_FIRST)
  for slot, item in zip(slots, ordered):
    items[slot] = item


@pytest.fixture(scope='session')
def workspace(tmp_path_factory):
  """WORKSPACE/raw: the raw sources; WORKSPACE/sessions: the collected spans
  and their manifest; WORKSPACE/collected.duckdb: the exploration table."""
  root = tmp_path_factory.mktemp('e2e')
  sessions = generate_sessions(**GENERATED)
  write_raw_sources(raw_sources(sessions, seed=GENERATED['seed']), root / 'raw')
  assert collection_cli.main(['--config', collection_config(root)]) == 0
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
def changed_key_run(first_run, workspace):
  """The first run's configuration with one key changed."""
  section, key = CHANGED_KEY.split('.')
  path = write_config(workspace, 'changed', str(workspace / 'sessions'),
                      log_name='first', **{section: {key: 0.02}})
  return path, local_runner.run_pipeline(load_config(path))


@pytest.fixture(scope='session')
def unblessable_run(first_run, workspace):
  """The first run's model judged against floors it cannot reach, overall
  and on every slice of 100+ test sessions."""
  path = write_config(workspace, 'unblessable', str(workspace / 'sessions'),
                      log_name='first',
                      evaluation={'macro_f1_lower_bound': 0.99,
                                  'slice_macro_f1_floor': 0.99})
  return path, local_runner.run_pipeline(load_config(path))
