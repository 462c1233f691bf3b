"""Loads and validates the one configuration object that describes a run.

A run of repairml is described by a YAML file (configs/local.yaml by default).
Features and labels are data, not code: pointing repairml at another table only
means editing the YAML. The file's shape is declared once, as the pydantic
models below: their types and constraints check every key, and their
validators the rules that span keys. An invalid configuration therefore fails
when it is loaded, before any component runs, with one line naming the file,
the key and what is wrong with it.
"""

import os
import re
import typing
import warnings
from typing import Annotated, Any, Dict, List, Literal, Optional, Tuple

import pydantic
import yaml
from pydantic import AfterValidator, ConfigDict, Field, field_validator
from pydantic import ValidationInfo, model_validator

from collection.rules import CollectionRules, RulesError
from pipeline import bigquery_values

DEFAULT_CONFIG_PATH = 'configs/local.yaml'

DataFormat = Literal['parquet', 'csv', 'bigquery']
DATA_FORMATS = typing.get_args(DataFormat)
# The losses models/losses.py implements; listed here so that loading a
# configuration needs no TensorFlow (tests/models/test_losses.py checks that
# the two lists agree).
LossName = Literal['binary_crossentropy', 'weighted_binary_crossentropy',
                   'focal', 'soft_macro_f1']
LOSS_NAMES = typing.get_args(LossName)
FEATURE_KINDS = ('numeric', 'categorical', 'multivalent')
# The servers the Vertex Pusher can deploy (pipeline/production/
# vertex_pusher.py; listed here so that loading needs no TFX).
ServingContainer = Literal['repairml', 'tf_serving']
# How the Trainer spreads training over devices and machines (models/
# distribution.py): one device; the GPUs of one machine; synchronous
# data-parallel over a cluster; or asynchronous with parameter servers.
Distribution = Literal['none', 'mirrored', 'multi_worker_mirrored',
                       'parameter_server']
# Where the Tuner's search is decided: KerasTuner's Bayesian oracle, or
# Vertex AI Vizier's Bayesian optimisation service (Vertex AI only).
TunerService = Literal['keras_tuner', 'vizier']
# Vertex AI's prebuilt TF Serving image, at least as new as the training TF.
TF_SERVING_IMAGE = ('us-docker.pkg.dev/vertex-ai/prediction/'
                    'tf2-cpu.2-17:latest')

# A key's place in the file, as pydantic reports it: ('features', 'numeric', 5).
Key = Tuple[Any, ...]


class ConfigError(ValueError):
  """The configuration file is invalid; the message says where and why."""


class _Invalid(ValueError):
  """A rule that spans keys failed. `key` is where, relative to the model
  whose validator checks it, so that the message can name the exact key."""

  def __init__(self, key: Key, problem: str):
    super().__init__(problem)
    self.key = key
    self.problem = problem


def _refuse_key(keys: Any, key: str, problem: str) -> Any:
  """A section's raw keys, unless they hold `key`, which a configuration
  used to have: then the error says what to write instead."""
  if isinstance(keys, dict) and key in keys:
    raise _Invalid((key,), problem)
  return keys


class _Section(pydantic.BaseModel):
  """A part of the file: frozen, no unknown keys, and no conversions (a YAML
  string or a bool is not a number; an int is still accepted as a float)."""
  model_config = ConfigDict(extra='forbid', frozen=True, strict=True)


class DataSource(_Section):
  """Where the sessions come from and which column identifies a session."""
  format: DataFormat
  root: str = ''                   # parquet, csv: the pattern is relative to it
  pattern: str = 'span-*/*.parquet'
  id_column: str = 'session_id'
  # Keep this share of sessions, by id hash.
  sample_fraction: float = Field(1.0, gt=0, le=1)
  # bigquery: the source table (project.dataset.table), and the defaults of
  # the pipeline's runtime parameters that filter it ('' = no filter).
  table: str = ''
  car_model: str = ''
  date_from: str = ''              # YYYY-MM-DD, inclusive
  date_to: str = ''                # YYYY-MM-DD, inclusive

  @model_validator(mode='after')
  def _source_can_be_read(self) -> 'DataSource':
    if self.format != 'bigquery':
      if not self.root:
        raise _Invalid(('root',),
                       f'the {self.format} files need a root directory.')
      return self
    if not self.table:
      raise _Invalid(('table',), 'a bigquery source needs its table, as '
                     'project.dataset.table.')
    # The production query builder applies the same checks; the filter's
    # fields (car_model, date_from, date_to) are this section's keys.
    try:
      bigquery_values.check_table(self.table)
      bigquery_values.checked_filter(bigquery_values.SessionFilter(
          self.car_model, self.date_from, self.date_to))
    except bigquery_values.QueryError as e:
      raise _Invalid((e.field,), e.problem) from None
    return self


