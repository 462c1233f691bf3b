"""Serving latency benchmark: the REST server against the same SavedModel in-process.

Measures, in one run so that the ratios share the machine's load, on the
latest pushed model in the configuration's `paths.serving_dir`:
- `http`: `POST /v1/models/NAME:predict` to `repairml serve`
  (serving/server.py, started as a user starts it, in its own process) on a
  loopback port, from a sequential client on one keep-alive connection; a
  request is timed from sending the prepared JSON body to having parsed the
  answer, and the server appends to a request log as it does in service;
- `in_process`: the model's `serving_default` signature called directly on
  the serialized tf.Examples of the same sessions, with the outputs as numpy.
Each in two shapes: one session per request, and batches of 32 sessions.
The sessions are fresh ones from the data generator, sent as JSON rows.

    .venv/bin/python benchmarks/serving_latency.py [--config configs/local.yaml]
        [--requests 200] [--json benchmarks/out/serving.json]

Prints a table and writes the JSON (p50/p95/mean latency in ms, requests/s,
sessions/s, and the ratios http / in-process). Exit code 2 on a user
mistake (no configuration, no pushed model), in one line.
"""

import argparse
import contextlib
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, TextIO

import numpy as np

from pipeline.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from serving import pushed

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / 'benchmarks' / 'out' / 'serving.json'
BATCH_SIZE = 32
WARM_UP_REQUESTS = 20
SESSIONS_SEED = 2024
NOT_AT_SERVING = ('session_date', 'span')
USAGE_ERROR = 2


class BenchmarkError(Exception):
  """A user mistake, reported in one line."""


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      description='p50/p95 latency and requests/s of the REST server against '
      'the same SavedModel called in-process.')
  parser.add_argument('--config', default=DEFAULT_CONFIG_PATH,
                      help='configuration whose paths.serving_dir holds the '
                      'model (default: %(default)s)')
  parser.add_argument('--requests', type=int, default=200,
                      help='timed requests per shape and path (default: '
                      f'%(default)s), after {WARM_UP_REQUESTS} warm-up ones')
  parser.add_argument('--json', default=str(DEFAULT_JSON),
                      help='where to write the results (default: %(default)s)')
  return parser


def sessions(count: int, features: Dict[str, Any], label_column: str) -> List[Dict[str, Any]]:
  """Fresh generated sessions as JSON instances: no label, null readings."""
  # pylint: disable=g-import-not-at-top
  from data.generator import generate_sessions
  from pipeline.components.example_gen import is_missing

  def plain(value):
    if isinstance(value, np.ndarray):
      return [v.item() if isinstance(v, np.generic) else v for v in value]
    if isinstance(value, np.generic):
      value = value.item()
    return None if is_missing(value) else value

  drop = set(NOT_AT_SERVING) | {label_column}
  rows = generate_sessions(count, SESSIONS_SEED).to_dict('records')
  return [{k: plain(v) for k, v in row.items()
           if k not in drop and k in features}
          for row in rows]


def summary(seconds: List[float], total_seconds: float,
            sessions_per_request: int) -> Dict[str, float]:
  ms = np.array(seconds) * 1000
  return {
      'p50_ms': round(float(np.percentile(ms, 50)), 3),
      'p95_ms': round(float(np.percentile(ms, 95)), 3),
      'mean_ms': round(float(ms.mean()), 3),
      'requests_per_s': round(len(seconds) / total_seconds, 1),
      'sessions_per_s': round(len(seconds) * sessions_per_request
                              / total_seconds, 1),
  }


def timed(call: Callable[[int], Any], requests: int) -> tuple:
  """(per-request seconds, wall seconds) of `requests` sequential calls."""
  for i in range(WARM_UP_REQUESTS):
    call(i)
  seconds = []
  started = time.perf_counter()
  for i in range(requests):
    start = time.perf_counter()
    call(i)
    seconds.append(time.perf_counter() - start)
  return seconds, time.perf_counter() - started


class RunningServer(NamedTuple):
  port: int
  pid: int


