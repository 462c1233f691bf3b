"""`repairml serve`: the online prediction server, on uvicorn.

It serves the models the Pusher pushed to `paths.serving_dir`
(serving/model_store.py: the newest version, hot reload, pinning) through the
routes of serving/app.py, with concurrent requests micro-batched into shared
model calls (serving/batching.py), Prometheus metrics (serving/metrics.py)
and a request log for monitoring (serving/request_log.py). In a Vertex AI
endpoint the same server runs in the serving image, on AIP_HTTP_PORT, with
the model Vertex AI names in AIP_STORAGE_URI (serving/model_source.py).

The configuration's `serving` section sets its limits (pipeline/config.py);
the flags below override them.

Bounded by construction: one event loop reads every connection (no thread
per client), one thread runs the model, at most `max_connections`
connections are open (more are answered 503 and closed) and at most
`max_queued_sessions` wait for the model. It listens on 127.0.0.1 unless
told otherwise; even uvicorn's own answers to malformed HTTP are JSON.

This module imports TensorFlow only when it serves, so that `repairml serve`
can send TensorFlow's output to the log file first.
"""

import argparse
import errno
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable, List, Optional, TextIO

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pipeline.config import (DEFAULT_CONFIG_PATH, Config, ConfigError,
                             load_config)
from serving import contract, model_source, pushed
from serving.app import PredictionService, ServiceSettings, is_loopback
from serving.batching import RETRY_AFTER_SECONDS, MicroBatcher
from serving.metrics import ServingMetrics

DEFAULT_HOST = '127.0.0.1'
DEFAULT_PORT = 8501
REQUEST_LOG_NAME = 'serving_requests.jsonl'
USAGE_ERROR = 2

logger = logging.getLogger('repairml.serving')


# uvicorn's protocol, with JSON where it answers by itself ----------------------

def _raw_answer(status: int, reason: str, answer: Any,
                extra_headers: str = '') -> bytes:
  body = contract.dumps(answer)
  return (f'HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n'
          f'content-length: {len(body)}\r\nconnection: close\r\n'
          f'{extra_headers}\r\n').encode() + body


# How long a connection closed by the server still takes (and drops) what
# the client sends, so that the client reads the answer, not a reset.
LINGER_SECONDS = 2.0


class _LingeringTransport:
  """A transport whose close() half-closes first: the answer's FIN goes out,
  what the client still sends (the rest of a refused body) is read and
  dropped for LINGER_SECONDS, then the socket closes. Closing with unread
  data would make the kernel reset the connection before the client has
  read the answer (the "lingering close" of web servers)."""

  def __init__(self, transport, protocol):
    self._transport = transport
    self._protocol = protocol

  def __getattr__(self, name: str):
    return getattr(self._transport, name)

  def close(self) -> None:
    transport = self._transport
    if self._protocol.lingering or transport.is_closing():
      return
    self._protocol.lingering = True
    try:
      transport.write_eof()
    except (OSError, RuntimeError, NotImplementedError):
      transport.close()
      return
    self._protocol.loop.call_later(LINGER_SECONDS, transport.close)


def _protocol(max_connections: int, on_refused: Callable[[], None]):
  """uvicorn's httptools protocol, with a bound on open connections, JSON
  answers to what uvicorn refuses itself (malformed HTTP), and lingering
  closes."""

  class BoundedJsonProtocol(HttpToolsProtocol):
    """One connection; refused at once when too many are open."""
    lingering = False

    def connection_made(self, transport) -> None:  # pytype: disable=signature-mismatch
      super().connection_made(_LingeringTransport(transport, self))
      if len(self.connections) > max_connections:
        on_refused()
        self.transport.write(_raw_answer(
            503, 'Service Unavailable',
            {'error': f'the server has {max_connections} connections open, '
                      f'its limit; retry in {RETRY_AFTER_SECONDS} s.'},
            f'retry-after: {RETRY_AFTER_SECONDS}\r\n'))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
      if not self.lingering:      # after close(), dropped unread
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
      self.transport.write(_raw_answer(
          400, 'Bad Request', {'error': f'malformed HTTP request: {msg}'}))
      self.transport.close()

  return BoundedJsonProtocol


# The server ------------------------------------------------------------------

