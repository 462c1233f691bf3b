"""Loads and validates the one configuration object that describes a run.

A run of repairml is described by a YAML file (configs/local.yaml by default).
Features and labels are data, not code: pointing repairml at another table only
means editing the YAML. Everything is checked when the file is loaded, so an
invalid configuration fails before any component runs, with a message naming
the file, the key and what is wrong with it.
"""

import dataclasses
import os
import re
import typing
from typing import Any, Dict, List, Optional

import yaml

DEFAULT_CONFIG_PATH = 'configs/local.yaml'
# The losses models/losses.py implements; listed here so that loading a
# configuration needs no TensorFlow.
LOSS_NAMES = ('binary_crossentropy', 'weighted_binary_crossentropy', 'focal',
              'soft_macro_f1')


class ConfigError(ValueError):
  """The configuration file is invalid; the message says where and why."""


@dataclasses.dataclass(frozen=True)
class DataSource:
  """Where the sessions come from and which column identifies a session."""
  format: str                      # parquet | csv | bigquery
  root: str = ''                   # parquet, csv: the pattern is relative to it
  pattern: str = 'span-*/*.parquet'
  id_column: str = 'session_id'
  sample_fraction: float = 1.0     # keep this share of sessions, by id hash
  # bigquery: the source table (project.dataset.table), and the defaults of
  # the pipeline's runtime parameters that filter it ('' = no filter).
  table: str = ''
  car_model: str = ''
  date_from: str = ''              # YYYY-MM-DD, inclusive
  date_to: str = ''                # YYYY-MM-DD, inclusive


DATA_FORMATS = ('parquet', 'csv', 'bigquery')


@dataclasses.dataclass(frozen=True)
class Features:
  """Model inputs by kind; each name is a column of the source table."""
  numeric: List[str]
  categorical: List[str]
  multivalent: List[str]
  max_values_per_row: int = 8      # list features are truncated to this
  vocabulary_top_k: int = 1000     # per categorical feature, plus an OOV bucket
  # Explicit interactions: pairs of categorical or multivalent features whose
  # value combinations get their own weights, e.g. [dtcs, engine_type].
  crosses: List[List[str]] = dataclasses.field(default_factory=list)

  @property
  def all(self) -> List[str]:
    return self.numeric + self.categorical + self.multivalent


@dataclasses.dataclass(frozen=True)
class Label:
  """The label column (a list of label names per row) and its vocabulary."""
  column: str
  vocabulary: List[str]


@dataclasses.dataclass(frozen=True)
class Splits:
  """Hash-bucket weights of the session-id split."""
  train: int = 8
  eval: int = 1
  test: int = 1


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """What a model must achieve on the test split to be blessed."""
  macro_f1_lower_bound: float = 0.3
  # The candidate may trail the latest blessed model by at most this much.
  max_macro_f1_drop: float = 0.01
  # The fairness guard: no configured slice with at least min_slice_examples
  # test examples may have a macro F1 below slice_macro_f1_floor.
  slice_macro_f1_floor: float = 0.25
  min_slice_examples: int = 200


@dataclasses.dataclass(frozen=True)
class Training:
  """Trainer settings, and the hyperparameters used when tuning is off."""
  train_steps: int = 2000
  eval_steps: int = 50
  batch_size: int = 256
  seed: int = 42
  learning_rate: float = 0.003
  hidden_units: int = 128
  hidden_layers: int = 2
  embedding_dim: int = 16
  dropout: float = 0.1
  # binary_crossentropy | weighted_binary_crossentropy | focal | soft_macro_f1
  loss: str = 'binary_crossentropy'
  focal_gamma: float = 2.0
  # Stop when eval macro F1 has not improved for this many epochs.
  early_stopping_patience: int = 3


@dataclasses.dataclass(frozen=True)
class Tuning:
  """KerasTuner budget; small by default so local runs stay fast."""
  enabled: bool = True
  max_trials: int = 3
  steps_per_trial: int = 300


@dataclasses.dataclass(frozen=True)
class Paths:
  """Where a run keeps its artifacts, metadata, pushed models and logs."""
  pipeline_root: str = 'runs/pipeline'
  metadata: str = 'runs/metadata.sqlite'
  serving_dir: str = 'runs/serving'
  log_file: str = 'runs/logs/repairml.log'


@dataclasses.dataclass(frozen=True)
class Dataflow:
  """Where the Beam components run in production."""
  temp_location: str               # gs://...
  machine_type: str = 'n1-standard-4'
  max_num_workers: int = 10


@dataclasses.dataclass(frozen=True)
class WorkerPool:
  """Vertex Training machines of the Trainer, or of each Tuner trial."""
  machine_type: str = 'n1-standard-8'
  parallel_trials: int = 1         # Tuner only: trials that run at once


