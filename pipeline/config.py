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
  format: str                      # parquet | csv
  root: str                        # directory the pattern is relative to
  pattern: str = 'span-*/*.parquet'
  id_column: str = 'session_id'
  sample_fraction: float = 1.0     # keep this share of sessions, by id hash


@dataclasses.dataclass(frozen=True)
class Features:
  """Model inputs by kind; each name is a column of the source table."""
  numeric: List[str]
  categorical: List[str]
  multivalent: List[str]
  max_values_per_row: int = 8      # list features are truncated to this
  vocabulary_top_k: int = 1000     # per categorical feature, plus an OOV bucket

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
  with open(path, encoding='utf-8') as f:
    try:
      raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
      raise ConfigError(f'{path}: not valid YAML: {e}') from None
  return config_from_dict(raw, source_path=path)


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
  if config.data.format not in ('parquet', 'csv'):
    fail('data.format', f'must be parquet or csv, got {config.data.format!r}.')
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
      data=dataclasses.replace(config.data, root=_absolute(config.data.root)),
      paths=Paths(**{f.name: _absolute(getattr(paths, f.name))
                     for f in dataclasses.fields(Paths)}))
