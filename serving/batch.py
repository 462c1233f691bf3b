"""Batch prediction: a Beam job that scores a set of sessions with a pushed model.

`repairml predict --input PATTERN --output DIR` reads sessions (parquet rows,
or TFRecord files of serialized tf.Examples), turns rows into the tf.Examples
the model's serving signature reads (serving/instances.py, with the features
the model declares), predicts in batches and writes one JSON line per session.
Each worker loads the SavedModel once, in `DoFn.setup`: TFX's BulkInferrer
cannot load Keras 3 models (see PLATFORM.md).

The output directory appears whole or not at all: the job writes to a hidden
staging directory beside it, renamed into place once the job has succeeded
(atomic on a local filesystem, as the Pusher's pushes are).

  DIR/predictions-SSSSS-of-NNNNN.jsonl  one line per predicted session:
      {"session_id": ..., "model_version": 1795894896,
       "recommended_labels": [...], "probabilities": {label: p, ...},
       "top_k": [the k most probable labels, most probable first]}
  DIR/errors-SSSSS-of-NNNNN.jsonl       one line per session that could not
      be predicted: {"session_id": ... or null, "error": "..."}
  DIR/summary.json                      the model, the input and the counts

Exit codes of `main`: 0 done (even with some error rows), 1 the job failed,
2 a user mistake (no pushed model, no input, output exists), said in one line.
"""

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
import traceback
import uuid
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence

# google.api_core warns on every import that Python 3.10 is unsupported. The
# warning is harmless (PLATFORM.md) and would reach the terminal before the
# log file takes the libraries' output.
warnings.filterwarnings(
    'ignore', message='You are using a non-supported Python version',
    category=FutureWarning)

# TensorFlow is imported where it is used: its import prints to the terminal.
# pylint: disable=g-import-not-at-top,wrong-import-position
import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState

from pipeline.config import DEFAULT_CONFIG_PATH, ConfigError, load_config
# pylint: enable=g-import-not-at-top,wrong-import-position

PARQUET = 'parquet'
TFRECORD = 'tfrecord'
INPUT_FORMATS = (PARQUET, TFRECORD)
DEFAULT_BATCH_SIZE = 256
DEFAULT_ID_COLUMN = 'session_id'
DEFAULT_TOP_K = 5
PROBABILITY_DIGITS = 6
PREDICTIONS_PREFIX = 'predictions'
ERRORS_PREFIX = 'errors'
OUTPUT_SUFFIX = '.jsonl'
SUMMARY_FILE = 'summary.json'
STAGING_PREFIX = '.staging-'
# How a model exported before per-label thresholds decides (as it was served).
DEFAULT_THRESHOLD = 0.5

EXIT_FAILED = 1
EXIT_USAGE = 2

# Beam output tags and counters.
EXAMPLES = 'examples'
PREDICTIONS = 'predictions'
ERRORS = 'errors'
COUNTERS = 'repairml_batch_prediction'
PREDICTED = 'predicted'


class BatchPredictionError(Exception):
  """A user mistake (model, input or output); the message says what to do."""


@dataclasses.dataclass(frozen=True)
class BatchResult:
  """What a finished job did."""
  output_dir: str
  model_dir: str
  model_version: Optional[int]
  predicted: int
  errors: int
  seconds: float

  @property
  def sessions_per_second(self) -> float:
    return (self.predicted + self.errors) / self.seconds


# --- Which model -----------------------------------------------------------------------


def _features(model_dir: str) -> Dict[str, Dict[str, Any]]:
  from serving import pushed
  try:
    return pushed.model_features(model_dir)
  except pushed.UnreadableFeaturesError as e:
    raise BatchPredictionError(str(e)) from None


def model_version(model_dir: str) -> Optional[int]:
  """The version a model directory is pushed as: its folder's number."""
  name = os.path.basename(os.path.normpath(model_dir))
  return int(name) if name.isdigit() else None


