"""Batch prediction: a Beam job that scores a set of sessions with a pushed model.

`repairml predict --input PATTERN --output DIR` reads sessions (parquet rows,
or TFRecord files of serialized tf.Examples), checks and turns each into the
tf.Example the model's serving signature reads (serving/instances.py, as the
server does), predicts in batches and writes one JSON line per session, in
the one prediction contract (serving/contract.py). Each worker loads the
SavedModel once, in `DoFn.setup`: TFX's BulkInferrer cannot load Keras 3
models (see PLATFORM.md).

It runs where the data is: the serving directory may be a gs:// URL (read
through tf.io.gfile, serving/pushed.py), the input and the output too (Beam
FileSystems), and `--beam-arg=--runner=DataflowRunner ...` runs the same job
on Dataflow. The output is staged beside DIR and committed once the job has
succeeded (serving/batch_output.py says what is guaranteed where).

  DIR/predictions-SSSSS-of-NNNNN.jsonl  one line per predicted session:
      {"session_id": ..., "model_version": "1795894896",
       "recommended_labels", "top_k", "probabilities", "recommended",
       "recommendation_scores"}  (a prediction of serving/contract.py)
  DIR/errors-SSSSS-of-NNNNN.jsonl       one line per session that could not
      be predicted: {"session_id": ... or null, "error": "..."}, the message
      the server gives for the same session, without "instances[0]."
  DIR/summary.json                      the model, the input and the counts;
      written last: the output is complete once it exists

Exit codes of `main`: 0 done (even with some error rows), 1 the job failed,
2 a user mistake (no pushed model, no input, output exists), said in one line.
"""

import argparse
import dataclasses
import json
import math
import os
import posixpath
import sys
import time
import traceback
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

# google.api_core warns on every import that Python 3.10 is unsupported. The
# warning is harmless (PLATFORM.md) and would reach the terminal before the
# log file takes the libraries' output.
warnings.filterwarnings(
    'ignore', message='You are using a non-supported Python version',
    category=FutureWarning)

# TensorFlow is imported where it is used: its import prints to the terminal.
# pylint: disable=g-import-not-at-top,wrong-import-position
import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState

from pipeline.config import DEFAULT_CONFIG_PATH, ConfigError, load_config
from serving import batch_output, contract
# pylint: enable=g-import-not-at-top,wrong-import-position

PARQUET = 'parquet'
TFRECORD = 'tfrecord'
INPUT_FORMATS = (PARQUET, TFRECORD)
DEFAULT_BATCH_SIZE = 256
DEFAULT_ID_COLUMN = 'session_id'
DEFAULT_TOP_K = contract.DEFAULT_TOP_K
PREDICTIONS_PREFIX = 'predictions'
ERRORS_PREFIX = 'errors'
OUTPUT_SUFFIX = '.jsonl'
SUMMARY_FILE = batch_output.SUMMARY_FILE
STAGING_PREFIX = batch_output.STAGING_PREFIX

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


def _absolute(path: str) -> str:
  """A local path made absolute; a URL (gs://...) as it is, without a
  trailing '/'."""
  if FileSystems.get_scheme(path):
    return path.rstrip('/')
  return os.path.abspath(path)


# --- Which model -----------------------------------------------------------------------


def _features(model_dir: str) -> Dict[str, Dict[str, Any]]:
  from serving import pushed
  try:
    return pushed.model_features(model_dir)
  except pushed.UnreadableFeaturesError as e:
    raise BatchPredictionError(str(e)) from None


def _check_outputs(model_dir: str) -> None:
  """The model answers in the contract: it has every output a prediction is
  made of (all models exported since per-label thresholds do)."""
  from models import export
  from serving import pushed
  outputs = pushed.signature_outputs(model_dir)
  missing = [name for name in export.SERVING_OUTPUTS if name not in outputs]
  if missing:
    raise BatchPredictionError(
        f'{model_dir}: its serving_default has no {" or ".join(missing)} '
        'output, so it cannot answer in the prediction contract (a model '
        'exported before per-label thresholds); push a model exported by '
        'this version of repairml (`make run`).')


def model_version(model_dir: str) -> Optional[int]:
  """The version a model directory is pushed as: its folder's number."""
  name = posixpath.basename(model_dir.rstrip('/'))
  return int(name) if name.isdigit() else None


