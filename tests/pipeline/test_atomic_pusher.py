"""The atomic pusher: complete version directories or none, increasing versions,
safe concurrent pushes, pushes only of blessed, new models, and none of a
model that a rollback retired."""

import json
import logging
import os
import shutil
import threading
import time
import types
from pathlib import Path

import pytest
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from models import retirement
from models.versions import (PROVENANCE_FILE, latest_version, push_lock,
                             pushed_versions, read_provenance,
                             retired_versions)
from pipeline import run_summary
from pipeline.components import atomic_pusher
from pipeline.components.atomic_pusher import Executor, push_atomically

MODEL_FILES = {
    'saved_model.pb': b'\x08\x01graph',
    'fingerprint.pb': b'fingerprint',
    'variables/variables.index': b'index',
    'variables/variables.data-00000-of-00001': b'\x00' * 4096,
    'assets/labels.txt': b'part:dpf\nop:replace_dpf\n',
}


def _write_model(model_dir: Path) -> Path:
  for name, content in MODEL_FILES.items():
    path = model_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
  return model_dir


def _entries(serving_dir: Path) -> list:
  """What the serving directory holds besides the pushers' lock file."""
  return sorted(name for name in os.listdir(serving_dir)
                if name != atomic_pusher.LOCK_FILE)