class PredictionServer:
  """A bound socket, the service on it, and uvicorn serving it.

  `serve()` serves in the calling thread until `stop()` (or SIGINT/SIGTERM
  in the main thread); `start()` serves from a thread of its own.
  """

  def __init__(self, store, settings: ServiceSettings, host: str, port: int,
               max_batch_size: int = 32, batch_timeout: float = 0.001,
               max_queued_sessions: int = 256, max_connections: int = 256,
               request_log=None, keep_alive_seconds: int = 60):
    self.store = store
    self.metrics = ServingMetrics()
    self.batcher = MicroBatcher(
        max_batch_size, batch_timeout, max_queued_sessions,
        on_batch=self.metrics.batch_sessions.observe,
        on_queue_depth=self.metrics.queue_sessions.set)
    self.request_log = request_log
    if request_log is not None:
      request_log.on_drop = self.metrics.request_log_dropped.inc
    self.service = PredictionService(store, settings, self.batcher,
                                     self.metrics, request_log)
    self._follow_store()
    # Bound now, so that a busy port fails before the model loads.
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    self.socket = socket.socket(family, socket.SOCK_STREAM)
    try:
      self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      self.socket.bind((host, port))
    except OSError:
      self.socket.close()
      self.batcher.close()
      raise
    self.socket.set_inheritable(True)
    self._uvicorn = uvicorn.Server(uvicorn.Config(
        self.service.app, http=_protocol(
            max_connections, lambda: self.metrics.shed.labels(
                'connections').inc()),
        lifespan='off', access_log=False, log_config=None,
        timeout_keep_alive=keep_alive_seconds, timeout_graceful_shutdown=10,
        backlog=2048, server_header=False, proxy_headers=False))
    self._thread: Optional[threading.Thread] = None

  def _follow_store(self) -> None:
    """The model-version gauge and the load-failure counter follow the
    store; whatever else listens to it keeps listening."""
    store, metrics = self.store, self.metrics
    current = store.current()
    metrics.model_version.set(current.version if current else 0)
    previous_change = store.on_change

    def changed(model) -> None:
      metrics.model_version.set(model.version)
      if previous_change:
        previous_change(model)
    store.on_change = changed
    store.on_load_failure = lambda version, reason: metrics.load_failures.inc()

  @property
  def address(self):
    return self.socket.getsockname()[:2]

  @property
  def url(self) -> str:
    host, port = self.address
    host = f'[{host}]' if ':' in host else host
    return f'http://{host}:{port}'

  @property
  def settings(self) -> ServiceSettings:
    return self.service.settings

  def serve(self) -> None:
    """Serves until stopped; then answers what is queued and returns."""
    try:
      self._uvicorn.run(sockets=[self.socket])
    finally:
      self.close()

  def start(self, timeout: float = 30.0) -> 'PredictionServer':
    """Serves from a daemon thread; returns once it accepts connections."""
    self._thread = threading.Thread(target=self.serve, daemon=True,
                                    name='repairml-serve')
    self._thread.start()
    deadline = time.monotonic() + timeout
    while not self._uvicorn.started:
      if not self._thread.is_alive() or time.monotonic() > deadline:
        raise RuntimeError('the server did not start; the log says why.')
      time.sleep(0.01)
    return self

  def wait(self) -> None:
    """Until the server stops; Ctrl-C (KeyboardInterrupt) still arrives."""
    while self._thread and self._thread.is_alive():
      self._thread.join(0.5)

  def stop(self) -> None:
    self._uvicorn.should_exit = True
    if self._thread:
      self._thread.join()
      self._thread = None

  def close(self) -> None:
    self.batcher.close()
    self.socket.close()
    if self.request_log is not None:
      self.request_log.close()


# `repairml serve` ------------------------------------------------------------