def resolve_model_dir(path: str, version: Optional[int] = None) -> str:
  """The SavedModel to predict with.

  `path` is a SavedModel, or a serving directory of pushed versions: then the
  pinned `version`, or else the newest one.
  """
  from serving import pushed
  if version is None and pushed.is_saved_model(path):
    return path
  if version is not None:
    candidate = os.path.join(path, str(version))
    if not pushed.is_saved_model(candidate):
      versions = pushed.pushed_versions(path)
      known = (f'the pushed versions are {", ".join(map(str, versions))}'
               if versions else 'it holds no pushed model')
      raise BatchPredictionError(f'no version {version} in {path}: {known}.')
    return candidate
  latest = pushed.latest_version(path)
  if latest is None:
    raise BatchPredictionError(
        f'no pushed model in {path} (paths.serving_dir): run `make run` first '
        'to train and push one.')
  return os.path.join(path, str(latest))


# --- Which input ----------------------------------------------------------------------


def matching_files(pattern: str) -> List[str]:
  """The files `pattern` matches (local paths or any Beam filesystem)."""
  try:
    (match,) = FileSystems.match([pattern])
  except BeamIOError:
    return []
  return sorted(metadata.path for metadata in match.metadata_list)


def check_input(pattern: str) -> List[str]:
  """The files `pattern` matches; at least one."""
  files = matching_files(pattern)
  if not files:
    raise BatchPredictionError(f'no input files match {pattern}.')
  return files


def parquet_columns(path: str, features: Mapping[str, Any],
                    id_column: str) -> List[str]:
  """The columns of `path` to read: the session id and the model's features.

  The label and whatever is absent at serving are never read.
  """
  import pyarrow.parquet as pq
  with FileSystems.open(path) as f:
    names = pq.read_schema(f).names
  if id_column not in names:
    raise BatchPredictionError(
        f'{path}: no {id_column!r} column to identify the sessions by; its '
        f'columns are {", ".join(names)}. Set data.id_column in the '
        'configuration to the id column.')
  return [name for name in names if name in features or name == id_column]


# --- The job's steps ------------------------------------------------------------------


def _error_line(session_id: Any, message: str) -> str:
  return json.dumps({'session_id': session_id, 'error': message},
                    default=str, separators=(',', ':'))


class RowToExample(beam.DoFn):
  """A parquet row -> (session id, serialized tf.Example) for the model."""

  def __init__(self, features: Mapping[str, Any], id_column: str):
    super().__init__()
    self._features = dict(features)
    self._id_column = id_column
    self._errors = Metrics.counter(COUNTERS, ERRORS)

  def setup(self):
    from serving import instances
    self._instances = instances

  def process(self, row: Dict[str, Any]):
    session_id = row.get(self._id_column)
    instance = {name: value for name, value in row.items()
                if name in self._features}
    try:
      (serialized,) = self._instances.serialized_examples([instance],
                                                          self._features)
    except self._instances.RequestError as e:
      self._errors.inc()
      # The message names 'instances[0].<feature>'; here the row is the id.
      message = str(e).replace('instances[0].', '', 1)
      yield beam.pvalue.TaggedOutput(ERRORS, _error_line(session_id, message))
      return
    yield session_id, serialized


class ExampleWithId(beam.DoFn):
  """A TFRecord of a serialized tf.Example -> (its session id, the record)."""

  def __init__(self, id_column: str):
    super().__init__()
    self._id_column = id_column
    self._errors = Metrics.counter(COUNTERS, ERRORS)

  def setup(self):
    import tensorflow as tf
    from google.protobuf.message import DecodeError
    self._parse = tf.train.Example.FromString
    self._decode_error = DecodeError

  def process(self, record: bytes):
    try:
      feature = self._parse(record).features.feature
    except self._decode_error as e:
      self._errors.inc()
      yield beam.pvalue.TaggedOutput(ERRORS, _error_line(
          None, f'not a serialized tf.Example ({e}).'))
      return
    ids = []
    if self._id_column in feature:
      kind = feature[self._id_column].WhichOneof('kind')
      ids = list(getattr(feature[self._id_column], kind).value) if kind else []
    if len(ids) != 1:
      self._errors.inc()
      yield beam.pvalue.TaggedOutput(ERRORS, _error_line(
          None, f'the example has no single {self._id_column!r} value to '
          'identify the session by.'))
      return
    session_id = ids[0]
    yield (session_id.decode('utf-8', 'replace')
           if isinstance(session_id, bytes) else session_id), record


