"""The rules for every value that may go into a BigQuery session query.

A table name, a column name, a car model or a date reaches the production
query builder (pipeline/production/bigquery.py) either from the configuration
(pipeline/config.py, checked when it loads) or from a run's parameters
(pipeline/production/runtime_parameters.py, checked before a run is sent).
All three check with these functions, so a value is accepted or refused by one
rule wherever it comes from. This module imports neither TFX nor Google Cloud:
loading a configuration must not need the production code.

Each check raises a QueryError that names the offending field and the problem
separately, so that each caller can say which of its own keys or options it is.
"""

import dataclasses
import datetime
import re

CAR_MODEL_MAX_LENGTH = 64

# A column or split name: it is backquoted in SQL, and still may not need to be.
IDENTIFIER = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')
# A Cloud project id starts with a letter and does not end with a hyphen.
_PROJECT_ID = re.compile(r'[a-z][a-z0-9-]{4,28}[a-z0-9]')
_DATASET_OR_TABLE = re.compile(r'[A-Za-z0-9_]{1,1024}')
_CAR_MODEL = re.compile(r'[A-Za-z0-9 _./-]{1,%d}' % CAR_MODEL_MAX_LENGTH)


class QueryError(ValueError):
  """A value cannot go into a query: `field` is which one, `problem` why."""

  def __init__(self, field: str, problem: str):
    super().__init__(f'{field}: {problem}')
    self.field = field
    self.problem = problem


@dataclasses.dataclass(frozen=True)
class SessionFilter:
  """Which sessions to read; an empty field does not filter."""
  car_model: str = ''        # '' = every car model
  date_from: str = ''        # 'YYYY-MM-DD' inclusive, '' = no lower bound
  date_to: str = ''          # 'YYYY-MM-DD' inclusive, '' = no upper bound


def check_table(table: str) -> None:
  """`table` must be a fully qualified project.dataset.table."""
  parts = table.split('.') if isinstance(table, str) else []
  if (len(parts) != 3 or not _PROJECT_ID.fullmatch(parts[0]) or
      not all(_DATASET_OR_TABLE.fullmatch(part) for part in parts[1:])):
    raise QueryError(
        'table',
        f'{table!r} is not a fully qualified project.dataset.table. The '
        'project id has 6 to 30 lower-case letters, digits and hyphens, '
        'starting with a letter; the dataset and table names have letters, '
        'digits and underscores.')


def check_column_name(field: str, name: str) -> None:
  """`name` must be a plain column name; `field` says which argument it is."""
  if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
    raise QueryError(field, f'{name!r} is not a column name. Use letters, '
                     'digits and underscores, not starting with a digit.')


def checked_filter(session_filter: SessionFilter) -> SessionFilter:
  """`session_filter` with its dates in canonical YYYY-MM-DD form.

  Raises:
    QueryError: its `field` is the SessionFilter field that is not allowed
      (car_model, date_from or date_to).
  """
  car_model = session_filter.car_model
  if car_model != '' and (
      not isinstance(car_model, str) or not _CAR_MODEL.fullmatch(car_model) or
      car_model != car_model.strip()):
    raise QueryError(
        'car_model', f'{car_model!r} is not allowed. Use at most '
        f'{CAR_MODEL_MAX_LENGTH} letters, digits, spaces and _ . - /, with no '
        'space at either end.')
  date_from = _parsed_date('date_from', session_filter.date_from)
  date_to = _parsed_date('date_to', session_filter.date_to)
  if date_from and date_to and date_from > date_to:
    # The problem does not name the end date's field: each caller has its own
    # name for it (data.date_to, --date-to, session_filter.date_to).
    raise QueryError('date_from', f'{date_from} is after the end date '
                     f'{date_to}; the range would be empty.')
  return SessionFilter(car_model,
                       date_from.isoformat() if date_from else '',
                       date_to.isoformat() if date_to else '')


def _parsed_date(field: str, value: str):
  """The date in `value`, or None when it is empty."""
  if value == '':
    return None
  try:
    return datetime.date.fromisoformat(value)
  except (TypeError, ValueError):
    raise QueryError(field, f'{value!r} is not a date; write it as '
                     'YYYY-MM-DD, e.g. 2026-01-31.') from None