@contextlib.contextmanager
def served(config_path: str, version: int, request_log: str,
           terminal: TextIO):
  """`repairml serve` on a free loopback port, as a user starts it; yields
  its port and process id once the model answers, and stops it with Ctrl-C
  (SIGINT)."""
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
  command = [sys.executable, '-m', 'serving.server', '--config', config_path,
             '--port', str(port), '--version', str(version), '--poll-seconds',
             '0', '--request-log', request_log]
  # A file, not a pipe: nobody reads the server's output while it serves, and
  # a full pipe would stall it.
  with tempfile.TemporaryFile('w+') as output:
    process = subprocess.Popen(command, cwd=ROOT, stdout=output,
                               stderr=subprocess.STDOUT, text=True)
    try:
      deadline = time.monotonic() + 180
      while not _healthy(port):
        if process.poll() is not None or time.monotonic() > deadline:
          output.seek(0)
          raise BenchmarkError(f'the server did not start: '
                               f'{output.read().strip()}')
        time.sleep(0.5)
      terminal.write(f'server: {" ".join(command[1:])}\n')
      yield RunningServer(port, process.pid)
    finally:
      if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
          process.wait(timeout=30)
        except subprocess.TimeoutExpired:
          process.kill()
          process.wait()


def _healthy(port: int) -> bool:
  connection = http.client.HTTPConnection('127.0.0.1', port, timeout=5)
  try:
    connection.request('GET', '/health')
    return connection.getresponse().status == 200
  except OSError:
    return False
  finally:
    connection.close()


def latest_model(config: Config):
  """The newest pushed version in the configuration's serving_dir, loaded
  (serving/model_store.py)."""
  # pylint: disable-next=g-import-not-at-top
  from serving.model_store import ModelStore
  store = ModelStore(config.paths.serving_dir)
  versions = store.available_versions()
  if not versions:
    raise BenchmarkError(_no_model(config))
  return store.pin(versions[-1])


def _no_model(config: Config) -> str:
  return (f'no pushed model in {config.paths.serving_dir} '
          '(paths.serving_dir): run `make run` first.')


def machine() -> Dict[str, Any]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {'cpus': os.cpu_count(), 'python': platform.python_version(),
          'tensorflow': tf.__version__}


def run(config_path: str, requests: int, terminal: TextIO) -> Dict[str, Any]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  config = load_config(config_path)
  model = latest_model(config)
  pool = sessions(requests + WARM_UP_REQUESTS + BATCH_SIZE, model.features,
                  config.label.column)
  instances = pool
  examples = model.serialized(instances)
  terminal.write(f'model: version {model.version} ({model.path})\n')

  signature = tf.saved_model.load(model.path).signatures['serving_default']
  with tempfile.TemporaryDirectory() as tmp, served(
      config_path, model.version, os.path.join(tmp, 'requests.jsonl'),
      terminal) as server:
    connection = http.client.HTTPConnection('127.0.0.1', server.port,
                                            timeout=60)
    path = f'/v1/models/{config.pipeline_name}:predict'
    try:
      results = {}
      for shape, size in (('single', 1), (f'batch{BATCH_SIZE}', BATCH_SIZE)):
        bodies = [json.dumps({'instances': instances[i:i + size]}).encode()
                  for i in range(requests + WARM_UP_REQUESTS)]
        batches = [tf.constant(examples[i:i + size])
                   for i in range(requests + WARM_UP_REQUESTS)]

        def over_http(i, bodies=bodies):
          connection.request('POST', path, body=bodies[i],
                             headers={'Content-Type': 'application/json'})
          response = connection.getresponse()
          answer = json.loads(response.read())
          if response.status != 200:
            raise BenchmarkError(f'the server answered {response.status}: '
                                 f'{answer.get("error")}')
          return answer

        def in_process(i, batches=batches):
          return {k: v.numpy() for k, v in
                  signature(examples=batches[i]).items()}

        # The two paths must agree before their speed means anything.
        np.testing.assert_allclose(
            [p['probabilities'] for p in over_http(0)['predictions']],
            in_process(0)['probabilities'], rtol=1e-5, atol=1e-6)
        http_seconds, http_total = timed(over_http, requests)
        local_seconds, local_total = timed(in_process, requests)
        http_summary = summary(http_seconds, http_total, size)
        local_summary = summary(local_seconds, local_total, size)
        results[shape] = {
            'sessions_per_request': size,
            'http': http_summary,
            'in_process': local_summary,
            'ratio_http_to_in_process': {
                'p50': round(http_summary['p50_ms'] / local_summary['p50_ms'],
                             2),
                'p95': round(http_summary['p95_ms'] / local_summary['p95_ms'],
                             2),
                'requests_per_s': round(local_summary['requests_per_s'] /
                                        http_summary['requests_per_s'], 2),
            },
        }
        terminal.write(f'{shape}: done\n')
    finally:
      connection.close()
  return {
      'model_dir': model.path,
      'model_version': model.version,
      'instances': 'json rows',
      'requests': requests,
      'warm_up_requests': WARM_UP_REQUESTS,
      'server': '`repairml serve` (serving/server.py) in a subprocess, '
                'request log on',
      'client': 'sequential, one keep-alive connection',
      'machine': machine(),
      'command': 'benchmarks/serving_latency.py ' + ' '.join(sys.argv[1:]),
      'results': results,
  }


