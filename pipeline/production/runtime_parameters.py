"""The runtime parameters of a production pipeline: what a run can change
without compiling again, and the check of the values a user passes.

The compiled pipeline declares them with the configuration's values as
defaults (pipeline/production/vertex.py); `repairml submit` checks the values
it sends with the same filter check (pipeline/bigquery_values.py) that the
configuration's defaults and the pipeline's RunParameters step pass.
"""

from typing import Any, Dict, Optional

from pipeline.bigquery_values import QueryError, SessionFilter, checked_filter
from pipeline.config import Config, ConfigError

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
    checked_filter(SessionFilter(values[CAR_MODEL], values[DATE_FROM],
                                 values[DATE_TO]))
  except QueryError as e:
    # The filter's fields are named like the options: car_model, --car-model.
    raise ConfigError(f'--{e.field.replace("_", "-")}: {e.problem}') from None
  if values[TRAIN_STEPS] <= 0:
    raise ConfigError(f'--train-steps: must be a positive number, got '
                      f'{values[TRAIN_STEPS]}.')
  return given