class PredictSessions(beam.DoFn):
  """A batch of (session id, serialized tf.Example) -> one JSON line each.

  The SavedModel is loaded once per worker, in setup. An example the
  signature rejects fails its whole batch, so a failed batch is predicted
  again one session at a time: only the bad sessions become error lines.
  """

  def __init__(self, model_dir: str, top_k: int):
    super().__init__()
    self._model_dir = model_dir
    self._top_k = top_k
    self._predicted = Metrics.counter(COUNTERS, PREDICTED)
    self._errors = Metrics.counter(COUNTERS, ERRORS)

  def setup(self):
    import tensorflow as tf
    from models import export
    self._tf = tf
    # Keep the loaded object: the signature's variables live as long as it.
    self._model = tf.saved_model.load(self._model_dir)
    self._serve = self._model.signatures['serving_default']
    self._labels = export.load_label_names(self._model_dir)
    try:
      self._thresholds = np.array(export.load_thresholds(self._model_dir))
    except tf.errors.NotFoundError:  # exported before per-label thresholds
      self._thresholds = np.full(len(self._labels), DEFAULT_THRESHOLD)
    self._version = model_version(self._model_dir)

  def process(self, batch: Sequence):
    try:
      lines = self._lines(batch)
    except self._tf.errors.InvalidArgumentError:
      for session in batch:
        try:
          lines = self._lines([session])
        except self._tf.errors.InvalidArgumentError as e:
          self._errors.inc()
          yield beam.pvalue.TaggedOutput(ERRORS, _error_line(
              session[0], _tf_error_message(e.message)))
          continue
        self._predicted.inc()
        yield from lines
      return
    self._predicted.inc(len(lines))
    yield from lines

  def _lines(self, batch: Sequence) -> List[str]:
    outputs = self._serve(examples=self._tf.constant(
        [serialized for _, serialized in batch]))
    probabilities = outputs['probabilities'].numpy()
    if 'recommended' in outputs:
      recommended = outputs['recommended'].numpy().astype(bool)
    else:
      recommended = probabilities >= self._thresholds
    top = np.argsort(-probabilities, axis=1, kind='stable')[:, :self._top_k]
    rounded = np.round(probabilities.astype(np.float64),
                       PROBABILITY_DIGITS).tolist()
    return [self._line(session_id, rounded[i], recommended[i], top[i])
            for i, (session_id, _) in enumerate(batch)]

  def _line(self, session_id, probabilities: List[float], recommended,
            top) -> str:
    labels = self._labels
    return json.dumps({
        'session_id': session_id,
        'model_version': self._version,
        'recommended_labels': [labels[j] for j in np.flatnonzero(recommended)],
        'probabilities': dict(zip(labels, probabilities)),
        'top_k': [labels[j] for j in top],
    }, default=str, separators=(',', ':'))


def _tf_error_message(message: str) -> str:
  """The line of a TF op error that says what was wrong with the example."""
  noise = ('Graph execution error', 'Detected at node', '<stack traces', '[[')
  for line in message.splitlines():
    line = line.strip()
    if line and not line.startswith(noise):
      return line.replace('Name: <unknown>, ', '', 1)
  return message.strip()


