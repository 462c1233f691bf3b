"""The batch job's output directory, committed through Beam's FileSystems.

Batch prediction (serving/batch.py) writes into a staging prefix beside the
output directory, `.staging-<name>-<id>/`, and commits it only once the job
has succeeded and the staging holds everything, summary.json included. Every
step goes through `apache_beam.io.filesystems.FileSystems`, so the same code
commits a local directory and a gs:// prefix on Dataflow:

- On a filesystem with directories (local, HDFS), the staging directory is
  renamed to the output in one step: it appears whole or not at all.
- On an object store (gs://, s3://), which has no directories and renames one
  object at a time (a copy and a delete), the files are renamed into the
  output prefix first and summary.json last: the output is complete exactly
  when its summary.json exists, and a reader waits for it.

`--overwrite` (`overwrite=True`) touches an existing output only after the
new one is complete in staging. The old output is then moved aside to
`.replaced-<name>-<id>/` (its summary.json first, so that no reader takes a
half-replaced output for a complete one), the new one moved in, and the old
deleted. If the commit fails, the partial new output is removed and the old
one moved back. Only if the process itself dies during the commit can an
object store be left with an output without summary.json; the `.replaced-*`
prefix beside it then still holds the old output.
"""

import contextlib
import json
import uuid
from typing import Any, Iterator, List, Mapping

from apache_beam.io.filesystems import FileSystems

SUMMARY_FILE = 'summary.json'
STAGING_PREFIX = '.staging-'
REPLACED_PREFIX = '.replaced-'


class OutputExistsError(Exception):
  """The output directory exists and is not to be replaced."""


def _name(path: str) -> str:
  return FileSystems.split(path)[1]


def _has_dirs(path: str) -> bool:
  return FileSystems.get_filesystem(path).has_dirs()


def files_under(path: str) -> List[str]:
  """Every file below the directory or prefix `path`, at any depth."""
  (match,) = FileSystems.match([FileSystems.join(path, '**')])
  return sorted(metadata.path for metadata in match.metadata_list)


def exists(path: str) -> bool:
  """A directory, a file, or (object stores) a prefix with files below it."""
  return FileSystems.exists(path) or bool(files_under(path))


def check_absent(output_dir: str, overwrite: bool) -> None:
  if not overwrite and exists(output_dir):
    raise OutputExistsError(
        f'{output_dir} already exists: choose another --output, or pass '
        '--overwrite to replace it.')


def _sibling(output_dir: str, prefix: str) -> str:
  parent, name = FileSystems.split(output_dir)
  if not name:
    raise ValueError(f'{output_dir}: the output must be a directory below '
                     'the root, e.g. gs://BUCKET/predictions/2026-11-28.')
  return FileSystems.join(parent, f'{prefix}{name}-{uuid.uuid4().hex}')


def remove(path: str) -> None:
  """Deletes the directory or prefix `path` and everything below it."""
  if _has_dirs(path):
    if FileSystems.exists(path):
      FileSystems.delete([path])
    return
  files = files_under(path)
  if files:
    FileSystems.delete(files)


def write_json(path: str, content: Mapping[str, Any]) -> None:
  with FileSystems.create(path, mime_type='application/json') as f:
    f.write(json.dumps(content, indent=2, allow_nan=False).encode('utf-8'))


@contextlib.contextmanager
def staging(output_dir: str, overwrite: bool) -> Iterator[str]:
  """A fresh staging directory beside `output_dir`, removed on the way out
  (committed or not)."""
  check_absent(output_dir, overwrite)
  path = _sibling(output_dir, STAGING_PREFIX)
  if _has_dirs(path):
    FileSystems.mkdirs(path)  # and its parents
  try:
    yield path
  finally:
    remove(path)


def _move(source: str, destination: str, summary_first: bool) -> None:
  """Moves the directory or prefix `source` to `destination`: in one rename
  where there are directories, else file by file with summary.json in a rename
  of its own, before the others or after them."""
  if _has_dirs(source):
    FileSystems.rename([source], [destination])
    return
  files = files_under(source)
  summary = [f for f in files if f == FileSystems.join(source, SUMMARY_FILE)]
  others = [f for f in files if f not in summary]
  for group in ((summary, others) if summary_first else (others, summary)):
    FileSystems.rename(group, [destination + f[len(source):] for f in group])


def commit(staged: str, output_dir: str, overwrite: bool) -> None:
  """Makes the complete output in `staged` the output directory."""
  check_absent(output_dir, overwrite)
  replaced = None
  if exists(output_dir):
    replaced = _sibling(output_dir, REPLACED_PREFIX)
    try:
      _move(output_dir, replaced, summary_first=True)
    except BaseException:
      _move_back(replaced, output_dir)
      raise
  try:
    _move(staged, output_dir, summary_first=False)
  except BaseException:
    remove(output_dir)
    if replaced:
      _move_back(replaced, output_dir)
    raise
  if replaced:
    remove(replaced)


def _move_back(replaced: str, output_dir: str) -> None:
  """Whatever of the old output went aside goes back, summary.json last."""
  if exists(replaced):
    _move(replaced, output_dir, summary_first=False)
