"""What ML Metadata does not record by itself, attached to every run.

TFX records executions, artifacts and their lineage, but not the code, the
configuration or the environment that produced them. After each run this
module attaches them, as custom properties, to the run's `pipeline_run`
context and to the model the Trainer made, so that a model can be explained
and reproduced from the store alone:

  repairml_git_commit     the commit of the checkout that ran (or '' outside
                          a git checkout)
  repairml_git_dirty      1 if the work tree had uncommitted changes
  repairml_config         the resolved configuration, as JSON
  repairml_config_sha256  its hash (the same configuration, the same hash)
  repairml_lock_sha256    the hash of requirements.lock
  repairml_packages       JSON {package: version} of TFX, TF, TFT, TFMA,
                          TFDV and Beam
  repairml_status         the run only: pushed, not_blessed, data_anomalies,
                          retired or failed

It writes to the store only these properties, after the run; nothing reads
them back to decide anything (they are not part of any cache key).
"""

import hashlib
import importlib.metadata
import json
import os
import subprocess
from typing import Any, Dict, Optional

from pipeline.config import Config

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK_FILE = os.path.join(PROJECT_ROOT, 'requirements.lock')
PACKAGES = ('tfx', 'tensorflow', 'tensorflow-transform',
            'tensorflow-model-analysis', 'tensorflow-data-validation',
            'apache-beam')
PREFIX = 'repairml_'
STATUS = PREFIX + 'status'
RUN_CONTEXT = 'pipeline_run'
TRAINER = 'Trainer'


def provenance(config: Config, root: str = PROJECT_ROOT,
               lock_file: str = LOCK_FILE) -> Dict[str, Any]:
  """The code, configuration and environment of a run, as property values."""
  config_json = json.dumps(config.model_dump(mode='json'), sort_keys=True)
  commit, dirty = _git_state(root)
  return {
      PREFIX + 'git_commit': commit,
      PREFIX + 'git_dirty': int(dirty),
      PREFIX + 'config': config_json,
      PREFIX + 'config_sha256': _sha256(config_json.encode()),
      PREFIX + 'lock_sha256': (_file_sha256(lock_file)
                               if os.path.isfile(lock_file) else ''),
      PREFIX + 'packages': json.dumps(package_versions(), sort_keys=True),
  }


def package_versions() -> Dict[str, str]:
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = ''
  return versions


def _git_state(root: str):
  """(commit, dirty) of the checkout at `root`; ('', False) outside one."""
  def git(*args: str) -> Optional[str]:
    try:
      return subprocess.run(['git', *args], cwd=root, check=True,
                            capture_output=True, text=True,
                            timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
      return None
  commit = git('rev-parse', 'HEAD')
  if commit is None:
    return '', False
  status = git('status', '--porcelain', '--untracked-files=no')
  return commit.strip(), bool(status and status.strip())


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _file_sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return _sha256(f.read())


def record(store, run_id: str, status: str, values: Dict[str, Any],
           model_artifact_id: Optional[int] = None) -> None:
  """Attaches `values` and the status to the run's context, and `values` to
  the model artifact if there is one and it has none yet: a model the
  Trainer's cache handed to this run keeps the provenance of the run that
  trained it."""
  context = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
  if context is None:
    return          # the run never started: nothing to attach to
  _set(context.custom_properties, {**values, STATUS: status})
  store.put_contexts([context])
  if model_artifact_id is not None:
    (artifact,) = store.get_artifacts_by_id([model_artifact_id])
    if read(artifact.custom_properties):
      return        # a model from the cache keeps the run that made it
    _set(artifact.custom_properties, values)
    store.put_artifacts([artifact])


def read(properties) -> Dict[str, Any]:
  """The values this module attached, from a context's or an artifact's
  custom properties."""
  return {name: getattr(value, value.WhichOneof('value'))
          for name, value in properties.items()
          if name.startswith(PREFIX)}


def _set(properties, values: Dict[str, Any]) -> None:
  for name, value in values.items():
    if isinstance(value, int):
      properties[name].int_value = value
    else:
      properties[name].string_value = str(value)


def model_artifact_id(run) -> Optional[int]:
  """The id of the model the run's Trainer output (a RunRecord), or None."""
  model = run.output(TRAINER, 'model') if run else None
  return model.id if model is not None else None

