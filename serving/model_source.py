"""Where a server finds the model it serves: the configured serving directory,
or a local copy of the SavedModel that Vertex AI names in AIP_STORAGE_URI.

Locally, and wherever the Pusher writes versions, `repairml serve` serves the
versions in `paths.serving_dir`. In the serving image on a Vertex AI endpoint
there is no such directory: Vertex AI copies the Model version's artifact_uri
(the Trainer's SavedModel) to a Cloud Storage location of its own and passes
that location to the container as AIP_STORAGE_URI
(https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements#aip-variables).
`serving_dir_for` turns it into what the server reads everywhere else: a local
serving directory that holds that model as its one complete version
(models/versions.py), so the same store, routes and answers serve it.

TensorFlow is imported only when there is a model to copy: `tf.io.gfile`
reads gs:// and local paths alike.
"""

import contextlib
import json
import logging
import os
import posixpath
import shutil
import tempfile
from typing import Iterator, Mapping

from models import versions

# The variable Vertex AI sets in a custom container (see the docstring).
STORAGE_URI_VARIABLE = 'AIP_STORAGE_URI'
# Where, inside the serving directory, the copy goes: readers take only
# digit-named folders for versions, so versions pushed there stay apart from it
# and the copy never mixes with them.
LOCAL_COPY_DIR = '.aip-storage'
# A copy in progress; not a version for readers (models/versions.py).
STAGING_PREFIX = '.staging-'
LOCK_FILE = '.copy.lock'
# The version number of a model that does not say its own (see
# serving_dir_for).
DEFAULT_VERSION = 1
_SAVED_MODEL_FILES = ('saved_model.pb', 'saved_model.pbtxt')

logger = logging.getLogger('repairml.serving')


class ModelSourceError(RuntimeError):
  """The model to serve cannot be had; the message says why, in one line."""


def storage_uri(environ: Mapping[str, str]) -> str:
  """The model Vertex AI names for this container, or ''."""
  return environ.get(STORAGE_URI_VARIABLE, '').strip()


def local_serving_dir(serving_dir: str, environ: Mapping[str, str]) -> str:
  """The directory serving_dir_for returns, without copying anything."""
  if not storage_uri(environ):
    return serving_dir
  return os.path.join(serving_dir, LOCAL_COPY_DIR)


def serving_dir_for(serving_dir: str, environ: Mapping[str, str]) -> str:
  """The local serving directory to serve from.

  Without AIP_STORAGE_URI in `environ` (or with it empty, as the aiplatform
  SDK's local run sets it for a Model without artifacts), this is
  `serving_dir`, unchanged, and nothing is read or written.

  With AIP_STORAGE_URI, the SavedModel at that URI (gs:// on Vertex AI, or a
  local path) is copied, with its variables, assets and assets.extra, to
  `<serving_dir>/.aip-storage/<version>/`, and that `.aip-storage` directory
  is returned; afterwards it holds this one complete version and nothing
  else. The copy is made in a `.staging-*` folder beside it and renamed into
  place, so a reader never sees a partial version. Each call copies afresh
  and first removes what an earlier call left there, so a failed copy leaves
  no version at all, never an older model. Versions pushed to `serving_dir`
  itself are neither read nor touched.

  The version number is the `version` that the model's provenance file
  (models/versions.py PROVENANCE_FILE, written by the local Pusher) records,
  if it records a positive integer; else 1. Vertex AI serves the Trainer's
  SavedModel, which has no provenance, so there it is 1. A model without a
  provenance file gets one in the copy: {"model_uri": <AIP_STORAGE_URI>,
  "version": <version>}.

  Args:
    serving_dir: the configured serving directory (paths.serving_dir), a
      local path.
    environ: the process environment, e.g. os.environ.

  Returns:
    The directory to serve versions from.

  Raises:
    ModelSourceError: AIP_STORAGE_URI names no SavedModel directory, cannot
      be read, or the copy cannot be written; the message says which.
  """
  uri = storage_uri(environ)
  if not uri:
    return serving_dir
  if '://' in serving_dir:
    raise ModelSourceError(
        f'{STORAGE_URI_VARIABLE} is set, but paths.serving_dir {serving_dir} '
        'is not a local directory to copy the model into: configure a local '
        'paths.serving_dir')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  local_dir = local_serving_dir(serving_dir, environ)
  try:
    os.makedirs(local_dir, exist_ok=True)
    with _exclusive(local_dir):
      version = _replace_with_copy(uri, local_dir, tf)
  except OSError as error:
    raise ModelSourceError(
        f'cannot copy the model at {STORAGE_URI_VARIABLE} {uri} into '
        f'{local_dir}: {error.strerror or error}') from error
  logger.info('Serving the model at %s=%s, copied to %s as version %d.',
              STORAGE_URI_VARIABLE, uri, local_dir, version)
  return local_dir


