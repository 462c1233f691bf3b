"""The one validator of production settings: pydantic models, one-line errors.

The Pusher's custom_config (vertex_pusher.py) and what a submission sends
(submission.py) are pydantic v2 models, strict (no coercion: "10" is not 10,
True is not 1) and closed (an unknown key is an error). `validated()` runs a
model and turns its first error into one line that names the key, where it
is, and what it must be:

  custom_config.ai_platform_serving_args.traffic_percentage must be an
  integer in 0..100, got 101

What a key must be is the `description` of its field, so that each model
states its rules once. Checks that pydantic's constraints cannot express are
validators raising ValueError with the rest of the sentence ("is not a
Google Cloud project ID: use ..."); the line is the key followed by it.
"""

from typing import Any, Optional, Tuple, Type, TypeVar, Union

import pydantic
from pydantic import BaseModel, ConfigDict

STRICT = ConfigDict(extra='forbid', strict=True, frozen=True)

# What a value must be, for errors of pydantic's own types (a field with a
# description says it better).
_EXPECTED = {
    'string_type': 'a string',
    'int_type': 'an integer',
    'bool_type': 'true or false',
    'dict_type': 'a mapping',
    'model_type': 'a mapping',
    'list_type': 'a list',
}

Model = TypeVar('Model', bound=BaseModel)


def validated(schema: Union[Type[Model], pydantic.TypeAdapter], data: Any,
              where: str, error: Type[Exception]) -> Any:
  """`data` checked by `schema` (a model class or a TypeAdapter).

  Args:
    schema: what `data` must be.
    data: the value to check, e.g. a parsed custom_config.
    where: what the keys are in, prefixed to them as written: 'custom_config.'
      gives 'custom_config.ai_platform_serving_args.labels'; 'Vertex target: '
      gives 'Vertex target: project'.
    error: the exception class to raise.

  Raises:
    error: with one line about the first thing wrong with `data`.
  """
  try:
    if isinstance(schema, pydantic.TypeAdapter):
      return schema.validate_python(data)
    return schema.model_validate(data)
  except pydantic.ValidationError as e:
    model = schema if not isinstance(schema, pydantic.TypeAdapter) else None
    # The pydantic error adds nothing the message does not say.
    raise error(problem(e, where, model)) from None


def problem(error: pydantic.ValidationError, where: str,
            model: Optional[Type[BaseModel]] = None) -> str:
  """One line about the first error: the key, and what is wrong with it."""
  first = error.errors()[0]
  loc = tuple(str(part) for part in first['loc'])
  kind, value = first['type'], first.get('input')
  if loc and loc[-1] == '[key]':
    # A dict key was refused: name the dict and the key.
    return (f'{_path(where, loc[:-2])} has the key {value!r}, which '
            f'{_reason(first)}')
  path = _path(where, loc)
  if kind in ('value_error', 'assertion_error'):
    return f'{path} {_reason(first)}'
  if kind == 'extra_forbidden':
    known = _field_names(model, loc[:-1])
    return (f'{path} is not a key of {_path(where, loc[:-1])}'
            + (f'; its keys are {", ".join(known)}' if known else ''))
  description = _description(model, loc)
  expected = description or _EXPECTED.get(kind)
  if kind == 'missing':
    return f'{path} is missing: set it to {expected or "a value"}'
  # A long input (a whole mapping) would drown the line.
  got = f', got {value!r}' if len(repr(value)) <= 100 else ''
  if expected:
    return f'{path} must be {expected}{got}'
  return f'{path}: {first["msg"]}{got}'


def _path(where: str, loc: Tuple[str, ...]) -> str:
  if not loc:
    return where.rstrip('.: ')
  return where + '.'.join(loc)


def _reason(error) -> str:
  """The message of a validator's ValueError, without pydantic's prefix."""
  raised = (error.get('ctx') or {}).get('error')
  return str(raised) if raised is not None else error['msg']


def _field(model: Optional[Type[BaseModel]], loc: Tuple[str, ...]):
  """The pydantic field at `loc` inside `model`, or None."""
  field, current = None, model
  for part in loc:
    if not (isinstance(current, type) and issubclass(current, BaseModel) and
            part in current.model_fields):
      return None
    field = current.model_fields[part]
    current = field.annotation
  return field


def _description(model, loc) -> Optional[str]:
  field = _field(model, loc) if loc else None
  return field.description if field is not None else None


def _field_names(model, loc):
  if loc:
    field = _field(model, loc)
    model = field.annotation if field is not None else None
  if isinstance(model, type) and issubclass(model, BaseModel):
    return list(model.model_fields)
  return []