class Features(_Section):
  """Model inputs by kind; each name is a column of the source table."""
  numeric: List[str]
  categorical: List[str]
  multivalent: List[str]
  # List features are truncated to this.
  max_values_per_row: int = Field(8, gt=0)
  # Per categorical feature, plus an OOV bucket.
  vocabulary_top_k: int = Field(1000, gt=0)
  # Explicit interactions: pairs of categorical or multivalent features whose
  # value combinations get their own weights, e.g. [dtcs, engine_type].
  crosses: List[List[str]] = Field(default_factory=list)

  @property
  def all(self) -> List[str]:
    return self.numeric + self.categorical + self.multivalent

  @model_validator(mode='after')
  def _each_feature_once_and_crosses_of_two(self) -> 'Features':
    if not self.all:
      raise _Invalid((), 'declare at least one numeric, categorical or '
                     'multivalent feature.')
    seen = set()
    for kind in FEATURE_KINDS:
      for i, name in enumerate(getattr(self, kind)):
        if name in seen:
          raise _Invalid((kind, i), f'{name!r} is declared twice.')
        seen.add(name)
    crossable = self.categorical + self.multivalent
    for i, pair in enumerate(self.crosses):
      if len(pair) != 2 or pair[0] == pair[1]:
        raise _Invalid(('crosses', i), 'a cross is a pair of two different '
                       f'features, got {pair}.')
      for name in pair:
        if name not in crossable:
          raise _Invalid(('crosses', i), f'{name!r} is not a declared '
                         'categorical or multivalent feature.')
    return self


class Label(_Section):
  """The label column (a list of label names per row) and its vocabulary."""
  column: str
  vocabulary: List[str]

  @model_validator(mode='after')
  def _two_or_more_unique_names(self) -> 'Label':
    if len(self.vocabulary) < 2:
      raise _Invalid(('vocabulary',), 'list at least two label names.')
    duplicates = sorted({v for v in self.vocabulary
                         if self.vocabulary.count(v) > 1})
    if duplicates:
      raise _Invalid(('vocabulary',), 'label names must be unique; repeated: '
                     f'{", ".join(duplicates)}.')
    return self


class Splits(_Section):
  """Hash-bucket weights of the session-id split."""
  train: int = Field(8, gt=0)
  eval: int = Field(1, gt=0)
  test: int = Field(1, gt=0)


class Evaluation(_Section):
  """What a model must achieve on the test split to be blessed."""
  macro_f1_lower_bound: float = Field(0.3, ge=0, le=1)
  # The candidate may trail the latest blessed model by at most this much.
  max_macro_f1_drop: float = Field(0.01, ge=0, le=1)
  # The fairness guard: no configured slice with at least min_slice_examples
  # test examples may have a macro F1 below slice_macro_f1_floor.
  slice_macro_f1_floor: float = Field(0.25, ge=0, le=1)
  min_slice_examples: int = Field(200, gt=0)


class Training(_Section):
  """Trainer settings, and the hyperparameters used when tuning is off."""
  train_steps: int = Field(2000, gt=0)
  eval_steps: int = Field(50, gt=0)
  batch_size: int = Field(256, gt=0)
  seed: int = 42
  learning_rate: float = Field(0.003, gt=0, lt=1)
  hidden_units: int = Field(128, gt=0)
  hidden_layers: int = Field(2, gt=0)
  embedding_dim: int = Field(16, gt=0)
  dropout: float = Field(0.1, ge=0, lt=1)
  loss: LossName = 'binary_crossentropy'
  focal_gamma: float = Field(2.0, ge=0)
  # Stop when eval macro F1 has not improved for this many epochs.
  early_stopping_patience: int = Field(3, gt=0)
  # none, mirrored (the GPUs of one machine), multi_worker_mirrored or
  # parameter_server (a cluster: on Vertex AI, vertex.trainer's pools).
  # batch_size is the global batch: one step is one update on batch_size
  # sessions under every strategy.
  distribution: Distribution = 'none'


class Tuning(_Section):
  """KerasTuner budget; small by default so local runs stay fast."""
  enabled: bool = True
  max_trials: int = Field(3, gt=0)
  steps_per_trial: int = Field(300, gt=0)


