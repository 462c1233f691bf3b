"""Rolling back a local serving directory: versions retired and restored.

A server follows the newest complete version of its serving directory
(serving/model_store.py), so taking the newest version out of the directory
rolls every server back. `retire` moves versions aside into
`<serving_dir>/retired/<version>` and `restore` moves one back, each by one
atomic rename on the same filesystem, under the lock the Pusher takes
(models/versions.py `push_lock`): a push and a rollback never interleave.
Nothing is deleted, and the last remaining version is never retired. The
Pusher does not push a retired model again (pipeline/components/
atomic_pusher.py).

It imports only the standard library, like models/versions.py, so that the
`repairml model` commands need no TensorFlow.
"""

import os
from typing import List, Optional

from models.versions import (RETIRED_DIR, fsync_directory, push_lock,
                             pushed_versions, retired_versions)


class RetirementError(ValueError):
  """The versions cannot be moved as asked; the message says why."""


def retire(serving_dir: str, to_version: Optional[int] = None) -> List[int]:
  """Moves the newest version, or every version newer than `to_version`,
  into `<serving_dir>/retired/`; returns the versions retired, newest first
  (none when `to_version` is the newest already)."""
  _require_directory(serving_dir)
  with push_lock(serving_dir):
    pushed = pushed_versions(serving_dir)
    if not pushed:
      raise RetirementError(f'no pushed version in {serving_dir} to roll back '
                            'from.')
    if to_version is None:
      if len(pushed) == 1:
        raise RetirementError(
            f'version {pushed[0]} is the only version in {serving_dir}; '
            'retiring it would leave nothing to serve.')
      chosen = [pushed[-1]]
    elif to_version not in pushed:
      raise RetirementError(
          f'version {to_version} is not pushed in {serving_dir} (pushed: '
          f'{_listed(pushed)}); roll back to one of those.')
    else:
      chosen = [v for v in reversed(pushed) if v > to_version]
    retired_dir = os.path.join(serving_dir, RETIRED_DIR)
    for version in chosen:
      aside = os.path.join(retired_dir, str(version))
      if os.path.exists(aside):   # never overwritten: nothing is deleted
        raise RetirementError(
            f'{aside} exists already; move it elsewhere before retiring '
            f'version {version} again.')
    if chosen:
      os.makedirs(retired_dir, exist_ok=True)
    for version in chosen:   # newest first: each rename is a rollback by one
      os.rename(os.path.join(serving_dir, str(version)),
                os.path.join(retired_dir, str(version)))
    if chosen:
      fsync_directory(retired_dir)
      fsync_directory(serving_dir)
  return chosen


def restore(serving_dir: str, version: int) -> None:
  """Moves a retired version back into `serving_dir`."""
  _require_directory(serving_dir)
  with push_lock(serving_dir):
    retired = retired_versions(serving_dir)
    if version not in retired:
      raise RetirementError(
          f'version {version} is not retired in {serving_dir} (retired: '
          f'{_listed(retired)}).')
    target = os.path.join(serving_dir, str(version))
    if os.path.exists(target):
      what = ('a pushed version' if version in pushed_versions(serving_dir)
              else 'a folder that is no complete version')
      raise RetirementError(
          f'{target} exists already ({what}); retired version {version} '
          'stays retired.')
    retired_dir = os.path.join(serving_dir, RETIRED_DIR)
    os.rename(os.path.join(retired_dir, str(version)), target)
    fsync_directory(retired_dir)
    fsync_directory(serving_dir)


def _require_directory(serving_dir: str) -> None:
  if not os.path.isdir(serving_dir):
    raise RetirementError(f'no serving directory {serving_dir}: nothing has '
                          'been pushed there (run the pipeline first, or '
                          'check paths.serving_dir).')


def _listed(versions: List[int]) -> str:
  return ', '.join(map(str, versions)) or 'none'
