"""The model versions an online server serves: loading, hot reload and rollback.

The Pusher pushes each blessed model atomically to `<serving_dir>/<version>/`
(pipeline/components/atomic_pusher.py); `.staging-*` folders are pushes in
progress. A `ModelStore` serves the newest complete version, or the version
pinned for a rollback, and `reload()` (by hand, or every few seconds from the
poller thread) moves to a newer version only once it is fully loaded and has
answered a warm-up request: a version that fails to load is logged with the
reason and skipped, and the version being served stays in place.

Older versions can be asked for by number (`get`); they are loaded on demand
and a few of them are kept in memory.
"""

import collections
import logging
import os
import re
import threading
from typing import (Any, Callable, Dict, List, Optional, Sequence,
                    Tuple)

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2

from models import export, versions
from serving import pushed
from serving.instances import (Features, RequestError, read_instances,
                               serialized_examples)

SIGNATURE = 'serving_default'
SIGNATURE_INPUT = 'examples'

logger = logging.getLogger('repairml.serving')


class VersionNotFoundError(LookupError):
  """No complete version with this number in the serving directory."""


class ModelLoadError(RuntimeError):
  """A version directory holds no SavedModel this server can serve."""


class ServedModel:
  """One loaded model version, ready to predict from serialized tf.Examples."""

  def __init__(self, version: int, path: str):
    self.version = version
    self.path = path
    try:
      self.label_names = export.load_label_names(path)
      self.thresholds = export.load_thresholds(path)
      self.features: Features = pushed.model_features(path)
      self.provenance = versions.read_provenance(path)
      self.signature_def = _signature_def(path)
      # The signature needs the loaded object alive: keep a reference.
      self._saved_model = tf.saved_model.load(path)
      self._signature = self._saved_model.signatures[SIGNATURE]
    except Exception as e:  # pylint: disable=broad-except
      # Whatever the reason (no assets, a corrupt file, a missing signature),
      # the version cannot be served; the cause stays chained for the log.
      raise ModelLoadError(f'version {version}: {_first_line(e)}'
                           ) from e
    if len(self.thresholds) != len(self.label_names):
      raise ModelLoadError(
          f'version {version}: {len(self.label_names)} label names '
          f'but {len(self.thresholds)} thresholds in its assets.')
    self._warm_up()

  def _warm_up(self) -> None:
    """Runs the signature once (on no examples), as TF Serving's warm-up does:
    a version that cannot answer is never swapped in, and the first real
    request does not pay for initialising lookup tables."""
    try:
      outputs = self._signature(**{SIGNATURE_INPUT: tf.constant([], tf.string)})
    except (TypeError, ValueError, tf.errors.OpError) as e:
      raise ModelLoadError(f'version {self.version}: its '
                           f'{SIGNATURE} signature fails: {_first_line(e)}'
                           ) from e
    for name in export.SERVING_OUTPUTS:
      shape = outputs[name].shape.as_list() if name in outputs else None
      if shape != [0, len(self.label_names)]:
        raise ModelLoadError(
            f'version {self.version}: output {name!r} has shape '
            f'{shape}, expected [batch, {len(self.label_names)}] (one column '
            'per label of assets/labels.txt).')

  def serialized(self, instances: Any) -> List[bytes]:
    """A request's instances as serialized tf.Examples (see
    serving/instances.py); RequestError names a bad instance and feature."""
    return serialized_examples(instances, self.features)

  def read(self, instances: Any
           ) -> Tuple[List[bytes], List[Dict[str, List[Any]]]]:
    """serialized(), and the features as the model reads them."""
    return read_instances(instances, self.features)

  def predict(self, serialized: List[bytes]) -> Dict[str, np.ndarray]:
    """{probabilities, recommended, recommendation_scores}, [batch, labels].

    Raises RequestError, naming the instance and the feature, for examples
    the model cannot parse (a required feature missing, a wrong type).
    """
    try:
      outputs = self._signature(
          **{SIGNATURE_INPUT: tf.constant(serialized, tf.string)})
    except tf.errors.InvalidArgumentError as e:
      raise RequestError(_parse_error(e.message, serialized)) from None
    return {name: outputs[name].numpy() for name in export.SERVING_OUTPUTS}


def _signature_def(path: str) -> dict:
  """The serving signature as TF Serving's metadata API shows it."""
  saved_model = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(path, 'saved_model.pb'), 'rb') as f:
    saved_model.ParseFromString(f.read())
  signatures = saved_model.meta_graphs[0].signature_def
  if SIGNATURE not in signatures:
    raise KeyError(f'no {SIGNATURE!r} signature (it has '
                   f'{", ".join(sorted(signatures))})')
  return json_format.MessageToDict(signatures[SIGNATURE],
                                 preserving_proto_field_name=True)


