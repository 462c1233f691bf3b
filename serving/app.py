"""The online prediction service's routes, as a Starlette application.

TF Serving's REST API (NAME = the configuration's `pipeline_name`):
  GET  /v1/models/NAME[/versions/V]            model status
  GET  /v1/models/NAME[/versions/V]/metadata   signature, labels, thresholds,
                                               features, provenance
  POST /v1/models/NAME[/versions/V]:predict    rows or columns
                                               (serving/contract.py)
Vertex AI's custom-container routes (AIP_PREDICT_ROUTE, AIP_HEALTH_ROUTE):
  POST /predict                                {"instances", "parameters"}
  GET  /health                                 = readiness
Operations:
  GET  /live                                   200 while the process runs
  GET  /ready                                  200 once a model has loaded
                                               and answered its warm-up
  GET  /metrics                                Prometheus (serving/metrics.py)
Rollback (admin; on by default only when bound to a loopback address):
  POST /v1/models/NAME/versions/V:pin          serve V even when newer
                                               versions are pushed
  POST /v1/models/NAME:unpin                   back to the newest version

Every answer is strict JSON, errors as {"error": "..."} naming the field at
fault and never a server path or a TensorFlow internal; an unexpected
failure is a 500 whose details go to the log. A body larger than
`max_request_bytes` is refused with 413 from its Content-Length, before it
is read; a request over `max_instances` sessions with 413 too. When the
server is at capacity (serving/batching.py) the answer is 503 with
`Retry-After`, at once.

Admin requests must come to a loopback Host (a DNS-rebinding page cannot
reach them through a browser) and say `Content-Type: application/json`
(which a page cannot send to another origin without the server's consent).
"""

import asyncio
import dataclasses
import datetime
import ipaddress
import itertools
import logging
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving import contract
from serving.batching import RETRY_AFTER_SECONDS, MicroBatcher, Overloaded
from serving.contract import RequestError
from serving.metrics import ServingMetrics

logger = logging.getLogger('repairml.serving')

JSON_TYPE = 'application/json'
TF_SERVING = 'tf_serving'
VERTEX = 'vertex'


class HttpError(Exception):
  """An answer other than 200: its status and the client's message."""

  def __init__(self, status: int, message: str,
               headers: Optional[Dict[str, str]] = None):
    super().__init__(message)
    self.status = status
    self.message = message
    self.headers = headers or {}


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
  """What the routes need to know besides the models."""
  model_name: str
  max_request_bytes: int = 1 << 20
  max_instances: int = contract.DEFAULT_MAX_INSTANCES
  deadline_seconds: float = 5.0
  admin: bool = True
  health_route: str = '/health'
  predict_route: str = '/predict'


class _ModelName(Convertor):
  """A model name in a path: no slash, and no colon (`NAME:predict`)."""
  regex = '[^/:]+'

  def convert(self, value: str) -> str:
    return value

  def to_string(self, value: str) -> str:
    return value


register_url_convertor('model', _ModelName())

Handler = Callable[[Request], Awaitable[Tuple[int, Any]]]


