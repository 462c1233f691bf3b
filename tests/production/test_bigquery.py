"""The production BigQuery split queries: bucket ranges, filters, and every user value validated and quoted so that none can inject SQL."""

import re

import pytest
from tfx.proto import example_gen_pb2

from pipeline.production import bigquery
from pipeline.production.bigquery import (QueryError, SessionFilter,
                                          input_config, split_queries)

TABLE = 'my-project.repairml.sessions'
COLUMNS = ['session_id', 'car_model']
SPLITS = {'train': 8, 'eval': 1, 'test': 1}
BUCKET = ('ABS(MOD(FARM_FINGERPRINT(CAST(`session_id` AS STRING)), 10))')


def _queries(session_filter=SessionFilter(), **overrides):
  args = dict(table=TABLE, columns=COLUMNS, id_column='session_id',
              splits=SPLITS, session_filter=session_filter)
  args.update(overrides)
  return split_queries(**args)


def _buckets_in(query: str) -> range:
  """The hash buckets a query's split predicate keeps, read from its SQL."""
  match = re.search(r'BETWEEN (\d+) AND (\d+)', query)
  return range(int(match.group(1)), int(match.group(2)) + 1)


def _expect_error(field: str, **overrides) -> str:
  with pytest.raises(QueryError) as error:
    _queries(**overrides)
  message = str(error.value)
  assert message.startswith(f'{field}: '), message
  return message


def test_eval_query_selects_the_columns_of_its_bucket_with_the_filters():
  queries = _queries(SessionFilter(car_model='Golf VII',
                                   date_from='2026-01-01'))

  assert queries['eval'] == (
      'SELECT\n'
      '  `session_id`,\n'
      '  `car_model`\n'
      'FROM `my-project.repairml.sessions`\n'
      f'WHERE {BUCKET} BETWEEN 8 AND 8\n'
      "  AND `car_model` = 'Golf VII'\n"
      "  AND CAST(`session_date` AS DATE) >= DATE '2026-01-01'")


def test_splits_take_consecutive_buckets_in_the_given_order():
  queries = _queries()

  assert list(queries) == ['train', 'eval', 'test']
  assert _buckets_in(queries['train']) == range(0, 8)
  assert _buckets_in(queries['eval']) == range(8, 9)
  assert _buckets_in(queries['test']) == range(9, 10)


@pytest.mark.parametrize('splits', [
    {'train': 8, 'eval': 1, 'test': 1},
    {'test': 3, 'train': 5},
    {'only': 1},
    {'a': 2, 'b': 7, 'c': 1, 'd': 13},
])
def test_every_bucket_belongs_to_exactly_one_split(splits):
  queries = _queries(splits=splits)
  total = sum(splits.values())

  for bucket in range(total):
    owners = [name for name, query in queries.items()
              if bucket in _buckets_in(query)]
    assert len(owners) == 1, (bucket, owners)
  for name, query in queries.items():
    assert len(_buckets_in(query)) == splits[name]
    assert f'FARM_FINGERPRINT(CAST(`session_id` AS STRING)), {total}))' in (
        query)


def test_the_bucket_never_takes_abs_of_the_raw_fingerprint():
  # ABS(INT64_MIN) is an error in BigQuery; the MOD must come first.
  query = _queries()['train']

  assert 'ABS(FARM_FINGERPRINT' not in query
  assert 'ABS(MOD(FARM_FINGERPRINT' in query


def test_without_a_filter_the_where_clause_holds_only_the_split():
  query = _queries()['train']

  assert query.splitlines()[-1] == f'WHERE {BUCKET} BETWEEN 0 AND 7'
  assert ' AND `' not in query


def test_a_date_range_bounds_the_date_column_inclusively():
  query = _queries(SessionFilter(date_from='2026-01-01',
                                 date_to='2026-03-31'),
                   date_column='day')['test']

  assert query.splitlines()[-2:] == [
      "  AND CAST(`day` AS DATE) >= DATE '2026-01-01'",
      "  AND CAST(`day` AS DATE) <= DATE '2026-03-31'",
  ]
  assert 'car_model` =' not in query


def test_a_single_day_range_is_allowed():
  query = _queries(SessionFilter(date_from='2026-02-01',
                                 date_to='2026-02-01'))['eval']

  assert "CAST(`session_date` AS DATE) >= DATE '2026-02-01'" in query
  assert "CAST(`session_date` AS DATE) <= DATE '2026-02-01'" in query


def test_only_an_upper_date_bound():
  query = _queries(SessionFilter(date_to='2026-02-01'))['eval']

  assert query.splitlines()[-1] == (
      "  AND CAST(`session_date` AS DATE) <= DATE '2026-02-01'")
  assert '>= DATE' not in query


@pytest.mark.parametrize('car_model', [
    'Golf VII', 'ID.3', 'Model-S', 'e_up', '3/5 door', 'A' * 64,
    'Golf -- not a comment inside the literal'])
def test_allowed_car_models_are_quoted_as_they_are(car_model):
  query = _queries(SessionFilter(car_model=car_model))['train']

  assert f"  AND `car_model` = '{car_model}'" in query.splitlines()