class Paths(_Section):
  """Where a run keeps its artifacts, metadata, pushed models and logs."""
  pipeline_root: str = 'runs/pipeline'
  metadata: str = 'runs/metadata.sqlite'
  serving_dir: str = 'runs/serving'
  log_file: str = 'runs/logs/repairml.log'


class MySqlStore(_Section):
  """ML Metadata on a shared MySQL or MariaDB server. The passwords come from
  the environment, never from the file: the writer's (`repairml run`) from
  password_env, the reader's (the read-only metadata commands) from
  reader_password_env."""
  host: str = Field('127.0.0.1', min_length=1)
  port: int = Field(3306, ge=1, le=65535)
  database: str = Field(min_length=1)
  user: str = Field(min_length=1)
  password_env: str = 'REPAIRML_METADATA_PASSWORD'
  # The read-only commands connect as this user ('' = as user).
  reader_user: str = ''
  reader_password_env: str = 'REPAIRML_METADATA_READER_PASSWORD'

  @field_validator('database')
  @classmethod
  def _plain_database_name(cls, database: str) -> str:
    # MLMD puts the name into its SQL unquoted (CREATE DATABASE, USE).
    if not re.fullmatch(r'[A-Za-z0-9_]+', database):
      raise ValueError('use letters, digits and underscores only, got '
                       f'{database!r}.')
    return database

  @field_validator('password_env', 'reader_password_env')
  @classmethod
  def _environment_variable_name(cls, name: str) -> str:
    if not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', name):
      raise ValueError('must be the name of an environment variable '
                       '(letters, digits and underscores, not starting with '
                       f'a digit), got {name!r}.')
    return name


class Metadata(_Section):
  """Where ML Metadata lives: SQLite at paths.metadata, unless mysql is set."""
  mysql: Optional[MySqlStore] = None

  @model_validator(mode='before')
  @classmethod
  def _no_password_in_the_file(cls, keys: Any) -> Any:
    key = _password_key(keys)
    if key is not None:
      variable = ('reader_password_env' if 'reader' in key[-1] else
                  'password_env')
      default = MySqlStore.model_fields[variable].default
      raise _Invalid(key, 'passwords are never read from the file: put it in '
                     f'the environment variable named by {variable} (by '
                     f'default {default}), and remove this key.')
    return keys


def _password_key(keys: Any, key: Key = ()) -> Optional[Key]:
  """Where a mapping, at any depth, holds a password itself (a key with
  'password' in its name that is not the name of a variable), or None."""
  if not isinstance(keys, dict):
    return None
  for name, value in keys.items():
    if (isinstance(name, str) and 'password' in name and
        not name.endswith('_env')):
      return key + (name,)
    found = _password_key(value, key + (name,))
    if found is not None:
      return found
  return None


class RequestLog(_Section):
  """The online server's request log, which monitoring reads."""
  # The share of requests logged (all of their sessions), 0..1.
  sample_rate: float = Field(1.0, ge=0, le=1)
  # The log is rotated at this size, keeping `backups` older files.
  max_megabytes: int = Field(100, gt=0)
  backups: int = Field(5, ge=1)


class Serving(_Section):
  """The online server's limits (serving/): TF Serving's batching
  parameters, overload control and request sizes."""
  # Concurrent requests share one model call of up to this many sessions,
  # waiting at most batch_timeout_ms for the batch to fill.
  max_batch_size: int = Field(32, gt=0)
  batch_timeout_ms: float = Field(1.0, ge=0)
  # Sessions that may wait for the model; beyond, or when a request cannot
  # be answered within deadline_ms, the answer is 503 with Retry-After.
  max_queued_sessions: int = Field(256, gt=0)
  deadline_ms: int = Field(5000, gt=0)
  max_connections: int = Field(256, gt=0)
  # Larger requests get 413.
  max_instances: int = Field(1000, gt=0)
  max_request_bytes: int = Field(1 << 20, gt=0)
  # How often the server looks for newly pushed or retired versions.
  poll_seconds: float = Field(10.0, ge=0)
  request_log: RequestLog = Field(default_factory=RequestLog)


class Dataflow(_Section):
  """Where the Beam components run in production."""
  temp_location: str
  machine_type: str = 'n1-standard-4'
  max_num_workers: int = Field(10, gt=0)

  @field_validator('temp_location')
  @classmethod
  def _in_cloud_storage(cls, temp_location: str) -> str:
    if not temp_location.startswith('gs://'):
      raise ValueError('on Vertex AI this must be a gs:// URI, got '
                       f'{temp_location!r}.')
    return temp_location


