"""The online prediction service: TF Serving's and Vertex AI's REST APIs.

`repairml serve` serves the models the Pusher pushed to `paths.serving_dir`
(serving/model_store.py: the newest version, hot reload, rollback by pinning)
over HTTP, with the standard library's ThreadingHTTPServer.

TF Serving's REST API (model name = the configuration's `pipeline_name`):
  GET  /v1/models/NAME[/versions/V]            model status
  GET  /v1/models/NAME[/versions/V]/metadata   signature, labels, thresholds,
                                               features, provenance
  POST /v1/models/NAME[/versions/V]:predict    {"instances": [...],
                                                "top_k": 5} (optional)
Vertex AI custom-container routes (AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE):
  GET  /health                                 200 once a model is loaded
  POST /predict                                {"instances": [...],
                                                "parameters": {"top_k": 5}}
Rollback (admin; on by default only when bound to a loopback address):
  POST /v1/models/NAME/versions/V:pin          serve V even when newer
                                               versions are pushed
  POST /v1/models/NAME:unpin                   back to the newest version

Secure by default: it listens on 127.0.0.1, refuses a body over
`max_request_bytes` (1 MiB) before reading it, parses bodies only as JSON,
and answers every error as {"error": "..."} without internals; exceptions go
to the log. Admin requests must say `Content-Type: application/json`, which
a web page cannot send to another origin without the server's consent: a
browser cannot pin a version behind the user's back.

Every prediction is appended as one JSON line to the request log
(`serving_requests.jsonl` beside the log file), which monitoring reads:
{"timestamp", "model_version", "route", "instances", "recommended_labels",
"probabilities", "latency_ms"}; the instances are the tf.Example features
the model read, each as a list of values, and latency_ms runs from the
request's arrival to its prediction. The line is written after the answer
is sent, so that the client does not wait for it.

This module imports TensorFlow only when it serves, so that `repairml serve`
can send TensorFlow's output to the log file first.
"""

import argparse
import datetime
import errno
import http.server
import ipaddress
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
from typing import Any, Dict, List, Mapping, Optional, TextIO, Tuple

import numpy as np

from pipeline.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from serving import pushed

DEFAULT_HOST = '127.0.0.1'
DEFAULT_PORT = 8501
DEFAULT_MAX_REQUEST_BYTES = 1 << 20
DEFAULT_POLL_SECONDS = 10.0
DEFAULT_TOP_K = 5
REQUEST_LOG_NAME = 'serving_requests.jsonl'
SIGNATURE = 'serving_default'
USAGE_ERROR = 2

logger = logging.getLogger('repairml.serving')

_MODEL_ROUTE = re.compile(
    r'/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+))?'
    r'(?P<action>/metadata|:predict|:pin|:unpin)?')


