"""The BigQuery queries that feed ExampleGen in production, one per split.

Locally, ExampleGen reads parquet files and TFX splits the sessions by a hash
of the session id. In production, BigQueryExampleGen runs one query per split
and each query keeps its own hash buckets, so only the rows of that split
leave BigQuery. The buckets come from BigQuery's FARM_FINGERPRINT, not TFX's
hash: each split is deterministic, but a session may land in another split
than in a local run.

Every value that reaches the SQL is validated first, by the rules of
pipeline/bigquery_values.py that the configuration is checked with too, and
rejected with a QueryError naming the field; it is then quoted anyway: no
table name, column name or filter value can change the shape of a query.
"""

import re
from typing import Dict, List, Mapping, Sequence, Tuple

from tfx.proto import example_gen_pb2

# The checks are shared with the configuration and the runtime parameters;
# QueryError and SessionFilter are part of this module's interface too.
from pipeline.bigquery_values import (IDENTIFIER, QueryError, SessionFilter,
                                      check_column_name, check_table,
                                      checked_filter)

CAR_MODEL_COLUMN = 'car_model'


def split_queries(
    table: str,
    columns: Sequence[str],
    id_column: str,
    splits: Mapping[str, int],
    date_column: str = 'session_date',
    session_filter: SessionFilter = SessionFilter()) -> Dict[str, str]:
  """The Standard SQL query of each split, by split name.

  Args:
    table: the source table as `project.dataset.table`.
    columns: the columns to read, in this order.
    id_column: the column whose hash assigns a session to a split.
    splits: split name to hash-bucket weight, e.g. {'train': 8, 'eval': 1,
      'test': 1}; the splits take consecutive buckets in this order.
    date_column: the DATE (or 'YYYY-MM-DD' STRING) column that
      `session_filter`'s dates bound. If it
      is one of `columns`, it is read as a 'YYYY-MM-DD' STRING: TFX's
      BigQuery-to-tf.Example conversion knows no DATE, and the local data
      holds the date as a string too.
    session_filter: which sessions to read.

  Raises:
    QueryError: a value is not allowed; the message names it.
  """
  select = _select_clause(columns, date_column)
  source = f'FROM {_table_reference(table)}'
  bucket = _bucket_expression(_quoted_identifier('id_column', id_column),
                              _total_buckets(splits))
  filters = _filter_conditions(session_filter,
                               _quoted_identifier('date_column', date_column))
  queries = {}
  for name, (low, high) in _bucket_ranges(splits).items():
    conditions = [f'{bucket} BETWEEN {low} AND {high - 1}'] + filters
    where = 'WHERE ' + '\n  AND '.join(conditions)
    queries[name] = '\n'.join([select, source, where])
  return queries


def input_config(
    table: str,
    columns: Sequence[str],
    id_column: str,
    splits: Mapping[str, int],
    date_column: str = 'session_date',
    session_filter: SessionFilter = SessionFilter()
) -> example_gen_pb2.Input:
  """The split queries as BigQueryExampleGen's `input_config`.

  The splits are made by the queries, so the component's `output_config`
  must not split again. The arguments are those of `split_queries`.
  """
  queries = split_queries(table, columns, id_column, splits, date_column,
                          session_filter)
  return example_gen_pb2.Input(splits=[
      example_gen_pb2.Input.Split(name=name, pattern=query)
      for name, query in queries.items()
  ])


def _select_clause(columns: Sequence[str], date_column: str) -> str:
  if isinstance(columns, str) or not columns:
    raise QueryError('columns', f'list at least one column name, got '
                     f'{columns!r}.')
  seen = set()
  quoted = []
  for i, column in enumerate(columns):
    name = _quoted_identifier(f'columns[{i}]', column)
    quoted.append(f'CAST({name} AS STRING) AS {name}'
                  if column == date_column else name)
    # BigQuery column names are case-insensitive.
    if column.lower() in seen:
      raise QueryError(f'columns[{i}]', f'{column!r} is listed twice.')
    seen.add(column.lower())
  return 'SELECT\n' + ',\n'.join(f'  {q}' for q in quoted)


def _table_reference(table: str) -> str:
  check_table(table)
  return f'`{table}`'


def _quoted_identifier(field: str, name: str) -> str:
  check_column_name(field, name)
  return f'`{name}`'


def _total_buckets(splits: Mapping[str, int]) -> int:
  if not splits:
    raise QueryError('splits', 'name at least one split, e.g. '
                     "{'train': 8, 'eval': 1, 'test': 1}.")
  for name, buckets in splits.items():
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
      raise QueryError('splits', f'{name!r} is not a split name. Use '
                       'letters, digits and underscores, not starting with a '
                       'digit.')
    if (not isinstance(buckets, int) or isinstance(buckets, bool) or
        buckets <= 0):
      raise QueryError(f'splits[{name!r}]', 'the bucket count must be a '
                       f'positive integer, got {buckets!r}.')
  return sum(splits.values())


def _bucket_ranges(splits: Mapping[str, int]) -> Dict[str, Tuple[int, int]]:
  """The buckets [low, high) of each split, consecutive in `splits` order."""
  ranges = {}
  low = 0
  for name, buckets in splits.items():
    ranges[name] = (low, low + buckets)
    low += buckets
  return ranges


def _bucket_expression(quoted_id: str, total: int) -> str:
  # ABS(FARM_FINGERPRINT(...)) overflows for INT64_MIN, and BigQuery raises
  # an error rather than wrapping. MOD first: its result lies in
  # (-total, total), so ABS of it is safe and already a bucket in
  # [0, total).
  return f'ABS(MOD(FARM_FINGERPRINT(CAST({quoted_id} AS STRING)), {total}))'


def _filter_conditions(session_filter: SessionFilter,
                       quoted_date: str) -> List[str]:
  try:
    session_filter = checked_filter(session_filter)
  except QueryError as e:
    raise QueryError(f'session_filter.{e.field}', e.problem) from None
  conditions = []
  if session_filter.car_model:
    conditions.append(f'`{CAR_MODEL_COLUMN}` = '
                      f'{_string_literal(session_filter.car_model)}')
  # CAST: the column may be a DATE, or a 'YYYY-MM-DD' STRING as loaded from
  # the generated parquet files.
  if session_filter.date_from:
    conditions.append(f"CAST({quoted_date} AS DATE) >= "
                      f"DATE '{session_filter.date_from}'")
  if session_filter.date_to:
    conditions.append(f"CAST({quoted_date} AS DATE) <= "
                      f"DATE '{session_filter.date_to}'")
  return conditions


def _string_literal(value: str) -> str:
  """`value` as a BigQuery string literal that no character can end early."""
  escaped = value.replace('\\', '\\\\').replace("'", "\\'")
  # Anything outside printable ASCII (a newline, a typographic quote)
  # becomes a \U escape, which BigQuery reads back as the same character.
  escaped = re.sub(r'[^\x20-\x7e]', lambda m: f'\\U{ord(m.group()):08x}',
                   escaped)
  return f"'{escaped}'"