class Machines(_Section):
  """One Vertex Training worker pool: how many machines, of which type, with
  which accelerators (Vertex AI's AcceleratorType names, e.g. NVIDIA_TESLA_T4
  or NVIDIA_L4)."""
  replica_count: int = Field(1, ge=0)
  machine_type: str = Field('n1-standard-8', min_length=1)
  accelerator_type: str = ''      # '' = none
  accelerator_count: int = Field(0, ge=0)

  @model_validator(mode='after')
  def _accelerators_have_a_type_and_a_count(self) -> 'Machines':
    return _check_accelerators(self)


def _check_accelerators(pool):
  if bool(pool.accelerator_type) != (pool.accelerator_count > 0):
    key = 'accelerator_count' if pool.accelerator_type else 'accelerator_type'
    raise _Invalid((key,), 'set accelerator_type and accelerator_count '
                   'together (a type such as NVIDIA_TESLA_T4 and a count of '
                   'at least 1), or neither.')
  return pool


def _no_replicas() -> Machines:
  return Machines(replica_count=0)


def _untagged_image(image: str) -> str:
  if not image:
    raise ValueError('must not be empty.')
  if ':' in image.rsplit('/', 1)[-1] or '@' in image:
    raise ValueError('leave the tag out: the compiled pipeline tags the '
                     'image with the git commit (or --image-tag).')
  return image


class TrainerCluster(_Section):
  """The Trainer's Vertex Training cluster. Vertex AI starts every replica
  with the component image and sets TF_CONFIG, from which run_fn builds
  training.distribution's strategy: the chief trains and exports, workers
  compute, parameter servers hold the variables."""
  # The image every replica runs, without its tag ('' = vertex.image): e.g.
  # a GPU build of the component image. It gets the component image's tag.
  image: str = ''
  chief: Machines = Field(default_factory=Machines)
  workers: Machines = Field(default_factory=_no_replicas)
  parameter_servers: Machines = Field(default_factory=_no_replicas)

  @model_validator(mode='before')
  @classmethod
  def _machine_type_moved(cls, keys: Any) -> Any:
    return _refuse_key(keys, 'machine_type', 'moved: set vertex.trainer.'
                       'chief.machine_type (and workers and parameter_servers '
                       'for a cluster).')

  @field_validator('chief')
  @classmethod
  def _one_chief(cls, chief: Machines) -> Machines:
    if chief.replica_count != 1:
      raise ValueError('a cluster has exactly one chief: set replica_count '
                       f'to 1 (got {chief.replica_count}), or leave it out.')
    return chief

  @field_validator('image')
  @classmethod
  def _untagged_image(cls, image: str) -> str:
    return _untagged_image(image) if image else image


class TunerFlock(_Section):
  """The Tuner's Vertex Training machines, each running trials, and who
  decides the trials."""
  machine_type: str = Field('n1-standard-8', min_length=1)
  accelerator_type: str = ''
  accelerator_count: int = Field(0, ge=0)
  # Trials that run at once, one per machine.
  parallel_trials: int = Field(1, gt=0)
  # keras_tuner: KerasTuner's Bayesian oracle on the first machine; vizier:
  # a Vertex AI Vizier study, created or resumed by the Tuner's name.
  service: TunerService = 'keras_tuner'

  @model_validator(mode='after')
  def _accelerators_have_a_type_and_a_count(self) -> 'TunerFlock':
    return _check_accelerators(self)


class Endpoint(_Section):
  """The Vertex AI Model the Pusher adds versions to, and its endpoint."""
  model_display_name: str
  endpoint_display_name: str
  # What serves each version: repairml, the serving image (vertex.
  # serving_image), with the contract of `repairml serve`; or tf_serving,
  # Vertex AI's prebuilt TF Serving image (tf_serving_image), which answers
  # with bare tensors.
  serving_container: ServingContainer = 'repairml'
  tf_serving_image: str = Field(TF_SERVING_IMAGE, min_length=1)
  machine_type: str = 'n1-standard-4'
  min_replica_count: int = Field(1, gt=0)
  max_replica_count: int = 2
  # The new version's share of the endpoint's traffic: a canary below 100.
  traffic_percentage: int = Field(10, ge=0, le=100)
  # Versions of the Model left deployed after a push; older ones are
  # undeployed (the default version stays while keep_deployed > 1).
  keep_deployed: int = Field(2, gt=0)

  @model_validator(mode='before')
  @classmethod
  def _no_serving_image(cls, keys: Any) -> Any:
    return _refuse_key(keys, 'serving_image', 'no longer read: the Pusher '
                       'deploys the repairml serving image (vertex.'
                       'serving_image) by default; for the prebuilt TF '
                       'Serving image set serving_container: tf_serving and '
                       'tf_serving_image.')

  @model_validator(mode='after')
  def _replica_range(self) -> 'Endpoint':
    if self.max_replica_count < self.min_replica_count:
      raise _Invalid(('max_replica_count',), 'must be at least '
                     f'min_replica_count ({self.min_replica_count}), got '
                     f'{self.max_replica_count}.')
    return self


