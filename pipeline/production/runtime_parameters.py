"""The runtime parameters of a production pipeline: what a run can change
without compiling again, and the check of the values a user passes.

The compiled pipeline declares them with the configuration's values as
defaults (pipeline/production/vertex.py); `repairml submit` checks the values
it sends with the same query builder the pipeline's RunParameters step uses.
"""

import dataclasses
from typing import Any, Dict, Optional

from pipeline.config import Config, ConfigError, source_columns
from pipeline.production import bigquery

CAR_MODEL = 'car_model'
DATE_FROM = 'date_from'
DATE_TO = 'date_to'
TRAIN_STEPS = 'train_steps'


def defaults(config: Config) -> Dict[str, Any]:
  """{name: default value} of every runtime parameter."""
  return {CAR_MODEL: config.data.car_model, DATE_FROM: config.data.date_from,
          DATE_TO: config.data.date_to,
          TRAIN_STEPS: config.training.train_steps}


def checked_values(config: Config, car_model: Optional[str] = None,
                   date_from: Optional[str] = None,
                   date_to: Optional[str] = None,
                   train_steps: Optional[int] = None) -> Dict[str, Any]:
  """The given values (None = keep the default), or a ConfigError naming the
  command-line option that is wrong."""
  given = {name: value for name, value in (
      (CAR_MODEL, car_model), (DATE_FROM, date_from), (DATE_TO, date_to),
      (TRAIN_STEPS, train_steps)) if value is not None}
  values = {**defaults(config), **given}
  try:
    bigquery.split_queries(
        config.data.table, source_columns(config), config.data.id_column,
        dataclasses.asdict(config.splits),
        session_filter=bigquery.SessionFilter(
            values[CAR_MODEL], values[DATE_FROM], values[DATE_TO]))
  except bigquery.QueryError as e:
    field, problem = str(e).split(': ', 1)
    option = field.rsplit('.', 1)[-1].replace('_', '-')
    raise ConfigError(f'--{option}: {problem}') from None
  if values[TRAIN_STEPS] <= 0:
    raise ConfigError(f'--train-steps: must be a positive number, got '
                      f'{values[TRAIN_STEPS]}.')
  return given
