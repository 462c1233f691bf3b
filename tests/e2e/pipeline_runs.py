"""The end-to-end tests' small runs: their configuration and data.

Every run writes into one workspace (conftest.py): one pipeline root, one
ML Metadata store and one serving directory, as a user's runs do.
"""

import json
import os

import pyarrow
import pyarrow.parquet
import yaml

import cli
from data.generator import generate_sessions
from pipeline import metadata_store
from pipeline.config import load_config

# The one key of the first run's configuration that changed_key_run changes
# (from 0.01 to 0.02).
CHANGED_KEY = 'evaluation.max_macro_f1_drop'
ALL_COMPONENTS = {
    'FileBasedExampleGen', 'CuratedSchema', 'StatisticsGen', 'ProposedSchema',
    'ExampleValidator', 'DataGate', 'Transform', 'Tuner', 'Trainer',
    'LatestBlessedModel', 'Evaluator', 'Pusher'
}


def write_config(workspace, name: str, data_root: str, log_name: str = '',
                 **overrides) -> str:
  """A configuration for a small run, at WORKSPACE/NAME.yaml; `overrides`
  replace or update top-level sections. The log is logs/LOG_NAME.log
  (default: NAME)."""
  with open('configs/local.yaml', encoding='utf-8') as f:
    raw = yaml.safe_load(f)
  raw['data']['root'] = data_root
  raw['paths'] = {
      'pipeline_root': str(workspace / 'pipeline'),
      'metadata': str(workspace / 'metadata.sqlite'),
      'serving_dir': str(workspace / 'serving'),
      'log_file': str(workspace / 'logs' / f'{log_name or name}.log'),
  }
  raw['training'].update(train_steps=150, eval_steps=5, batch_size=64)
  raw['tuning'].update(max_trials=1, steps_per_trial=20)
  # Real floors: this small run's model reaches a test macro F1 of about
  # 0.40 (the default run's: 0.57), and its one slice of 100+ test sessions
  # about 0.38.
  raw['evaluation'].update(macro_f1_lower_bound=0.3, slice_macro_f1_floor=0.25,
                           min_slice_examples=100)
  for section, values in overrides.items():
    if isinstance(values, dict):
      raw.setdefault(section, {}).update(values)
    else:
      raw[section] = values
  path = workspace / f'{name}.yaml'
  path.write_text(yaml.safe_dump(raw), encoding='utf-8')
  return str(path)


# The workspace's sessions (conftest.py): their raw sources are collected.
GENERATED = dict(rows=3000, seed=5, spans=2)


def collection_config(workspace, name: str = 'collect', **collection) -> str:
  """The configuration that collects WORKSPACE/raw into WORKSPACE/sessions
  (the data root of every run's configuration) and WORKSPACE/collected.duckdb."""
  return write_config(workspace, name, str(workspace / 'sessions'), collection={
      'raw': str(workspace / 'raw'),
      'exploration_table': str(workspace / 'collected.duckdb'), **collection})


def versions(serving_dir: str):
  return sorted(name for name in os.listdir(serving_dir) if name.isdigit())


def write_corrupted_sessions(folder) -> str:
  """600 sessions the data gate must stop: a flood of an unseen country, and
  a missing column. Returns the data root."""
  corrupted = generate_sessions(600, seed=6)
  corrupted['country'] = 'XX'          # an unseen category flood
  corrupted = corrupted.drop(columns=['engine_type'])  # a missing column
  os.makedirs(folder / 'span-0')
  pyarrow.parquet.write_table(
      pyarrow.Table.from_pandas(corrupted, preserve_index=False),
      folder / 'span-0' / 'sessions.parquet')
  return str(folder)


def repairml(capfd, config_path: str, *args: str):
  """Runs `repairml ARGS --config PATH --json` in this process; (exit code,
  the JSON answer or the error text). Fails if the store changed."""
  config = load_config(config_path)
  before = metadata_store.checksum(config)
  capfd.readouterr()
  code = cli.main([*args, '--config', config_path, '--json'])
  captured = capfd.readouterr()
  assert metadata_store.checksum(config) == before, f'{args} wrote to the store'
  return code, json.loads(captured.out) if code == 0 else captured.err
