"""The prediction contract: one definition of a request and of an answer.

The local server, the server in a Vertex AI endpoint (the same code, in the
serving image) and batch prediction read requests and write answers through
this module, so that a client gets the same JSON, the same decision and the
same ranking from each.

Requests:
  TF Serving, row format     {"instances": [SESSION, ...],
                              "signature_name"?: "serving_default",
                              "top_k"?: 5}
  TF Serving, columnar format {"inputs": {FEATURE: [value per session], ...},
                              "signature_name"?, "top_k"?}
  Vertex AI                  {"instances": [SESSION, ...],
                              "parameters"?: {"top_k"?: 5}}
where SESSION is an object of feature name -> value (serving/instances.py).

One prediction per session, whatever the route:
  {"recommended_labels": [names whose probability reaches their threshold],
   "top_k": [{"label", "score", "probability"}, ...],  highest score first
   "probabilities": [per label, in label order],
   "recommended": [0 or 1 per label],
   "recommendation_scores": [per label]}
The scores move each label's threshold to 0.5 (models/thresholds.py), so
they rank labels by how far each is past its own decision: the ranking of
`top_k`, online and in batch. The label order is the model's metadata
(`label_names`).

Answers: {"model_version": "V", "predictions": [PREDICTION, ...]}; to a
columnar request, {"model_version": "V", "outputs": {KEY: [value per
session]}}, as TF Serving answers in kind. Bodies are strict JSON both ways:
NaN and Infinity are refused in a request and never written in an answer.

It imports numpy and orjson (JSON at several times the standard library's
speed) only: batch workers and the server share it without TensorFlow.
"""

import dataclasses
import json
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
import orjson

SIGNATURE = 'serving_default'
DEFAULT_TOP_K = 5
DEFAULT_MAX_INSTANCES = 1000
# The keys of one prediction, in the order they are written.
PREDICTION_KEYS = ('recommended_labels', 'top_k', 'probabilities',
                   'recommended', 'recommendation_scores')


class ContractError(ValueError):
  """A request that breaks the contract: its HTTP status and the client's
  message, which names the key or the instance at fault."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status
    self.message = message


class RequestError(ContractError):
  """A session the model cannot read (serving/instances.py); the message
  names the instance and the feature."""


@dataclasses.dataclass(frozen=True)
class PredictRequest:
  """A request, whatever its format: the sessions as rows, and what to say."""
  instances: List[Any]
  top_k: int
  columnar: bool = False


# Strict JSON ------------------------------------------------------------------

def _refuse_constant(name: str) -> None:
  raise ContractError(f'the body holds {name}, which is not JSON; send a '
                      'missing value as null.')


def loads(body: bytes) -> Any:
  """The body as strict JSON: no NaN, Infinity or -Infinity."""
  try:
    return orjson.loads(body)
  except orjson.JSONDecodeError as e:
    # orjson is strict but terse; the standard parser says what is wrong.
    try:
      json.loads(body.decode('utf-8'), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
      raise ContractError('the body is not UTF-8 text.') from None
    except RecursionError:
      raise ContractError('the body is nested too deeply.') from None
    except ContractError:
      raise
    except ValueError as standard:
      e = standard
    raise ContractError(f'the body is not valid JSON: {e}.') from None


def dumps(answer: Any) -> bytes:
  """`answer` as JSON. Never NaN or Infinity: predictions() refuses
  non-finite model outputs, and any other non-finite number would be
  written as null."""
  return orjson.dumps(answer)


# Requests ---------------------------------------------------------------------

def tf_serving_request(body: Any,
                       max_instances: int = DEFAULT_MAX_INSTANCES
                       ) -> PredictRequest:
  """TF Serving's REST request, in the row or the columnar format."""
  body = _object(body)
  if 'instances' in body and 'inputs' in body:
    raise ContractError('send either "instances" (rows) or "inputs" '
                        '(columns), not both.')
  _no_unknown_keys(body, ('instances', 'inputs', 'signature_name', 'top_k'),
                   'body')
  signature = body.get('signature_name', SIGNATURE)
  if signature not in (SIGNATURE, ''):
    raise ContractError(f'signature_name: the model has only the '
                        f'{SIGNATURE!r} signature, got {signature!r}.')
  top_k = _top_k(body.get('top_k', DEFAULT_TOP_K), 'top_k')
  if 'inputs' in body:
    return PredictRequest(_rows(body['inputs'], max_instances), top_k,
                          columnar=True)
  return PredictRequest(_instances(body, max_instances), top_k)


