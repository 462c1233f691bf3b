"""`repairml init`: a configuration and a curated-schema start for a new table.

  repairml init --data PATTERN --label COLUMN [--id COLUMN]
                [--out configs/NAME.yaml] [--force]

reads the parquet or CSV files that PATTERN matches, exactly as the pipeline's
ExampleGen will (its own executors, so CSV type inference and parquet's
null handling are the pipeline's), and writes:

- `configs/NAME.yaml`: the same format as configs/local.yaml, with every
  column sorted into numeric, categorical or multivalent features (or skipped,
  with the reason), the label vocabulary, the id column the split hashes,
  slices, blessing floors and a training budget sized to the table, and paths
  under `runs/NAME/` so its runs never mix with the default ones;
- `schema/NAME.pbtxt`: TFDV's `infer_schema` over TFDV statistics of the whole
  table, shaped like schema/schema.pbtxt: TRAINING and SERVING environments
  (the label and the skipped columns are absent at serving), string domains,
  and L-infinity skew and drift comparators on the categorical features.

It prints what it decided and what to review. Every problem with the input is
one line, naming what and where and what to do, with exit code 2.

CSV cannot carry a list: TFX's CSV ExampleGen reads each cell as one value.
So a CSV table has no multivalent features, and its label column holds one
label name per row (or none); a multi-label table must be parquet with a
`list<string>` label column.
"""

import argparse
import collections
import copy
import dataclasses
import glob
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

USAGE_ERROR = 2
FORMATS = {'.parquet': 'parquet', '.csv': 'csv'}
NUMERIC, CATEGORICAL, MULTIVALENT = 'numeric', 'categorical', 'multivalent'
SKIPPED, ID, LABEL = 'skipped', 'id', 'label'
FEATURE_KINDS = (NUMERIC, CATEGORICAL, MULTIVALENT)

# The model gives every categorical value among the most frequent this many
# an embedding (features.vocabulary_top_k); the schema's string domains go up
# to the same size, so a domain lists every value the model knows.
VOCABULARY_TOP_K = 1000
# A string column with more distinct values than this share of its rows is an
# identifier or free text, not a category the model can learn from.
MAX_CATEGORICAL_SHARE = 0.5
# Slices: a few categorical features with at most this many values each, so
# the Evaluator computes a handful of slices rather than thousands.
MAX_SLICES, MAX_SLICE_VALUES = 3, 50
MAX_VALUES_PER_ROW_CAP = 32
# schema/schema.pbtxt's thresholds: a trickle of unseen categories is
# tolerated, a flood is an anomaly; the L-infinity distance between two
# categorical distributions above these is skew or drift.
CATEGORICAL_DOMAIN_MASS, LIST_DOMAIN_MASS = 0.99, 0.95
CATEGORICAL_COMPARATOR, LIST_DRIFT_COMPARATOR = 0.05, 0.1
# A label in fewer rows than this has about five test rows: its F1 is noise.
RARE_LABEL_ROWS = 50
# A column with a value in fewer rows than this is missing from a 10% split
# (eval, test) often enough (0.9 ** 50 is 0.5%) that requiring it there
# (TFDV's presence.min_count 1) would stop runs at the data gate by chance.
SPARSE_COLUMN_ROWS = 50
# How a CSV cell would look if someone wrote a list into it.
_CSV_LIST_MARKERS = re.compile(r'^\s*\[|[|;]')
_DATE = re.compile(rb'\d{4}-\d{2}-\d{2}([ T][0-9:.+\-Z]*)?')
# unit_id, ID, uuid, row_key; and camel case: unitId, unitID.
_ID_NAME = re.compile(r'(^|_)(id|uuid|key)$', re.IGNORECASE)
_CAMEL_CASE_ID = re.compile(r'[a-z](Id|ID)$')
_GLOB_CHARS = re.compile(r'[*?[]')


class InitError(ValueError):
  """The table cannot become a run as it is; the message says what to do."""


@dataclasses.dataclass
class Source:
  """The files of the table and how the pipeline will read them."""
  pattern: str                  # as given
  format: str                   # parquet | csv
  root: str                     # data.root
  relative_pattern: str         # data.pattern, relative to root
  files: List[str]
  columns: List[str]
  list_columns: Dict[str, str]  # parquet list columns: name -> item type


@dataclasses.dataclass
class ColumnProfile:
  """One column as the pipeline sees it: the values of its tf.Examples."""
  name: str
  dtype: str                    # int | float | string | empty
  rows: int
  present: int                  # rows with at least one value
  distinct: int
  max_values: int               # the longest row
  is_list: bool                 # a parquet list column
  date_like: bool = False
  has_list_markers: bool = False  # a CSV string such as "a|b" or "[a, b]"
  top_value: Optional[Tuple[str, int]] = None  # the most frequent, and count


@dataclasses.dataclass
class Column:
  name: str
  kind: str                     # a feature kind, or id, label, skipped
  detail: str                   # what it is; for skipped, why
  present: int = 0              # rows with a value


