"""Committing the batch job's output through Beam's FileSystems.

Each test runs twice: on the local filesystem (a directory, renamed in one
step) and on an object store in memory (memfs.py: no directories, a rename
per object). Given a complete staging, the output appears with every file;
an existing output is refused, or with overwrite replaced only by a complete
one; a failure leaves the old output and no staging behind.
"""

import os

import pytest
from apache_beam.io.filesystems import FileSystems

import memfs
from serving import batch_output

NEW = {'predictions-00000-of-00001.jsonl': b'{"session_id":"S-1"}\n',
       'errors-00000-of-00001.jsonl': b'',
       batch_output.SUMMARY_FILE: b'{"predicted": 1}'}
OLD = {'predictions-00000-of-00002.jsonl': b'{"session_id":"old"}\n',
       'predictions-00001-of-00002.jsonl': b'{"session_id":"old"}\n',
       batch_output.SUMMARY_FILE: b'{"predicted": 2}'}


@pytest.fixture(params=['local', 'object_store'])
def root(request, tmp_path):
  """A directory to write in, and whether it is the object store."""
  if request.param == 'local':
    yield str(tmp_path)
    return
  memfs.MemoryFileSystem.reset()
  yield 'memfs://bucket/runs'
  memfs.MemoryFileSystem.reset()


def _write(directory: str, files: dict) -> None:
  for name, content in files.items():
    with FileSystems.create(FileSystems.join(directory, name)) as f:
      f.write(content)


def _tree(directory: str) -> dict:
  """name below `directory` -> content."""
  return {path[len(directory) + 1:]: FileSystems.open(path).read()
          for path in batch_output.files_under(directory)}


def _siblings(root: str) -> list:
  """What `root` holds: folders, or on the store the first part of keys."""
  if FileSystems.get_filesystem(root).has_dirs():
    return sorted(os.listdir(root))
  return sorted({path[len(root) + 1:].split('/')[0]
                 for path in batch_output.files_under(root)})


def _commit(root: str, files: dict, overwrite: bool = False) -> str:
  output = FileSystems.join(root, 'out')
  with batch_output.staging(output, overwrite) as staging:
    if not FileSystems.get_filesystem(staging).has_dirs():
      assert not batch_output.exists(staging)  # nothing to make on a store
    _write(staging, files)
    batch_output.commit(staging, output, overwrite)
  return output


def test_a_complete_staging_becomes_the_output(root):
  output = _commit(root, NEW)

  assert _tree(output) == NEW
  assert _siblings(root) == ['out']  # no staging left beside it


def test_an_existing_output_is_refused_and_untouched(root):
  output = _commit(root, OLD)

  with pytest.raises(batch_output.OutputExistsError,
                     match='already exists.*--overwrite'):
    _commit(root, NEW)
  assert _tree(output) == OLD


def test_an_empty_existing_directory_counts_as_existing(tmp_path):
  (tmp_path / 'out').mkdir()
  with pytest.raises(batch_output.OutputExistsError):
    batch_output.check_absent(str(tmp_path / 'out'), overwrite=False)


def test_overwrite_replaces_every_old_file(root):
  output = _commit(root, OLD)

  _commit(root, NEW, overwrite=True)

  assert _tree(output) == NEW  # the old second shard is gone too
  assert _siblings(root) == ['out']  # nor is the old one kept aside


def test_a_failure_before_the_commit_leaves_the_output_and_no_staging(root):
  output = _commit(root, OLD)

  with pytest.raises(RuntimeError, match='the job failed'):
    with batch_output.staging(output, overwrite=True) as staging:
      _write(staging, {'predictions-00000-of-00001.jsonl': b'half'})
      raise RuntimeError('the job failed')

  assert _tree(output) == OLD
  assert _siblings(root) == ['out']


@pytest.fixture
def store():
  memfs.MemoryFileSystem.reset()
  yield memfs.MemoryFileSystem
  memfs.MemoryFileSystem.reset()


def _renamed_into(log, prefix: str) -> list:
  return [op[2][len(prefix):] for op in log
          if op[0] == 'rename' and op[2].startswith(prefix)]


def test_on_an_object_store_the_summary_goes_in_last_and_out_first(store):
  output = _commit('memfs://bucket/runs', OLD)
  del store.log[:]

  _commit('memfs://bucket/runs', NEW, overwrite=True)

  renames = [op for op in store.log if op[0] == 'rename']
  # The old output loses its marker before any other file...
  assert renames[0][1] == f'{output}/{batch_output.SUMMARY_FILE}'
  # ...and the new one gets it after all of its files.
  assert _renamed_into(store.log, output + '/')[-1] == batch_output.SUMMARY_FILE
  assert _tree(output) == NEW


def test_a_commit_that_breaks_half_way_puts_the_old_output_back(store):
  output = _commit('memfs://bucket/runs', OLD)

  with batch_output.staging(output, overwrite=True) as staging:
    _write(staging, NEW)
    # The old output goes aside and the new files move in; then the rename
    # of the new summary fails.
    store.fail_renames_of = f'{staging}/{batch_output.SUMMARY_FILE}'
    with pytest.raises(Exception, match='Rename operation failed'):
      batch_output.commit(staging, output, overwrite=True)
    store.fail_renames_of = None
    assert any(op[0] == 'rename' and op[2].startswith(output + '/predictions')
               and op[1].startswith(staging) for op in store.log)

  assert _tree(output) == OLD
  assert _siblings('memfs://bucket/runs') == ['out']