class VertexCollection(_Section):
  """The data collection pipeline on Google Cloud (`repairml compile
  --pipeline collection`): BigQuery selects the raw rows, Dataproc Serverless
  runs the collection job, the component image loads and publishes."""
  # The BigQuery dataset of the raw tables (data/raw_sources.sql), as
  # project.dataset.
  raw_dataset: str
  # BigQuery's location of raw_dataset and of the exploration table, e.g. EU
  # or europe-west4.
  bigquery_location: str = Field(min_length=1)
  # A gs:// folder for one run's intermediate files: selection/ (the BigQuery
  # export) and job/ (the Spark job's output). Each run overwrites it, so runs
  # must not overlap (a schedule starts one at a time).
  staging_uri: str
  # The collection job on Cloud Storage: its main file (a copy of
  # collection/job.py) and a zip of the collection package it imports
  # (zip -r collection.zip collection, from the repository root).
  job_main_uri: str
  job_package_uri: str
  # The Dataproc Serverless runtime: 2.2 is Spark 3.5 on Python 3.12.
  dataproc_runtime_version: str = '2.2'
  # The account the batch runs as ('' = vertex.service_account), and its
  # subnetwork ('' = the default network's subnet of the region; it needs
  # Private Google Access).
  service_account: str = ''
  subnetwork_uri: str = ''
  # When `repairml submit --pipeline collection --schedule` is given no cron:
  # daily at 04:00 UTC, after the night's uploads and claims have landed.
  schedule: str = '0 4 * * *'
  # The BigQuery dataset (project.dataset, in bigquery_location) of the
  # data-quality statistics tables the last step loads
  # (collection/bigquery_stats.py); '' = the exploration table's dataset.
  statistics_dataset: str = ''

  @field_validator('raw_dataset', 'statistics_dataset')
  @classmethod
  def _a_dataset(cls, dataset: str, info: ValidationInfo) -> str:
    if info.field_name == 'statistics_dataset' and not dataset:
      return dataset
    if not re.fullmatch(r'([a-z][a-z0-9-]{4,28}[a-z0-9]\.)?[A-Za-z0-9_]{1,1024}',
                        dataset):
      raise ValueError('must be a BigQuery dataset as project.dataset (a '
                       'project id of 6 to 30 lower-case letters, digits and '
                       'hyphens; a dataset name of letters, digits and '
                       f'underscores), got {dataset!r}.')
    return dataset

  @field_validator('staging_uri', 'job_main_uri', 'job_package_uri')
  @classmethod
  def _in_cloud_storage(cls, uri: str) -> str:
    if not re.fullmatch(r'gs://[a-z0-9][a-z0-9._-]{1,221}[a-z0-9](/[A-Za-z0-9._~=+-]+)*/?', uri):
      raise ValueError('must be a gs://BUCKET/PATH URI of letters, digits '
                       f'and . _ - ~ = +, got {uri!r}.')
    return uri.rstrip('/')


class Vertex(_Section):
  """Production on Google Cloud: Vertex AI Pipelines, Dataflow, Vertex
  Training and Vertex AI endpoints."""
  project: str = Field(min_length=1)
  region: str = Field(min_length=1)
  service_account: str = Field(min_length=1)
  # The component image, without its tag.
  image: str = Field(min_length=1)
  # The serving image (make push-serving-image), without its tag: the
  # compiled pipeline gives it the component image's tag. Default: image +
  # "-serving", where make push-serving-image puts it by default.
  serving_image: str = Field('', validate_default=True)
  dataflow: Dataflow
  endpoint: Endpoint
  trainer: TrainerCluster = Field(default_factory=TrainerCluster)
  tuner: TunerFlock = Field(default_factory=TunerFlock)
  enable_caching: bool = True
  # The collection pipeline's settings; without them it cannot be compiled.
  collection: Optional[VertexCollection] = None

  @model_validator(mode='before')
  @classmethod
  def _serving_image_beside_the_component_image(cls, keys: Any) -> Any:
    if (isinstance(keys, dict) and 'serving_image' not in keys and
        isinstance(keys.get('image'), str) and keys['image']):
      return {**keys, 'serving_image': keys['image'] + '-serving'}
    return keys

  @field_validator('image', 'serving_image')
  @classmethod
  def _untagged(cls, image: str) -> str:
    return _untagged_image(image)