class PredictionService:
  """The routes over a ModelStore, a MicroBatcher and a request log."""

  def __init__(self, store, settings: ServiceSettings, batcher: MicroBatcher,
               metrics: ServingMetrics, request_log=None):
    self.store = store
    self.settings = settings
    self.batcher = batcher
    self.metrics = metrics
    self.request_log = request_log
    self._request_ids = itertools.count(1)
    self._id_prefix = f'{int(time.time()):x}'
    model = '/v1/models/{name:model}'
    version = model + '/versions/{version:int}'
    routes = [
        ('ready', settings.health_route, 'GET', self._ready),
        ('live', '/live', 'GET', self._live),
        ('ready', '/ready', 'GET', self._ready),
        ('metrics', '/metrics', 'GET', None),
        ('vertex_predict', settings.predict_route, 'POST',
         lambda r: self._predict(r, VERTEX)),
        ('status', model, 'GET', self._status),
        ('status', version, 'GET', self._status),
        ('metadata', model + '/metadata', 'GET', self._metadata),
        ('metadata', version + '/metadata', 'GET', self._metadata),
        ('predict', model + ':predict', 'POST',
         lambda r: self._predict(r, TF_SERVING)),
        ('predict', version + ':predict', 'POST',
         lambda r: self._predict(r, TF_SERVING)),
        ('admin', version + ':pin', 'POST', self._pin),
        ('admin', model + ':unpin', 'POST', self._unpin),
    ]
    self.app = Starlette(
        routes=[Route(path, self._metrics_route if handler is None
                      else self._answering(name, handler), methods=[method])
                for name, path, method, handler in routes],
        exception_handlers={HTTPException: self._routing_error})

  # Every answer -------------------------------------------------------------

  def _answering(self, route: str, handler: Handler):
    """The route as Starlette calls it: strict JSON whatever happens, and
    the request counted and timed."""
    async def endpoint(request: Request) -> Response:
      started = time.perf_counter()
      headers = {}
      try:
        status, answer = await handler(request)
      except HttpError as e:
        status, answer, headers = e.status, {'error': e.message}, e.headers
      except contract.ContractError as e:
        status, answer = e.status, {'error': e.message}
      except Exception:  # pylint: disable=broad-except
        # The client learns only that it failed; the log gets the trace.
        logger.exception('%s %s failed.', request.method, request.url.path)
        status, answer = 500, {'error': 'internal error; the server log has '
                                        'the details.'}
      self.metrics.observe(route, status, time.perf_counter() - started)
      return json_response(status, answer, headers)
    return endpoint

  async def _routing_error(self, request: Request,
                           error: HTTPException) -> Response:
    """Starlette's own 404 and 405, as JSON."""
    if error.status_code == 405:
      message = f'{request.url.path} does not take {request.method} requests.'
    else:
      message = f'no such route: {request.url.path}.'
    self.metrics.observe('unknown', error.status_code, 0.0)
    return json_response(error.status_code, {'error': message},
                         dict(error.headers or {}))

  async def _metrics_route(self, request: Request) -> Response:
    del request
    self.metrics.observe('metrics', 200, 0.0)
    return Response(self.metrics.exposition(),
                    media_type=self.metrics.content_type)

  # Health -------------------------------------------------------------------

  async def _live(self, request: Request) -> Tuple[int, Any]:
    del request
    return 200, {'status': 'alive'}

  async def _ready(self, request: Request) -> Tuple[int, Any]:
    del request
    model = self.store.current()
    if model is None:
      return 503, {'error': 'no model version is loaded yet.'}
    return 200, {'status': 'ready', 'model_version': str(model.version)}

  # Model status and metadata ------------------------------------------------

  def _check_name(self, request: Request) -> Optional[int]:
    name = request.path_params['name']
    if name != self.settings.model_name:
      raise HttpError(404, f'unknown model {name!r}; this server serves '
                      f'{self.settings.model_name!r}.')
    return request.path_params.get('version')

  async def _status(self, request: Request) -> Tuple[int, Any]:
    version = self._check_name(request)
    states = {v: _version_status(v, 'AVAILABLE')
              for v in self.store.versions()}
    states.update({v: _version_status(v, 'END', self._client_text(reason))
                   for v, reason in self.store.failures().items()})
    if version is not None:
      if version not in states:
        raise HttpError(404, f'version {version} of '
                        f'{self.settings.model_name} is not loaded.')
      states = {version: states[version]}
    if not states:
      raise HttpError(503, 'no model version is loaded yet.')
    return 200, {'model_version_status': [states[v] for v in
                                          sorted(states, reverse=True)]}

  async def _metadata(self, request: Request) -> Tuple[int, Any]:
    model = self._model(self._check_name(request))
    return 200, {
        'model_spec': {'name': self.settings.model_name,
                       'signature_name': '',
                       'version': str(model.version)},
        'metadata': {
            'signature_def': {'signature_def': {contract.SIGNATURE:
                                                model.signature_def}},
            'label_names': model.label_names,
            'thresholds': model.thresholds,
            'features': model.features,
            'provenance': model.provenance,
            'pinned': self.store.pinned == model.version,
        },
    }

  def _model(self, version: Optional[int]):
    """The model a request asks for: the current one, or that version."""
    # pylint: disable-next=g-import-not-at-top
    from serving.model_store import ModelLoadError, VersionNotFoundError
    if version is None:
      model = self.store.current()
      if model is None:
        raise HttpError(503, 'no model version is loaded yet.')
      return model
    try:
      return self.store.get(version)
    except VersionNotFoundError:
      raise HttpError(404, f'version {version} of {self.settings.model_name} '
                      'is not in the serving directory.') from None
    except ModelLoadError as e:
      raise HttpError(404, f'{self.settings.model_name} '
                      f'{self._client_text(str(e))}') from None

  def _client_text(self, text: str) -> str:
    """A server-side message without the server's paths."""
    return text.replace(self.store.serving_dir, '<serving_dir>')

  # Predictions --------------------------------------------------------------

  async def _predict(self, request: Request, route: str) -> Tuple[int, Any]:
    arrived = time.monotonic()
    with self.batcher.expecting():
      model = self._model(self._check_name(request) if route == TF_SERVING
                          else None)
      body = contract.loads(await self._body(request, json_required=False))
      parse = (contract.vertex_request if route == VERTEX
               else contract.tf_serving_request)
      predict_request = parse(body, self.settings.max_instances)
      try:
        serialized, features = model.read(predict_request.instances)
      except RequestError as e:
        raise HttpError(400, str(e)) from None
      deadline = arrived + self.settings.deadline_seconds
      future = self._submit(model, serialized, deadline)
    outputs = await self._model_outputs(future, deadline)
    answers = contract.predictions(model.label_names, outputs,
                                   predict_request.top_k)
    if self.request_log is not None and self.request_log.sampled():
      self._log(route, model, predict_request, features, answers, arrived)
    return 200, contract.answer(predict_request, model.version, answers)

  def _submit(self, model, serialized: List[bytes], deadline: float):
    try:
      return self.batcher.submit(model, serialized, deadline)
    except Overloaded as e:
      raise self._shed(e) from None

  async def _model_outputs(self, future, deadline: float) -> Dict[str, Any]:
    try:
      return await asyncio.wait_for(asyncio.wrap_future(future),
                                    max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
      future.cancel()
      raise self._shed(Overloaded('deadline', 'the request could not be '
                                  'answered within its deadline; retry in '
                                  f'{RETRY_AFTER_SECONDS} s.')) from None
    except Overloaded as e:
      raise self._shed(e) from None
    except RequestError as e:
      raise HttpError(400, str(e)) from None

  def _shed(self, overloaded: Overloaded) -> HttpError:
    self.metrics.shed.labels(overloaded.reason).inc()
    return HttpError(503, overloaded.message,
                     {'Retry-After': str(RETRY_AFTER_SECONDS)})

  def _log(self, route: str, model, predict_request: contract.PredictRequest,
           features: List[Dict[str, Any]], answers: List[Dict[str, Any]],
           arrived: float) -> None:
    timestamp = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec='milliseconds')
    request_id = f'{self._id_prefix}-{next(self._request_ids)}'
    latency_ms = round((time.monotonic() - arrived) * 1000, 3)
    self.request_log.write([
        {'timestamp': timestamp, 'model_version': model.version,
         'route': route, 'request_id': request_id, 'latency_ms': latency_ms,
         'instance': instance, 'features': read, 'prediction': answer}
        for instance, read, answer in zip(predict_request.instances,
                                          features, answers)])

  # The body -----------------------------------------------------------------

  async def _body(self, request: Request, json_required: bool) -> bytes:
    """The body, refused before it is read when it is too large. Its
    Content-Type must be JSON if given (and given at all if required)."""
    content_type = request.headers.get('content-type', '')
    content_type = content_type.split(';')[0].strip().lower()
    if content_type != JSON_TYPE and (content_type or json_required):
      raise HttpError(415, 'send the body as JSON, with the header '
                      '"Content-Type: application/json".')
    limit = self.settings.max_request_bytes
    length = request.headers.get('content-length')
    if length is not None:
      if not length.isdigit():
        raise HttpError(400, f'invalid Content-Length {length!r}.')
      if int(length) > limit:
        # Closed after the answer: the body is never read.
        raise HttpError(413, _too_large(int(length), limit),
                        {'Connection': 'close'})
    body = bytearray()
    async for chunk in request.stream():
      body += chunk
      if len(body) > limit:      # a chunked body
        raise HttpError(413, _too_large(len(body), limit),
                        {'Connection': 'close'})
    if not body.strip() and not json_required:
      raise HttpError(400, 'the body is empty; send a JSON object such as '
                      '{"instances": [...]}.')
    return bytes(body)

  # Rollback -----------------------------------------------------------------

  async def _admin_request(self, request: Request) -> None:
    if not self.settings.admin:
      raise HttpError(403, 'the admin endpoints (pin, unpin) are off; start '
                      'the server with --admin to use them.')
    host = _host_name(request.headers.get('host', ''))
    if not is_loopback(host):
      raise HttpError(403, 'the admin endpoints answer only requests to a '
                      'loopback address (Host: localhost or 127.0.0.1).')
    body = await self._body(request, json_required=True)
    if body.strip():
      contract.loads(body)

  async def _pin(self, request: Request) -> Tuple[int, Any]:
    # pylint: disable-next=g-import-not-at-top
    from serving.model_store import ModelLoadError, VersionNotFoundError
    version = self._check_name(request)
    await self._admin_request(request)
    try:
      model = await asyncio.to_thread(self.store.pin, version)
    except VersionNotFoundError as e:
      raise HttpError(404, self._client_text(str(e))) from None
    except ModelLoadError as e:
      current = self.store.current()
      raise HttpError(400, f'cannot pin: {self._client_text(str(e))}; still '
                      f'serving version '
                      f'{current.version if current else "none"}.') from None
    return 200, {'model_version': str(model.version), 'pinned': True}

  async def _unpin(self, request: Request) -> Tuple[int, Any]:
    self._check_name(request)
    await self._admin_request(request)
    model = await asyncio.to_thread(self.store.unpin)
    if model is None:
      raise HttpError(503, 'unpinned, but no model version is loaded.')
    return 200, {'model_version': str(model.version), 'pinned': False}


def json_response(status: int, answer: Any,
                  headers: Optional[Dict[str, str]] = None) -> Response:
  return Response(contract.dumps(answer), status_code=status,
                  headers=headers, media_type=JSON_TYPE)


def _too_large(length: int, limit: int) -> str:
  return (f'the body has {length} bytes; the limit is {limit}. Send fewer '
          'instances per request.')


def _version_status(version: int, state: str,
                    error: str = '') -> Dict[str, Any]:
  return {'version': str(version), 'state': state,
          'status': {'error_code': 'UNKNOWN' if error else 'OK',
                     'error_message': error}}


def _host_name(host: str) -> str:
  """The name in a Host header, without its port: [::1]:8501 -> ::1."""
  if host.startswith('['):
    return host[1:].split(']', 1)[0]
  return host.rsplit(':', 1)[0] if host.count(':') == 1 else host


def is_loopback(host: str) -> bool:
  if host == 'localhost':
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False