class StartupError(Exception):
  """Why the server cannot start, in one line for the user."""


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='repairml serve',
      description='Serve the pushed model over REST, in TF Serving\'s and '
      'Vertex AI\'s formats. Ctrl-C stops it. The configuration\'s `serving` '
      'section sets the limits; these flags override it.')
  parser.add_argument('--config', default=DEFAULT_CONFIG_PATH,
                      help='run configuration YAML, for the model name, '
                      'paths.serving_dir, the log file and the serving '
                      'section (default: %(default)s)')
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
  parser.add_argument('--poll-seconds', type=float, default=None,
                      help='how often to look for newly pushed or retired '
                      'versions; 0 never (default: serving.poll_seconds)')
  parser.add_argument('--max-request-bytes', type=int, default=None,
                      help='larger bodies are refused with 413 (default: '
                      'serving.max_request_bytes)')
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
    if args.max_request_bytes is not None and args.max_request_bytes <= 0:
      raise StartupError('--max-request-bytes must be positive.')
    if not model_source.storage_uri(os.environ) and not (
        pushed.pushed_versions(config.paths.serving_dir)):
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
  """Listens first (liveness), then loads the model (readiness): Vertex AI
  restarts a container whose port does not accept connections soon."""
  logging.basicConfig(
      level=logging.INFO,
      format='%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s')
  terminal.write(f'log: {config.paths.log_file}\n')
  # pylint: disable-next=g-import-not-at-top
  from serving.model_store import ModelStore
  limits = config.serving
  store = ModelStore(model_source.local_serving_dir(config.paths.serving_dir,
                                                    os.environ))
  port = _port(args.port)
  settings = ServiceSettings(
      model_name=config.pipeline_name,
      max_request_bytes=args.max_request_bytes or limits.max_request_bytes,
      max_instances=limits.max_instances,
      deadline_seconds=limits.deadline_ms / 1000,
      admin=is_loopback(args.host) if args.admin is None else args.admin,
      health_route=os.environ.get('AIP_HEALTH_ROUTE', '/health'),
      predict_route=os.environ.get('AIP_PREDICT_ROUTE', '/predict'))
  request_log = None if args.no_request_log else _request_log(config, args)
  try:
    server = PredictionServer(
        store, settings, args.host, port,
        max_batch_size=limits.max_batch_size,
        batch_timeout=limits.batch_timeout_ms / 1000,
        max_queued_sessions=limits.max_queued_sessions,
        max_connections=limits.max_connections, request_log=request_log)
  except OSError as e:
    if request_log is not None:
      request_log.close()
    if e.errno == errno.EADDRINUSE:
      raise StartupError(f'port {port} on {args.host} is in use; stop what '
                         'uses it or pass another --port.') from None
    raise StartupError(f'cannot listen on {args.host}:{port}: '
                       f'{e.strerror or e}.') from None
  _stop_on_sigterm()
  server.start()
  try:
    terminal.write(f'listening at {server.url} (ready once the model has '
                   'loaded); loading TensorFlow and the model ...\n')
    model = _load(config, args, store)
    _print_banner(terminal, server, model, request_log, store.pinned)
    previous_change = store.on_change
    def announce(m) -> None:
      previous_change(m)
      terminal.write(f'now serving version {m.version}'
                     f'{" (pinned)" if store.pinned == m.version else ""}\n')
    store.on_change = announce
    poll_seconds = (limits.poll_seconds if args.poll_seconds is None
                    else args.poll_seconds)
    if poll_seconds > 0:
      store.start_polling(poll_seconds)
    server.wait()
  except KeyboardInterrupt:
    pass
  finally:
    store.stop_polling()
    server.stop()
  terminal.write('stopped\n')
  return 0


def _load(config: Config, args: argparse.Namespace, store):
  """The model the server starts with: a local copy of AIP_STORAGE_URI's
  in a Vertex AI endpoint, else the newest (or --version) of serving_dir."""
  # pylint: disable-next=g-import-not-at-top
  from serving.model_store import ModelLoadError, VersionNotFoundError
  try:
    model_source.serving_dir_for(config.paths.serving_dir, os.environ)
  except model_source.ModelSourceError as e:
    raise StartupError(str(e)) from None
  if not store.available_versions():
    raise StartupError(_no_model(store.serving_dir))
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
    raise StartupError(f'no version in {store.serving_dir} could be loaded '
                       f'({reasons}); the log has the details.')
  return model


def _request_log(config: Config, args: argparse.Namespace):
  # pylint: disable-next=g-import-not-at-top
  from serving.request_log import RequestLog
  settings = config.serving.request_log
  path = args.request_log or os.path.join(
      os.path.dirname(config.paths.log_file), REQUEST_LOG_NAME)
  try:
    return RequestLog(path, sample_rate=settings.sample_rate,
                      max_bytes=settings.max_megabytes << 20,
                      backups=settings.backups)
  except OSError as e:
    raise StartupError(f'cannot write the request log {path}: '
                       f'{e.strerror or e}.') from None


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
                  request_log, pinned: Optional[int]) -> None:
  name, url = server.settings.model_name, server.url
  terminal.write(f'serving {name} version {model.version}'
                 f'{" (pinned)" if pinned is not None else ""} at '
                 f'{url}/v1/models/{name}\n')
  terminal.write(f'  predict: POST {url}/v1/models/{name}:predict, '
                 f'Vertex AI: POST {server.settings.predict_route}\n')
  terminal.write(f'  health: GET /live, GET /ready '
                 f'({server.settings.health_route}); metrics: GET /metrics\n')
  terminal.write(f'  admin (pin, unpin): '
                 f'{"on" if server.settings.admin else "off"}\n')
  terminal.write(f'  request log: '
                 f'{request_log.path if request_log else "off"}\n')
  if not is_loopback(server.address[0]):
    terminal.write(f'  listening on {server.address[0]}: reachable from '
                   'other machines\n')
  terminal.write('Ctrl-C stops.\n')


def _stop_on_sigterm() -> None:
  """`docker stop` and Vertex AI send SIGTERM: stop as Ctrl-C does (uvicorn
  stops gracefully first, then hands the signal on to this handler)."""
  def stop(signum, frame):  # pylint: disable=unused-argument
    raise KeyboardInterrupt()
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, stop)


if __name__ == '__main__':
  sys.exit(main())
