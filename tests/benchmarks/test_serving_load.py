"""The serving load benchmark's load generator (benchmarks/http_load.py),
against a tiny loopback HTTP server whose answers it knows: how requests are
counted (ok, shed, HTTP errors, connection errors), that the latencies are
those of the answers, and the CPU read from /proc. No TensorFlow."""

import http.server
import os
import socket
import threading
import time
import urllib.parse

import numpy as np
import pytest

from benchmarks import http_load

# Path -> (status, or None to close the connection without answering;
# seconds to wait before answering).
BEHAVIOUR = {
    '/fast': (200, 0.03),
    '/slow': (200, 0.12),
    '/full': (503, 0.0),
    '/too-many': (429, 0.0),
    '/broken': (500, 0.0),
    '/missing': (404, 0.0),
    '/hang-up': (None, 0.0),
    '/stuck': (200, 2.0),
}


class _KnownAnswers(http.server.BaseHTTPRequestHandler):
  protocol_version = 'HTTP/1.1'

  def do_POST(self):  # pylint: disable=invalid-name
    self.rfile.read(int(self.headers['Content-Length']))
    status, delay = BEHAVIOUR[urllib.parse.urlsplit(self.path).path]
    time.sleep(delay)
    if status is None:
      self.close_connection = True
      return
    body = b'{"predictions": [%d]}' % status
    self.send_response(status)
    self.send_header('Content-Length', str(len(body)))
    if status == 503:
      self.send_header('Connection', 'close')
      self.close_connection = True
    self.end_headers()
    self.wfile.write(body)

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    pass


@pytest.fixture(scope='module')
def server():
  httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _KnownAnswers)
  httpd.daemon_threads = True
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield httpd.server_address[1]
  httpd.shutdown()
  httpd.server_close()


def _request(path: str) -> bytes:
  body = b'{"instances": [{}]}'
  return (b'POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n'
          b'\r\n' % (path.encode(), len(body)) + body)


# One of each outcome but the stuck one; 3 fast and 1 slow answer.
MIX = [_request(p) for p in ('/fast', '/full', '/fast', '/too-many', '/broken',
                             '/slow', '/hang-up', '/missing', '/fast')]


@pytest.fixture(scope='module')
def client():
  with http_load.LoadClient(MIX, processes=2, timeout_s=0.5) as load_client:
    yield load_client


def test_closed_loop_counts_each_outcome_of_each_request_once(server, client):
  # 2 processes x 2 connections, 2 rounds of the mix each.
  load = client.closed_loop('127.0.0.1', server, connections=4,
                            max_requests=4 * len(MIX), seconds=30)

  assert (load.ok, load.shed, load.http_errors, load.connection_errors) == (
      16, 8, 8, 4)
  assert load.statuses == {503: 4, 429: 4, 500: 4, 404: 4}
  assert load.connection_error_kinds == {'ConnectionResetError': 4}
  assert load.requests == 36 and load.failed == 20
  summary = load.summary()
  assert (summary['ok'], summary['shed_429_503'],
          summary['http_errors_4xx_5xx'], summary['connection_errors']) == (
              16, 8, 8, 4)


def test_latencies_are_those_of_the_ok_answers(server, client):
  load = client.closed_loop('127.0.0.1', server, connections=4,
                            max_requests=4 * len(MIX), seconds=30)

  latencies_ms = np.sort(np.array(load.latencies_s) * 1000)
  # 12 answers after 30 ms, 4 after 120 ms; the slack is the machine's.
  assert len(latencies_ms) == 16
  assert np.all((latencies_ms[:12] >= 30) & (latencies_ms[:12] < 100))
  assert np.all((latencies_ms[12:] >= 120) & (latencies_ms[12:] < 200))
  summary = load.summary()
  assert summary['p50_ms'] == pytest.approx(np.percentile(latencies_ms, 50),
                                            abs=1e-3)
  assert summary['p99_ms'] == pytest.approx(np.percentile(latencies_ms, 99),
                                            abs=1e-3)
  assert 30 <= summary['p50_ms'] < 100 and summary['p99_ms'] >= 120
  # Four connections, each 3 x 30 + 120 ms of waiting per round of the mix.
  assert 0.42 <= load.seconds < 1.5
  assert summary['sessions_per_s'] == pytest.approx(16 / load.seconds, rel=0.01)


def test_a_request_without_an_answer_is_a_timeout(server):
  with http_load.LoadClient([_request('/stuck'), _request('/fast')],
                            processes=1, timeout_s=0.3) as load_client:
    load = load_client.closed_loop('127.0.0.1', server, connections=1,
                                   max_requests=2, seconds=30)

  assert load.connection_error_kinds == {'timeout': 1}
  assert load.ok == 1 and len(load.latencies_s) == 1


def test_a_closed_port_gives_connection_errors_only(client):
  with socket.socket() as unused:
    unused.bind(('127.0.0.1', 0))
    port = unused.getsockname()[1]
  # Closed again: nothing listens there now.
  load = client.closed_loop('127.0.0.1', port, connections=2, max_requests=6,
                            seconds=30)

  assert load.connection_errors == 6 and load.ok == 0
  assert load.connection_error_kinds == {'ConnectionRefusedError': 6}
  assert load.summary()['p50_ms'] is None


def test_open_loop_sends_every_arrival_and_times_it_from_its_arrival(server):
  fast = [_request('/fast')]
  with http_load.LoadClient(fast, processes=1) as load_client:
    # 1 connection, 20 arrivals/s against 30 ms answers: some arrivals wait
    # for the connection, and that wait is part of their latency.
    load = load_client.open_loop('127.0.0.1', server, connections=1, rate=20,
                                 seconds=1.0, seed=3)

  arrivals = http_load.arrival_offsets(20, 1.0, seed=3)
  assert load.ok == len(arrivals) and load.failed == 0
  # The least each latency can be: a queue of one server taking 30 ms.
  least, free_at = [], 0.0
  for arrival in arrivals:
    free_at = max(arrival, free_at) + 0.03
    least.append(free_at - arrival)
  assert max(least) > 0.04      # some arrivals do wait
  # In arrival order (one connection); 5 ms for the timers' lateness.
  assert np.all(np.array(load.latencies_s) >= np.array(least) - 0.005)


def test_process_cpu_seconds_counts_the_cpu_a_process_spent():
  before, threads = http_load.process_cpu_seconds(os.getpid())
  deadline = time.process_time() + 0.3
  while time.process_time() < deadline:
    pass
  after, _ = http_load.process_cpu_seconds(os.getpid())

  assert threads >= 1
  assert 0.25 <= after - before < 1.0



def test_goals_pass_miss_or_not_run_from_the_figures():
  # pylint: disable-next=g-import-not-at-top
  from benchmarks import serving_load
  in_process = {'batch32': {'sessions_per_s': 10000.0}}
  levels = {'32': {'sessions_per_s': 4999.0, 'failed': 0, 'requests': 900},
            '64': {'sessions_per_s': 5200.0, 'failed': 0, 'requests': 1000}}
  open_loop = {'p99_over_p50': 3.0, 'sessions_per_s': 2600.0,
               'offered_per_s': 2600.0, 'kept_up': True}

  goals = serving_load.goals(in_process, levels, open_loop)

  assert [g['status'] for g in goals] == ['PASS', 'MISS', 'PASS']
  assert goals[1]['measured'].startswith('50.0%')
  levels['64']['failed'] = 1
  assert [g['status'] for g in serving_load.goals(
      in_process, {'64': levels['64']}, None)] == ['MISS', 'NOT RUN',
                                                   'NOT RUN']
