"""A Pusher executor whose pushes to the filesystem are atomic.

TFX's own filesystem push copies files straight into the version directory, so
a model server polling the serving directory can see a half-written model.
This executor copies into a hidden staging directory beside it and renames it
into place, which is atomic on one filesystem: a version directory either does
not exist or is complete. A failed push leaves the serving directory as it was.

Pushing the model that is already the latest version is a no-op: the latest
version is recorded as the pushed destination again, so a rerun of the same
model does not add a duplicate version.
"""

import json
import os
import shutil
import time

from absl import logging
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

PROVENANCE_FILE = os.path.join('assets.extra', 'repairml_provenance.json')


def latest_version(serving_dir: str):
  """The highest numeric version directory in `serving_dir`, or None."""
  if not os.path.isdir(serving_dir):
    return None
  versions = [int(name) for name in os.listdir(serving_dir) if name.isdigit()]
  return max(versions) if versions else None


def read_provenance(version_dir: str) -> dict:
  path = os.path.join(version_dir, PROVENANCE_FILE)
  if not os.path.exists(path):
    return {}
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def push_atomically(model_dir: str, serving_dir: str, provenance: dict) -> str:
  """Copies `model_dir` to serving_dir/<version> atomically; returns the path."""
  os.makedirs(serving_dir, exist_ok=True)
  version = max(int(time.time()), (latest_version(serving_dir) or 0) + 1)
  staging = os.path.join(serving_dir, f'.staging-{version}')
  target = os.path.join(serving_dir, str(version))
  shutil.rmtree(staging, ignore_errors=True)
  try:
    shutil.copytree(model_dir, staging)
    os.makedirs(os.path.dirname(os.path.join(staging, PROVENANCE_FILE)),
                exist_ok=True)
    with open(os.path.join(staging, PROVENANCE_FILE), 'w',
              encoding='utf-8') as f:
      json.dump(dict(provenance, version=version), f, indent=2)
    os.rename(staging, target)
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
    if latest is not None and read_provenance(latest_dir).get(
        'model_uri') == model_dir:
      logging.info('Model %s is already the latest version %s; not pushed '
                   'again.', model_dir, latest_dir)
      target = latest_dir
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