@dataclasses.dataclass(frozen=True)
class Endpoint:
  """The Vertex AI Model the Pusher adds versions to, and its endpoint."""
  model_display_name: str
  endpoint_display_name: str
  serving_image: str = ('us-docker.pkg.dev/vertex-ai/prediction/'
                        'tf2-cpu.2-17:latest')
  machine_type: str = 'n1-standard-4'
  min_replica_count: int = 1
  max_replica_count: int = 2
  # The new version's share of the endpoint's traffic: a canary below 100.
  traffic_percentage: int = 10
  # Versions of the Model left deployed after a push; older ones are
  # undeployed (the default version stays while keep_deployed > 1).
  keep_deployed: int = 2


@dataclasses.dataclass(frozen=True)
class Vertex:
  """Production on Google Cloud: Vertex AI Pipelines, Dataflow, Vertex
  Training and Vertex AI endpoints."""
  project: str
  region: str
  service_account: str
  image: str                       # the component image, without its tag
  dataflow: Dataflow
  endpoint: Endpoint
  trainer: WorkerPool = WorkerPool()
  tuner: WorkerPool = WorkerPool()
  enable_caching: bool = True


@dataclasses.dataclass(frozen=True)
class Config:
  """A whole run description. Paths are absolute once loaded."""
  pipeline_name: str
  data: DataSource
  features: Features
  label: Label
  schema: str
  slices: List[List[str]]
  splits: Splits = Splits()
  evaluation: Evaluation = Evaluation()
  training: Training = Training()
  tuning: Tuning = Tuning()
  paths: Paths = Paths()
  beam_args: List[str] = dataclasses.field(default_factory=list)
  vertex: Optional[Vertex] = None  # set: the run is compiled for Vertex AI
  source_path: str = '<memory>'

  @property
  def num_labels(self) -> int:
    return len(self.label.vocabulary)

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


def load_config(path: str = DEFAULT_CONFIG_PATH) -> Config:
  """Reads, validates and returns the configuration at `path`."""
  if not os.path.isfile(path):
    raise ConfigError(
        f'{path}: no such configuration file. Pass --config with the path of '
        f'a YAML file such as {DEFAULT_CONFIG_PATH}.')
  return config_from_dict(_read_with_base(path), source_path=path)


def _read_with_base(path: str, seen=()) -> Any:
  """The YAML at `path`, laid over the file its `base` key names, if any.

  A production configuration is the local one plus what differs: mappings
  merge key by key, any other value (a list, a number) replaces the base's.
  """
  if path in seen:
    raise ConfigError(f'{path}: base: the files name each other as base.')
  if not os.path.isfile(path):
    raise ConfigError(f'{seen[-1]}: base: no such configuration file {path}.')
  with open(path, encoding='utf-8') as f:
    try:
      raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
      raise ConfigError(f'{path}: not valid YAML: {e}') from None
  if not isinstance(raw, dict) or 'base' not in raw:
    return raw
  raw = dict(raw)
  base = raw.pop('base')
  if not isinstance(base, str):
    raise ConfigError(f'{path}: base: must be the path of another '
                      f'configuration file, got {base!r}.')
  base_path = os.path.join(os.path.dirname(path), base)
  return _merged(_read_with_base(base_path, seen + (path,)), raw)


def _merged(base: Any, override: Any) -> Any:
  if not (isinstance(base, dict) and isinstance(override, dict)):
    return override
  merged = dict(base)
  for key, value in override.items():
    merged[key] = _merged(base.get(key), value)
  return merged


def config_from_dict(raw: Any, source_path: str = '<memory>') -> Config:
  """Validates a parsed YAML mapping and builds the Config."""
  if not isinstance(raw, dict):
    raise ConfigError(f'{source_path}: the file must hold a mapping of keys, '
                      f'got {type(raw).__name__}.')
  raw = dict(raw, source_path=source_path)
  config = _build(Config, raw, source_path, where='')
  _check_semantics(config, source_path)
  return _with_absolute_paths(config)


def _build(cls, raw: Dict[str, Any], source: str, where: str):
  """Builds dataclass `cls` from `raw`, rejecting unknown and mistyped keys."""
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(raw) - set(fields))
  if unknown:
    raise ConfigError(f'{source}: {where}{unknown[0]}: unknown key. Known keys '
                      f'here are: {", ".join(sorted(fields))}.')
  hints = typing.get_type_hints(cls)
  values = {}
  for name, field in fields.items():
    key = f'{where}{name}'
    if name not in raw:
      if (field.default is dataclasses.MISSING and
          field.default_factory is dataclasses.MISSING):
        raise ConfigError(f'{source}: {key}: required key is missing.')
      continue
    values[name] = _coerce(hints[name], raw[name], source, key)
  return cls(**values)


