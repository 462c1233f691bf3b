"""Where a server finds its model: the configured serving directory, or a local
copy of the SavedModel that Vertex AI names in AIP_STORAGE_URI, read through
tf.io.gfile (a local path here; gs:// on Vertex AI)."""

import json
import os

import pytest
import tensorflow as tf

from models import versions
from serving import model_source
from serving.model_source import ModelSourceError, serving_dir_for
from serving.model_store import ModelStore


def tree(root):
  """{relative path: bytes} of every file below `root`, and '<dir>/' for
  every folder, so that empty folders count too."""
  found = {}
  for folder, dirs, files in os.walk(root):
    relative = os.path.relpath(folder, root)
    for name in dirs:
      found[os.path.normpath(os.path.join(relative, name)) + '/'] = None
    for name in files:
      with open(os.path.join(folder, name), 'rb') as f:
        found[os.path.normpath(os.path.join(relative, name))] = f.read()
  return found


def fake_saved_model(path, provenance=None):
  """A directory that looks like a SavedModel to a reader of versions: what
  the copy does not depend on the model being real."""
  os.makedirs(os.path.join(path, 'variables'))
  os.makedirs(os.path.join(path, 'assets'))
  with open(os.path.join(path, 'saved_model.pb'), 'wb') as f:
    f.write(b'graph')
  with open(os.path.join(path, 'variables', 'variables.index'), 'wb') as f:
    f.write(b'index')
  if provenance is not None:
    write_provenance(path, provenance)
  return str(path)


def write_provenance(model_dir, provenance):
  path = os.path.join(model_dir, versions.PROVENANCE_FILE)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(provenance if isinstance(provenance, str)
            else json.dumps(provenance))


def leftovers(local_dir):
  return [name for name in os.listdir(local_dir)
          if name.startswith(model_source.STAGING_PREFIX)]


# --- Without AIP_STORAGE_URI -------------------------------------------------

@pytest.mark.parametrize('environ', [{}, {'AIP_STORAGE_URI': ''},
                                     {'AIP_STORAGE_URI': '  '},
                                     {'AIP_HTTP_PORT': '8080'}])
def test_without_a_storage_uri_the_configured_directory_is_served(tmp_path,
                                                                   environ):
  serving_dir = str(tmp_path / 'serving')

  assert serving_dir_for(serving_dir, environ) == serving_dir
  assert not os.path.exists(serving_dir)


# --- With AIP_STORAGE_URI: a real exported model -----------------------------

def test_the_model_at_the_uri_becomes_the_one_version_of_a_local_directory(
    tmp_path, exported_model):
  serving_dir = str(tmp_path / 'serving')

  local_dir = serving_dir_for(
      serving_dir, {'AIP_STORAGE_URI': exported_model.export_dir})

  assert local_dir == os.path.join(serving_dir, '.aip-storage')
  assert versions.pushed_versions(local_dir) == [1]
  assert leftovers(local_dir) == []
  copied = tree(os.path.join(local_dir, '1'))
  source = tree(exported_model.export_dir)
  # Every file and folder, byte for byte, plus the provenance it had not.
  assert {k: v for k, v in copied.items()
          if not k.startswith('assets.extra')} == source
  for folder in ('variables/', 'assets/', 'assets.extra/'):
    assert folder in copied
  assert json.loads(copied[versions.PROVENANCE_FILE]) == {
      'model_uri': exported_model.export_dir, 'version': 1}


def test_the_copy_is_what_the_model_store_serves(tmp_path, exported_model):
  local_dir = serving_dir_for(str(tmp_path / 'serving'),
                              {'AIP_STORAGE_URI': exported_model.export_dir})

  store = ModelStore(local_dir)
  store.reload()

  assert store.current() is not None
  assert store.current().version == 1
  assert store.failures() == {}


# --- The version number ------------------------------------------------------

def test_the_version_is_the_one_the_provenance_records(tmp_path):
  provenance = {'model_uri': '/runs/Trainer/model/7/Format-Serving',
                'model_artifact_id': 7, 'version': 1767582000}
  source = fake_saved_model(tmp_path / 'pushed', provenance)

  local_dir = serving_dir_for(str(tmp_path / 'serving'),
                              {'AIP_STORAGE_URI': source})

  assert versions.pushed_versions(local_dir) == [1767582000]
  # The provenance is the model's own, unchanged.
  assert versions.read_provenance(
      os.path.join(local_dir, '1767582000')) == provenance


@pytest.mark.parametrize('provenance', [
    {'model_uri': 'x'}, {'version': 0}, {'version': -3}, {'version': '12'},
    {'version': True}, [1, 2], 'not json {'])
def test_a_provenance_without_a_usable_version_gives_version_1(tmp_path,
                                                               provenance):
  source = fake_saved_model(tmp_path / 'model', provenance)

  local_dir = serving_dir_for(str(tmp_path / 'serving'),
                              {'AIP_STORAGE_URI': source})

  assert versions.pushed_versions(local_dir) == [1]


# --- Each start copies afresh ------------------------------------------------