def _beam_argument(arg: str) -> str:
  if not arg.startswith('--'):
    raise ValueError(f'Beam arguments look like --name=value, got {arg!r}.')
  return arg


class Spark(_Section):
  """Where the collection job's Spark runs locally: its own Python 3.12
  environment (make spark-env), as on Dataproc Serverless."""
  master: str = 'local[*]'
  python: str = '.venv-spark/bin/python'
  driver_memory: str = '2g'


def _collection_rules(raw: Any) -> Dict[str, Any]:
  """The rules as collection/rules.py reads them; checked on load."""
  if not isinstance(raw, dict):
    raise ValueError(f'must be a mapping of rule names to values, got {raw!r}.')
  try:
    return CollectionRules.from_dict(raw).to_dict()
  except RulesError as e:
    raise _Invalid((e.key,), e.problem + '.') from None
  except TypeError as e:
    raise ValueError(str(e)) from None


class Collection(_Section):
  """The data collection job (collection/): the raw sources it reads, the
  spans and exploration table it writes, and its join and cleaning rules."""
  # Locally, the folder `repairml data generate --raw` wrote (its parquet/).
  raw: str = 'data/raw'
  # The spans (span-K/sessions.parquet) and their manifest.json; '' is
  # data.root, where the modeling pipeline reads them.
  spans: str = ''
  # Locally a DuckDB file, holding the table `collected_sessions`.
  exploration_table: str = 'data/collected.duckdb'
  # Span K holds the sessions of the day span_epoch + K.
  span_epoch: str = Field('2026-01-01', pattern=r'^\d{4}-\d{2}-\d{2}$')
  # The job's parameters, by default ('' = no bound, every car model).
  date_from: str = ''
  date_to: str = ''
  car_model: str = ''
  # Without dates: 0 collects every day of the source; N > 0 the N days up
  # to yesterday, UTC (collection/dates.py), as a daily schedule does.
  window_days: int = Field(0, ge=0)
  rules: Annotated[Dict[str, Any], AfterValidator(_collection_rules)] = Field(
      default_factory=lambda: CollectionRules().to_dict())
  spark: Spark = Field(default_factory=Spark)

  @property
  def collection_rules(self) -> CollectionRules:
    return CollectionRules.from_dict(self.rules)


# The `schema` key shadows BaseModel.schema(), pydantic v1's deprecated name
# for model_json_schema(), which nothing calls; the key stays what users write.
warnings.filterwarnings(
    'ignore', message='Field name "schema" in "Config" shadows an attribute',
    category=UserWarning)


