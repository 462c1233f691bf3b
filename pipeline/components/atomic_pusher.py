"""A Pusher executor whose pushes to the filesystem are atomic and can run at
the same time.

TFX's own filesystem push copies files straight into the version directory, so
a model server polling the serving directory can see a half-written model.
This executor copies into a staging directory of its own beside the versions,
flushes every file and directory to disk, and renames it into place, which is
atomic on one filesystem: a version directory either does not exist or is
complete (models/versions.py says what a complete version is). A failed push
leaves the serving directory as it was.

Two pushes may run at once (two pipelines sharing a serving directory): each
stages under a unique name, and the version number is chosen and the rename
done under an exclusive lock on the serving directory, so they get two
versions and never share a staging directory or a number.

Pushing the model that is already the latest version is a no-op: the latest
version is recorded as the pushed destination again, so a rerun of the same
model does not add a duplicate version. A model that `repairml model
rollback` retired (models/retirement.py) is not pushed again either, which
would silently undo the rollback: the push is skipped, says why in the log,
and marks the PushedModel not pushed, with the retired version in its
`retired_version` property. `repairml model restore` brings it back.
"""

import json
import os
import shutil
import tempfile
import time
from typing import Optional

from absl import logging
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from models.versions import (  # pylint: disable=unused-import
    LOCK_FILE, PROVENANCE_FILE, RETIRED_DIR, fsync_directory, latest_version,
    push_lock, pushed_versions, read_provenance, retired_versions)

STAGING_PREFIX = '.staging-'
RETIRED_VERSION_PROPERTY = 'retired_version'


def _fsync_tree(root: str) -> None:
  """Flushes every file and directory under `root`, and `root`, to disk."""
  for folder, _, files in os.walk(root):
    for name in files:
      with open(os.path.join(folder, name), 'rb') as f:
        os.fsync(f.fileno())
    fsync_directory(folder)


def _next_version(serving_dir: str) -> int:
  """A version above every complete one, pushed or retired, and a free name
  (a stray numbered folder keeps its number): a later restore never meets a
  push of the same number, nor outranks a model pushed after it."""
  known = pushed_versions(serving_dir) + retired_versions(serving_dir)
  version = max([int(time.time())] + [v + 1 for v in known])
  while any(os.path.exists(os.path.join(folder, str(version)))
            for folder in (serving_dir,
                           os.path.join(serving_dir, RETIRED_DIR))):
    version += 1
  return version


def retired_version_of(model_dir: str, serving_dir: str) -> Optional[int]:
  """The newest retired version that holds the model at `model_dir`, if any
  (the provenance the Pusher wrote says which model a version holds)."""
  for version in reversed(retired_versions(serving_dir)):
    version_dir = os.path.join(serving_dir, RETIRED_DIR, str(version))
    if read_provenance(version_dir).get('model_uri') == model_dir:
      return version
  return None


def push_atomically(model_dir: str, serving_dir: str, provenance: dict) -> str:
  """Copies `model_dir` to serving_dir/<version> atomically; returns the path."""
  os.makedirs(serving_dir, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=serving_dir)
  try:
    # The copy, the slow part, runs outside the lock.
    copy = os.path.join(staging, 'model')
    shutil.copytree(model_dir, copy)
    provenance_path = os.path.join(copy, PROVENANCE_FILE)
    os.makedirs(os.path.dirname(provenance_path), exist_ok=True)
    with push_lock(serving_dir):
      version = _next_version(serving_dir)
      with open(provenance_path, 'w', encoding='utf-8') as f:
        json.dump(dict(provenance, version=version), f, indent=2)
      _fsync_tree(copy)
      target = os.path.join(serving_dir, str(version))
      os.rename(copy, target)
      fsync_directory(serving_dir)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return target


class Executor(pusher_executor.Executor):
  """Pushes a blessed model to a versioned local serving directory."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(model_push)
      return
    model_dir = self.GetModelPath(input_dict)
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(
        exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
        destination)
    serving_dir = destination.filesystem.base_directory

    latest = latest_version(serving_dir)
    latest_dir = os.path.join(serving_dir, str(latest))
    retired = retired_version_of(model_dir, serving_dir)
    if latest is not None and read_provenance(latest_dir).get(
        'model_uri') == model_dir:
      logging.info('Model %s is already the latest version %s; not pushed '
                   'again.', model_dir, latest_dir)
      target = latest_dir
    elif retired is not None:
      logging.warning(
          'Model %s is version %d, which `repairml model rollback` retired to '
          '%s; not pushed again, so that the rollback stands. `repairml model '
          'restore %d` serves it again.', model_dir, retired,
          os.path.join(serving_dir, RETIRED_DIR, str(retired)), retired)
      self._MarkNotPushed(model_push)
      model_push.set_string_custom_property(RETIRED_VERSION_PROPERTY,
                                            str(retired))
      return
    else:
      model = artifact_utils.get_single_instance(
          input_dict[standard_component_specs.MODEL_KEY])
      target = push_atomically(model_dir, serving_dir, {
          'model_uri': model_dir,
          'model_artifact_id': model.id,
          'pushed_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
      })
      logging.info('Model written to serving path %s.', target)
    self._MarkPushed(model_push, pushed_destination=target,
                     pushed_version=os.path.basename(target))