def _tree(root: Path) -> dict:
  return {str(p.relative_to(root)): p.read_bytes()
          for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture
def model_dir(tmp_path) -> Path:
  return _write_model(tmp_path / 'model')


@pytest.fixture
def serving_dir(tmp_path) -> Path:
  return tmp_path / 'serving'


def test_push_copies_the_whole_model_and_its_provenance(model_dir,
                                                        serving_dir):
  before = int(time.time())

  target = push_atomically(str(model_dir), str(serving_dir),
                           {'model_uri': str(model_dir)})

  version = int(os.path.basename(target))
  assert os.path.dirname(target) == str(serving_dir)
  assert version >= before
  copied = _tree(Path(target))
  provenance = json.loads(copied.pop(PROVENANCE_FILE))
  assert copied == MODEL_FILES
  assert provenance == {'model_uri': str(model_dir), 'version': version}
  assert read_provenance(target) == provenance
  assert _entries(serving_dir) == [str(version)]


def test_each_push_gets_a_higher_version_and_keeps_the_earlier_ones(
    model_dir, serving_dir):
  first = push_atomically(str(model_dir), str(serving_dir), {'push': 1})
  second = push_atomically(str(model_dir), str(serving_dir), {'push': 2})
  third = push_atomically(str(model_dir), str(serving_dir), {'push': 3})

  versions = [int(os.path.basename(p)) for p in (first, second, third)]
  assert versions == sorted(set(versions))
  assert latest_version(str(serving_dir)) == versions[-1]
  assert _entries(serving_dir) == sorted(str(v) for v in versions)
  assert [read_provenance(p)['push'] for p in (first, second, third)] == [
      1, 2, 3]


def test_a_version_older_than_the_clock_is_outranked_by_time(model_dir,
                                                             serving_dir):
  (serving_dir / '7').mkdir(parents=True)

  target = push_atomically(str(model_dir), str(serving_dir), {})

  assert int(os.path.basename(target)) >= int(time.time()) - 5


def test_a_version_ahead_of_the_clock_is_still_exceeded(model_dir,
                                                        serving_dir):
  future = int(time.time()) + 10_000
  _write_model(serving_dir / str(future))

  target = push_atomically(str(model_dir), str(serving_dir), {})

  assert os.path.basename(target) == str(future + 1)


def test_a_numbered_folder_without_a_model_is_no_version_and_keeps_its_name(
    model_dir, serving_dir):
  stray = serving_dir / str(int(time.time()) + 10_000)
  (stray / 'variables').mkdir(parents=True)  # a copy that never finished
  complete = _write_model(serving_dir / '5')

  assert latest_version(str(serving_dir)) == 5
  target = push_atomically(str(model_dir), str(serving_dir), {})

  assert latest_version(str(serving_dir)) == int(os.path.basename(target))
  assert target != str(stray) and stray.is_dir()
  assert _tree(complete) == MODEL_FILES


def test_two_pushes_at_once_leave_two_complete_versions(tmp_path, serving_dir,
                                                       monkeypatch):
  first_model = _write_model(tmp_path / 'first')
  second_model = _write_model(tmp_path / 'second')
  (second_model / 'assets' / 'labels.txt').write_bytes(b'second\n')
  # Both pushes read the clock in the same second and copy at the same time:
  # each copy waits until the other one has started.
  monkeypatch.setattr(atomic_pusher.time, 'time', lambda: 1_700_000_000)
  both_copying = threading.Barrier(2, timeout=10)
  real_copytree = shutil.copytree

  def copytree(src, dst, *args, **kwargs):
    both_copying.wait()
    return real_copytree(src, dst, *args, **kwargs)

  monkeypatch.setattr(atomic_pusher.shutil, 'copytree', copytree)
  targets, errors = {}, []

  def push(name, model):
    try:
      targets[name] = push_atomically(str(model), str(serving_dir),
                                      {'model_uri': str(model)})
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  pushes = [threading.Thread(target=push, args=item)
            for item in (('first', first_model), ('second', second_model))]
  for thread in pushes:
    thread.start()
  for thread in pushes:
    thread.join()

  assert errors == []
  assert pushed_versions(str(serving_dir)) == [1_700_000_000, 1_700_000_001]
  assert _entries(serving_dir) == ['1700000000', '1700000001']
  for name, model in (('first', first_model), ('second', second_model)):
    copied = _tree(Path(targets[name]))
    provenance = json.loads(copied.pop(PROVENANCE_FILE))
    assert copied == _tree(model)
    assert provenance['model_uri'] == str(model)
    assert provenance['version'] == int(os.path.basename(targets[name]))


def test_every_file_and_directory_is_flushed_before_the_rename(
    model_dir, serving_dir, monkeypatch):
  flushed, renamed = [], []
  real_fsync, real_rename = os.fsync, os.rename

  def fsync(fd):
    flushed.append(os.readlink(f'/proc/self/fd/{fd}'))
    return real_fsync(fd)

  def rename(src, dst):
    renamed.append((src, list(flushed)))
    return real_rename(src, dst)

  monkeypatch.setattr(atomic_pusher.os, 'fsync', fsync)
  monkeypatch.setattr(atomic_pusher.os, 'rename', rename)

  target = push_atomically(str(model_dir), str(serving_dir), {})

  ((staged, flushed_before_rename),) = renamed
  staged_paths = {os.path.join(folder, name)
                  for folder, dirs, files in os.walk(target)
                  for name in files + dirs} | {target}
  expected = {path.replace(target, staged, 1) for path in staged_paths}
  assert expected <= set(flushed_before_rename)
  assert flushed[-1] == str(serving_dir)  # the rename itself is flushed


def _fail_after_first_file(real_copy2):
  copied = []

  def copy(src, dst, **kwargs):
    if copied:
      raise OSError(28, 'No space left on device')
    copied.append(src)
    return real_copy2(src, dst, **kwargs)

  return copy, copied


def test_failure_mid_copy_leaves_no_version_and_no_staging(
    model_dir, serving_dir, monkeypatch):
  previous = push_atomically(str(model_dir), str(serving_dir), {'push': 1})
  previous_tree = _tree(Path(previous))
  real_copytree = shutil.copytree
  failing_copy, copied = _fail_after_first_file(shutil.copy2)

  def copytree(src, dst, symlinks=False, ignore=None, copy_function=None,
               *args, **kwargs):
    del copy_function  # every file, also in subdirectories, goes through ours
    return real_copytree(src, dst, symlinks, ignore, failing_copy, *args,
                         **kwargs)

  monkeypatch.setattr(shutil, 'copytree', copytree)

  with pytest.raises(OSError, match='No space left'):
    push_atomically(str(model_dir), str(serving_dir), {'push': 2})

  assert len(copied) == 1  # the failure came after a partial copy
  assert _entries(serving_dir) == [os.path.basename(previous)]
  assert _tree(Path(previous)) == previous_tree


def test_failure_writing_provenance_leaves_no_version_and_no_staging(
    model_dir, serving_dir):
  with pytest.raises(TypeError):
    push_atomically(str(model_dir), str(serving_dir),
                    {'model_uri': object()})  # not JSON serializable

  assert _entries(serving_dir) == []
  assert latest_version(str(serving_dir)) is None


def test_a_stale_staging_directory_is_not_a_version(model_dir, serving_dir):
  stale = serving_dir / f'.staging-{int(time.time())}'
  stale.mkdir(parents=True)
  (stale / 'saved_model.pb').write_bytes(b'half')

  assert latest_version(str(serving_dir)) is None


def test_latest_version_ignores_non_numeric_entries(serving_dir):
  for name in ('3', '12', '1700000000x', 'latest', '.staging-99', 'v100'):
    _write_model(serving_dir / name)

  assert latest_version(str(serving_dir)) == 12


def test_latest_version_of_a_missing_directory_is_none(tmp_path):
  assert latest_version(str(tmp_path / 'absent')) is None


def test_provenance_of_a_version_without_it_is_empty(tmp_path):
  assert read_provenance(str(tmp_path)) == {}


# --- The executor, with real artifacts -----------------------------------------


def _model_artifact(tmp_path: Path, name: str, artifact_id: int):
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / name)
  model.id = artifact_id
  _write_model(tmp_path / name / 'Format-Serving')
  return model