class Config(_Section):
  """A whole run description. Paths are absolute once loaded."""
  pipeline_name: str
  data: DataSource
  features: Features
  label: Label
  schema: str
  slices: List[List[str]]
  splits: Splits = Field(default_factory=Splits)
  evaluation: Evaluation = Field(default_factory=Evaluation)
  training: Training = Field(default_factory=Training)
  tuning: Tuning = Field(default_factory=Tuning)
  paths: Paths = Field(default_factory=Paths)
  metadata: Metadata = Field(default_factory=Metadata)
  serving: Serving = Field(default_factory=Serving)
  beam_args: List[Annotated[str, AfterValidator(_beam_argument)]] = Field(
      default_factory=list)
  collection: Collection = Field(default_factory=Collection)
  vertex: Optional[Vertex] = None  # set: the run is compiled for Vertex AI
  source_path: str = '<memory>'

  @property
  def num_labels(self) -> int:
    return len(self.label.vocabulary)

  def to_dict(self) -> Dict[str, Any]:
    """Plain values only: nested sections become dicts."""
    return self.model_dump()

  @field_validator('pipeline_name')
  @classmethod
  def _usable_as_a_resource_name(cls, name: str) -> str:
    if not re.fullmatch(r'[a-z][a-z0-9-]{0,63}', name):
      raise ValueError('use lower-case letters, digits and dashes, starting '
                       f'with a letter (got {name!r}).')
    return name

  @model_validator(mode='after')
  def _features_are_neither_label_nor_id(self) -> 'Config':
    for kind in FEATURE_KINDS:
      for i, name in enumerate(getattr(self.features, kind)):
        if name in (self.label.column, self.data.id_column):
          raise _Invalid(('features', kind, i), f'{name!r} is the label or '
                         'id column and cannot be a feature.')
    return self

  @model_validator(mode='after')
  def _slices_name_categorical_features(self) -> 'Config':
    sliceable = self.features.categorical + self.features.multivalent
    for i, slice_keys in enumerate(self.slices):
      if not slice_keys:
        raise _Invalid(('slices', i),
                       'a slice needs at least one feature name.')
      for name in slice_keys:
        if name not in sliceable:
          raise _Invalid(('slices', i), f'{name!r} is not a declared '
                         'categorical or multivalent feature.')
    return self

  @model_validator(mode='after')
  def _bigquery_columns_are_plain_names(self) -> 'Config':
    if self.data.format != 'bigquery':
      return self
    seen = set()
    for key, name in _keyed_source_columns(self):
      try:
        bigquery_values.check_column_name('column', name)
      except bigquery_values.QueryError as e:
        raise _Invalid(key, e.problem) from None
      # BigQuery column names are case-insensitive.
      if name.lower() in seen:
        raise _Invalid(key, f'{name!r} differs from another column only in '
                       'case; BigQuery column names are case-insensitive.')
      seen.add(name.lower())
    return self

  @model_validator(mode='after')
  def _vertex_runs_on_google_cloud(self) -> 'Config':
    if self.vertex is None:
      return self
    if not self.paths.pipeline_root.startswith('gs://'):
      raise _Invalid(('paths', 'pipeline_root'), 'on Vertex AI this must be '
                     f'a gs:// URI, got {self.paths.pipeline_root!r}.')
    if self.data.format != 'bigquery':
      raise _Invalid(('data', 'format'),
                     'on Vertex AI the sessions come from bigquery.')
    return self

  @model_validator(mode='after')
  def _trainer_cluster_fits_the_distribution(self) -> 'Config':
    if self.vertex is None:
      return self
    distribution = self.training.distribution
    cluster = self.vertex.trainer
    workers = cluster.workers.replica_count
    servers = cluster.parameter_servers.replica_count
    where = ('vertex', 'trainer')
    if distribution == 'parameter_server' and not (workers and servers):
      raise _Invalid(where, 'training.distribution parameter_server needs '
                     'workers and parameter_servers (replica_count of at '
                     f'least 1 each; got {workers} and {servers}).')
    if servers and distribution != 'parameter_server':
      raise _Invalid(where + ('parameter_servers', 'replica_count'),
                     f'parameter servers need training.distribution '
                     f'parameter_server (it is {distribution}); set '
                     'replica_count to 0, or change the distribution.')
    if workers and distribution in ('none', 'mirrored'):
      raise _Invalid(where + ('workers', 'replica_count'),
                     f'workers would sit idle under training.distribution '
                     f'{distribution}: set it to multi_worker_mirrored or '
                     'parameter_server, or set replica_count to 0.')
    return self


def _keyed_source_columns(config: Config) -> List[Tuple[Key, str]]:
  """(key, column) of every column a run reads from its source, in the order
  of source_columns."""
  features = [(('features', kind, i), name) for kind in FEATURE_KINDS
              for i, name in enumerate(getattr(config.features, kind))]
  return ([(('data', 'id_column'), config.data.id_column)] + features +
          [(('label', 'column'), config.label.column)])


def source_columns(config: Config) -> List[str]:
  """The columns a run reads from its source: id, features and label."""
  return [name for _, name in _keyed_source_columns(config)]


def load_config(path: str = DEFAULT_CONFIG_PATH) -> Config:
  """Reads, validates and returns the configuration at `path`."""
  if not os.path.isfile(path):
    raise ConfigError(
        f'{path}: no such configuration file. Pass --config with the path of '
        f'a YAML file such as {DEFAULT_CONFIG_PATH}.')
  return config_from_dict(_read_with_base(path), source_path=path)


def load_vertex_config(path: str) -> Config:
  """load_config, for the commands that only production configurations
  serve (compile, submit, promote)."""
  config = load_config(path)
  if config.vertex is None:
    raise ConfigError(f'{path}: vertex: this configuration has no vertex '
                      'section; see configs/vertex.yaml.')
  return config


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
  try:
    config = Config.model_validate(dict(raw, source_path=source_path))
  except pydantic.ValidationError as e:
    raise _config_error(e, source_path) from None
  return _with_absolute_paths(config)


# --- pydantic's errors, as one line that names the file and the key ---------

def _config_error(error: pydantic.ValidationError, source: str) -> ConfigError:
  """The first problem pydantic found: `{source}: {key}: {problem}`."""
  first = error.errors()[0]
  key = tuple(first['loc'])
  cause = first.get('ctx', {}).get('error')
  if isinstance(cause, _Invalid):
    key += cause.key
    problem = cause.problem
  elif first['type'] == 'value_error':  # a field validator's own message
    problem = str(cause)
  else:
    problem = _problem(first, key)
  return ConfigError(f'{source}: {_dotted(key)}: {problem}')