@dataclasses.dataclass
class Plan:
  """Everything `init` decided, from which the two files are written."""
  name: str
  source: Source
  rows: int
  columns: List[Column]
  id_column: str
  id_reason: str
  label_column: str
  label_counts: Dict[str, int]  # rows holding each label
  max_values_per_row: int
  slices: List[List[str]]
  macro_f1_floor: float
  no_information_macro_f1: float
  training: Dict[str, int]
  tuning: Dict[str, object]
  review: List[str] = dataclasses.field(default_factory=list)

  def names(self, kind: str) -> List[str]:
    return [c.name for c in self.columns if c.kind == kind]

  @property
  def vocabulary(self) -> List[str]:
    return sorted(self.label_counts)


# --- The files -------------------------------------------------------------

def split_pattern(pattern: str) -> Tuple[str, str]:
  """(data.root, data.pattern): the directory before the first glob
  character, and the rest, as FileBasedExampleGen's input_base and split
  pattern."""
  parts = pattern.split('/')
  first_glob = next((i for i, part in enumerate(parts)
                     if _GLOB_CHARS.search(part)), len(parts) - 1)
  root = '/'.join(parts[:first_glob]) or ('/' if pattern.startswith('/')
                                          else '.')
  return root, '/'.join(parts[first_glob:])


def find_source(pattern: str) -> Source:
  """The files matching `pattern`, their format and their columns."""
  files = sorted(f for f in glob.glob(pattern) if os.path.isfile(f))
  if not files:
    raise InitError(f'--data {pattern}: no files match. Give a glob of '
                    'parquet or CSV files relative to this directory, e.g. '
                    "'mydata/span-*/*.parquet' or 'mydata/*.csv' (quoted, so "
                    'the shell does not expand it).')
  formats = {FORMATS.get(os.path.splitext(f)[1].lower()) for f in files}
  if len(formats) != 1 or None in formats:
    raise InitError(f'--data {pattern}: the files must all be .parquet or all '
                    f'.csv; it matches {_examples(files)}. Narrow the '
                    'pattern, e.g. to *.parquet.')
  (data_format,) = formats
  root, relative_pattern = split_pattern(pattern)
  if data_format == 'parquet':
    columns, list_columns = _parquet_columns(files)
  else:
    columns, list_columns = _csv_columns(files), {}
  return Source(pattern, data_format, root, relative_pattern, files, columns,
                list_columns)


def _examples(items: Sequence[str], limit: int = 3) -> str:
  shown = ', '.join(items[:limit])
  return shown + (f' and {len(items) - limit} more' if len(items) > limit
                  else '')


def _parquet_columns(files: List[str]) -> Tuple[List[str], Dict[str, str]]:
  """Column names, and the item types of list columns; every file alike."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  first = None
  for path in files:
    try:
      schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
      raise InitError(f'{path}: not a readable parquet file ({e}).') from None
    if first is None:
      first = (path, schema)
    elif difference := _column_difference(schema, first[1]):
      raise InitError(f'{path}: {difference} in {first[0]}; ExampleGen reads '
                      'every file into one table, so give them the same '
                      'columns.')
  schema = first[1]
  list_columns = {}
  for field in schema:
    item = _supported_type(field, first[0])
    if item is not None:
      list_columns[field.name] = item
  return list(schema.names), list_columns


def _column_difference(schema, expected) -> str:
  """How a parquet file's columns differ from the first file's, or ''."""
  for name in expected.names:
    if name not in schema.names:
      return f'has no column {name!r}, which is'
  for name in schema.names:
    if name not in expected.names:
      return f'has a column {name!r}, which is not'
    if not schema.field(name).type.equals(expected.field(name).type):
      return (f'column {name!r} is {schema.field(name).type}, but '
              f'{expected.field(name).type}')
  return ''


def _supported_type(field, path: str) -> Optional[str]:
  """None for a scalar the pipeline converts; the item type of a list column
  ('string' or 'number'); an InitError for anything ExampleGen cannot turn
  into a tf.Example feature (row_to_example knows numbers and strings)."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  types = pa.types

  def scalar(t) -> Optional[str]:
    if types.is_dictionary(t):
      t = t.value_type
    if (types.is_string(t) or types.is_large_string(t) or types.is_binary(t)
        or types.is_large_binary(t)):
      return 'string'
    if (types.is_integer(t) or types.is_floating(t) or types.is_boolean(t) or
        types.is_decimal(t)):
      return 'number'
    if types.is_null(t):
      return 'null'
    return None

  t = field.type
  if types.is_list(t) or types.is_large_list(t):
    item = scalar(t.value_type)
  else:
    item = scalar(t)
    if item is not None:
      return None
  if item is None:
    raise InitError(
        f'{path}: column {field.name!r} is {t}; the pipeline\'s ExampleGen '
        'converts numbers, strings and lists of them only. Write it as a '
        "string (a date as 'YYYY-MM-DD', as session_date is in the default "
        'data) or a number, or drop the column.')
  return item


def _csv_columns(files: List[str]) -> List[str]:
  """The header, read as TFX's CSV ExampleGen reads it, which requires it to
  be the same in every file."""
  headers = {path: _csv_header(path) for path in files}
  first = files[0]
  if headers[first] == ['']:
    raise InitError(f'{first}: no header line; the first line of a CSV file '
                    'must name its columns.')
  quoted = [name for name in headers[first] if '"' in name]
  if quoted:
    # TFX splits the header line at commas and keeps quotes in the names.
    raise InitError(f'{first}: the header quotes its column names '
                    f'({quoted[0]}); TFX\'s CSV ExampleGen would keep the '
                    'quotes in the feature names. Write the header unquoted, '
                    'e.g. unit_id,temp_a.')
  for path in files[1:]:
    if headers[path] != headers[first]:
      raise InitError(f'{path}: its header differs from {first}\'s; TFX\'s CSV '
                      'ExampleGen needs the same header in every file.')
  return headers[first]