def _coerce(hint, value, source: str, key: str):
  """Checks `value` against the type hint `hint` and converts nested parts."""
  origin = typing.get_origin(hint)
  if origin is typing.Union:  # Optional[X]
    inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
    return None if value is None else _coerce(inner, value, source, key)
  if dataclasses.is_dataclass(hint):
    if not isinstance(value, dict):
      raise ConfigError(f'{source}: {key}: must be a mapping of keys, '
                        f'got {value!r}.')
    return _build(hint, value, source, where=f'{key}.')
  if origin in (list, List):
    if not isinstance(value, list):
      raise ConfigError(f'{source}: {key}: must be a list, got {value!r}.')
    (item_hint,) = typing.get_args(hint)
    return [_coerce(item_hint, v, source, f'{key}[{i}]')
            for i, v in enumerate(value)]
  if hint is float and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if hint in (int, float) and isinstance(value, bool):
    raise ConfigError(f'{source}: {key}: must be a number, got {value!r}.')
  if not isinstance(value, hint):
    raise ConfigError(f'{source}: {key}: must be of type {hint.__name__}, '
                      f'got {value!r}.')
  return value


def _check_semantics(config: Config, source: str) -> None:
  """Checks the rules that types alone cannot express."""

  def fail(key: str, problem: str):
    raise ConfigError(f'{source}: {key}: {problem}')

  if not re.fullmatch(r'[a-z][a-z0-9-]{0,63}', config.pipeline_name):
    fail('pipeline_name', 'use lower-case letters, digits and dashes, '
         f'starting with a letter (got {config.pipeline_name!r}).')
  data = config.data
  if data.format not in DATA_FORMATS:
    fail('data.format', f'must be one of {", ".join(DATA_FORMATS)}, got '
         f'{data.format!r}.')
  if data.format == 'bigquery':
    _check_bigquery_source(config, fail)
  elif not data.root:
    fail('data.root', f'the {data.format} files need a root directory.')
  if not 0.0 < config.data.sample_fraction <= 1.0:
    fail('data.sample_fraction', 'must be in (0, 1], got '
         f'{config.data.sample_fraction}.')

  features = config.features
  if not features.all:
    fail('features', 'declare at least one numeric, categorical or '
         'multivalent feature.')
  seen = set()
  for kind in ('numeric', 'categorical', 'multivalent'):
    for i, name in enumerate(getattr(features, kind)):
      if name in seen:
        fail(f'features.{kind}[{i}]', f'{name!r} is declared twice.')
      if name in (config.label.column, config.data.id_column):
        fail(f'features.{kind}[{i}]', f'{name!r} is the label or id column '
             'and cannot be a feature.')
      seen.add(name)
  for i, pair in enumerate(features.crosses):
    if len(pair) != 2 or pair[0] == pair[1]:
      fail(f'features.crosses[{i}]', 'a cross is a pair of two different '
           f'features, got {pair}.')
    for name in pair:
      if name not in features.categorical + features.multivalent:
        fail(f'features.crosses[{i}]', f'{name!r} is not a declared '
             'categorical or multivalent feature.')
  _positive(fail, 'features.max_values_per_row', features.max_values_per_row)
  _positive(fail, 'features.vocabulary_top_k', features.vocabulary_top_k)

  vocabulary = config.label.vocabulary
  if len(vocabulary) < 2:
    fail('label.vocabulary', 'list at least two label names.')
  duplicates = sorted({v for v in vocabulary if vocabulary.count(v) > 1})
  if duplicates:
    fail('label.vocabulary', f'label names must be unique; repeated: '
         f'{", ".join(duplicates)}.')

  for i, slice_keys in enumerate(config.slices):
    if not slice_keys:
      fail(f'slices[{i}]', 'a slice needs at least one feature name.')
    for name in slice_keys:
      if name not in features.categorical + features.multivalent:
        fail(f'slices[{i}]', f'{name!r} is not a declared categorical or '
             'multivalent feature.')

  for name in ('train', 'eval', 'test'):
    _positive(fail, f'splits.{name}', getattr(config.splits, name))

  evaluation = config.evaluation
  if not 0.0 <= evaluation.macro_f1_lower_bound <= 1.0:
    fail('evaluation.macro_f1_lower_bound', 'must be in [0, 1].')
  if not 0.0 <= evaluation.max_macro_f1_drop <= 1.0:
    fail('evaluation.max_macro_f1_drop', 'must be in [0, 1].')
  if not 0.0 <= evaluation.slice_macro_f1_floor <= 1.0:
    fail('evaluation.slice_macro_f1_floor', 'must be in [0, 1].')
  _positive(fail, 'evaluation.min_slice_examples',
            evaluation.min_slice_examples)

  training = config.training
  for name in ('train_steps', 'eval_steps', 'batch_size', 'hidden_units',
               'hidden_layers', 'embedding_dim'):
    _positive(fail, f'training.{name}', getattr(training, name))
  if not 0.0 < training.learning_rate < 1.0:
    fail('training.learning_rate', 'must be in (0, 1).')
  if not 0.0 <= training.dropout < 1.0:
    fail('training.dropout', 'must be in [0, 1).')
  if training.loss not in LOSS_NAMES:
    fail('training.loss', f'must be one of {", ".join(LOSS_NAMES)}, got '
         f'{training.loss!r}.')
  if training.focal_gamma < 0:
    fail('training.focal_gamma', 'must be at least 0.')
  _positive(fail, 'training.early_stopping_patience',
            training.early_stopping_patience)
  _positive(fail, 'tuning.max_trials', config.tuning.max_trials)
  _positive(fail, 'tuning.steps_per_trial', config.tuning.steps_per_trial)

  for i, arg in enumerate(config.beam_args):
    if not arg.startswith('--'):
      fail(f'beam_args[{i}]', f'Beam arguments look like --name=value, '
           f'got {arg!r}.')
  if config.vertex is not None:
    _check_vertex(config, fail)


