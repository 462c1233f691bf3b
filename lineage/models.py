"""Which model a user means, and the run to describe it in.

A model is named, on the command line and in the UI, as:
- `latest`: the version `repairml serve` serves now (the newest pushed,
  not retired), or the newest run's model when nothing is pushed;
- `N` or `version:N`: serving version N (`repairml model list`);
- `artifact:N`: the Model artifact with ML Metadata id N;
- a run id (`repairml runs`): the model that run's Trainer output.

A serving version leads to its model through the provenance file the Pusher
wrote into it (its `model_artifact_id`); the run it is described in is the
newest run whose Pusher pushed it, as ML Metadata recorded.
"""

import dataclasses
import os
from typing import Optional

from lineage.history import LATEST, Artifact, History, NotFound, Run
from models import versions

VERSION_PREFIX = 'version:'
ARTIFACT_PREFIX = 'artifact:'
TRAINER = 'Trainer'
PUSHER = 'Pusher'


@dataclasses.dataclass
class ModelInRun:
  """A model, the run it is described in, and its serving version if any."""
  model: Artifact
  run: Run
  version: Optional[int] = None


def resolve(history: History, serving_dir: str, name: str) -> ModelInRun:
  """The model `name` means (see the module docstring)."""
  if name == LATEST:
    served = versions.latest_version(serving_dir)
    if served is not None:
      return _version(history, serving_dir, served)
    run = history.run(LATEST)
    return ModelInRun(_model_of(history, run), run)
  number = name[len(VERSION_PREFIX):] if name.startswith(
      VERSION_PREFIX) else name
  if number.isdigit():
    return _version(history, serving_dir, int(number))
  if name.startswith(ARTIFACT_PREFIX):
    return _artifact(history, name[len(ARTIFACT_PREFIX):])
  run = history.run(name)
  return ModelInRun(_model_of(history, run), run, pushed_version(history, run))


def _version(history: History, serving_dir: str, version: int) -> ModelInRun:
  folder = os.path.join(serving_dir, str(version))
  if not versions.is_saved_model(folder):
    retired = os.path.join(serving_dir, versions.RETIRED_DIR, str(version))
    if not versions.is_saved_model(retired):
      raise NotFound(f'no serving version {version} in {serving_dir}; '
                     '`repairml model list` shows the versions.')
    folder = retired
  artifact_id = versions.read_provenance(folder).get('model_artifact_id')
  if artifact_id is None:
    raise NotFound(f'serving version {version} ({folder}) names no model '
                   'artifact: it was pushed before repairml recorded one.')
  found = _artifact(history, str(artifact_id))
  for run in history.runs():
    if pushed_version(history, run) == version:
      return ModelInRun(found.model, run, version)
  return dataclasses.replace(found, version=version)


def _artifact(history: History, artifact_id: str) -> ModelInRun:
  model = history.artifact(int(artifact_id)) if artifact_id.isdigit() else None
  if model is None or model.type != 'Model':
    raise NotFound(f'no Model artifact with id {artifact_id!r} in the store.')
  produced = history.producer(model.id)
  if produced is None:
    raise NotFound(f'no run of pipeline {history.pipeline_name!r} produced '
                   f'model artifact {model.id}.')
  run = history.run(produced[0])
  return ModelInRun(model, run, pushed_version(history, run))


def _model_of(history: History, run: Run) -> Artifact:
  model = history.artifact(run.output(TRAINER, 'model'))
  if model is None:
    raise NotFound(f'run {run.run_id} has no model: it ended {run.status} '
                   'before the Trainer (`repairml why '
                   f'{run.run_id}` says why).')
  return model


def pushed_version(history: History, run: Run) -> Optional[int]:
  """The serving version the run's Pusher pushed (or found already
  pushed), from the PushedModel's properties in ML Metadata."""
  pushed = history.artifact(run.output(PUSHER, 'pushed_model'))
  if pushed is None or pushed.properties.get('pushed') != 1:
    return None
  version = str(pushed.properties.get('pushed_version', ''))
  return int(version) if version.isdigit() else None