def _csv_header(path: str) -> List[str]:
  # tfx.utils.io_utils.load_csv_column_names, which the CSV ExampleGen uses,
  # without importing TensorFlow before the output goes to the log file.
  with open(path, encoding='utf-8') as f:
    return f.readline().strip().split(',')


# --- The examples ExampleGen makes of them ---------------------------------

def write_examples(source: Source, output_prefix: str) -> List[str]:
  """Runs the pipeline's own ExampleGen conversion (pipeline/components/
  example_gen.py) over every file; returns the TFRecord files it wrote."""
  # pylint: disable=g-import-not-at-top
  import apache_beam as beam
  from tfx.types import standard_component_specs
  from pipeline.components.example_gen import EXECUTORS
  # pylint: enable=g-import-not-at-top
  read = EXECUTORS[source.format]().GetInputSourceToExamplePTransform()
  exec_properties = {
      standard_component_specs.INPUT_BASE_KEY: os.path.abspath(source.root)}
  with beam.Pipeline(argv=['--direct_running_mode=in_memory',
                           '--direct_num_workers=1']) as pipeline:
    _ = (pipeline
         | 'ReadAsExampleGen' >> read(exec_properties, source.relative_pattern)
         | 'Serialize' >> beam.Map(lambda example: example.SerializeToString())
         | 'Write' >> beam.io.WriteToTFRecord(output_prefix,
                                              file_name_suffix='.tfrecord'))
  return sorted(glob.glob(output_prefix + '*.tfrecord'))


def read_record_batch(tfrecord_files: List[str]):
  """The examples as one Arrow RecordBatch of list columns, as TFDV reads
  them."""
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from tfx_bsl.coders import example_coder
  # pylint: enable=g-import-not-at-top
  serialized = [record.numpy() for record in
                tf.data.TFRecordDataset(tfrecord_files)]
  if not serialized:
    return None
  return example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(serialized)


