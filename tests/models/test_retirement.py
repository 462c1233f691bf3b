"""Retiring and restoring versions: moved aside whole, never deleted, never the
last one, and only what was asked."""

from pathlib import Path

import pytest

from models.retirement import RetirementError, restore, retire
from models.versions import latest_version, pushed_versions, retired_versions


def fake_version(folder: Path, marker: str = '') -> Path:
  """A folder models/versions.py counts as a complete version."""
  folder.mkdir(parents=True)
  (folder / 'saved_model.pb').write_text(marker or folder.name)
  (folder / 'variables').mkdir()
  (folder / 'variables' / 'variables.index').write_text('index')
  return folder


def contents(folder: Path) -> dict:
  return {str(p.relative_to(folder)): p.read_text()
          for p in sorted(folder.rglob('*')) if p.is_file()}


@pytest.fixture
def serving_dir(tmp_path) -> Path:
  serving = tmp_path / 'serving'
  for version in (3, 7, 12):
    fake_version(serving / str(version))
  return serving


def test_retire_moves_the_newest_version_aside_whole(serving_dir):
  before = contents(serving_dir / '12')

  assert retire(str(serving_dir)) == [12]

  assert pushed_versions(str(serving_dir)) == [3, 7]
  assert latest_version(str(serving_dir)) == 7
  assert retired_versions(str(serving_dir)) == [12]
  assert contents(serving_dir / 'retired' / '12') == before


def test_retiring_again_rolls_back_one_more(serving_dir):
  retire(str(serving_dir))

  assert retire(str(serving_dir)) == [7]

  assert pushed_versions(str(serving_dir)) == [3]
  assert retired_versions(str(serving_dir)) == [7, 12]


def test_retire_to_a_version_moves_every_newer_one(serving_dir):
  assert retire(str(serving_dir), to_version=3) == [12, 7]

  assert pushed_versions(str(serving_dir)) == [3]
  assert retired_versions(str(serving_dir)) == [7, 12]


def test_retire_to_the_newest_version_moves_nothing(serving_dir):
  assert retire(str(serving_dir), to_version=12) == []

  assert pushed_versions(str(serving_dir)) == [3, 7, 12]
  assert not (serving_dir / 'retired').exists()


def test_the_last_version_is_never_retired(tmp_path):
  serving = tmp_path / 'serving'
  fake_version(serving / '5')

  with pytest.raises(RetirementError, match='only version'):
    retire(str(serving))

  assert pushed_versions(str(serving)) == [5]


def test_retire_to_a_version_that_is_not_pushed_is_refused(serving_dir):
  (serving_dir / '5').mkdir()   # a stray folder is no version either

  for version in (4, 5, 99):
    with pytest.raises(RetirementError, match=f'version {version} is not '
                       r'pushed .*\(pushed: 3, 7, 12\)'):
      retire(str(serving_dir), to_version=version)

  assert pushed_versions(str(serving_dir)) == [3, 7, 12]


def test_retire_to_a_retired_version_is_refused(serving_dir):
  retire(str(serving_dir))

  with pytest.raises(RetirementError, match='version 12 is not pushed'):
    retire(str(serving_dir), to_version=12)


def test_stray_folders_and_pushes_in_progress_are_not_retired(serving_dir):
  (serving_dir / '99').mkdir()                    # no SavedModel: no version
  fake_version(serving_dir / '.staging-abc' / 'model')

  assert retire(str(serving_dir)) == [12]

  assert (serving_dir / '99').is_dir()
  assert (serving_dir / '.staging-abc' / 'model').is_dir()


def test_an_existing_retired_folder_is_never_overwritten(serving_dir):
  fake_version(serving_dir / 'retired' / '12', marker='an older 12')

  with pytest.raises(RetirementError, match='exists already'):
    retire(str(serving_dir))

  assert pushed_versions(str(serving_dir)) == [3, 7, 12]
  assert (serving_dir / 'retired' / '12' / 'saved_model.pb').read_text() == (
      'an older 12')


def test_nothing_to_retire_in_a_missing_or_empty_directory(tmp_path):
  with pytest.raises(RetirementError, match='no serving directory'):
    retire(str(tmp_path / 'absent'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(RetirementError, match='no pushed version'):
    retire(str(tmp_path / 'empty'))


def test_restore_moves_a_retired_version_back(serving_dir):
  retire(str(serving_dir), to_version=3)
  before = contents(serving_dir / 'retired' / '12')

  restore(str(serving_dir), 12)

  assert pushed_versions(str(serving_dir)) == [3, 12]
  assert retired_versions(str(serving_dir)) == [7]
  assert contents(serving_dir / '12') == before


def test_restore_of_a_version_that_is_not_retired_is_refused(serving_dir):
  retire(str(serving_dir))

  with pytest.raises(RetirementError,
                     match=r'version 7 is not retired .*\(retired: 12\)'):
    restore(str(serving_dir), 7)


def test_restore_never_replaces_a_pushed_version(serving_dir):
  retire(str(serving_dir))
  fake_version(serving_dir / '12', marker='pushed meanwhile')

  with pytest.raises(RetirementError, match='a pushed version'):
    restore(str(serving_dir), 12)

  assert (serving_dir / '12' / 'saved_model.pb').read_text() == (
      'pushed meanwhile')
  assert retired_versions(str(serving_dir)) == [12]


def test_restore_never_replaces_a_stray_folder(serving_dir):
  retire(str(serving_dir))
  (serving_dir / '12').mkdir()    # empty: a rename would silently replace it

  with pytest.raises(RetirementError, match='no complete version'):
    restore(str(serving_dir), 12)

  assert retired_versions(str(serving_dir)) == [12]