class HttpError(Exception):
  """An answer other than 200: its status and the client's message."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status
    self.message = message


class RequestLog:
  """Appends one JSON line per prediction; safe to call from any thread."""

  def __init__(self, path: str):
    self.path = path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self._file = open(path, 'a', encoding='utf-8')  # pylint: disable=consider-using-with
    self._lock = threading.Lock()

  def append(self, record: Mapping[str, Any]) -> None:
    line = json.dumps(record, separators=(',', ':')) + '\n'
    with self._lock:
      self._file.write(line)
      self._file.flush()

  def close(self) -> None:
    with self._lock:
      self._file.close()


class PredictionServer(http.server.ThreadingHTTPServer):
  """The HTTP server, holding what its request handlers need."""

  daemon_threads = True   # a slow client never keeps the process alive

  def __init__(self, address: Tuple[str, int], store, model_name: str,
               max_request_bytes: int, request_log: Optional[RequestLog],
               admin: bool, health_route: str, predict_route: str):
    if ':' in address[0]:
      self.address_family = socket.AF_INET6
    super().__init__(address, PredictionHandler)
    self.store = store
    self.model_name = model_name
    self.max_request_bytes = max_request_bytes
    self.request_log = request_log
    self.admin = admin
    self.health_route = health_route
    self.predict_route = predict_route

  def handle_error(self, request, client_address) -> None:
    """A connection that failed outside a handler's own error handling (the
    client went away mid-answer): to the log, not to stderr."""
    error = sys.exc_info()[1]
    if isinstance(error, ConnectionError):
      logger.info('Connection from %s lost: %s', client_address[0], error)
    else:
      logger.exception('Connection from %s failed.', client_address[0])

  @property
  def url(self) -> str:
    host, port = self.server_address[:2]
    host = f'[{host}]' if ':' in host else host
    return f'http://{host}:{port}'


def is_loopback(host: str) -> bool:
  if host == 'localhost':
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def create_server(store, model_name: str, host: str = DEFAULT_HOST,
                  port: int = DEFAULT_PORT,
                  max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                  request_log: Optional[RequestLog] = None,
                  admin: Optional[bool] = None, health_route: str = '/health',
                  predict_route: str = '/predict') -> PredictionServer:
  """Binds the server (port 0: any free port); `serve_forever()` serves.

  `admin` None enables the pin and unpin endpoints only on a loopback host.
  """
  return PredictionServer(
      (host, port), store, model_name, max_request_bytes, request_log,
      is_loopback(host) if admin is None else admin, health_route,
      predict_route)


class PredictionHandler(http.server.BaseHTTPRequestHandler):
  """Routes one request; every answer is JSON."""

  protocol_version = 'HTTP/1.1'   # keep-alive: a client reuses its connection
  server_version = 'repairml-serving'
  sys_version = ''
  timeout = 60                    # seconds a silent client may hold a thread
  server: PredictionServer

  def setup(self) -> None:
    super().setup()
    # Headers and body go out in separate writes; without this, Nagle's
    # algorithm and delayed ACKs add ~40 ms to every keep-alive request.
    self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

  def do_GET(self) -> None:  # pylint: disable=invalid-name
    self._handle('GET')

  def do_POST(self) -> None:  # pylint: disable=invalid-name
    self._handle('POST')

  def _handle(self, method: str) -> None:
    try:
      body = self._read_body() if method == 'POST' else b''
      status, answer = self._route(method, urllib.parse.urlsplit(self.path)
                                   .path, body)
    except HttpError as e:
      status, answer = e.status, {'error': e.message}
    except Exception:  # pylint: disable=broad-except
      # The client learns only that it failed; the log gets the trace.
      logger.exception('%s %s failed.', method, self.path)
      status, answer = 500, {'error': 'internal error; the server log has '
                                      'the details.'}
    self._send_json(status, answer)
    if self._unread_body:
      self._discard_unread_body()
    if self._log_record:
      # After the answer: the client does not wait for the log.
      self._log_request(**self._log_record)
      self._log_record = None

  _unread_body = False
  _log_record: Optional[Dict[str, Any]] = None

  def _discard_unread_body(self) -> None:
    """After refusing a body: a client still sending it would get a
    connection reset instead of the answer if the socket closed now. Reads
    and drops what arrives for a moment (as web servers' lingering close
    does); none of it is parsed."""
    try:
      self.connection.shutdown(socket.SHUT_WR)
      self.connection.settimeout(1.0)
      deadline = time.monotonic() + 2.0
      while time.monotonic() < deadline and self.rfile.read1(1 << 16):
        pass
    except OSError:
      pass  # the client is gone or silent: the answer was sent

  def _route(self, method: str, path: str,
             body: bytes) -> Tuple[int, Dict[str, Any]]:
    if path == self.server.health_route:
      self._expect(method, 'GET')
      return self._health()
    if path == self.server.predict_route:
      self._expect(method, 'POST')
      return 200, self._predict(None, body, vertex=True)
    match = _MODEL_ROUTE.fullmatch(path)
    if not match:
      raise HttpError(404, f'no such route: {path}.')
    name, version, action = match.group('name', 'version', 'action')
    if name != self.server.model_name:
      raise HttpError(404, f'unknown model {name!r}; this server serves '
                      f'{self.server.model_name!r}.')
    version = int(version) if version is not None else None
    if action is None:
      self._expect(method, 'GET')
      return 200, self._status(version)
    if action == '/metadata':
      self._expect(method, 'GET')
      return 200, self._metadata(version)
    self._expect(method, 'POST')
    if action == ':predict':
      return 200, self._predict(version, body, vertex=False)
    if action == ':pin' and version is not None:
      return 200, self._pin(version, body)
    if action == ':unpin' and version is None:
      return 200, self._unpin(body)
    raise HttpError(404, f'no such route: {path}.')

  @staticmethod
  def _expect(method: str, allowed: str) -> None:
    if method != allowed:
      raise HttpError(405, f'this route takes {allowed} requests.')

  # The body ----------------------------------------------------------------

  def _read_body(self) -> bytes:
    """The body, refused before it is read when it is too large."""
    if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
      self.close_connection = True
      raise HttpError(411, 'send the body with a Content-Length, not chunked.')
    length = self.headers.get('Content-Length')
    if length is None:
      return b''    # HTTP/1.1: neither length nor chunks means no body
    if not length.isdigit():
      self.close_connection = True
      raise HttpError(400, f'invalid Content-Length {length!r}.')
    if int(length) > self.server.max_request_bytes:
      self.close_connection = True   # the unread body must not be parsed
      self._unread_body = True
      raise HttpError(413, self._too_large(int(length)))
    body = self.rfile.read(int(length))
    if len(body) < int(length):
      self.close_connection = True
      raise HttpError(400, 'the body ended before its Content-Length.')
    return body

  def _too_large(self, length: int) -> str:
    return (f'the body has {length} bytes; the limit is '
            f'{self.server.max_request_bytes}. Send fewer instances per '
            'request.')

  def handle_expect_100(self) -> bool:
    """A client asking before it sends a large body (curl does) hears 413
    at once instead of "100 Continue"."""
    length = self.headers.get('Content-Length', '')
    if length.isdigit() and int(length) > self.server.max_request_bytes:
      self.close_connection = True
      self._send_json(413, {'error': self._too_large(int(length))})
      return False
    return super().handle_expect_100()

  def _json_body(self, body: bytes, required: bool = False) -> Dict[str, Any]:
    """The body as a JSON object. Content-Type must be JSON if given (and
    given at all when `required`)."""
    content_type = self.headers.get('Content-Type', '').split(';')[0]
    content_type = content_type.strip().lower()
    if content_type != 'application/json' and (content_type or required):
      raise HttpError(415, 'send the body as JSON, with the header '
                      '"Content-Type: application/json".')
    if not body.strip() and not required:
      raise HttpError(400, 'the body is empty; send a JSON object such as '
                      '{"instances": [...]}.')
    try:
      parsed = json.loads(body.decode('utf-8')) if body.strip() else {}
    except UnicodeDecodeError:
      raise HttpError(400, 'the body is not UTF-8 text.') from None
    except (ValueError, RecursionError) as e:
      raise HttpError(400, f'the body is not valid JSON: {e}.') from None
    if not isinstance(parsed, dict):
      raise HttpError(400, 'the body must be a JSON object such as '
                      '{"instances": [...]}.')
    return parsed

  # Model status and metadata ----------------------------------------------

  def _health(self) -> Tuple[int, Dict[str, Any]]:
    model = self.server.store.current()
    if model is None:
      return 503, {'error': 'no model version is loaded yet.'}
    return 200, {'status': 'ok', 'model_version': str(model.version)}

  def _status(self, version: Optional[int]) -> Dict[str, Any]:
    store = self.server.store
    states = {v: _version_status(v, 'AVAILABLE') for v in store.versions()}
    states.update({v: _version_status(v, 'END', reason)
                   for v, reason in store.failures().items()})
    if version is not None:
      if version not in states:
        raise HttpError(404, f'version {version} of {self.server.model_name} '
                        'is not loaded.')
      states = {version: states[version]}
    if not states:
      raise HttpError(503, 'no model version is loaded yet.')
    return {'model_version_status': [states[v]
                                     for v in sorted(states, reverse=True)]}

  def _metadata(self, version: Optional[int]) -> Dict[str, Any]:
    model = self._model(version)
    return {
        'model_spec': {'name': self.server.model_name,
                       'signature_name': '',
                       'version': str(model.version)},
        'metadata': {
            'signature_def': {'signature_def': {SIGNATURE:
                                                model.signature_def}},
            'label_names': model.label_names,
            'thresholds': model.thresholds,
            'features': model.features,
            'provenance': model.provenance,
            'pinned': self.server.store.pinned == model.version,
        },
    }

  def _model(self, version: Optional[int]):
    """The model a request asks for: the current one, or that version."""
    # pylint: disable=g-import-not-at-top
    from serving.model_store import ModelLoadError, VersionNotFoundError
    store = self.server.store
    if version is None:
      model = store.current()
      if model is None:
        raise HttpError(503, 'no model version is loaded yet.')
      return model
    try:
      return store.get(version)
    except VersionNotFoundError:
      raise HttpError(404, f'version {version} of {self.server.model_name} '
                      'is not in the serving directory.') from None
    except ModelLoadError as e:
      raise HttpError(404, f'version {version} of {self.server.model_name} '
                      f'cannot be served: {e}') from None

  # Predictions -------------------------------------------------------------

  def _predict(self, version: Optional[int], body: bytes,
               vertex: bool) -> Dict[str, Any]:
    # pylint: disable=g-import-not-at-top
    from serving.instances import RequestError
    started = time.perf_counter()
    model = self._model(version)
    request = self._json_body(body)
    instances, top_k = (_vertex_request(request) if vertex
                        else _tf_serving_request(request))
    try:
      serialized = model.serialized(instances)
      outputs = model.predict(serialized)
    except RequestError as e:
      raise HttpError(400, str(e)) from None
    predictions = prediction_dicts(model.label_names, outputs, top_k)
    if self.server.request_log:
      self._log_record = dict(
          model=model, route='vertex' if vertex else 'tf_serving',
          serialized=serialized, predictions=predictions,
          latency_ms=round((time.perf_counter() - started) * 1000, 3))
    if vertex:
      return {'predictions': predictions}
    return {'predictions': predictions, 'model_version': str(model.version)}

  def _log_request(self, model, route: str, serialized: List[bytes],
                   predictions: List[Dict[str, Any]],
                   latency_ms: float) -> None:
    from serving.instances import example_dicts  # pylint: disable=g-import-not-at-top
    try:
      self.server.request_log.append({
          'timestamp': datetime.datetime.now(datetime.timezone.utc)
                       .isoformat(timespec='milliseconds'),
          'model_version': model.version,
          'route': route,
          'instances': example_dicts(serialized),
          'recommended_labels': [p['recommended_labels'] for p in predictions],
          'probabilities': [p['probabilities'] for p in predictions],
          'latency_ms': latency_ms,
      })
    except (OSError, ValueError):
      # The client has its prediction; monitoring misses this line, and the
      # log says so.
      logger.exception('Could not append to the request log %s.',
                       self.server.request_log.path)

  # Rollback ----------------------------------------------------------------

  def _admin_allowed(self, body: bytes) -> None:
    if not self.server.admin:
      raise HttpError(403, 'the admin endpoints (pin, unpin) are off; start '
                      'the server with --admin to use them.')
    self._json_body(body, required=True)

  def _pin(self, version: int, body: bytes) -> Dict[str, Any]:
    # pylint: disable=g-import-not-at-top
    from serving.model_store import ModelLoadError, VersionNotFoundError
    self._admin_allowed(body)
    store = self.server.store
    try:
      model = store.pin(version)
    except VersionNotFoundError as e:
      raise HttpError(404, str(e)) from None
    except ModelLoadError as e:
      current = store.current()
      raise HttpError(400, f'cannot pin: {e}; still serving version '
                      f'{current.version if current else "none"}.') from None
    return {'model_version': str(model.version), 'pinned': True}

  def _unpin(self, body: bytes) -> Dict[str, Any]:
    self._admin_allowed(body)
    model = self.server.store.unpin()
    if model is None:
      raise HttpError(503, 'unpinned, but no model version is loaded.')
    return {'model_version': str(model.version), 'pinned': False}

  # Answers -----------------------------------------------------------------

  def _send_json(self, status: int, answer: Mapping[str, Any]) -> None:
    data = json.dumps(answer).encode('utf-8')
    self.send_response(status)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(data)))
    if self.close_connection:
      self.send_header('Connection', 'close')
    self.end_headers()
    self.wfile.write(data)

  def send_error(self, code: int, message: Optional[str] = None,
                 explain: Optional[str] = None) -> None:
    """http.server's own errors (a malformed request line, an unsupported
    method) as JSON too, not as an HTML page."""
    self.close_connection = True
    try:
      self._send_json(code, {'error': message or self.responses.get(
          code, ('error',))[0]})
    except OSError:
      pass  # the client is gone; nothing to tell it

  def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
    logger.info('%s %s', self.address_string(), format % args)


def _version_status(version: int, state: str,
                    error: str = '') -> Dict[str, Any]:
  return {'version': str(version), 'state': state,
          'status': {'error_code': 'UNKNOWN' if error else 'OK',
                     'error_message': error}}


# The request formats -------------------------------------------------------

def _tf_serving_request(request: Dict[str, Any]) -> Tuple[Any, int]:
  """TF Serving's row format: {"instances": [...], "signature_name"?,
  "top_k"?}."""
  if 'inputs' in request:
    raise HttpError(400, 'only the row format is served: send '
                    '{"instances": [...]}, not "inputs".')
  _no_unknown_keys(request, ('instances', 'signature_name', 'top_k'), 'body')
  signature = request.get('signature_name', SIGNATURE)
  if signature != SIGNATURE:
    raise HttpError(400, f'signature_name: the model has only the '
                    f'{SIGNATURE!r} signature, got {signature!r}.')
  return _instances(request), _top_k(request.get('top_k', DEFAULT_TOP_K),
                                     'top_k')


def _vertex_request(request: Dict[str, Any]) -> Tuple[Any, int]:
  """Vertex AI's format: {"instances": [...], "parameters": {"top_k"?}}."""
  _no_unknown_keys(request, ('instances', 'parameters'), 'body')
  parameters = request.get('parameters') or {}
  if not isinstance(parameters, dict):
    raise HttpError(400, 'parameters: must be an object such as '
                    '{"top_k": 3}.')
  _no_unknown_keys(parameters, ('top_k',), 'parameters')
  return _instances(request), _top_k(parameters.get('top_k', DEFAULT_TOP_K),
                                     'parameters.top_k')