def resolve_model_dir(path: str, version: Optional[int] = None) -> str:
  """The SavedModel to predict with.

  `path` is a SavedModel, or a serving directory of pushed versions: then the
  pinned `version`, or else the newest one. Either may be a gs:// URL.
  """
  from serving import pushed
  fs = pushed.filesystem(path)
  if version is None and pushed.is_saved_model(path, fs):
    return path
  if version is not None:
    candidate = os.path.join(path, str(version))
    if not pushed.is_saved_model(candidate, fs):
      versions = pushed.pushed_versions(path, fs)
      known = (f'the pushed versions are {", ".join(map(str, versions))}'
               if versions else 'it holds no pushed model')
      raise BatchPredictionError(f'no version {version} in {path}: {known}.')
    return candidate
  latest = pushed.latest_version(path, fs)
  if latest is None:
    raise BatchPredictionError(
        f'no pushed model in {path} (paths.serving_dir, or --model): run '
        '`make run` first to train and push one.')
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
#
# The job moves batches, not sessions: parquet row groups are cut into
# batches before anything else, and a batch's predictions leave as one block
# of lines, so Beam's per-element cost is paid per batch.


def _session_id(value: Any) -> Union[str, int, None]:
  """A session id as JSON can hold it."""
  if value is None or isinstance(value, (str, int)) and not isinstance(
      value, bool):
    return value
  if isinstance(value, bytes):
    return value.decode('utf-8', 'replace')
  if isinstance(value, float) and math.isnan(value):
    return None
  return str(value)


def _error_line(session_id: Any, message: str) -> str:
  return json.dumps({'session_id': session_id, 'error': message},
                    separators=(',', ':'))


def _without_index(error: Exception) -> str:
  # The message names 'instances[0].<feature>'; here the id names the session.
  return str(error).replace('instances[0].', '', 1)


class RowsToExamples(beam.DoFn):
  """A parquet row group -> batches of (session id, serialized tf.Example),
  each row checked as the server checks an instance."""

  def __init__(self, features: Mapping[str, Any], id_column: str,
               batch_size: int):
    super().__init__()
    self._features = dict(features)
    self._id_column = id_column
    self._batch_size = batch_size
    self._errors = Metrics.counter(COUNTERS, ERRORS)

  def setup(self):
    from serving import instances
    self._instances = instances

  def process(self, table):
    # Column by column: cheaper than a dict per row from pyarrow.
    columns = table.to_pydict()
    ids = columns.get(self._id_column, [None] * table.num_rows)
    names = [name for name in columns if name in self._features]
    values = [columns[name] for name in names]
    for start in range(0, table.num_rows, self._batch_size):
      end = start + self._batch_size
      batch_ids = [_session_id(i) for i in ids[start:end]]
      sessions = [dict(zip(names, row)) for row in
                  zip(*(column[start:end] for column in values))]
      yield from self._examples(batch_ids, sessions)

  def _examples(self, ids, sessions):
    try:  # the whole batch at once, unless a session in it is bad
      yield list(zip(ids, self._instances.serialized_examples(
          sessions, self._features)))
      return
    except self._instances.RequestError:
      pass
    batch = []
    for session_id, session in zip(ids, sessions):
      try:
        (serialized,) = self._instances.serialized_examples(
            [session], self._features)
      except self._instances.RequestError as e:
        self._errors.inc()
        yield beam.pvalue.TaggedOutput(
            ERRORS, _error_line(session_id, _without_index(e)))
        continue
      batch.append((session_id, serialized))
    if batch:
      yield batch


class ExampleWithId(beam.DoFn):
  """A TFRecord of a serialized tf.Example -> (its session id, the tf.Example
  of the model's features), checked as the server checks a b64 instance."""

  def __init__(self, features: Mapping[str, Any], id_column: str):
    super().__init__()
    self._features = dict(features)
    self._id_column = id_column
    self._errors = Metrics.counter(COUNTERS, ERRORS)

  def setup(self):
    from google.protobuf.message import DecodeError
    from serving import instances
    self._instances = instances
    self._decode_error = DecodeError

  def process(self, record: bytes):
    try:
      (values,) = self._instances.example_dicts([record])
    except self._decode_error as e:
      yield self._error(None, f'not a serialized tf.Example ({e}).')
      return
    ids = values.get(self._id_column, [])
    if len(ids) != 1:
      yield self._error(None, f'the example has no single {self._id_column!r} '
                        'value to identify the session by.')
      return
    session_id = _session_id(ids[0])
    # As a parquet row's: the label and other columns are not read.
    session = {name: value for name, value in values.items()
               if name in self._features}
    try:
      (serialized,) = self._instances.serialized_examples([session],
                                                          self._features)
    except self._instances.RequestError as e:
      yield self._error(session_id, _without_index(e))
      return
    yield session_id, serialized

  def _error(self, session_id, message: str):
    self._errors.inc()
    return beam.pvalue.TaggedOutput(ERRORS, _error_line(session_id, message))