def _replace_with_copy(uri: str, local_dir: str, tf) -> int:
  """Copies the SavedModel at `uri` in as the only version of `local_dir`."""
  staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=local_dir)
  try:
    # Earlier copies go first, into the staging folder that is removed below:
    # whether this copy succeeds or fails, no other model can be served from
    # here, not even a higher-numbered one.
    for name in os.listdir(local_dir):
      if name.isdigit():
        os.rename(os.path.join(local_dir, name),
                  os.path.join(staging, f'retired-{name}'))
    copy = os.path.join(staging, 'model')
    with _reading(uri, tf):
      _check_saved_model(uri, tf)
      _copy_tree(uri, copy, tf)
    if not versions.is_saved_model(copy):
      raise ModelSourceError(
          f'{STORAGE_URI_VARIABLE} {uri}: the SavedModel vanished while it '
          'was copied; deploy the model again')
    version = _version_of(copy, uri)
    os.rename(copy, os.path.join(local_dir, str(version)))
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  # Every start copies afresh, so a copy torn by a crash is never served
  # again: unlike the Pusher, this need not flush the files to disk.
  return version


def _check_saved_model(uri: str, tf) -> None:
  if not tf.io.gfile.isdir(uri):
    raise ModelSourceError(
        f'{STORAGE_URI_VARIABLE} {uri}: no such directory, or it is empty. '
        'Upload the Model with the SavedModel directory as artifact_uri')
  if not _holds_saved_model(uri, tf):
    raise ModelSourceError(
        f'{STORAGE_URI_VARIABLE} {uri} holds no SavedModel (no saved_model.pb)'
        f'{_what_it_holds(uri, tf)}')


def _holds_saved_model(path: str, tf) -> bool:
  return any(tf.io.gfile.exists(posixpath.join(path, name))
             for name in _SAVED_MODEL_FILES)


def _what_it_holds(uri: str, tf) -> str:
  """A hint at the directory meant, for the usual mistakes."""
  entries = sorted(name.rstrip('/') for name in tf.io.gfile.listdir(uri))
  if 'Format-Serving' in entries:
    return ('; it is a Trainer model directory: use '
            f'{posixpath.join(uri, "Format-Serving")} as artifact_uri')
  numbered = sorted(
      (name for name in entries
       if name.isdigit() and _holds_saved_model(posixpath.join(uri, name), tf)),
      key=int)
  if numbered:
    return (f'; it is a serving directory of versions {", ".join(numbered)}: '
            f'use one version, e.g. {posixpath.join(uri, numbered[-1])}, as '
            'artifact_uri')
  shown = ', '.join(entries[:5]) + (', ...' if len(entries) > 5 else '')
  return f'; it holds {shown or "nothing"}'


def _copy_tree(source: str, target: str, tf) -> None:
  """Copies the directory tree at `source` (any tf.io.gfile path) to the local
  directory `target`, empty folders included."""
  root = source.rstrip('/')
  for folder, _, files in tf.io.gfile.walk(root):
    relative = folder.rstrip('/')[len(root):].strip('/')
    local_folder = os.path.join(target, relative) if relative else target
    os.makedirs(local_folder, exist_ok=True)
    for name in files:
      tf.io.gfile.copy(posixpath.join(folder, name),
                       os.path.join(local_folder, name), overwrite=True)


def _version_of(model_dir: str, uri: str) -> int:
  """The version number the copy gets (see serving_dir_for); writes the
  provenance of a model that has none."""
  path = os.path.join(model_dir, versions.PROVENANCE_FILE)
  if not os.path.exists(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
      json.dump({'model_uri': uri, 'version': DEFAULT_VERSION}, f, indent=2)
    return DEFAULT_VERSION
  try:
    provenance = versions.read_provenance(model_dir)
  except ValueError as error:
    logger.warning('The provenance file of the model at %s is not JSON (%s); '
                   'serving it as version %d.', uri, error, DEFAULT_VERSION)
    return DEFAULT_VERSION
  version = provenance.get('version') if isinstance(provenance, dict) else None
  if isinstance(version, int) and not isinstance(version, bool) and version > 0:
    return version
  logger.warning('The provenance of the model at %s records no version number '
                 '(%r); serving it as version %d.', uri, version,
                 DEFAULT_VERSION)
  return DEFAULT_VERSION


@contextlib.contextmanager
def _reading(uri: str, tf) -> Iterator[None]:
  """tf.io.gfile's errors (permission, network) as one ModelSourceError."""
  try:
    yield
  except tf.errors.OpError as error:
    message = ' '.join(str(error.message).split())[:300]
    raise ModelSourceError(
        f'cannot read the model at {STORAGE_URI_VARIABLE} {uri}: '
        f'{type(error).__name__}: {message}. On Vertex AI, check that the '
        "endpoint's service account may read that location") from error


def _exclusive(local_dir: str):
  """Holds the copy's lock: two servers starting on one serving directory
  take turns, so each ends with one complete version in place."""
  return versions.file_lock(os.path.join(local_dir, LOCK_FILE))