def table(record: Dict[str, Any]) -> str:
  lines = [f'{"shape":<9} {"path":<11} {"p50 ms":>8} {"p95 ms":>8} '
           f'{"req/s":>8} {"sessions/s":>11}']
  for shape, result in record['results'].items():
    for path in ('http', 'in_process'):
      r = result[path]
      lines.append(f'{shape:<9} {path:<11} {r["p50_ms"]:>8.2f} '
                   f'{r["p95_ms"]:>8.2f} {r["requests_per_s"]:>8.1f} '
                   f'{r["sessions_per_s"]:>11.1f}')
    ratio = result['ratio_http_to_in_process']
    lines.append(f'{"":<9} http/in-process: p50 x{ratio["p50"]}, p95 '
                 f'x{ratio["p95"]}, throughput /{ratio["requests_per_s"]}')
  return '\n'.join(lines)


def reported(name: str, config_path: str, json_path: str,
             measure: Callable[[TextIO], Dict[str, Any]],
             table_of: Callable[[Dict[str, Any]], str],
             check_options: Callable[[], None] = lambda: None) -> int:
  """Runs `measure(terminal)` with TensorFlow's output going to the
  configuration's log file, writes its record to `json_path` and its table
  to the terminal. A user mistake (BenchmarkError from `check_options`, a
  bad configuration, no pushed model) is one line on stderr and exit code 2,
  before TensorFlow is loaded."""
  try:
    check_options()
    config = load_config(config_path)
    if not pushed.pushed_versions(config.paths.serving_dir):
      raise BenchmarkError(_no_model(config))
    from pipeline import progress  # pylint: disable=g-import-not-at-top
    # TensorFlow's output goes to the log file; the results to the terminal.
    with progress.output_to_log_file(config.paths.log_file) as terminal:
      terminal.write(f'log: {config.paths.log_file}\n')
      record = measure(terminal)
      os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
      with open(json_path, 'w', encoding='utf-8') as f:
        json.dump(record, f, indent=2)
      terminal.write(f'\n{table_of(record)}\n\nwrote {json_path}\n')
  except (BenchmarkError, ConfigError) as e:
    print(f'{name}: error: {e}', file=sys.stderr)
    return USAGE_ERROR
  return 0


def main(argv: Optional[List[str]] = None) -> int:
  args = _parser().parse_args(argv)

  def check_options():
    if args.requests <= 0:
      raise BenchmarkError(f'--requests must be positive, got {args.requests}')

  return reported('serving_latency', args.config, args.json,
                  lambda terminal: run(args.config, args.requests, terminal),
                  table, check_options)


if __name__ == '__main__':
  sys.exit(main())