def build_pipeline(pipeline: beam.Pipeline, *, model_dir: str,
                   input_pattern: str, input_format: str,
                   features: Mapping[str, Any], columns: Optional[List[str]],
                   id_column: str, batch_size: int, top_k: int,
                   output_dir: str) -> None:
  """Read -> tf.Examples -> batches -> predictions and errors, as JSON lines."""
  if input_format == PARQUET:
    sessions = (pipeline
                | 'ReadParquet' >> beam.io.ReadFromParquet(input_pattern,
                                                           columns=columns)
                | 'ToExamples' >> beam.ParDo(RowToExample(features, id_column))
                .with_outputs(ERRORS, main=EXAMPLES))
  else:
    sessions = (pipeline
                | 'ReadTFRecord' >> beam.io.ReadFromTFRecord(input_pattern)
                | 'WithIds' >> beam.ParDo(ExampleWithId(id_column))
                .with_outputs(ERRORS, main=EXAMPLES))
  predicted = (sessions[EXAMPLES]
               | 'Batch' >> beam.BatchElements(
                   min_batch_size=max(1, batch_size // 4),
                   max_batch_size=batch_size)
               | 'Predict' >> beam.ParDo(PredictSessions(model_dir, top_k))
               .with_outputs(ERRORS, main=PREDICTIONS))
  _ = predicted[PREDICTIONS] | 'WritePredictions' >> beam.io.WriteToText(
      os.path.join(output_dir, PREDICTIONS_PREFIX),
      file_name_suffix=OUTPUT_SUFFIX)
  _ = ((sessions[ERRORS], predicted[ERRORS])
       | 'AllErrors' >> beam.Flatten()
       | 'WriteErrors' >> beam.io.WriteToText(
           os.path.join(output_dir, ERRORS_PREFIX),
           file_name_suffix=OUTPUT_SUFFIX))


def _counter(result, name: str) -> int:
  counters = result.metrics().query(
      MetricsFilter().with_namespace(COUNTERS).with_name(name))['counters']
  return sum(c.committed if c.committed is not None else c.attempted
             for c in counters)


# --- The whole job, atomically --------------------------------------------------------


def check_output(output_dir: str, overwrite: bool) -> None:
  if os.path.lexists(output_dir) and not overwrite:
    raise BatchPredictionError(
        f'{output_dir} already exists: choose another --output, or pass '
        '--overwrite to replace it.')


def _move_into_place(staging: str, output_dir: str, overwrite: bool) -> None:
  """Renames `staging` to `output_dir` (atomic on one filesystem)."""
  check_output(output_dir, overwrite)
  if not os.path.lexists(output_dir):
    os.rename(staging, output_dir)
    return
  replaced = f'{staging}.replaced'
  os.rename(output_dir, replaced)
  try:
    os.rename(staging, output_dir)
  except OSError:
    os.rename(replaced, output_dir)
    raise
  shutil.rmtree(replaced)


def run_batch_prediction(model_dir: str, input_pattern: str, output_dir: str,
                         input_format: str = PARQUET,
                         beam_args: Optional[Sequence[str]] = None,
                         batch_size: int = DEFAULT_BATCH_SIZE,
                         id_column: str = DEFAULT_ID_COLUMN,
                         version: Optional[int] = None,
                         overwrite: bool = False,
                         top_k: int = DEFAULT_TOP_K) -> BatchResult:
  """Predicts every session `input_pattern` matches into `output_dir`.

  `model_dir` is a SavedModel or a serving directory (then `version`, or the
  newest). Raises BatchPredictionError for a user mistake; any other
  exception is the job failing. Either way `output_dir` is left as it was.
  """
  started = time.monotonic()
  if input_format not in INPUT_FORMATS:
    raise BatchPredictionError(f'unknown input format {input_format!r}: use '
                               f'{" or ".join(INPUT_FORMATS)}.')
  if batch_size < 1 or top_k < 0:
    raise BatchPredictionError('the batch size must be positive and top_k '
                               'not negative.')
  model_dir = os.path.abspath(resolve_model_dir(model_dir, version))
  output_dir = os.path.abspath(output_dir)
  check_output(output_dir, overwrite)
  files = check_input(input_pattern)
  features = _features(model_dir)
  columns = (parquet_columns(files[0], features, id_column)
             if input_format == PARQUET else None)

  parent = os.path.dirname(output_dir)
  os.makedirs(parent, exist_ok=True)
  staging = os.path.join(parent, f'{STAGING_PREFIX}'
                         f'{os.path.basename(output_dir)}-{uuid.uuid4().hex}')
  os.makedirs(staging)
  try:
    pipeline = beam.Pipeline(options=PipelineOptions(list(beam_args or [])))
    build_pipeline(pipeline, model_dir=model_dir, input_pattern=input_pattern,
                   input_format=input_format, features=features,
                   columns=columns, id_column=id_column,
                   batch_size=batch_size, top_k=top_k, output_dir=staging)
    result = pipeline.run()
    state = result.wait_until_finish()
    if state != PipelineState.DONE:
      raise RuntimeError(f'the Beam job ended in state {state}.')
    outcome = BatchResult(output_dir, model_dir, model_version(model_dir),
                          _counter(result, PREDICTED), _counter(result, ERRORS),
                          time.monotonic() - started)
    with open(os.path.join(staging, SUMMARY_FILE), 'w', encoding='utf-8') as f:
      json.dump({'model_dir': model_dir, 'model_version': outcome.model_version,
                 'input': input_pattern, 'input_format': input_format,
                 'input_files': len(files), 'predicted': outcome.predicted,
                 'errors': outcome.errors,
                 'seconds': round(outcome.seconds, 3)}, f, indent=2)
    _move_into_place(staging, output_dir, overwrite)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return outcome


# --- Command line ---------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='repairml predict',
      description='Batch prediction: a Beam job that predicts every session '
                  'of a set of files with the pushed model.')
  parser.add_argument('--input', required=True,
                      help='file pattern of the sessions, e.g. '
                           '"data/sessions/span-*/*.parquet"')
  parser.add_argument('--output', required=True,
                      help='directory to create with the predictions')
  parser.add_argument('--config', default=DEFAULT_CONFIG_PATH,
                      help='run configuration: serving_dir, id column, log '
                           'file, Beam arguments (default: %(default)s)')
  parser.add_argument('--version', type=int, default=None,
                      help='the pushed version to use (default: the newest)')
  parser.add_argument('--format', choices=INPUT_FORMATS, default=PARQUET,
                      help='parquet rows or TFRecords of serialized '
                           'tf.Examples (default: %(default)s)')
  parser.add_argument('--batch-size', type=int, default=DEFAULT_BATCH_SIZE,
                      help='sessions per model call (default: %(default)s)')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace the output directory if it exists')
  parser.add_argument('--beam-arg', action='append', default=[],
                      metavar='--NAME=VALUE',
                      help='a Beam pipeline option, after the configuration\'s '
                           'beam_args; repeatable, e.g. '
                           '--beam-arg=--runner=DataflowRunner')
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  """`repairml predict`: returns the exit code (0, 1 job failed, 2 usage)."""
  try:
    args = _parser().parse_args(argv)
  except SystemExit as exit_request:  # argparse printed the help or the error
    return int(exit_request.code or 0)
  try:
    config = load_config(args.config)
    model_dir = resolve_model_dir(config.paths.serving_dir, args.version)
    check_output(os.path.abspath(args.output), args.overwrite)
    check_input(args.input)
  except (ConfigError, BatchPredictionError) as e:
    return _fail(EXIT_USAGE, str(e))

  # pylint: disable-next=g-import-not-at-top
  from pipeline import progress
  log_file = config.paths.log_file
  failure = None
  with progress.output_to_log_file(log_file) as terminal:
    terminal.write(f'log: {log_file}\n')
    terminal.write(f'model: version {model_version(model_dir)} '
                   f'({model_dir})\n')
    try:
      result = run_batch_prediction(
          model_dir, args.input, args.output, input_format=args.format,
          beam_args=list(config.beam_args) + args.beam_arg,
          batch_size=args.batch_size, id_column=config.data.id_column,
          overwrite=args.overwrite)
    except BatchPredictionError as e:
      failure = (EXIT_USAGE, str(e))
    except Exception as e:  # pylint: disable=broad-except
      with open(log_file, 'a', encoding='utf-8') as log:
        traceback.print_exc(file=log)
      failure = (EXIT_FAILED, f'the batch prediction job failed, and wrote '
                 f'nothing: {_first_line(e)} (full log: {log_file})')
    else:
      terminal.write(f'predicted {result.predicted} sessions in '
                     f'{result.seconds:.1f} s '
                     f'({result.sessions_per_second:.0f} sessions/s), '
                     f'{result.errors} errors\n')
      terminal.write(f'output: {result.output_dir}\n')
      if result.errors:
        terminal.write(f'errors: {result.output_dir}/{ERRORS_PREFIX}-*'
                       f'{OUTPUT_SUFFIX} (sessions that could not be '
                       'predicted, and why)\n')
  return _fail(*failure) if failure else 0


def _first_line(error: Exception) -> str:
  lines = str(error).strip().splitlines()
  return f'{type(error).__name__}: {lines[0] if lines else ""}'


def _fail(code: int, message: str) -> int:
  print(f'repairml predict: {message}', file=sys.stderr)
  return code


if __name__ == '__main__':
  sys.exit(main())