def test_a_second_start_replaces_the_first_copy_even_with_a_lower_version(
    tmp_path):
  serving_dir = str(tmp_path / 'serving')
  first = fake_saved_model(tmp_path / 'first', {'version': 9})
  second = fake_saved_model(tmp_path / 'second')
  with open(os.path.join(second, 'saved_model.pb'), 'wb') as f:
    f.write(b'the second graph')

  serving_dir_for(serving_dir, {'AIP_STORAGE_URI': first})
  local_dir = serving_dir_for(serving_dir, {'AIP_STORAGE_URI': second})

  assert versions.pushed_versions(local_dir) == [1]
  with open(os.path.join(local_dir, '1', 'saved_model.pb'), 'rb') as f:
    assert f.read() == b'the second graph'
  assert leftovers(local_dir) == []


def test_versions_pushed_to_the_serving_directory_are_left_alone(tmp_path):
  serving_dir = tmp_path / 'serving'
  pushed = fake_saved_model(serving_dir / '3')
  before = tree(pushed)
  source = fake_saved_model(tmp_path / 'model', {'version': 1})

  local_dir = serving_dir_for(str(serving_dir), {'AIP_STORAGE_URI': source})

  assert versions.pushed_versions(str(serving_dir)) == [3]
  assert tree(pushed) == before
  assert versions.pushed_versions(local_dir) == [1]


def test_a_trailing_slash_on_the_uri_changes_nothing(tmp_path):
  source = fake_saved_model(tmp_path / 'model')

  local_dir = serving_dir_for(str(tmp_path / 'serving'),
                              {'AIP_STORAGE_URI': source + '/'})

  assert tree(os.path.join(local_dir, '1', 'variables')) == tree(
      os.path.join(source, 'variables'))


# --- Errors: one line, and no version left behind ----------------------------

def _refused(serving_dir, uri):
  with pytest.raises(ModelSourceError) as raised:
    serving_dir_for(str(serving_dir), {'AIP_STORAGE_URI': str(uri)})
  message = str(raised.value)
  assert '\n' not in message
  assert 'AIP_STORAGE_URI' in message
  local_dir = os.path.join(serving_dir, '.aip-storage')
  if os.path.isdir(local_dir):
    assert versions.pushed_versions(local_dir) == []
    assert leftovers(local_dir) == []
  return message


def test_a_missing_directory_is_refused(tmp_path):
  message = _refused(tmp_path / 'serving', tmp_path / 'nowhere')

  assert f'{tmp_path / "nowhere"}: no such directory' in message


def test_a_directory_without_a_saved_model_is_refused_saying_what_it_holds(
    tmp_path):
  (tmp_path / 'model' / 'variables').mkdir(parents=True)
  (tmp_path / 'model' / 'notes.txt').write_text('x')

  message = _refused(tmp_path / 'serving', tmp_path / 'model')

  assert 'holds no SavedModel (no saved_model.pb)' in message
  assert 'it holds notes.txt, variables' in message


def test_a_trainer_model_directory_is_refused_naming_its_saved_model(tmp_path):
  fake_saved_model(tmp_path / 'model' / 'Format-Serving')

  message = _refused(tmp_path / 'serving', tmp_path / 'model')

  assert message.endswith(
      f'use {tmp_path / "model" / "Format-Serving"} as artifact_uri')


def test_a_serving_directory_of_versions_is_refused_naming_one(tmp_path):
  for version in ('9', '10'):
    fake_saved_model(tmp_path / 'pushed' / version)

  message = _refused(tmp_path / 'serving', tmp_path / 'pushed')

  assert 'a serving directory of versions 9, 10' in message
  assert f'e.g. {tmp_path / "pushed" / "10"}' in message


def test_a_failed_copy_leaves_no_version_not_even_an_earlier_one(
    tmp_path, monkeypatch):
  serving_dir = tmp_path / 'serving'
  serving_dir_for(str(serving_dir), {
      'AIP_STORAGE_URI': fake_saved_model(tmp_path / 'earlier')})
  source = fake_saved_model(tmp_path / 'model')

  def denied(*args, **kwargs):
    raise tf.errors.PermissionDeniedError(None, None,
                                          'caller lacks storage.objects.get')

  monkeypatch.setattr(tf.io.gfile, 'copy', denied)
  message = _refused(serving_dir, source)

  assert message.startswith(
      f'cannot read the model at AIP_STORAGE_URI {source}: '
      'PermissionDeniedError: caller lacks storage.objects.get.')
  assert "endpoint's service account" in message


def test_an_unwritable_serving_directory_is_refused(tmp_path):
  source = fake_saved_model(tmp_path / 'model')
  not_a_dir = tmp_path / 'file'
  not_a_dir.write_text('x')

  with pytest.raises(ModelSourceError, match=(
      r'^cannot copy the model at AIP_STORAGE_URI .* into '
      rf'{not_a_dir}/\.aip-storage: ')):
    serving_dir_for(str(not_a_dir), {'AIP_STORAGE_URI': source})


def test_a_remote_serving_directory_is_refused(tmp_path):
  source = fake_saved_model(tmp_path / 'model')

  with pytest.raises(ModelSourceError, match=(
      'paths.serving_dir gs://bucket/serving is not a local directory')):
    serving_dir_for('gs://bucket/serving', {'AIP_STORAGE_URI': source})


def test_the_model_at_the_uri_is_only_read(tmp_path, exported_model):
  before = tree(exported_model.export_dir)

  serving_dir_for(str(tmp_path / 'serving'),
                  {'AIP_STORAGE_URI': exported_model.export_dir})

  # The provenance goes into the copy, not into the source.
  assert tree(exported_model.export_dir) == before