def vertex_request(body: Any,
                   max_instances: int = DEFAULT_MAX_INSTANCES
                   ) -> PredictRequest:
  """Vertex AI's request: {"instances": [...], "parameters": {"top_k"?}}."""
  body = _object(body)
  _no_unknown_keys(body, ('instances', 'parameters'), 'body')
  parameters = body.get('parameters')
  if parameters is None:
    parameters = {}
  if not isinstance(parameters, dict):
    raise ContractError('parameters: must be an object such as '
                        '{"top_k": 3}.')
  _no_unknown_keys(parameters, ('top_k',), 'parameters')
  return PredictRequest(
      _instances(body, max_instances),
      _top_k(parameters.get('top_k', DEFAULT_TOP_K), 'parameters.top_k'))


def _object(body: Any) -> Dict[str, Any]:
  if not isinstance(body, dict):
    raise ContractError('the body must be a JSON object such as '
                        '{"instances": [...]}.')
  return body


def _instances(body: Dict[str, Any], max_instances: int) -> List[Any]:
  if 'instances' not in body:
    raise ContractError('the body needs "instances": a list of sessions, '
                        'each an object of feature name to value.')
  instances = body['instances']
  if not isinstance(instances, list) or not instances:
    raise ContractError('"instances" must be a non-empty list of sessions.')
  _at_most(len(instances), max_instances)
  return instances


def _rows(inputs: Any, max_instances: int) -> List[Dict[str, Any]]:
  """The columnar format's {feature: [value per session]} as rows."""
  if not isinstance(inputs, dict) or not inputs:
    raise ContractError('"inputs" must be an object of feature name to a '
                        'list with one value per session.')
  lengths = set()
  for name, column in inputs.items():
    if not isinstance(column, list):
      raise ContractError(f'inputs.{name}: must be a list with one value per '
                          'session.')
    lengths.add(len(column))
  if len(lengths) > 1:
    raise ContractError('"inputs": every feature needs one value per session, '
                        f'but the lists have {sorted(lengths)} values.')
  (count,) = lengths
  if not count:
    raise ContractError('"inputs": the lists are empty; send at least one '
                        'session.')
  _at_most(count, max_instances)
  return [{name: column[i] for name, column in inputs.items()}
          for i in range(count)]


def _at_most(count: int, max_instances: int) -> None:
  if count > max_instances:
    raise ContractError(f'the request has {count} sessions; the limit is '
                        f'{max_instances} per request. Send them in smaller '
                        'requests.', status=413)


def _no_unknown_keys(mapping: Mapping[str, Any], known: Sequence[str],
                     where: str) -> None:
  unknown = sorted(set(mapping) - set(known))
  if unknown:
    raise ContractError(f'{where}: unknown key {unknown[0]!r}; the known keys '
                        f'are {", ".join(known)}.')


def _top_k(value: Any, where: str) -> int:
  if not isinstance(value, int) or isinstance(value, bool) or value < 0:
    raise ContractError(f'{where}: must be a whole number of labels, 0 or '
                        f'more, got {value!r}.')
  return value


# Answers ----------------------------------------------------------------------

def predictions(label_names: Sequence[str], outputs: Mapping[str, Any],
                top_k: int) -> List[Dict[str, Any]]:
  """One prediction per session from the signature's [batch, labels] outputs
  (models/export.py): see the module docstring."""
  probabilities = np.asarray(outputs['probabilities'], np.float64)
  recommended = np.asarray(outputs['recommended'])
  scores = np.asarray(outputs['recommendation_scores'], np.float64)
  if not (np.isfinite(probabilities).all() and np.isfinite(scores).all()):
    raise ValueError('the model answered with non-finite probabilities; its '
                     'inputs passed validation, so the model is at fault.')
  # Highest score first; equal scores in label order.
  ranked = np.argsort(-scores, axis=1, kind='stable')[:, :top_k].tolist()
  probabilities, scores = probabilities.tolist(), scores.tolist()
  flags = recommended.astype(np.int64).tolist()
  answers = []
  for row, row_flags in enumerate(flags):
    row_probabilities, row_scores = probabilities[row], scores[row]
    answers.append({
        'recommended_labels': [name for name, flag in
                               zip(label_names, row_flags) if flag],
        'top_k': [{'label': label_names[j], 'score': row_scores[j],
                   'probability': row_probabilities[j]}
                  for j in ranked[row]],
        'probabilities': row_probabilities,
        'recommended': row_flags,
        'recommendation_scores': row_scores,
    })
  return answers


def answer(request: PredictRequest, model_version: int,
           answers: List[Dict[str, Any]]) -> Dict[str, Any]:
  """The response body: rows, or columns to a columnar request."""
  if request.columnar:
    return {'model_version': str(model_version),
            'outputs': {key: [a[key] for a in answers]
                        for key in PREDICTION_KEYS}}
  return {'model_version': str(model_version), 'predictions': answers}