_TYPE_PROBLEMS = {
    'int_type': 'must be an integer',
    'float_type': 'must be a number',
    'bool_type': 'must be true or false',
    'string_type': 'must be a string',
    'list_type': 'must be a list',
    'model_type': 'must be a mapping of keys',
}
_BOUND_ERRORS = ('greater_than', 'greater_than_equal', 'less_than',
                 'less_than_equal')


def _problem(error: Dict[str, Any], key: Key) -> str:
  kind, given = error['type'], error.get('input')
  if kind == 'missing':
    return 'required key is missing.'
  if kind == 'extra_forbidden':
    section = _model_at(key[:-1])
    return (f'unknown key. Known keys here are: '
            f'{", ".join(sorted(section.model_fields))}.')
  if kind in _TYPE_PROBLEMS:
    return f'{_TYPE_PROBLEMS[kind]}, got {given!r}.'
  if kind == 'literal_error':
    return f'must be one of {error["ctx"]["expected"]}, got {given!r}.'
  if kind in _BOUND_ERRORS:
    field = _model_at(key[:-1]).model_fields[key[-1]]
    return f'{_allowed_range(field)}, got {given!r}.'
  if kind == 'string_too_short':
    return 'must not be empty.'
  return f'{error["msg"]}, got {given!r}.'


def _allowed_range(field) -> str:
  """The whole range a number field allows, e.g. 'must be in (0, 1]', not
  only the bound that was crossed."""
  bounds = {name: getattr(m, name) for m in field.metadata
            for name in ('gt', 'ge', 'lt', 'le') if hasattr(m, name)}
  low = ('(', bounds['gt']) if 'gt' in bounds else ('[', bounds.get('ge'))
  high = (')', bounds['lt']) if 'lt' in bounds else (']', bounds.get('le'))
  if high[1] is None:
    if low == ('(', 0):
      return 'must be a positive number'
    return (f'must be greater than {low[1]}' if low[0] == '(' else
            f'must be at least {low[1]}')
  return f'must be in {low[0]}{low[1]}, {high[1]}{high[0]}'


def _model_at(key: Key) -> typing.Type[pydantic.BaseModel]:
  """The model of the section at `key`, e.g. Training at ('training',)."""
  model = Config
  for part in key:
    if isinstance(part, str):  # an int is a list index: same item type
      model = _model_in(model.model_fields[part].annotation)
  return model


def _model_in(annotation) -> Optional[typing.Type[pydantic.BaseModel]]:
  """The model class in an annotation such as Optional[Vertex]."""
  if isinstance(annotation, type) and issubclass(annotation,
                                                 pydantic.BaseModel):
    return annotation
  for argument in typing.get_args(annotation):
    model = _model_in(argument)
    if model is not None:
      return model
  return None


def _dotted(key: Key) -> str:
  """('features', 'crosses', 0) -> 'features.crosses[0]'."""
  text = ''
  for part in key:
    if isinstance(part, int):
      text += f'[{part}]'
    else:
      text += f'.{part}' if text else str(part)
  return text


# --- Paths -------------------------------------------------------------------

def _absolute(path: str) -> str:
  """Local relative paths become absolute; URIs such as gs://... stay as is."""
  return path if '://' in path else os.path.abspath(path)


def _with_absolute_paths(config: Config) -> Config:
  """Resolves relative paths against the working directory, as TFX needs."""
  paths = config.paths
  return config.model_copy(update={
      'schema': _absolute(config.schema),
      'data': config.data.model_copy(update={
          'root': _absolute(config.data.root) if config.data.root else ''}),
      'paths': paths.model_copy(update={
          name: _absolute(getattr(paths, name)) for name in Paths.model_fields}),
      'collection': _collection_paths(config),
  })


def _collection_paths(config: Config) -> Collection:
  """The collection's local paths made absolute; spans '' becomes data.root.
  A BigQuery exploration table (project.dataset.table) stays as it is."""
  collection = config.collection
  table = collection.exploration_table
  local_table = table.endswith('.duckdb') or os.sep in table
  return collection.model_copy(update={
      'raw': _absolute(collection.raw),
      'spans': _absolute(collection.spans or config.data.root or '.'),
      'exploration_table': _absolute(table) if local_table else table,
      'spark': collection.spark.model_copy(update={
          'python': _absolute(collection.spark.python)}),
  })