def _instances(request: Dict[str, Any]) -> Any:
  if 'instances' not in request:
    raise HttpError(400, 'the body needs "instances": a list of sessions, '
                    'each an object of feature name to value.')
  return request['instances']


def _no_unknown_keys(mapping: Dict[str, Any], known: Tuple[str, ...],
                     where: str) -> None:
  unknown = sorted(set(mapping) - set(known))
  if unknown:
    raise HttpError(400, f'{where}: unknown key {unknown[0]!r}; the known '
                    f'keys are {", ".join(known)}.')


def _top_k(value: Any, where: str) -> int:
  if not isinstance(value, int) or isinstance(value, bool) or value < 0:
    raise HttpError(400, f'{where}: must be a whole number of labels, 0 or '
                    f'more, got {value!r}.')
  return value


def prediction_dicts(label_names: List[str], outputs: Mapping[str, Any],
                     top_k: int) -> List[Dict[str, Any]]:
  """One prediction per instance, from the signature's [batch, labels]
  outputs: the outputs themselves, the names of the recommended labels, and
  the `top_k` labels by recommendation score (which puts every label's own
  threshold at 0.5, so scores compare across labels)."""
  probabilities = np.asarray(outputs['probabilities'])
  recommended = np.asarray(outputs['recommended'])
  scores = np.asarray(outputs['recommendation_scores'])
  # Highest score first; equal scores in label order.
  ranked = np.argsort(-scores, axis=1, kind='stable')[:, :top_k]
  predictions = []
  for row in range(len(probabilities)):
    row_probabilities = probabilities[row].tolist()
    row_scores = scores[row].tolist()
    predictions.append({
        'probabilities': row_probabilities,
        'recommended': recommended[row].tolist(),
        'recommendation_scores': row_scores,
        'recommended_labels': [name for name, flag in
                               zip(label_names, recommended[row]) if flag],
        'top_k': [{'label': label_names[j], 'score': row_scores[j],
                   'probability': row_probabilities[j]}
                  for j in ranked[row].tolist()],
    })
  return predictions


