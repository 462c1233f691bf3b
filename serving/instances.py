"""Prediction instances -> the serialized tf.Examples a model's signature reads.

An instance is what a client sends for one diagnostic session, in the row
format of TF Serving's and Vertex AI's REST APIs: a JSON object of feature
name -> value, a list for a multivalent feature ({"dtcs": ["P0300"]}). A
TF Serving client may instead send a serialized tf.Example as
{"b64": "<base64>"}. Batch prediction sends parquet rows the same way.

The model says which features it reads, their types and the curated
schema's limits, in its `serving_features.json` asset (models/export.py).
Every value is checked before the model sees it:
- its type, and how many values a feature takes (one; at most `max_values`);
- a feature the model requires is present;
- numbers lie in the schema's domain [`min`, `max`], and otherwise in what
  the model's type holds (int64; finite float32);
- null, an empty list and, in data files, NaN are missing values; a
  non-finite number is refused (a JSON body cannot hold NaN or Infinity,
  serving/contract.py, nor a number that overflows to it, such as 1e400).
A base64 tf.Example is checked the same way. Every problem is a RequestError
that names the instance and the feature.
"""

import base64
import binascii
import math
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import tensorflow as tf

from serving.contract import RequestError  # pylint: disable=unused-import

# The model's feature description: {name: {"dtype": ..., "list": bool}}.
Features = Mapping[str, Mapping[str, Any]]




def serialized_examples(instances: Sequence[Any],
                        features: Features) -> List[bytes]:
  """One serialized tf.Example per instance, in order."""
  return read_instances(instances, features)[0]


def read_instances(instances: Sequence[Any], features: Features
                   ) -> Tuple[List[bytes], List[Dict[str, List[Any]]]]:
  """(One serialized tf.Example per instance, and the features as the model
  reads them: name -> list of values, the missing ones left out)."""
  if not isinstance(instances, (list, tuple)) or not instances:
    raise RequestError('"instances" must be a non-empty list of sessions.')
  read = [_serialized(i, instance, features)
          for i, instance in enumerate(instances)]
  return [example for example, _ in read], [values for _, values in read]


def _serialized(index: int, instance: Any,
                features: Features) -> Tuple[bytes, Dict[str, List[Any]]]:
  where = f'instances[{index}]'
  if isinstance(instance, Mapping) and set(instance) == {'b64'}:
    instance = _decoded(instance['b64'], f'{where}.b64')
  if not isinstance(instance, Mapping):
    raise RequestError(f'{where}: must be an object of feature name to '
                       f'value, got {type(instance).__name__}.')
  unknown = sorted(set(instance) - set(features))
  if unknown:
    raise RequestError(f'{where}.{unknown[0]}: not a feature of this model; '
                       f'its features are {", ".join(sorted(features))}.')
  example = tf.train.Example()
  read = {}
  for name, spec in features.items():
    values = _values(instance.get(name), spec, f'{where}.{name}')
    if values:
      read[name] = values
      feature = example.features.feature[name]
      if spec['dtype'] == 'string':
        feature.bytes_list.value.extend(v.encode('utf-8') for v in values)
      elif spec['dtype'] == 'int64':
        feature.int64_list.value.extend(values)
      else:
        feature.float_list.value.extend(values)
  return example.SerializeToString(), read


def _decoded(encoded: Any, where: str) -> Dict[str, List[Any]]:
  """A base64 tf.Example as an instance, checked as any other is."""
  try:
    example = tf.train.Example.FromString(
        base64.b64decode(encoded, validate=True))
  except (binascii.Error, TypeError, ValueError) as e:
    raise RequestError(f'{where}: not a base64-encoded tf.Example '
                       f'({e}).') from None
  return _example_dict(example)


_INT64 = (-(1 << 63), (1 << 63) - 1)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _values(value: Any, spec: Mapping[str, Any], where: str) -> List[Any]:
  """The values of one feature, typed and checked against the model's
  feature description and the schema's limits (models/export.py). None, an
  empty list and NaN are missing values."""
  listed = isinstance(value, (list, tuple))
  values = [v for v in (value if listed else [value]) if not _missing(v)]
  kind = ('a string' if spec['dtype'] == 'string' else
          'an integer' if spec['dtype'] == 'int64' else 'a number')
  if not spec['list']:
    if listed and len(value) > 1:
      raise RequestError(f'{where}: takes one value, got {len(value)}.')
    if not values:
      raise RequestError(f'{where}: required, and missing; the model needs '
                         f'{kind}.')
  elif len(values) > spec.get('max_values', len(values)):
    raise RequestError(f'{where}: takes at most {spec["max_values"]} values, '
                       f'got {len(values)}.')
  if spec['dtype'] == 'string':
    ok = all(isinstance(v, str) for v in values)
  elif spec['dtype'] == 'int64':
    ok = all(isinstance(v, int) and not isinstance(v, bool) or
             isinstance(v, float) and v.is_integer() for v in values)
  else:
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool)
             for v in values)
  if not ok:
    raise RequestError(f'{where}: must be {kind}' +
                       (' or a list of them' if spec['list'] else '') +
                       f', got {_shown(value)}.')
  if spec['dtype'] == 'string':
    return values
  if spec['dtype'] == 'int64':
    low, high = _INT64
  else:
    for v in values:
      if not math.isfinite(v):
        raise RequestError(f'{where}: must be a finite number, got {v!r}; '
                           'send a missing reading as null.')
    low, high = -_FLOAT32_MAX, _FLOAT32_MAX
  low, high = spec.get('min', low), spec.get('max', high)
  for v in values:
    if not low <= v <= high:
      raise RequestError(f'{where}: {_number(v)} is outside the range the '
                         f'model accepts, [{_number(low)}, {_number(high)}].')
  return [int(v) if spec['dtype'] == 'int64' else float(v) for v in values]


def _number(value: float) -> str:
  return f'{value:.6g}' if abs(value) >= 1e15 else f'{value:g}'


def _shown(value: Any) -> str:
  """A client's value in a message, cut short."""
  text = repr(value)
  return text if len(text) <= 40 else text[:37] + '...'


def _missing(value: Any) -> bool:
  return value is None or isinstance(value, float) and math.isnan(value)


def example_dicts(serialized: Sequence[bytes]) -> List[Dict[str, Any]]:
  """The instances back from serialized tf.Examples: the features as the
  model reads them, name -> list of values (for request logs)."""
  return [_example_dict(tf.train.Example.FromString(data))
          for data in serialized]


def _example_dict(example: tf.train.Example) -> Dict[str, List[Any]]:
  row = {}
  for name, feature in example.features.feature.items():
    kind = feature.WhichOneof('kind')
    values = list(getattr(feature, kind).value) if kind else []
    row[name] = [v.decode('utf-8', 'replace') if isinstance(v, bytes) else v
                 for v in values]
  return row