class PredictSessions(beam.DoFn):
  """A batch of (session id, serialized tf.Example) -> its predictions, one
  JSON line each in the prediction contract, as one block of lines.

  The SavedModel is loaded once per worker, in setup, from wherever it is
  (tf.io.gfile). An example the signature rejects fails its whole batch, so a
  failed batch is predicted again one session at a time: only the bad
  sessions become error lines.
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
    self._outputs = export.SERVING_OUTPUTS
    # Keep the loaded object: the signature's variables live as long as it.
    self._model = tf.saved_model.load(self._model_dir)
    self._serve = self._model.signatures[contract.SIGNATURE]
    self._labels = export.load_label_names(self._model_dir)
    version = model_version(self._model_dir)
    # As the server answers: the version as a string.
    self._version = None if version is None else str(version)

  def process(self, batch: Sequence):
    try:
      lines, errors = self._lines(batch), []
    except self._tf.errors.InvalidArgumentError:
      lines, errors = [], []
      for session in batch:
        try:
          lines += self._lines([session])
        except self._tf.errors.InvalidArgumentError as e:
          errors.append(_error_line(session[0], _tf_error_message(e.message)))
    if errors:
      self._errors.inc(len(errors))
      for error in errors:
        yield beam.pvalue.TaggedOutput(ERRORS, error)
    if lines:
      self._predicted.inc(len(lines))
      yield b'\n'.join(lines)

  def _lines(self, batch: Sequence) -> List[bytes]:
    """A JSON line per session (a model that answers NaN to checked
    sessions fails the job, in contract.predictions)."""
    outputs = self._serve(examples=self._tf.constant(
        [serialized for _, serialized in batch]))
    predictions = contract.predictions(
        self._labels, {name: outputs[name].numpy() for name in self._outputs},
        self._top_k)
    lines = []
    for (session_id, _), prediction in zip(batch, predictions):
      line = {'session_id': session_id, 'model_version': self._version}
      for key in contract.PREDICTION_KEYS:
        line[key] = prediction[key]
      lines.append(contract.dumps(line))
    return lines


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
  """Read -> checked tf.Examples in batches -> predictions and errors, as
  JSON lines in `output_dir`."""
  if input_format == PARQUET:
    sessions = (pipeline
                | 'ReadParquet' >> beam.io.ReadFromParquetBatched(
                    input_pattern, columns=columns)
                | 'ToExamples' >> beam.ParDo(
                    RowsToExamples(features, id_column, batch_size))
                .with_outputs(ERRORS, main=EXAMPLES))
    batches = sessions[EXAMPLES]
  else:
    sessions = (pipeline
                | 'ReadTFRecord' >> beam.io.ReadFromTFRecord(input_pattern)
                | 'ToExamples' >> beam.ParDo(ExampleWithId(features, id_column))
                .with_outputs(ERRORS, main=EXAMPLES))
    batches = sessions[EXAMPLES] | 'Batch' >> beam.BatchElements(
        min_batch_size=max(1, batch_size // 4), max_batch_size=batch_size)
  predicted = (batches
               | 'Predict' >> beam.ParDo(PredictSessions(model_dir, top_k))
               .with_outputs(ERRORS, main=PREDICTIONS))
  _ = predicted[PREDICTIONS] | 'WritePredictions' >> beam.io.WriteToText(
      FileSystems.join(output_dir, PREDICTIONS_PREFIX),
      file_name_suffix=OUTPUT_SUFFIX)
  _ = ((sessions[ERRORS], predicted[ERRORS])
       | 'AllErrors' >> beam.Flatten()
       | 'WriteErrors' >> beam.io.WriteToText(
           FileSystems.join(output_dir, ERRORS_PREFIX),
           file_name_suffix=OUTPUT_SUFFIX))


def _counter(result, name: str) -> int:
  counters = result.metrics().query(
      MetricsFilter().with_namespace(COUNTERS).with_name(name))['counters']
  return sum(c.committed if c.committed is not None else c.attempted
             for c in counters)


# --- The whole job, staged and committed ----------------------------------------------


def check_output(output_dir: str, overwrite: bool) -> None:
  try:
    batch_output.check_absent(output_dir, overwrite)
  except batch_output.OutputExistsError as e:
    raise BatchPredictionError(str(e)) from None


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
  newest); it, the input and the output may be local paths or URLs such as
  gs://. Raises BatchPredictionError for a user mistake; any other exception
  is the job failing. Either way `output_dir` is left as it was.
  """
  started = time.monotonic()
  if input_format not in INPUT_FORMATS:
    raise BatchPredictionError(f'unknown input format {input_format!r}: use '
                               f'{" or ".join(INPUT_FORMATS)}.')
  if batch_size < 1 or top_k < 0:
    raise BatchPredictionError('the batch size must be positive and top_k '
                               'not negative.')
  model_dir = resolve_model_dir(_absolute(model_dir), version)
  output_dir = _absolute(output_dir)
  check_output(output_dir, overwrite)
  files = check_input(input_pattern)
  features = _features(model_dir)
  _check_outputs(model_dir)
  columns = (parquet_columns(files[0], features, id_column)
             if input_format == PARQUET else None)

  try:
    with batch_output.staging(output_dir, overwrite) as staging:
      pipeline = beam.Pipeline(options=PipelineOptions(list(beam_args or [])))
      build_pipeline(pipeline, model_dir=model_dir,
                     input_pattern=input_pattern, input_format=input_format,
                     features=features, columns=columns, id_column=id_column,
                     batch_size=batch_size, top_k=top_k, output_dir=staging)
      result = pipeline.run()
      state = result.wait_until_finish()
      if state != PipelineState.DONE:
        raise RuntimeError(f'the Beam job ended in state {state}.')
      version_of_model = model_version(model_dir)
      predicted, errors = _counter(result, PREDICTED), _counter(result, ERRORS)
      batch_output.write_json(FileSystems.join(staging, SUMMARY_FILE), {
          'model_dir': model_dir,
          'model_version': (None if version_of_model is None
                            else str(version_of_model)),
          'input': input_pattern, 'input_format': input_format,
          'input_files': len(files), 'predicted': predicted,
          'errors': errors, 'top_k': top_k,
          'seconds': round(time.monotonic() - started, 3)})
      batch_output.commit(staging, output_dir, overwrite)
  except batch_output.OutputExistsError as e:  # made while the job ran
    raise BatchPredictionError(str(e)) from None
  return BatchResult(output_dir, model_dir, version_of_model, predicted,
                     errors, time.monotonic() - started)


