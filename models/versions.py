"""What a complete model version is, in a serving directory.

The Pusher writes versions (pipeline/components/atomic_pusher.py); online
serving, batch prediction and the benchmarks read them. This module is the one
definition they share: a version is a folder named by its number that holds
an exported SavedModel (models/export.py). A push in progress
(`.staging-*`), a half-copied folder or a stray numbered folder without a
SavedModel is not a version, for readers and for the Pusher alike.

A version rolled back (models/retirement.py) sits in `retired/<version>`,
where no reader looks; the Pusher does not push its model again. Whatever
changes which versions are pushed, a push or a retirement, does it under the
serving directory's one lock (`push_lock`).

It imports only the standard library: listing versions must not load
TensorFlow, and the pipeline must not import serving to know what it writes.
The listing asks its three questions of a `Filesystem`, the local one by
default; serving/pushed.py passes one that reads through tf.io.gfile, so that
batch prediction finds versions in a gs:// serving directory by the same rule.
"""

import contextlib
import dataclasses
import fcntl
import json
import os
from typing import Callable, Iterator, List, Optional

# Written into every pushed version by the Pusher: where the model came from.
PROVENANCE_FILE = os.path.join('assets.extra', 'repairml_provenance.json')
_SAVED_MODEL_FILES = ('saved_model.pb', 'saved_model.pbtxt')
# Held while the versions of a serving directory change.
LOCK_FILE = '.push.lock'
# Where rolled-back versions go, inside the serving directory: a rename there
# stays on one filesystem, so it is atomic.
RETIRED_DIR = 'retired'


@dataclasses.dataclass(frozen=True)
class Filesystem:
  """What listing versions asks of a filesystem. Paths join with '/'."""
  isfile: Callable[[str], bool]
  isdir: Callable[[str], bool]
  listdir: Callable[[str], List[str]]  # the names in a directory


LOCAL = Filesystem(isfile=os.path.isfile, isdir=os.path.isdir,
                   listdir=os.listdir)


def is_saved_model(path: str, fs: Filesystem = LOCAL) -> bool:
  return any(fs.isfile(os.path.join(path, name))
             for name in _SAVED_MODEL_FILES)


def pushed_versions(serving_dir: str, fs: Filesystem = LOCAL) -> List[int]:
  """The complete versions in `serving_dir`, oldest first."""
  return _versions_in(serving_dir, fs)


def retired_versions(serving_dir: str) -> List[int]:
  """The complete versions rolled back out of `serving_dir`, oldest first."""
  return _versions_in(os.path.join(serving_dir, RETIRED_DIR), LOCAL)


def _versions_in(folder: str, fs: Filesystem) -> List[int]:
  if not fs.isdir(folder):
    return []
  return sorted(int(name) for name in fs.listdir(folder)
                if name.isdigit() and
                is_saved_model(os.path.join(folder, name), fs))


def latest_version(serving_dir: str,
                   fs: Filesystem = LOCAL) -> Optional[int]:
  """The newest complete version in `serving_dir`, or None."""
  versions = pushed_versions(serving_dir, fs)
  return versions[-1] if versions else None


def read_provenance(version_dir: str) -> dict:
  """The provenance the Pusher wrote into a version; {} if it has none."""
  path = os.path.join(version_dir, PROVENANCE_FILE)
  if not os.path.exists(path):
    return {}
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def push_lock(serving_dir: str):
  """Holds the serving directory's lock, which pushes and retirements take.
  The directory must exist."""
  return file_lock(os.path.join(serving_dir, LOCK_FILE))


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
  """Holds an exclusive flock on `path` (created if missing): released if
  the process dies."""
  with open(path, 'a+b') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def fsync_directory(path: str) -> None:
  """Flushes a directory's entries to disk: a rename in it survives a crash."""
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)