def profile_columns(record_batch, source: Source) -> Dict[str, ColumnProfile]:
  """A ColumnProfile of every source column, from the decoded examples."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.compute as pc  # pylint: disable=g-import-not-at-top
  rows = record_batch.num_rows
  names = set(record_batch.schema.names)
  profiles = {}
  for name in source.columns:
    is_list = name in source.list_columns
    if name not in names:  # no example has a value
      profiles[name] = ColumnProfile(name, 'empty', rows, 0, 0, 0, is_list)
      continue
    column = record_batch.column(record_batch.schema.get_field_index(name))
    lengths = pc.fill_null(pc.list_value_length(column), 0)
    values = pc.list_flatten(column)
    item = column.type.value_type
    dtype = ('int' if pa.types.is_integer(item) else
             'float' if pa.types.is_floating(item) else 'string')
    counts = pc.value_counts(values) if len(values) else None
    profile = ColumnProfile(
        name, dtype if len(values) else 'empty', rows,
        present=int(pc.sum(pc.greater(lengths, 0)).as_py() or 0),
        distinct=len(counts) if counts is not None else 0,
        max_values=int(pc.max(lengths).as_py() or 0), is_list=is_list)
    if counts is not None:
      top = max(counts, key=lambda c: c['counts'].as_py())
      value = top['values'].as_py()
      profile.top_value = (value.decode('utf-8', 'replace')
                           if isinstance(value, bytes) else str(value),
                           top['counts'].as_py())
      if dtype == 'string':
        sample = counts.field('values').to_pylist()[:1000]
        profile.date_like = all(_DATE.fullmatch(v) for v in sample)
        profile.has_list_markers = (source.format == 'csv' and any(
            _CSV_LIST_MARKERS.search(v.decode('utf-8', 'replace'))
            for v in sample))
    profiles[name] = profile
  return profiles


# --- What each column is ---------------------------------------------------

def column_kind(profile: ColumnProfile) -> Tuple[str, str]:
  """(kind, detail) of a column that is neither the id nor the label.

  A kind is numeric, categorical or multivalent; or skipped, with the reason.
  Skipped columns stay in the schema (ExampleValidator reports a column the
  schema lacks) but out of the SERVING environment, as session_date and span
  are in schema/schema.pbtxt.
  """
  p = profile
  missing = 1 - p.present / p.rows if p.rows else 0.0
  # An empty list reaches the model as a missing feature, as a null does.
  missing_text = (f', {missing:.0%} {"empty" if p.is_list else "missing"}'
                  if missing >= 0.005 else '')
  if p.present == 0:
    return SKIPPED, 'always empty'
  if p.is_list:
    if p.dtype != 'string':
      return SKIPPED, ('a list of numbers; list features are lists of '
                       'strings (move it to features.multivalent if its '
                       'numbers are codes)')
    return MULTIVALENT, (f'lists of strings: {p.distinct} values, up to '
                         f'{p.max_values} per row{missing_text}')
  if p.dtype in ('int', 'float') and p.name == 'span':
    return SKIPPED, ('the span number: when the rows were collected, not a '
                     'feature')
  if p.distinct == 1:
    return SKIPPED, f'constant: always {p.top_value[0]!r}'
  if p.dtype in ('int', 'float'):
    return NUMERIC, f'{p.dtype}{missing_text}'
  if p.date_like:
    return SKIPPED, 'a date: when the row was recorded, not a feature'
  if p.distinct > MAX_CATEGORICAL_SHARE * p.present:
    return SKIPPED, (f'{p.distinct} distinct strings in {p.present} rows: '
                     'an identifier or free text, not a category')
  return CATEGORICAL, f'{p.distinct} values{missing_text}'


def check_label(profile: Optional[ColumnProfile], source: Source,
                label_column: str) -> None:
  """The label column exists and holds label names the pipeline can carry."""
  if label_column not in source.columns:
    raise InitError(f'--label {label_column}: no such column in '
                    f'{source.files[0]}; its columns are '
                    f'{", ".join(source.columns)}.')
  if source.format == 'parquet':
    if source.list_columns.get(label_column) != 'string':
      raise InitError(
          f'--label {label_column}: in {source.files[0]} it is not a list of '
          'strings; the label column holds, in every row, the list of label '
          'names that apply (list<string>; one label is a one-element list, '
          'none an empty list).')
    return
  if profile is None:
    return
  if profile.dtype in ('int', 'float'):
    raise InitError(
        f'--label {label_column}: in {source.pattern} it holds numbers; label '
        'names are strings, e.g. "fault:overheat" rather than 3.')
  if profile.has_list_markers:
    raise InitError(
        f'--label {label_column}: {source.pattern} writes lists into CSV '
        'cells (e.g. "a|b" or "[a, b]"), but TFX\'s CSV ExampleGen reads every '
        'cell as one value, so a CSV label column can hold one label per row '
        'only. Write the table as parquet with a list<string> label column.')


def label_counts(record_batch, label_column: str) -> Dict[str, int]:
  """Rows holding each label name."""
  if label_column not in record_batch.schema.names:
    return {}
  column = record_batch.column(
      record_batch.schema.get_field_index(label_column))
  counts = collections.Counter()
  for labels in column.to_pylist():
    counts.update({v.decode('utf-8') for v in labels or []})
  return dict(counts)


def check_id_exists(id_column: str, source: Source) -> None:
  if id_column not in source.columns:
    raise InitError(f'--id {id_column}: no such column in {source.files[0]}; '
                    f'its columns are {", ".join(source.columns)}.')


def check_id(profiles: Dict[str, ColumnProfile], id_column: str,
             source: Source) -> None:
  """The id column is an int or string, present and unique in every row."""
  check_id_exists(id_column, source)
  p = profiles[id_column]
  if p.is_list or p.dtype == 'float' or p.max_values > 1:
    raise InitError(
        f'--id {id_column}: it holds {"lists" if p.is_list else p.dtype + "s"}'
        '; the split hashes the id, which must be one string or integer per '
        'row. Pass --id with such a column.')
  if p.present < p.rows:
    raise InitError(f'--id {id_column}: missing in {p.rows - p.present} of '
                    f'{p.rows} rows of {source.pattern}; every row needs an id '
                    'for the split to hash. Fill it in or pass another --id.')
  if p.distinct < p.rows:
    value, count = p.top_value
    raise InitError(
        f'--id {id_column}: {p.rows - p.distinct} rows of {source.pattern} '
        f'repeat an id (e.g. {value!r} is in {count} rows); the id names one '
        'row and the split hashes it. Deduplicate the table or pass a unique '
        '--id.')


def choose_id(profiles: Dict[str, ColumnProfile], label_column: str,
              source: Source) -> Tuple[str, str]:
  """Without --id: the one unique column named like an id, else an error."""
  unique = [p.name for p in profiles.values()
            if p.name != label_column and not p.is_list
            and p.dtype in ('int', 'string') and p.max_values == 1
            and p.present == p.rows and p.distinct == p.rows]
  named_like_id = [name for name in unique if _ID_NAME.search(name) or
                   _CAMEL_CASE_ID.search(name)]
  if len(named_like_id) == 1:
    return named_like_id[0], ('no --id given; the only unique column named '
                              'like an id')
  found = (f'several unique columns ({", ".join(unique)})' if len(unique) > 1
           else f'only {unique[0]!r}, which is not named like an id'
           if unique else 'no column that is unique in every row')
  raise InitError(
      f'--data {source.pattern}: no --id given, and the table has {found}. '
      'The pipeline splits train/eval/test by a hash of an id column '
      '(data.id_column), one per row: pass --id COLUMN, or add a unique id '
      'column to the table.')


# --- Defaults sized to the table -------------------------------------------

def no_information_macro_f1(counts: Dict[str, int], rows: int) -> float:
  """The best macro F1 of a model that reads no feature.

  For a label on a share p of rows, a prediction independent of the row
  that recommends it with probability q has precision p and recall q, so F1
  2pq / (p + q), highest at q = 1: 2p / (1 + p). A model must beat the mean
  of that over labels to have learnt anything.
  """
  shares = [count / rows for count in counts.values()]
  return sum(2 * p / (1 + p) for p in shares) / len(shares)


def training_budget(rows: int) -> Tuple[Dict[str, int], Dict[str, object]]:
  """Training and tuning sized to the table: about ten passes over the
  training split (8 of 10 rows), in smaller batches when the table is small,
  within the default run's 2,000 steps."""
  batch_size = 256 if rows >= 20_000 else 64
  steps_per_pass = math.ceil(rows * 0.8 / batch_size)
  # Multiples of 50 divide into Keras epochs of near 250 steps.
  train_steps = min(2000, max(200, round(10 * steps_per_pass / 50) * 50))
  eval_steps = min(50, max(1, math.ceil(rows * 0.1 / batch_size)))
  training = dict(train_steps=train_steps, eval_steps=eval_steps,
                  batch_size=batch_size)
  tuning = dict(enabled=True, max_trials=3,
                steps_per_trial=max(50, train_steps // 2))
  return training, tuning


def choose_slices(columns: List[Column],
                  profiles: Dict[str, ColumnProfile]) -> List[List[str]]:
  """A few categorical features with few values, fewest first."""
  candidates = sorted(
      (profiles[c.name].distinct, i, c.name) for i, c in enumerate(columns)
      if c.kind == CATEGORICAL and
      profiles[c.name].distinct <= MAX_SLICE_VALUES)
  return [[name] for _, _, name in candidates[:MAX_SLICES]]


def pipeline_name_for(name: str) -> str:
  """A configuration's file name as a pipeline name: lower-case letters,
  digits and dashes (pipeline/config.py's rule)."""
  pipeline_name = re.sub(r'[^a-z0-9-]+', '-', name.lower()).strip('-')
  if not re.fullmatch(r'[a-z][a-z0-9-]{0,63}', pipeline_name):
    raise InitError(f'--out: {name!r} does not make a pipeline name (letters, '
                    'digits and dashes, starting with a letter); pass --out '
                    'configs/NAME.yaml with such a NAME.')
  return pipeline_name


def make_plan(source: Source, record_batch, label_column: str,
              id_column: Optional[str], name: str) -> Plan:
  """Decides every column's kind, the id, the label vocabulary and defaults."""
  if record_batch is None or record_batch.num_rows == 0:
    raise InitError(f'--data {source.pattern}: the table is empty (no rows in '
                    f'{_examples(source.files)}); init needs rows to infer '
                    'kinds, labels and the schema from.')
  rows = record_batch.num_rows
  profiles = profile_columns(record_batch, source)
  check_label(profiles[label_column], source, label_column)
  if id_column:
    check_id(profiles, id_column, source)
    id_reason = 'from --id'
  else:
    id_column, id_reason = choose_id(profiles, label_column, source)
  counts = label_counts(record_batch, label_column)
  if len(counts) < 2:
    found = (f'1 distinct label name ({next(iter(counts))})' if counts else
             'no label names')
    raise InitError(
        f'--label {label_column}: {source.pattern} holds {found}; a '
        'multi-label model needs at least two. Is it the right column?')

  label = profiles[label_column]
  columns = []
  for column in source.columns:
    if column == id_column:
      columns.append(Column(column, ID, f'{profiles[column].dtype}, unique '
                            f'in every row ({id_reason}): the split hashes it'))
    elif column == label_column:
      columns.append(Column(column, LABEL, (
          f'{len(counts)} label names, up to {label.max_values} per row, '
          f'{1 - label.present / rows:.0%} of rows without any')))
    else:
      columns.append(Column(column, *column_kind(profiles[column])))
    columns[-1].present = profiles[column].present
  if not any(c.kind in FEATURE_KINDS for c in columns):
    skipped = '; '.join(f'{c.name}: {c.detail}' for c in columns
                        if c.kind == SKIPPED) or 'there are no others'
    raise InitError(f'--data {source.pattern}: no column besides the id and '
                    f'the label can be a feature ({skipped}); the model needs '
                    'at least one input.')

  multivalent = [profiles[c.name] for c in columns if c.kind == MULTIVALENT]
  max_values = (min(MAX_VALUES_PER_ROW_CAP, max(p.max_values
                                                for p in multivalent))
                if multivalent else 8)
  baseline = no_information_macro_f1(counts, rows)
  training, tuning = training_budget(rows)
  plan = Plan(
      name=name, source=source, rows=rows, columns=columns,
      id_column=id_column, id_reason=id_reason, label_column=label_column,
      label_counts=counts, max_values_per_row=max_values,
      slices=choose_slices(columns, profiles),
      macro_f1_floor=math.ceil(baseline * 100) / 100,
      no_information_macro_f1=baseline, training=training, tuning=tuning)
  plan.review = review_notes(plan, profiles)
  return plan


def review_notes(plan: Plan, profiles: Dict[str, ColumnProfile]) -> List[str]:
  """What a person should check before trusting the first run."""
  notes = [
      f'evaluation.macro_f1_lower_bound {plan.macro_f1_floor:.2f} (also the '
      'slice floor): the macro F1 of recommending every label for every row, '
      'the best a model that reads no feature can do. Raise both to the '
      'quality your use needs.',
  ]
  if plan.slices:
    notes.append('slices: ' + ', '.join(s[0] for s in plan.slices) + '; a '
                 'slice counts for the fairness guard from '
                 'evaluation.min_slice_examples (200) test rows; the test '
                 f'split has about {plan.rows // 10} rows.')
  else:
    notes.append('slices: none (no categorical feature with at most '
                 f'{MAX_SLICE_VALUES} values); the fairness guard has nothing '
                 'to check.')
  rare = sorted(n for n, c in plan.label_counts.items() if c < RARE_LABEL_ROWS)
  if rare:
    notes.append(f'label.vocabulary: {len(rare)} labels are in fewer than '
                 f'{RARE_LABEL_ROWS} rows, so their test F1 is noise: '
                 f'{_examples(rare, 5)}.')
  skipped = [c.name for c in plan.columns if c.kind == SKIPPED]
  if skipped:
    notes.append(f'skipped columns ({", ".join(skipped)}): not model inputs; '
                 'move one under features if it should be.')
  truncated = [c.name for c in plan.columns if c.kind == MULTIVALENT and
               profiles[c.name].max_values > plan.max_values_per_row]
  if truncated:
    notes.append(f'features.max_values_per_row {plan.max_values_per_row}: '
                 f'longer rows of {", ".join(truncated)} are truncated.')
  marked = [c.name for c in plan.columns if c.kind == CATEGORICAL and
            profiles[c.name].has_list_markers]
  if marked:
    notes.append(f'{", ".join(marked)}: CSV cells that look like lists are '
                 'read as one category each (CSV cannot carry lists; use '
                 'parquet).')
  schema_notes = ['the label domain is the vocabulary: an unknown label name '
                  'is an anomaly']
  if plan.names(CATEGORICAL) or plan.names(MULTIVALENT):
    schema_notes.append('string domains hold every value seen (unseen values '
                        'beyond a trickle are anomalies)')
  if plan.names(NUMERIC):
    schema_notes.append('numeric features have no value ranges yet (add '
                        'int_domain or float_domain where you know the limits)')
  if plan.names(CATEGORICAL):
    schema_notes.append(f'skew and drift thresholds ({CATEGORICAL_COMPARATOR} '
                        'L-infinity) are a starting point')
  notes.append(f'{schema_path(plan.name)}: ' + '; '.join(schema_notes) + '.')
  if os.path.exists(run_paths(plan.name)['metadata']):
    notes.append(f'{os.path.dirname(run_paths(plan.name)["metadata"])} holds '
                 'earlier runs: its latest blessed model is the baseline the '
                 'next run must not fall behind; remove the folder if the '
                 'table or its labels changed.')
  notes.append(
      f'training: {plan.training["train_steps"]} steps of '
      f'{plan.training["batch_size"]} (about ten passes over the training '
      f'split), {plan.tuning["max_trials"]} tuner trials of '
      f'{plan.tuning["steps_per_trial"]} steps.')
  return notes


# --- The two files ---------------------------------------------------------

def schema_path(name: str) -> str:
  return os.path.join('schema', f'{name}.pbtxt')


def run_paths(name: str) -> Dict[str, str]:
  base = os.path.join('runs', name)
  return {'pipeline_root': os.path.join(base, 'pipeline'),
          'metadata': os.path.join(base, 'metadata.sqlite'),
          'serving_dir': os.path.join(base, 'serving'),
          'log_file': os.path.join(base, 'logs', 'repairml.log')}


def curated_schema(statistics, plan: Plan):
  """TFDV's inferred schema, curated the way schema/schema.pbtxt is."""
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  schema = tfdv.infer_schema(statistics, infer_feature_shape=True,
                             max_string_domain_size=VOCABULARY_TOP_K)
  columns = {c.name: c for c in plan.columns}
  domains = {d.name: d for d in schema.string_domain}
  for feature in schema.feature:
    kind = columns[feature.name].kind
    if columns[feature.name].present < SPARSE_COLUMN_ROWS:
      feature.presence.min_count = 0
    if kind in (ID, SKIPPED):
      # A domain of ids or dates would call every new one an anomaly.
      feature.ClearField('domain_info')
    if kind in (SKIPPED, LABEL):
      feature.not_in_environment.append('SERVING')
    if kind in (MULTIVALENT, LABEL):
      # TFDV reads the lengths seen as the allowed ones (an empty list is
      # a missing feature, so often min 1, max 1); any length is valid.
      feature.value_count.Clear()
      feature.value_count.min = 0
    if kind == LABEL:
      feature.value_count.max = len(plan.vocabulary)
      # Every label name is known: an unknown one is always an anomaly.
      _set_domain(schema, feature, domains, plan.vocabulary)
      feature.distribution_constraints.min_domain_mass = 1.0
    elif kind == CATEGORICAL and feature.HasField('domain'):
      feature.distribution_constraints.min_domain_mass = (
          CATEGORICAL_DOMAIN_MASS)
      feature.skew_comparator.infinity_norm.threshold = CATEGORICAL_COMPARATOR
      feature.drift_comparator.infinity_norm.threshold = CATEGORICAL_COMPARATOR
    elif kind == MULTIVALENT and feature.HasField('domain'):
      feature.distribution_constraints.min_domain_mass = LIST_DOMAIN_MASS
      feature.drift_comparator.infinity_norm.threshold = LIST_DRIFT_COMPARATOR
  _order_like_curated(schema, plan)
  del schema.default_environment[:]
  schema.default_environment.extend(['TRAINING', 'SERVING'])
  return schema


def _set_domain(schema, feature, domains, values: List[str]) -> None:
  domain = domains.get(feature.name)
  if domain is None:
    domain = schema.string_domain.add(name=feature.name)
    domains[feature.name] = domain
  del domain.value[:]
  domain.value.extend(values)
  feature.domain = feature.name


def _order_like_curated(schema, plan: Plan) -> None:
  """Features in schema/schema.pbtxt's order (id, skipped, categorical,
  numeric, multivalent, label; table order within a kind), and only the
  string domains that a feature still names."""
  order = (ID, SKIPPED, CATEGORICAL, NUMERIC, MULTIVALENT, LABEL)
  rank = {c.name: (order.index(c.kind), i) for i, c in enumerate(plan.columns)}
  features = sorted((copy.deepcopy(f) for f in schema.feature),
                    key=lambda f: rank[f.name])
  used = [f.domain for f in features if f.HasField('domain')]
  domains = {d.name: copy.deepcopy(d) for d in schema.string_domain}
  del schema.feature[:]
  schema.feature.extend(features)
  del schema.string_domain[:]
  schema.string_domain.extend(domains[name] for name in used)


def schema_text(schema, plan: Plan, config_path: str) -> str:
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  header = f"""\
# The curated raw-data schema of {plan.source.pattern}, started by
# `repairml init` from TFDV's inference over its {plan.rows} rows. Review it,
# then change it deliberately: after a run, `repairml schema diff --config
# {config_path}` shows what SchemaGen proposes. It holds:
# - what TFDV inferred: types, presence, shapes, string domains;
# - TRAINING and SERVING environments: the label ({plan.label_column}) and the
#   skipped columns are absent at serving;
# - list columns of any length; an unknown label name is always an anomaly;
#   categorical features tolerate a trickle of unseen values
#   (min_domain_mass), an unseen flood is an anomaly;
# - L-infinity skew and drift comparators on the categorical features, and
#   drift on the list features.
# Not yet: value ranges of the numbers (add int_domain / float_domain).
"""
  return header + text_format.MessageToString(schema)


def config_text(plan: Plan, config_path: str) -> str:
  """The configuration, in configs/local.yaml's format, with comments."""
  q = json.dumps  # JSON strings and lists are valid YAML, safely quoted.
  source = plan.source
  lines = [
      f'# A run on {source.pattern}, written by `repairml init` '
      f'({plan.rows} rows,',
      f'# {time.strftime("%Y-%m-%d")}). Paths are relative to the working '
      'directory. Review the',
      '# lines marked "review" before trusting a run, then:',
      f'#   repairml run --config {config_path}',
      f'pipeline_name: {pipeline_name_for(plan.name)}',
      '',
      'data:',
      f'  format: {source.format}',
      f'  root: {q(source.root)}',
      f'  pattern: {q(source.relative_pattern)}',
      f'  id_column: {q(plan.id_column)}  # the train/eval/test split hashes '
      'this column',
      '  sample_fraction: 1.0',
      '',
      'features:',
  ]
  for kind in FEATURE_KINDS:
    lines.append(f'  {kind}: {q(plan.names(kind))}')
  lines += [
      f'  max_values_per_row: {plan.max_values_per_row}' +
      ('  # the longest list seen' if plan.names(MULTIVALENT) else ''),
      f'  vocabulary_top_k: {VOCABULARY_TOP_K}',
      '  crosses: []  # pairs of categorical or multivalent features, e.g. '
      '[codes, model]',
  ]
  skipped = [c for c in plan.columns if c.kind == SKIPPED]
  if skipped:
    lines.append('  # Skipped (in the schema, absent at serving); review:')
    lines += [f'  #   {c.name}: {c.detail}' for c in skipped]
  lines += [
      '',
      'label:',
      f'  column: {q(plan.label_column)}  # a list of label names per row',
      f'  vocabulary:  # {len(plan.vocabulary)} labels; the rows holding each',
  ]
  lines += [f'    - {q(name)}  # {plan.label_counts[name]}'
            for name in plan.vocabulary]
  floor = f'{plan.macro_f1_floor:.2f}'
  lines += [
      '',
      f'schema: {q(schema_path(plan.name))}',
      '',
      'splits: {train: 8, eval: 1, test: 1}',
      '',
      '# Evaluator slices, besides the overall one (review).',
      f'slices: {q(plan.slices)}',
      '',
      'evaluation:',
      f'  # review: {plan.no_information_macro_f1:.4f} is the macro F1 of '
      'recommending every label',
      '  # for every row, the best without reading a feature; a model must '
      'beat it.',
      f'  macro_f1_lower_bound: {floor}',
      '  max_macro_f1_drop: 0.01',
      f'  slice_macro_f1_floor: {floor}',
      '  min_slice_examples: 200',
      '',
      '# Sized to the table: about ten passes over the training split.',
      'training:',
  ]
  lines += [f'  {key}: {value}' for key, value in plan.training.items()]
  lines += [
      '  seed: 42',
      '  learning_rate: 0.003',
      '  hidden_units: 128',
      '  hidden_layers: 2',
      '  embedding_dim: 16',
      '  dropout: 0.1',
      '  loss: binary_crossentropy',
      '  focal_gamma: 2.0',
      '  early_stopping_patience: 3',
      '',
      'tuning:',
  ]
  lines += [f'  {key}: {q(value)}' for key, value in plan.tuning.items()]
  lines += ['', 'paths:']
  lines += [f'  {key}: {q(value)}' for key, value in
            run_paths(plan.name).items()]
  lines += [
      '',
      'beam_args:',
      '  - --direct_running_mode=in_memory',
      '  - --direct_num_workers=1',
  ]
  return '\n'.join(lines) + '\n'


def _write_atomically(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  staging = f'{path}.partial'
  with open(staging, 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(staging, path)


def write_files(plan: Plan, schema, config_path: str) -> None:
  """Writes the schema, then the configuration, after checking that the
  configuration loads (a failure there is a bug of this module)."""
  from pipeline.config import ConfigError, load_config  # pylint: disable=g-import-not-at-top
  text = config_text(plan, config_path)
  with tempfile.TemporaryDirectory() as tmp:
    draft = os.path.join(tmp, os.path.basename(config_path))
    with open(draft, 'w', encoding='utf-8') as f:
      f.write(text)
    try:
      load_config(draft)
    except ConfigError as e:
      raise AssertionError(f'repairml init wrote an invalid configuration: '
                           f'{e}') from e
  _write_atomically(schema_path(plan.name),
                    schema_text(schema, plan, config_path))
  _write_atomically(config_path, text)


# --- The command -----------------------------------------------------------

def report(plan: Plan, config_path: str) -> str:
  width = max(len(c.name) for c in plan.columns)
  files = len(plan.source.files)
  lines = [f'{plan.source.pattern}: {files} {plan.source.format} '
           f'file{"s" if files > 1 else ""}, {plan.rows} rows, '
           f'{len(plan.columns)} columns']
  lines += [f'  {c.name:<{width}}  {c.kind:<11}  {c.detail}'
            for c in plan.columns]
  lines += ['', f'wrote {config_path}', f'wrote {schema_path(plan.name)}', '',
            'review before trusting a run:']
  lines += [f'  - {note}' for note in plan.review]
  lines += ['', f'then: repairml run --config {config_path}']
  return '\n'.join(lines)


def init(data: str, label: str, id_column: Optional[str], out: str,
         force: bool) -> Tuple[Plan, str]:
  """Inspects the table and writes the two files; returns the plan and the
  report. Raises InitError for anything the user must fix."""
  name = os.path.splitext(os.path.basename(out))[0]
  pipeline_name_for(name)
  for path in (out, schema_path(name)):
    if os.path.exists(path) and not force:
      raise InitError(f'--out {out}: {path} exists and may hold your '
                      'edits; pass --force to overwrite it, or choose another '
                      '--out.')
  source = find_source(data)
  check_label(None, source, label)
  if id_column == label:
    raise InitError(f'--id {id_column}: it is the label column; the id names '
                    'a row, so pass another --id.')
  if id_column:
    check_id_exists(id_column, source)

  # TensorFlow, Beam and TFDV write to the log file, not the terminal.
  from pipeline import progress  # pylint: disable=g-import-not-at-top
  log_file = run_paths(name)['log_file']
  print(f'log: {log_file}', flush=True)
  with progress.output_to_log_file(log_file):
    with tempfile.TemporaryDirectory() as tmp:
      try:
        tfrecords = write_examples(source, os.path.join(tmp, 'examples'))
      except Exception as e:  # pylint: disable=broad-except
        # ExampleGen's own reader failed: the run would fail the same way.
        logging.exception('ExampleGen could not read %s', data)
        raise InitError(
            f'--data {data}: the pipeline\'s ExampleGen cannot read these '
            f'files: {str(e).splitlines()[0] if str(e) else type(e).__name__}'
            f'. The full error is in {log_file}.') from None
      record_batch = read_record_batch(tfrecords)
      plan = make_plan(source, record_batch, label, id_column, name)
      import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
      statistics = tfdv.generate_statistics_from_tfrecord(
          data_location=os.path.join(tmp, 'examples*.tfrecord'),
          output_path=os.path.join(tmp, 'statistics.tfrecord'))
    schema = curated_schema(statistics, plan)
    write_files(plan, schema, out)
  return plan, report(plan, out)


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog='repairml init',
      description='Write a run configuration and a curated-schema starting '
      'point for a new parquet or CSV table.')
  parser.add_argument('--data', required=True, help='a glob of parquet or CSV '
                      "files, e.g. 'mydata/span-*/*.parquet'")
  parser.add_argument('--label', required=True, help='the column holding the '
                      'list of label names of each row')
  parser.add_argument('--id', dest='id_column', help='the column that '
                      'identifies a row; the split hashes it (default: the '
                      'one unique column named like an id)')
  parser.add_argument('--out', help='the configuration to write (default: '
                      'configs/<name of the data directory>.yaml); the schema '
                      'goes to schema/<name>.pbtxt')
  parser.add_argument('--force', action='store_true',
                      help='overwrite the configuration and schema')
  args = parser.parse_args(argv)
  out = args.out or os.path.join('configs', _default_name(args.data) + '.yaml')
  try:
    _, text = init(args.data, args.label, args.id_column, out, args.force)
  except InitError as e:
    print(f'repairml init: {e}', file=sys.stderr)
    return USAGE_ERROR
  print(text)
  return 0


def _default_name(pattern: str) -> str:
  root, _ = split_pattern(pattern)
  return os.path.basename(os.path.abspath(root)) or 'table'
