"""Prediction instances -> the serialized tf.Examples a model's signature reads.

An instance is what a client sends for one diagnostic session, in the row
format of TF Serving's and Vertex AI's REST APIs: a JSON object of feature
name -> value, a list for a multivalent feature ({"dtcs": ["P0300"]}). A
TF Serving client may instead send a serialized tf.Example as
{"b64": "<base64>"}. Batch prediction sends parquet rows the same way.

The model says which features it reads, and their types, in its
`serving_features.json` asset (models/export.py). Every problem is a
RequestError that names the instance and the feature.
"""

import base64
import binascii
import math
from typing import Any, Dict, List, Mapping, Sequence

import tensorflow as tf

# The model's feature description: {name: {"dtype": ..., "list": bool}}.
Features = Mapping[str, Mapping[str, Any]]


class RequestError(ValueError):
  """An instance the model cannot read; the message says which and why."""


def serialized_examples(instances: Sequence[Any],
                        features: Features) -> List[bytes]:
  """One serialized tf.Example per instance, in order."""
  if not isinstance(instances, (list, tuple)) or not instances:
    raise RequestError('"instances" must be a non-empty list of sessions.')
  return [_serialized(i, instance, features)
          for i, instance in enumerate(instances)]


def _serialized(index: int, instance: Any, features: Features) -> bytes:
  where = f'instances[{index}]'
  if isinstance(instance, Mapping) and set(instance) == {'b64'}:
    try:
      serialized = base64.b64decode(instance['b64'], validate=True)
      tf.train.Example.FromString(serialized)
    except (binascii.Error, TypeError, ValueError) as e:
      raise RequestError(f'{where}.b64: not a base64-encoded tf.Example '
                         f'({e}).') from None
    return serialized
  if not isinstance(instance, Mapping):
    raise RequestError(f'{where}: must be an object of feature name to '
                       f'value, got {type(instance).__name__}.')
  unknown = sorted(set(instance) - set(features))
  if unknown:
    raise RequestError(f'{where}.{unknown[0]}: not a feature of this model; '
                       f'its features are {", ".join(sorted(features))}.')
  example = tf.train.Example()
  for name, value in instance.items():
    _fill(example.features.feature[name], value, features[name],
          f'{where}.{name}')
  return example.SerializeToString()


def _fill(feature: tf.train.Feature, value: Any, spec: Mapping[str, Any],
          where: str) -> None:
  """Puts `value` (None or NaN = missing) into `feature` as `spec` types it."""
  values = value if isinstance(value, (list, tuple)) else [value]
  if isinstance(value, (list, tuple)) and not spec['list']:
    if len(values) > 1:
      raise RequestError(f'{where}: takes one value, got {len(values)}.')
  values = [v for v in values if not _missing(v)]
  dtype = spec['dtype']
  try:
    if dtype == 'string':
      if not all(isinstance(v, str) for v in values):
        raise TypeError('a string')
      feature.bytes_list.value.extend(v.encode('utf-8') for v in values)
    elif dtype == 'int64':
      if not all(isinstance(v, int) and not isinstance(v, bool) or
                 isinstance(v, float) and v.is_integer() for v in values):
        raise TypeError('an integer')
      feature.int64_list.value.extend(int(v) for v in values)
    else:
      if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                 for v in values):
        raise TypeError('a number')
      feature.float_list.value.extend(float(v) for v in values)
  except TypeError as e:
    raise RequestError(f'{where}: must be {e}' +
                       (' or a list of them' if spec['list'] else '') +
                       f', got {value!r}.') from None


def _missing(value: Any) -> bool:
  return value is None or isinstance(value, float) and math.isnan(value)


def example_dicts(serialized: Sequence[bytes]) -> List[Dict[str, Any]]:
  """The instances back from serialized tf.Examples (for request logs)."""
  rows = []
  for data in serialized:
    row = {}
    for name, feature in tf.train.Example.FromString(data).features.feature.items():
      kind = feature.WhichOneof('kind')
      values = list(getattr(feature, kind).value) if kind else []
      row[name] = [v.decode('utf-8', 'replace') if isinstance(v, bytes) else v
                   for v in values]
    rows.append(row)
  return rows