def _first_line(error: BaseException) -> str:
  text = getattr(error, 'message', None) or str(error) or type(error).__name__
  return text.strip().splitlines()[0]


_REQUIRED = re.compile(r'Feature: (\S+) \(data type: (\w+)\) is required')
_WRONG_TYPE = re.compile(r'Key: (\S+?),.*expected type: (\w+)')
_EXAMPLE_KINDS = {'string': 'bytes_list', 'int64': 'int64_list',
                  'float': 'float_list'}


def _parse_error(message: str, serialized: Sequence[bytes]) -> str:
  """A client's message for TF's parse error: which instance, which feature
  (TF's own message names neither the instance nor, always, the problem)."""
  examples = [tf.train.Example.FromString(data) for data in serialized]
  if match := _REQUIRED.search(message):
    name, dtype = match.groups()
    for i, example in enumerate(examples):
      feature = example.features.feature.get(name)
      kind = feature.WhichOneof('kind') if feature is not None else None
      if kind is None or not getattr(feature, kind).value:
        return (f'instances[{i}].{name}: required, and missing; the model '
                f'needs one {dtype} value.')
  if match := _WRONG_TYPE.search(message):
    name, dtype = match.groups()
    kind = _EXAMPLE_KINDS.get(dtype)
    for i, example in enumerate(examples):
      feature = example.features.feature.get(name)
      if feature is not None and feature.WhichOneof('kind') not in (kind,
                                                                    None):
        return f'instances[{i}].{name}: must be of type {dtype}.'
  # Whatever else: TF's own words, without the graph location around them.
  lines = [line for line in message.splitlines()
           if line and not line[0].isspace() and
           not line.startswith(('Graph execution error', 'Detected at node',
                                '<stack traces'))]
  detail = re.sub(r'^Name: <unknown>, ', '', lines[-1] if lines else message)
  return f'the model cannot read the instances: {detail.strip()}'