def _blessing(tmp_path: Path, blessed: int):
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / f'blessing-{blessed}')
  blessing.set_int_custom_property('blessed', blessed)
  return blessing


def _push(model, blessing, serving_dir: Path):
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(serving_dir.parent / 'pushed_model')
  destination = pusher_pb2.PushDestination(
      filesystem=pusher_pb2.PushDestination.Filesystem(
          base_directory=str(serving_dir)))
  Executor().Do({'model': [model], 'model_blessing': [blessing]},
                {'pushed_model': [pushed]},
                {'push_destination': proto_utils.proto_to_json(destination),
                 'custom_config': 'null'})
  return pushed


def test_executor_pushes_a_blessed_model(tmp_path, serving_dir):
  model = _model_artifact(tmp_path, 'model-1', artifact_id=11)

  pushed = _push(model, _blessing(tmp_path, 1), serving_dir)

  version = latest_version(str(serving_dir))
  target = serving_dir / str(version)
  assert pushed.get_int_custom_property('pushed') == 1
  assert pushed.get_string_custom_property('pushed_destination') == str(target)
  assert pushed.get_string_custom_property('pushed_version') == str(version)
  provenance = read_provenance(str(target))
  assert provenance['model_uri'] == os.path.join(model.uri, 'Format-Serving')
  assert provenance['model_artifact_id'] == 11
  copied = _tree(target)
  copied.pop(PROVENANCE_FILE)
  assert copied == MODEL_FILES


def test_executor_does_not_push_an_unblessed_model(tmp_path, serving_dir):
  model = _model_artifact(tmp_path, 'model-1', artifact_id=11)

  pushed = _push(model, _blessing(tmp_path, 0), serving_dir)

  assert pushed.get_int_custom_property('pushed') == 0
  assert not pushed.has_custom_property('pushed_destination')
  assert not serving_dir.exists() or _entries(serving_dir) == []


def test_pushing_the_latest_model_again_adds_no_version(tmp_path, serving_dir):
  model = _model_artifact(tmp_path, 'model-1', artifact_id=11)
  first = _push(model, _blessing(tmp_path, 1), serving_dir)

  again = _push(model, _blessing(tmp_path, 1), serving_dir)

  assert len(_entries(serving_dir)) == 1
  assert again.get_int_custom_property('pushed') == 1
  assert again.get_string_custom_property('pushed_destination') == (
      first.get_string_custom_property('pushed_destination'))


def test_a_new_model_after_the_latest_gets_a_new_version(tmp_path,
                                                         serving_dir):
  first = _push(_model_artifact(tmp_path, 'model-1', artifact_id=11),
                _blessing(tmp_path, 1), serving_dir)

  second = _push(_model_artifact(tmp_path, 'model-2', artifact_id=12),
                 _blessing(tmp_path, 1), serving_dir)

  first_version = int(first.get_string_custom_property('pushed_version'))
  second_version = int(second.get_string_custom_property('pushed_version'))
  assert second_version > first_version
  assert latest_version(str(serving_dir)) == second_version
  assert read_provenance(str(serving_dir / str(second_version)))[
      'model_artifact_id'] == 12


# --- After a rollback ----------------------------------------------------------


def _pushed_version(pushed) -> int:
  return int(pushed.get_string_custom_property('pushed_version'))