# `repairml serve` ------------------------------------------------------------

class StartupError(Exception):
  """Why the server cannot start, in one line for the user."""


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='repairml serve',
      description='Serve the pushed model over REST, in TF Serving\'s and '
      'Vertex AI\'s formats. Ctrl-C stops it.')
  parser.add_argument('--config', default=DEFAULT_CONFIG_PATH,
                      help='run configuration YAML, for the model name, '
                      'paths.serving_dir and the log file (default: '
                      '%(default)s)')
  parser.add_argument('--host', default=DEFAULT_HOST,
                      help='address to listen on (default: %(default)s, this '
                      'machine only; 0.0.0.0 for every interface, e.g. in a '
                      'container)')
  parser.add_argument('--port', type=int, default=None,
                      help=f'port (default: $AIP_HTTP_PORT, else '
                      f'{DEFAULT_PORT})')
  parser.add_argument('--version', type=int, default=None,
                      help='serve this version even when newer ones are '
                      'pushed (a rollback); default: the newest')
  parser.add_argument('--poll-seconds', type=float,
                      default=DEFAULT_POLL_SECONDS,
                      help='how often to look for newly pushed versions; 0 '
                      'never (default: %(default)s)')
  parser.add_argument('--max-request-bytes', type=int,
                      default=DEFAULT_MAX_REQUEST_BYTES,
                      help='larger bodies are refused with 413 (default: '
                      '%(default)s)')
  log = parser.add_mutually_exclusive_group()
  log.add_argument('--request-log', default=None, metavar='PATH',
                   help=f'JSONL file of the predictions served (default: '
                   f'{REQUEST_LOG_NAME} beside the configuration\'s log file)')
  log.add_argument('--no-request-log', action='store_true',
                   help='do not log predictions')
  parser.add_argument('--admin', action=argparse.BooleanOptionalAction,
                      default=None,
                      help='the pin and unpin endpoints (default: on only '
                      'when --host is a loopback address)')
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    config = load_config(args.config)
    if args.max_request_bytes <= 0:
      raise StartupError('--max-request-bytes must be positive.')
    if not pushed.pushed_versions(config.paths.serving_dir):
      # Said before TensorFlow takes its seconds to import.
      raise StartupError(_no_model(config.paths.serving_dir))
    from pipeline import progress  # pylint: disable=g-import-not-at-top
    # From here on, what TensorFlow and absl print goes to the log file.
    with progress.output_to_log_file(config.paths.log_file) as terminal:
      return _serve(config, args, terminal)
  except (ConfigError, StartupError) as e:
    print(f'repairml serve: {e}', file=sys.stderr)
    return USAGE_ERROR
  except KeyboardInterrupt:
    print('repairml serve: stopped before serving.', file=sys.stderr)
    return 0