# --- Command line ---------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='repairml predict',
      description='Batch prediction: a Beam job that predicts every session '
                  'of a set of files with the pushed model.')
  parser.add_argument('--input', required=True,
                      help='file pattern of the sessions, local or gs://, '
                           'e.g. "data/sessions/span-*/*.parquet"')
  parser.add_argument('--output', required=True,
                      help='directory to create with the predictions, local '
                           'or gs://')
  parser.add_argument('--model', default=None,
                      help='a serving directory of pushed versions or a '
                           'SavedModel, local or gs:// (default: the '
                           "configuration's paths.serving_dir)")
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
    model_dir = resolve_model_dir(args.model or config.paths.serving_dir,
                                  args.version)
    check_output(_absolute(args.output), args.overwrite)
    check_input(args.input)
  except (ConfigError, BatchPredictionError) as e:
    return _fail(EXIT_USAGE, str(e))

  # pylint: disable-next=g-import-not-at-top
  from pipeline import progress
  log_file = config.paths.log_file
  failure = None
  with progress.output_to_log_file(log_file) as terminal:
    terminal.write(f'log: {log_file}\n')
    version = model_version(model_dir)
    terminal.write(f'model: version {version} ({model_dir})\n' if version
                   is not None else f'model: {model_dir}\n')
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