def test_a_retired_model_is_not_pushed_again(tmp_path, serving_dir, caplog):
  first = _push(_model_artifact(tmp_path, 'model-1', artifact_id=11),
                _blessing(tmp_path, 1), serving_dir)
  bad_model = _model_artifact(tmp_path, 'model-2', artifact_id=12)
  bad = _push(bad_model, _blessing(tmp_path, 1), serving_dir)
  assert retirement.retire(str(serving_dir)) == [_pushed_version(bad)]

  # The same model again, e.g. a rerun whose Evaluator was not cached.
  with caplog.at_level(logging.WARNING):
    again = _push(bad_model, _blessing(tmp_path, 1), serving_dir)

  assert pushed_versions(str(serving_dir)) == [_pushed_version(first)]
  assert retired_versions(str(serving_dir)) == [_pushed_version(bad)]
  assert again.get_int_custom_property('pushed') == 0
  assert again.get_string_custom_property('retired_version') == str(
      _pushed_version(bad))
  assert f'retired to {serving_dir}/retired/{_pushed_version(bad)}' in (
      caplog.text)
  assert 'not pushed again' in caplog.text


def test_a_run_that_met_a_retired_model_ends_retired_not_unblessed(
    tmp_path, serving_dir):
  model = _model_artifact(tmp_path, 'model-1', artifact_id=11)
  _push(_model_artifact(tmp_path, 'model-0', artifact_id=10),
        _blessing(tmp_path, 1), serving_dir)
  version = _pushed_version(_push(model, _blessing(tmp_path, 1), serving_dir))
  retirement.retire(str(serving_dir))
  blessing = _blessing(tmp_path, 1)
  again = _push(model, blessing, serving_dir)
  run = run_summary.RunRecord('run-2', {}, {
      'Evaluator': {'blessing': [blessing]},
      'Pusher': {'pushed_model': [again]}})

  summary = run_summary.summarize(run, [], None,
                                  types.SimpleNamespace(seconds={}))

  assert summary.status == 'retired' and summary.exit_code == 5
  assert summary.blessed and summary.pushed_model_dir is None
  assert summary.retired_version == version


def test_another_model_is_pushed_after_a_rollback(tmp_path, serving_dir):
  _push(_model_artifact(tmp_path, 'model-1', artifact_id=11),
        _blessing(tmp_path, 1), serving_dir)
  _push(_model_artifact(tmp_path, 'model-2', artifact_id=12),
        _blessing(tmp_path, 1), serving_dir)
  (retired,) = retirement.retire(str(serving_dir))

  fixed = _push(_model_artifact(tmp_path, 'model-3', artifact_id=13),
                _blessing(tmp_path, 1), serving_dir)

  assert fixed.get_int_custom_property('pushed') == 1
  assert latest_version(str(serving_dir)) == _pushed_version(fixed) > retired


def test_a_restored_model_counts_as_pushed_again(tmp_path, serving_dir):
  _push(_model_artifact(tmp_path, 'model-1', artifact_id=11),
        _blessing(tmp_path, 1), serving_dir)
  model = _model_artifact(tmp_path, 'model-2', artifact_id=12)
  _push(model, _blessing(tmp_path, 1), serving_dir)
  (retired,) = retirement.retire(str(serving_dir))
  retirement.restore(str(serving_dir), retired)

  again = _push(model, _blessing(tmp_path, 1), serving_dir)

  assert again.get_int_custom_property('pushed') == 1
  assert _pushed_version(again) == retired
  assert len(pushed_versions(str(serving_dir))) == 2


def test_a_push_numbers_its_version_above_the_retired_ones(model_dir,
                                                           serving_dir):
  future = int(time.time()) + 10_000
  _write_model(serving_dir / '5')
  _write_model(serving_dir / 'retired' / str(future))

  target = push_atomically(str(model_dir), str(serving_dir), {})

  # A restore of the retired version can neither collide with this push nor
  # outrank it.
  assert os.path.basename(target) == str(future + 1)


def test_retiring_waits_for_a_push_that_holds_the_lock(tmp_path, serving_dir):
  for version in (1, 2):
    _write_model(serving_dir / str(version))
  done = []
  with push_lock(str(serving_dir)):    # as a push choosing its number does
    retiring = threading.Thread(
        target=lambda: done.append(retirement.retire(str(serving_dir))))
    retiring.start()
    retiring.join(timeout=0.5)
    assert retiring.is_alive() and pushed_versions(str(serving_dir)) == [1, 2]
  retiring.join(timeout=10)

  assert done == [[2]] and pushed_versions(str(serving_dir)) == [1]