class ModelStore:
  """The versions of one serving directory, and the one being served.

  Thread-safe: requests call `current()` and `get()` while the poller calls
  `reload()`. A request keeps the ServedModel it got even if a reload swaps
  in another version meanwhile.
  """

  def __init__(self, serving_dir: str, keep_other_versions: int = 2,
               on_change: Optional[Callable[[ServedModel], None]] = None):
    self.serving_dir = serving_dir
    self._keep_other_versions = keep_other_versions
    # Called with the new ServedModel after every swap (progress lines), and
    # with the version and the reason after a version failed to load.
    self.on_change = on_change
    self.on_load_failure: Optional[Callable[[int, str], None]] = None
    self._lock = threading.Lock()          # guards the fields below
    self._load_lock = threading.RLock()    # one load or swap at a time
    self._current: Optional[ServedModel] = None
    self._pinned: Optional[int] = None
    self._others: 'collections.OrderedDict[int, ServedModel]' = (
        collections.OrderedDict())         # least recently used first
    # version -> (why it failed, the modification time it failed at)
    self._failures: Dict[int, Tuple[str, int]] = {}
    self._orphan_warned: Optional[int] = None
    self._poller: Optional[threading.Thread] = None
    self._stop_polling = threading.Event()

  # Versions on disk --------------------------------------------------------

  def available_versions(self) -> List[int]:
    """Complete numeric versions in the serving directory, oldest first."""
    return pushed.pushed_versions(self.serving_dir)

  # What is served ----------------------------------------------------------

  def current(self) -> Optional[ServedModel]:
    """The version served by default; None until one has loaded."""
    with self._lock:
      return self._current

  @property
  def pinned(self) -> Optional[int]:
    with self._lock:
      return self._pinned

  def versions(self) -> List[int]:
    """The loaded versions, oldest first."""
    with self._lock:
      loaded = set(self._others)
      if self._current:
        loaded.add(self._current.version)
    return sorted(loaded)

  def failures(self) -> Dict[int, str]:
    """Versions that failed to load, with the reason. They are not loaded
    again unless their saved_model.pb changes."""
    with self._lock:
      return {version: reason
              for version, (reason, _) in self._failures.items()}

  def get(self, version: int) -> ServedModel:
    """That version, loaded on demand. Raises VersionNotFoundError or
    ModelLoadError. A version retired or removed from the serving directory
    is not found, even while it is still in memory (only the version being
    served stays in use until its successor has loaded)."""
    with self._lock:
      model = self._loaded(version)
    if model and (model is self.current() or
                  version in self.available_versions()):
      return model
    if model:
      raise VersionNotFoundError(
          f'version {version} is no longer in {self.serving_dir} (retired or '
          'removed).')
    with self._load_lock:
      with self._lock:
        model = self._loaded(version)
      if model:
        return model
      model = self._load(version)
      with self._lock:
        self._keep(model)
      return model

  def _loaded(self, version: int) -> Optional[ServedModel]:
    if self._current and self._current.version == version:
      return self._current
    if version in self._others:
      self._others.move_to_end(version)
      return self._others[version]
    return None

  def _keep(self, model: ServedModel) -> None:
    """Keeps a non-current version, forgetting the least recently used."""
    self._others[model.version] = model
    self._others.move_to_end(model.version)
    while len(self._others) > self._keep_other_versions:
      self._others.popitem(last=False)

  # Hot reload and rollback -------------------------------------------------

  def reload(self) -> Optional[ServedModel]:
    """Serves the pinned version, else the newest version that loads.

    A version is loaded completely before it replaces the current one; a
    version that fails is logged, remembered, and skipped. Returns the
    version served afterwards.
    """
    with self._load_lock:
      if self.pinned is not None:
        return self.current()
      current = self.current()
      on_disk = self.available_versions()
      with self._lock:   # forget failures of versions since removed
        self._failures = {v: failure for v, failure in self._failures.items()
                          if v in on_disk}
      for version in reversed(on_disk):
        if current and version == current.version:
          return current
        try:
          model = self._loaded_or_load(version)
        except (ModelLoadError, VersionNotFoundError):
          continue  # logged by _load; an older version may do
        self._swap(model)
        return model
      if current and current.version not in on_disk and (
          self._orphan_warned != current.version):
        self._orphan_warned = current.version   # once, not on every poll
        logger.warning('Version %d is no longer in %s and no other version '
                       'loads; still serving it.', current.version,
                       self.serving_dir)
      return current

  def pin(self, version: int) -> ServedModel:
    """Serves `version` from now on, even when newer versions appear (a
    rollback). Raises VersionNotFoundError or ModelLoadError, and then
    serves what it served before."""
    with self._load_lock:
      model = self._loaded_or_load(version)
      with self._lock:
        self._pinned = version
      self._swap(model)
      logger.info('Pinned version %d.', version)
      return model

  def unpin(self) -> Optional[ServedModel]:
    """Back to serving the newest version; returns it."""
    with self._load_lock:
      with self._lock:
        self._pinned = None
      logger.info('Unpinned; serving the newest version again.')
      return self.reload()

  def _loaded_or_load(self, version: int) -> ServedModel:
    with self._lock:
      model = self._loaded(version)
    return model or self._load(version)

  def _load(self, version: int) -> ServedModel:
    path = os.path.join(self.serving_dir, str(version))
    if version not in self.available_versions():
      raise VersionNotFoundError(
          f'no version {version} in {self.serving_dir} (versions there: '
          f'{", ".join(map(str, self.available_versions())) or "none"}).')
    modified = _modification_time(path)
    with self._lock:
      failure = self._failures.get(version)
    if failure and failure[1] == modified:
      raise ModelLoadError(failure[0])
    logger.info('Loading version %d from %s.', version, path)
    try:
      model = ServedModel(version, path)
    except ModelLoadError as e:
      logger.error('Version %d at %s cannot be served: %s', version, path, e,
                   exc_info=e.__cause__)
      with self._lock:
        self._failures[version] = (str(e), modified)
      if self.on_load_failure:
        self.on_load_failure(version, str(e))
      raise
    with self._lock:
      self._failures.pop(version, None)
    return model

  def _swap(self, model: ServedModel) -> None:
    with self._lock:
      previous = self._current
      if previous is model:
        return
      self._others.pop(model.version, None)
      self._current = model
      if previous:
        self._keep(previous)
    logger.info('Serving version %d (was %s).', model.version,
                previous.version if previous else 'none')
    if self.on_change:
      self.on_change(model)

  # The poller --------------------------------------------------------------

  def start_polling(self, interval_seconds: float) -> None:
    """Calls reload() every `interval_seconds` on a daemon thread."""
    if self._poller and self._poller.is_alive():
      return
    self._stop_polling.clear()
    self._poller = threading.Thread(target=self._poll,
                                    args=(interval_seconds,),
                                    name='repairml-model-poller', daemon=True)
    self._poller.start()

  def stop_polling(self) -> None:
    self._stop_polling.set()
    if self._poller:
      self._poller.join()
      self._poller = None

  def _poll(self, interval_seconds: float) -> None:
    while not self._stop_polling.wait(interval_seconds):
      try:
        self.reload()
      except Exception:  # pylint: disable=broad-except
        # The poller must outlive a bad moment (a vanished file system, ...).
        logger.exception('Reloading from %s failed; trying again in %s s.',
                         self.serving_dir, interval_seconds)


def _modification_time(version_dir: str) -> int:
  for name in ('saved_model.pb', 'saved_model.pbtxt'):
    path = os.path.join(version_dir, name)
    if tf.io.gfile.exists(path):
      return tf.io.gfile.stat(path).mtime_nsec
  return 0