def _serve(config: Config, args: argparse.Namespace, terminal: TextIO) -> int:
  logging.basicConfig(
      level=logging.INFO,
      format='%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s')
  terminal.write(f'log: {config.paths.log_file}\n')
  terminal.write('loading TensorFlow and the model ...\n')
  # pylint: disable=g-import-not-at-top
  from serving.model_store import (ModelLoadError, ModelStore,
                                   VersionNotFoundError)
  # pylint: enable=g-import-not-at-top
  serving_dir = config.paths.serving_dir
  store = ModelStore(serving_dir)
  if not store.available_versions():
    raise StartupError(_no_model(serving_dir))
  port = _port(args.port)
  try:
    # Bound before the model loads, so that a busy port fails at once.
    server = create_server(
        store, config.pipeline_name, args.host, port, args.max_request_bytes,
        None, args.admin,
        health_route=os.environ.get('AIP_HEALTH_ROUTE', '/health'),
        predict_route=os.environ.get('AIP_PREDICT_ROUTE', '/predict'))
  except OSError as e:
    if e.errno == errno.EADDRINUSE:
      raise StartupError(f'port {port} on {args.host} is in use; stop what '
                         'uses it or pass another --port.') from None
    raise StartupError(f'cannot listen on {args.host}:{port}: '
                       f'{e.strerror or e}.') from None
  request_log = None
  try:
    if not args.no_request_log:
      path = args.request_log or os.path.join(
          os.path.dirname(config.paths.log_file), REQUEST_LOG_NAME)
      try:
        request_log = server.request_log = RequestLog(path)
      except OSError as e:
        raise StartupError(f'cannot write the request log {path}: '
                           f'{e.strerror or e}.') from None
    try:
      if args.version is not None:
        store.pin(args.version)
      else:
        store.reload()
    except (VersionNotFoundError, ModelLoadError) as e:
      raise StartupError(str(e)) from None
    model = store.current()
    if model is None:
      reasons = '; '.join(store.failures().values())
      raise StartupError(f'no version in {serving_dir} could be loaded '
                         f'({reasons}); the log has the details.')
    _print_banner(terminal, server, model, request_log, store.pinned)
    store.on_change = lambda m: terminal.write(
        f'now serving version {m.version}'
        f'{" (pinned)" if store.pinned == m.version else ""}\n')
    if args.poll_seconds > 0:
      store.start_polling(args.poll_seconds)
    _stop_on_sigterm()
    try:
      server.serve_forever()
    except KeyboardInterrupt:
      pass
    terminal.write('stopped\n')
    return 0
  finally:
    store.stop_polling()
    server.server_close()
    if request_log:
      request_log.close()