def _check_bigquery_source(config: Config, fail) -> None:
  """The table and filter defaults must make a valid, safe query."""
  from pipeline.production import bigquery  # pylint: disable=g-import-not-at-top
  data = config.data
  if not data.table:
    fail('data.table', 'a bigquery source needs its table, as '
         'project.dataset.table.')
  try:
    bigquery.split_queries(
        data.table, source_columns(config), data.id_column,
        dataclasses.asdict(config.splits),
        session_filter=bigquery.SessionFilter(data.car_model, data.date_from,
                                              data.date_to))
  except bigquery.QueryError as e:
    # The builder names its arguments; say which configuration keys they are.
    field, problem = str(e).split(': ', 1)
    fail('data.' + field.replace('session_filter.', ''), problem)


def source_columns(config: Config) -> List[str]:
  """The columns a run reads from its source: id, features and label."""
  return [config.data.id_column] + config.features.all + [config.label.column]


def _check_vertex(config: Config, fail) -> None:
  vertex = config.vertex
  for key in ('project', 'region', 'service_account', 'image'):
    if not getattr(vertex, key):
      fail(f'vertex.{key}', 'must not be empty.')
  for key, path in (('paths.pipeline_root', config.paths.pipeline_root),
                    ('vertex.dataflow.temp_location',
                     vertex.dataflow.temp_location)):
    if not path.startswith('gs://'):
      fail(key, f'on Vertex AI this must be a gs:// URI, got {path!r}.')
  if ':' in vertex.image.rsplit('/', 1)[-1]:
    fail('vertex.image', 'leave the tag out: the compiled pipeline tags the '
         'image with the git commit (or --image-tag).')
  if config.data.format != 'bigquery':
    fail('data.format', 'on Vertex AI the sessions come from bigquery.')
  _positive(fail, 'vertex.dataflow.max_num_workers',
            vertex.dataflow.max_num_workers)
  _positive(fail, 'vertex.tuner.parallel_trials', vertex.tuner.parallel_trials)
  endpoint = vertex.endpoint
  if not 0 <= endpoint.traffic_percentage <= 100:
    fail('vertex.endpoint.traffic_percentage', 'must be in [0, 100], got '
         f'{endpoint.traffic_percentage}.')
  _positive(fail, 'vertex.endpoint.min_replica_count',
            endpoint.min_replica_count)
  _positive(fail, 'vertex.endpoint.keep_deployed', endpoint.keep_deployed)
  if endpoint.max_replica_count < endpoint.min_replica_count:
    fail('vertex.endpoint.max_replica_count',
         'must be at least min_replica_count.')


def _positive(fail, key: str, value: int) -> None:
  if value <= 0:
    fail(key, f'must be a positive number, got {value}.')


def _absolute(path: str) -> str:
  """Local relative paths become absolute; URIs such as gs://... stay as is."""
  return path if '://' in path else os.path.abspath(path)


def _with_absolute_paths(config: Config) -> Config:
  """Resolves relative paths against the working directory, as TFX needs."""
  paths = config.paths
  return dataclasses.replace(
      config,
      schema=_absolute(config.schema),
      data=dataclasses.replace(
          config.data,
          root=_absolute(config.data.root) if config.data.root else ''),
      paths=Paths(**{f.name: _absolute(getattr(paths, f.name))
                     for f in dataclasses.fields(Paths)}))