@pytest.mark.parametrize('car_model', [
    "x' OR '1'='1",
    "Golf'; DROP TABLE sessions; --",
    'Golf\\',
    'Golf\nVII',
    'Golf;',
    'Golf`',
    'Golf"VII',
    'Golf\u2019s',
    'Golf\x00',
    ' Golf',
    'Golf ',
    'A' * 65,
])
def test_car_models_that_could_change_the_query_are_rejected(car_model):
  message = _expect_error('session_filter.car_model',
                          session_filter=SessionFilter(car_model=car_model))

  assert repr(car_model) in message


def test_string_literals_are_escaped_even_after_validation():
  # Defence in depth: the literal stays closed whatever reaches it.
  assert bigquery._string_literal("x' OR '1'='1") == (
      r"'x\' OR \'1\'=\'1'")
  assert bigquery._string_literal('a\\\'b') == r"'a\\\'b'"
  assert bigquery._string_literal('a\nb') == r"'a\U0000000ab'"


@pytest.mark.parametrize('table', [
    'repairml.sessions',
    'sessions',
    'my-project.repairml.sessions.extra',
    'My-Project.repairml.sessions',
    'proj.repairml.sessions',
    'a' * 31 + '.repairml.sessions',
    '1project.repairml.sessions',
    'my-project-.repairml.sessions',
    'my_project.repairml.sessions',
    'my-project.repair-ml.sessions',
    'my-project.repairml.sessions`; DROP TABLE x; --',
    'my-project.repairml.sessions` WHERE TRUE --',
    'my-project..sessions',
    '`my-project.repairml.sessions`',
    '',
])
def test_tables_that_are_not_project_dataset_table_are_rejected(table):
  message = _expect_error('table', table=table)

  assert repr(table) in message


def test_a_valid_table_is_backquoted():
  query = _queries(table='my-project-42.raw_2026.Sessions_v2')['train']

  assert 'FROM `my-project-42.raw_2026.Sessions_v2`' in query.splitlines()


@pytest.mark.parametrize('field, overrides', [
    ('columns[1]', {'columns': ['session_id', 'car model']}),
    ('columns[0]', {'columns': ['`session_id`']}),
    ('columns[1]', {'columns': ['a', 'b, (SELECT 1) AS c']}),
    ('columns[0]', {'columns': ['1st']}),
    ('id_column', {'id_column': 'session_id) OR TRUE --'}),
    ('id_column', {'id_column': ''}),
    ('date_column', {'date_column': 'session-date'}),
])
def test_column_names_must_be_plain_identifiers(field, overrides):
  _expect_error(field, **overrides)


@pytest.mark.parametrize('columns', [[], 'session_id'])
def test_columns_must_be_a_non_empty_list(columns):
  _expect_error('columns', columns=columns)


def test_a_column_listed_twice_is_rejected():
  message = _expect_error('columns[2]',
                          columns=['session_id', 'car_model', 'Car_Model'])

  assert 'twice' in message


@pytest.mark.parametrize('date_from, date_to, field', [
    ('2026-13-01', '', 'session_filter.date_from'),
    ("2026-01-01' OR TRUE --", '', 'session_filter.date_from'),
    ('01/02/2026', '', 'session_filter.date_from'),
    ('', 'tomorrow', 'session_filter.date_to'),
    ('', '2026-02-30', 'session_filter.date_to'),
])
def test_dates_that_do_not_parse_are_rejected(date_from, date_to, field):
  message = _expect_error(field, session_filter=SessionFilter(
      date_from=date_from, date_to=date_to))

  assert 'YYYY-MM-DD' in message


def test_a_date_range_that_ends_before_it_starts_is_rejected():
  message = _expect_error('session_filter.date_from',
                          session_filter=SessionFilter(date_from='2026-02-02',
                                                       date_to='2026-02-01'))

  assert '2026-02-01' in message


@pytest.mark.parametrize('splits, field', [
    ({}, 'splits'),
    ({'train': 8, 'eval': 0}, "splits['eval']"),
    ({'train': -1}, "splits['train']"),
    ({'train': 1.5}, "splits['train']"),
    ({'train': True}, "splits['train']"),
    ({'train; DROP': 1}, 'splits'),
    ({'': 1}, 'splits'),
])
def test_splits_need_identifier_names_and_positive_counts(splits, field):
  _expect_error(field, splits=splits)


def test_input_config_holds_one_split_per_query_and_round_trips():
  session_filter = SessionFilter(car_model='Golf VII', date_from='2026-01-01')
  config = input_config(TABLE, COLUMNS, 'session_id', SPLITS,
                        session_filter=session_filter)

  queries = _queries(session_filter)
  assert [(s.name, s.pattern) for s in config.splits] == list(queries.items())
  parsed = example_gen_pb2.Input.FromString(config.SerializeToString())
  assert parsed == config


def test_big_query_example_gen_accepts_the_input_config():
  # Imported here: it loads TensorFlow, which only this test needs.
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from tfx.utils import proto_utils  # pylint: disable=g-import-not-at-top

  config = input_config(TABLE, COLUMNS, 'session_id', SPLITS)
  example_gen = tfx.extensions.google_cloud_big_query.BigQueryExampleGen(
      input_config=config)

  stored = proto_utils.json_to_proto(
      example_gen.exec_properties['input_config'], example_gen_pb2.Input())
  assert stored == config
  assert 'examples' in example_gen.outputs


def test_the_date_column_is_read_as_a_string_when_selected():
  queries = split_queries(TABLE, ['session_id', 'session_date'], 'session_id',
                          {'train': 1})
  assert ('CAST(`session_date` AS STRING) AS `session_date`' in
          queries['train'])