def _no_model(serving_dir: str) -> str:
  return (f'no pushed model in {serving_dir}; run `make run` first (it '
          'pushes a blessed model there).')


def _port(requested: Optional[int]) -> int:
  """--port, else Vertex AI's AIP_HTTP_PORT, else 8501."""
  if requested is not None:
    port, where = requested, '--port'
  else:
    where = 'AIP_HTTP_PORT'
    try:
      port = int(os.environ.get(where, DEFAULT_PORT))
    except ValueError:
      raise StartupError(f'{where} must be a port number, got '
                         f'{os.environ[where]!r}.') from None
  if not 0 <= port <= 65535:
    raise StartupError(f'{where} must be a port number (0-65535), got {port}.')
  return port


def _print_banner(terminal: TextIO, server: PredictionServer, model,
                  request_log: Optional[RequestLog],
                  pinned: Optional[int]) -> None:
  name = server.model_name
  terminal.write(f'serving {name} version {model.version}'
                 f'{" (pinned)" if pinned is not None else ""} at '
                 f'{server.url}/v1/models/{name}\n')
  terminal.write(f'  predict: POST {server.url}/v1/models/{name}:predict, '
                 f'Vertex AI: POST {server.predict_route}, GET '
                 f'{server.health_route}\n')
  terminal.write(f'  admin (pin, unpin): {"on" if server.admin else "off"}\n')
  terminal.write(f'  request log: '
                 f'{request_log.path if request_log else "off"}\n')
  if not is_loopback(server.server_address[0]):
    terminal.write(f'  listening on {server.server_address[0]}: reachable '
                   'from other machines\n')
  terminal.write('Ctrl-C stops.\n')


def _stop_on_sigterm() -> None:
  """`docker stop` and Vertex AI send SIGTERM: stop as Ctrl-C does."""
  def stop(signum, frame):  # pylint: disable=unused-argument
    raise KeyboardInterrupt()
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, stop)


if __name__ == '__main__':
  sys.exit(main())
