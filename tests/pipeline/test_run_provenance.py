"""A run's code, configuration and environment, attached to ML Metadata."""

import json
import subprocess
from pathlib import Path

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

from pipeline import run_provenance
from pipeline.config import load_config

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / 'configs' / 'local.yaml'


def git(repo, *args):
  subprocess.run(['git', '-c', 'user.email=t@example.com', '-c',
                  'user.name=t', *args], cwd=repo, check=True,
                 capture_output=True)


def test_the_commit_and_whether_the_tree_was_dirty(tmp_path):
  config = load_config(str(LOCAL))
  repo = tmp_path / 'repo'
  repo.mkdir()
  (repo / 'requirements.lock').write_text('tfx==1.16.0\n')
  git(repo, 'init', '-q')
  git(repo, 'add', '.')
  git(repo, 'commit', '-qm', 'first')
  commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()
  lock = str(repo / 'requirements.lock')

  clean = run_provenance.provenance(config, str(repo), lock)
  (repo / 'requirements.lock').write_text('tfx==1.15.0\n')
  dirty = run_provenance.provenance(config, str(repo), lock)
  outside = run_provenance.provenance(config, str(tmp_path), lock)

  assert clean['repairml_git_commit'] == commit
  assert clean['repairml_git_dirty'] == 0 and dirty['repairml_git_dirty'] == 1
  assert clean['repairml_lock_sha256'] != dirty['repairml_lock_sha256']
  assert outside['repairml_git_commit'] == ''


def test_the_configuration_and_its_hash(tmp_path):
  config = load_config(str(LOCAL))
  other = tmp_path / 'other.yaml'
  other.write_text(f'base: {LOCAL}\ntraining:\n  train_steps: 7\n')

  first = run_provenance.provenance(config)
  again = run_provenance.provenance(load_config(str(LOCAL)))
  changed = run_provenance.provenance(load_config(str(other)))

  assert first['repairml_config_sha256'] == again['repairml_config_sha256']
  assert first['repairml_config_sha256'] != changed['repairml_config_sha256']
  assert json.loads(changed['repairml_config'])['training'][
      'train_steps'] == 7
  packages = json.loads(first['repairml_packages'])
  assert packages['tfx'] == '1.16.0' and packages['tensorflow'] == '2.16.2'
  assert set(packages) == set(run_provenance.PACKAGES)


def _store():
  connection = metadata_store_pb2.ConnectionConfig()
  connection.fake_database.SetInParent()
  store = mlmd.MetadataStore(connection)
  run_type = store.put_context_type(metadata_store_pb2.ContextType(
      name='pipeline_run'))
  model_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(
      name='Model'))
  return store, run_type, model_type


def test_the_run_and_its_model_carry_it(tmp_path):
  store, run_type, model_type = _store()
  (first_run, second_run) = store.put_contexts([
      metadata_store_pb2.Context(type_id=run_type, name='run-1'),
      metadata_store_pb2.Context(type_id=run_type, name='run-2')])
  (model,) = store.put_artifacts([metadata_store_pb2.Artifact(
      type_id=model_type, uri=str(tmp_path / 'model'))])
  values = run_provenance.provenance(load_config(str(LOCAL)))
  later = {**values, 'repairml_git_commit': 'f' * 40}

  run_provenance.record(store, 'run-1', 'pushed', values, model)
  # A second run that got the same model from the Trainer's cache.
  run_provenance.record(store, 'run-2', 'not_blessed', later, model)
  run_provenance.record(store, 'never-started', 'failed', values)

  (one, two) = store.get_contexts_by_id([first_run, second_run])
  (artifact,) = store.get_artifacts_by_id([model])
  assert run_provenance.read(one.custom_properties) == {
      **values, 'repairml_status': 'pushed'}
  assert run_provenance.read(two.custom_properties) == {
      **later, 'repairml_status': 'not_blessed'}
  assert run_provenance.read(artifact.custom_properties) == values


def test_collected_spans_carry_their_manifest_entry(tmp_path):
  for span in ('span-0', 'span-1'):
    (tmp_path / span).mkdir()
    (tmp_path / span / 'sessions.parquet').write_bytes(b'')
  (tmp_path / 'manifest.json').write_text(json.dumps({'format': 1, 'spans': {
      '0': {'file': 'span-0/sessions.parquet', 'date': '2026-01-01',
            'content_fingerprint': 'ab12', 'claims_complete': True, 'rows': 3},
      '7': {'file': 'span-7/sessions.parquet', 'date': '2026-01-08',
            'content_fingerprint': 'cd34', 'claims_complete': False}}}))
  config = load_config('configs/local.yaml')
  config = config.model_copy(update={'data': config.data.model_copy(
      update={'root': str(tmp_path)})})

  source = run_provenance.data_source(config)

  assert source['spans'] == ['span-0', 'span-1']
  assert source['collected'] == {'span-0': {
      'date': '2026-01-01', 'content_fingerprint': 'ab12',
      'claims_complete': True}}


def test_spans_without_a_manifest_record_no_collection(tmp_path):
  (tmp_path / 'span-0').mkdir()
  (tmp_path / 'span-0' / 'sessions.parquet').write_bytes(b'')
  config = load_config('configs/local.yaml')
  config = config.model_copy(update={'data': config.data.model_copy(
      update={'root': str(tmp_path)})})
  assert 'collected' not in run_provenance.data_source(config)
