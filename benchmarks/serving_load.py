"""Serving load benchmark: `repairml serve` under concurrent clients, against
the model's own limit in process.

Measures, in one run so that the ratios share the machine's load, on the
latest pushed model in the configuration's `paths.serving_dir`:
- the limit: the model's `serving_default` signature called in this process
  on the serialized tf.Examples of fresh generated sessions, in batches of 32
  (and of 1, for comparison), as sessions/s and CPU seconds;
- the client's ceiling: the load generator against a server that answers at
  once with a fixed body of the real answer's size;
- closed loop: 1, 8, 32 and 64 concurrent keep-alive clients, each sending
  one session per request (`POST /v1/models/NAME:predict`) back to back, for
  at most --max-requests requests and --seconds seconds per level;
- open loop: Poisson arrivals at half the best closed-loop sessions/s.
Per level: sessions/s, p50 and p99 latency of the answered requests, failed
requests (connection errors, 4xx/5xx, shed 429/503), and the CPU seconds the
server process (from /proc) and the client processes spent per 1000
sessions, which say where the time goes. The server is started as in
serving_latency.py (its own process, request log on); the client is
benchmarks/http_load.py, in processes of its own.

    .venv/bin/python benchmarks/serving_load.py [--config configs/local.yaml]
        [--seconds 20] [--max-requests 20000] [--json PATH]

Prints a table and the goals of issue 9 as PASS or MISS, and writes the JSON
(benchmarks/out/serving_load.json). Exit code 2 on a user mistake (no
configuration, no pushed model, a bad option), in one line.
"""

import argparse
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, TextIO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'benchmarks'))
# pylint: disable=g-import-not-at-top,wrong-import-position
from http_load import (FixedAnswerServer, Load, LoadClient, event_loop_name,
                       machine_busy_seconds, process_cpu_seconds)
from pipeline.config import DEFAULT_CONFIG_PATH, load_config
from serving_latency import (BATCH_SIZE, BenchmarkError, latest_model, machine,
                             reported, served, sessions, summary, timed)
from serving_latency import WARM_UP_REQUESTS as LATENCY_WARM_UP_CALLS
# pylint: enable=g-import-not-at-top,wrong-import-position

DEFAULT_JSON = ROOT / 'benchmarks' / 'out' / 'serving_load.json'
DEFAULT_LEVELS = (1, 8, 32, 64)
SERVER_WARM_UP_REQUESTS = 200
# Closed-loop level of each goal of issue 9.
NO_FAILURES_AT = 64
THROUGHPUT_AT = 32
THROUGHPUT_SHARE = 0.5
TAIL_RATIO = 3.0
# A level is taken as client-bound when a client process was this busy, or
# reached this share of the client's ceiling.
CLIENT_BUSY = 0.9
CLIENT_CEILING_SHARE = 0.8
# ... and machine-bound when other processes kept this share of the CPUs
# busy, on a machine this full.
OTHERS_SHARE = 0.25
MACHINE_FULL = 0.9
# The open loop kept up when it answered this share of the offered rate.
KEPT_UP_SHARE = 0.95


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      description='sessions/s, p50/p99 latency and failed requests of the '
      'REST server under 1 to 64 concurrent clients, against the same '
      'SavedModel called in-process in batches of 32.')
  parser.add_argument('--config', default=DEFAULT_CONFIG_PATH,
                      help='configuration whose paths.serving_dir holds the '
                      'model (default: %(default)s)')
  parser.add_argument('--levels', default=','.join(map(str, DEFAULT_LEVELS)),
                      help='closed-loop concurrent clients, comma-separated '
                      '(default: %(default)s)')
  parser.add_argument('--seconds', type=float, default=20.0,
                      help='at most this long per closed-loop level, and the '
                      'open loop\'s length (default: %(default)s)')
  parser.add_argument('--max-requests', type=int, default=20000,
                      help='at most this many requests per closed-loop level '
                      '(default: %(default)s)')
  parser.add_argument('--open-loop-connections', type=int, default=64,
                      help='most connections of the open loop\'s pool '
                      '(default: %(default)s)')
  parser.add_argument('--client-processes', type=int, default=2,
                      help='processes the clients are spread over (default: '
                      '%(default)s)')
  parser.add_argument('--timeout', type=float, default=10.0,
                      help='seconds a request may take before it counts as a '
                      'connection error (default: %(default)s)')
  parser.add_argument('--ceiling-seconds', type=float, default=3.0,
                      help='length of the client-ceiling run; 0 skips it '
                      '(default: %(default)s)')
  parser.add_argument('--sessions', type=int, default=2000,
                      help='fresh sessions to send, in turn (default: '
                      '%(default)s)')
  parser.add_argument('--batches', type=int, default=300,
                      help='timed in-process calls per batch size (default: '
                      '%(default)s)')
  parser.add_argument('--json', default=str(DEFAULT_JSON),
                      help='where to write the results (default: %(default)s)')
  return parser


def _levels(text: str) -> List[int]:
  try:
    levels = [int(part) for part in text.split(',')]
  except ValueError:
    levels = []
  if not levels or min(levels) <= 0:
    raise BenchmarkError(f'--levels must be positive client counts separated '
                         f'by commas, e.g. 1,8,32,64; got {text!r}')
  return levels


def _check(args: argparse.Namespace) -> None:
  for name in ('seconds', 'max_requests', 'open_loop_connections',
               'client_processes', 'timeout', 'sessions', 'batches'):
    if getattr(args, name) <= 0:
      raise BenchmarkError(f'--{name.replace("_", "-")} must be positive, got '
                           f'{getattr(args, name)}')
  _levels(args.levels)
  if args.ceiling_seconds < 0:
    raise BenchmarkError('--ceiling-seconds must be 0 or more, got '
                         f'{args.ceiling_seconds}')


def in_process_limit(model, instances: Sequence[Dict[str, Any]],
                     batches: int) -> Dict[str, Any]:
  """sessions/s and CPU seconds per 1000 sessions of `serving_default` on
  serialized tf.Examples, in batches of BATCH_SIZE and of 1."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  signature = tf.saved_model.load(model.path).signatures['serving_default']
  examples = model.serialized(instances)
  results = {}
  for size in (BATCH_SIZE, 1):
    inputs = [tf.constant(examples[i:i + size])
              for i in range(0, len(examples) - size + 1, size)]

    def call(i, inputs=inputs):
      return {k: v.numpy() for k, v in
              signature(examples=inputs[i % len(inputs)]).items()}

    call(0)   # the first call of a signature optimises its graph: not timed
    cpu, busy, wall = (time.process_time(), machine_busy_seconds(),
                       time.perf_counter())
    seconds, total = timed(call, batches)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    result = summary(seconds, total, size)
    # timed() makes its warm-up calls inside the CPU time: counted too.
    calls = len(seconds) + LATENCY_WARM_UP_CALLS
    result['cpu_s_per_1000_sessions'] = round(cpu * 1000 / (calls * size), 4)
    if busy is not None:
      others = machine_busy_seconds() - busy - cpu
      result['other_processes_cores_busy'] = round(max(0.0, others) / wall, 3)
    results[f'batch{size}'] = result
  return results


def request_bytes(port: int, path: str,
                  instances: Sequence[Dict[str, Any]]) -> List[bytes]:
  """One HTTP/1.1 request per session, encoded once, before the clock runs."""
  requests = []
  for instance in instances:
    body = json.dumps({'instances': [instance]}).encode()
    requests.append(
        f'POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n'
        f'Content-Type: application/json\r\nContent-Length: {len(body)}\r\n'
        '\r\n'.encode() + body)
  return requests


def first_answer(port: int, path: str, instance: Dict[str, Any]) -> bytes:
  """The body of one prediction, checked: one session in, one prediction
  out. Its size is that of the fixed answers of the client-ceiling run."""
  connection = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
  try:
    connection.request('POST', path,
                       body=json.dumps({'instances': [instance]}),
                       headers={'Content-Type': 'application/json'})
    response = connection.getresponse()
    body = response.read()
  finally:
    connection.close()
  if response.status != 200:
    raise BenchmarkError(f'the server answered {response.status} to a '
                         f'prediction: {body[:200]!r}')
  if len(json.loads(body)['predictions']) != 1:
    raise BenchmarkError('the server did not answer one prediction for one '
                         'session.')
  return body


class CpuMeter:
  """CPU seconds of the server process, and of the whole machine, over one
  run of load; the machine's, less the server's and the client's, are what
  other work on a shared machine took meanwhile."""

  def __init__(self, server_pid: int):
    self._pid = server_pid
    self._server = process_cpu_seconds(server_pid)
    self._machine = machine_busy_seconds()

  def summary(self, load: Load) -> Dict[str, Any]:
    """The run's summary with what the server and the others spent."""
    server = process_cpu_seconds(self._pid)
    machine_busy = machine_busy_seconds()
    result = load.summary()
    if None in (server, self._server, machine_busy, self._machine):
      result['server_cpu_s'] = None   # no /proc on this machine
      return result
    cpu = server[0] - self._server[0]
    result['server_cpu_s'] = round(cpu, 3)
    result['server_cpu_s_per_1000_sessions'] = (
        round(cpu * 1000 / load.ok, 4) if load.ok else None)
    result['server_threads_at_end'] = server[1]
    if load.seconds:
      result['server_cores_busy'] = round(cpu / load.seconds, 3)
      others = machine_busy - self._machine - cpu - load.client_cpu_s
      result['other_processes_cores_busy'] = round(
          max(0.0, others) / load.seconds, 3)
    return result


def bound_by(level: Dict[str, Any], ceiling: Optional[Dict[str, Any]],
             cpus: int) -> str:
  """Who set the pace of a run: 'client', 'machine' (other processes took
  much of a machine that was full) or 'server'."""
  if level['client_busiest_process'] >= CLIENT_BUSY:
    return 'client'
  if ceiling and level['sessions_per_s'] >= (CLIENT_CEILING_SHARE *
                                             ceiling['sessions_per_s']):
    return 'client'
  others = level.get('other_processes_cores_busy')
  if others is not None and others >= OTHERS_SHARE * cpus:
    used = (others + level['server_cores_busy'] +
            level['client_cpu_s'] / max(level['seconds'], 1e-9))
    if used >= MACHINE_FULL * cpus:
      return 'machine'
  return 'server'


def goals(in_process: Dict[str, Any], levels: Dict[str, Dict[str, Any]],
          open_loop: Optional[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """Issue 9's goals: PASS, MISS, or NOT RUN where their level was not."""
  checks = []
  at64 = levels.get(str(NO_FAILURES_AT))
  checks.append({
      'goal': f'0 failed requests at {NO_FAILURES_AT} clients',
      'measured': (None if at64 is None else
                   f'{at64["failed"]} of {at64["requests"]} failed'),
      'pass': None if at64 is None else at64['failed'] == 0,
  })
  at32 = levels.get(str(THROUGHPUT_AT))
  limit = in_process[f'batch{BATCH_SIZE}']['sessions_per_s']
  share = None if at32 is None else at32['sessions_per_s'] / limit
  checks.append({
      'goal': f'at {THROUGHPUT_AT} clients >= {THROUGHPUT_SHARE:.0%} of '
              f'in-process batch-{BATCH_SIZE} sessions/s',
      'measured': (None if share is None else
                   f'{share:.1%} ({at32["sessions_per_s"]:,.0f} of '
                   f'{limit:,.0f} sessions/s)'),
      'pass': None if share is None else share >= THROUGHPUT_SHARE,
  })
  ratio = None if open_loop is None else open_loop.get('p99_over_p50')
  measured = None
  if ratio is not None:
    measured = (f'p99/p50 = {ratio} ({open_loop["sessions_per_s"]:,.0f} of '
                f'{open_loop["offered_per_s"]:,.0f}/s offered answered'
                f'{"" if open_loop["kept_up"] else "; it did not keep up"})')
  checks.append({
      'goal': f'at half saturation p99 <= {TAIL_RATIO:g} x p50',
      'measured': measured,
      'pass': None if ratio is None else ratio <= TAIL_RATIO,
  })
  for check in checks:
    check['status'] = {True: 'PASS', False: 'MISS', None: 'NOT RUN'}[
        check['pass']]
  return checks


def run(args: argparse.Namespace, terminal: TextIO) -> Dict[str, Any]:
  levels = _levels(args.levels)
  config = load_config(args.config)
  model = latest_model(config)
  terminal.write(f'model: version {model.version} ({model.path})\n')
  pool = sessions(args.sessions, model.features, config.label.column)
  limit = in_process_limit(model, pool, args.batches)
  limit_rate = limit[f'batch{BATCH_SIZE}']['sessions_per_s']
  terminal.write(f'in-process: {limit_rate:,.0f} sessions/s at batch '
                 f'{BATCH_SIZE}\n')
  path = f'/v1/models/{config.pipeline_name}:predict'
  load_average = [os.getloadavg()]
  with tempfile.TemporaryDirectory() as tmp, served(
      args.config, model.version, os.path.join(tmp, 'requests.jsonl'),
      terminal) as server:
    answer = first_answer(server.port, path, pool[0])
    with LoadClient(request_bytes(server.port, path, pool),
                    args.client_processes, args.timeout) as client:
      ceiling = None
      if args.ceiling_seconds:
        with FixedAnswerServer(len(answer)) as fixed:
          ceiling = client.closed_loop('127.0.0.1', fixed.port, max(levels),
                                       10**9, args.ceiling_seconds).summary()
        ceiling['connections'] = max(levels)
        ceiling['client_requests_per_cpu_s'] = (
            round(ceiling['ok'] / ceiling['client_cpu_s'])
            if ceiling['client_cpu_s'] else None)
        terminal.write(f'client ceiling: {ceiling["sessions_per_s"]:,.0f} '
                       'sessions/s\n')
      client.closed_loop('127.0.0.1', server.port, 8, SERVER_WARM_UP_REQUESTS,
                         args.seconds)
      closed = {}
      for n in levels:
        meter = CpuMeter(server.pid)
        load = client.closed_loop('127.0.0.1', server.port, n,
                                  args.max_requests, args.seconds)
        closed[str(n)] = meter.summary(load)
        closed[str(n)]['bound_by'] = bound_by(closed[str(n)], ceiling,
                                              os.cpu_count())
        terminal.write(f'{_clients(n)}: '
                       f'{closed[str(n)]["sessions_per_s"]:,.0f} sessions/s\n')
      best = max(level['sessions_per_s'] for level in closed.values())
      open_loop = None
      if best > 0:
        rate = best / 2
        meter = CpuMeter(server.pid)
        load = client.open_loop('127.0.0.1', server.port,
                                args.open_loop_connections, rate,
                                args.seconds)
        open_loop = meter.summary(load)
        open_loop.update(
            offered_per_s=round(rate, 1),
            arrival_seconds=args.seconds,
            connections=args.open_loop_connections,
            p99_over_p50=(round(open_loop['p99_ms'] / open_loop['p50_ms'], 2)
                          if open_loop['p50_ms'] else None))
        # Below the offered rate, the queue grew: not half saturation.
        open_loop['kept_up'] = (open_loop['sessions_per_s'] >=
                                KEPT_UP_SHARE * rate)
        open_loop['bound_by'] = bound_by(open_loop, ceiling, os.cpu_count())
  load_average.append(os.getloadavg())
  return {
      'model_dir': model.path,
      'model_version': model.version,
      'server': '`repairml serve` (serving/server.py) in a subprocess, '
                'request log on',
      'client': f'benchmarks/http_load.py: raw HTTP/1.1 keep-alive on '
                f'{event_loop_name()} streams, in {args.client_processes} '
                'spawned processes, one session per request',
      'settings': {
          'levels': levels, 'seconds': args.seconds,
          'max_requests': args.max_requests,
          'open_loop_connections': args.open_loop_connections,
          'client_processes': args.client_processes,
          'timeout_s': args.timeout, 'sessions': args.sessions,
          'in_process_batches': args.batches,
          'warm_up_requests': SERVER_WARM_UP_REQUESTS},
      'machine': dict(machine(), load_average_1_5_15_before=load_average[0],
                      load_average_1_5_15_after=load_average[1]),
      'command': 'benchmarks/serving_load.py ' + ' '.join(sys.argv[1:]),
      'in_process': limit,
      'client_ceiling': ceiling,
      'closed_loop': closed,
      'open_loop': open_loop,
      'goals': goals(limit, closed, open_loop),
  }


def _clients(n) -> str:
  return f'{n} client{"" if int(n) == 1 else "s"}'


def _number(value: Optional[float], digits: int = 1) -> str:
  return '-' if value is None else f'{value:,.{digits}f}'


def table(record: Dict[str, Any]) -> str:
  limit = record['in_process']
  lines = ['in-process serving_default (the limit): ' + '; '.join(
      f'{shape.replace("batch", "batch ")}: {r["sessions_per_s"]:,.0f} '
      f'sessions/s, {r["cpu_s_per_1000_sessions"]} CPU-s per 1000 sessions'
      for shape, r in limit.items())]
  ceiling = record['client_ceiling']
  if ceiling:
    lines.append(
        f'client ceiling (fixed-answer server, {ceiling["connections"]} '
        f'connections): {ceiling["sessions_per_s"]:,.0f} sessions/s, busiest '
        f'client process {ceiling["client_busiest_process"]:.0%} of a core; '
        f'the client does {_number(ceiling["client_requests_per_cpu_s"], 0)} '
        'requests per CPU-second')
  rows = [(_clients(n), r) for n, r in record['closed_loop'].items()]
  o = record['open_loop']
  if o:
    rows.append((f'open {o["offered_per_s"]:,.0f}/s', o))
    lines.append(f'open loop: Poisson arrivals at half the best sessions/s, '
                 f'{o["offered_per_s"]:,.1f}/s for {o["arrival_seconds"]:g} s '
                 f'on up to {o["connections"]} connections')
  lines += ['', f'{"":<12} {"sessions/s":>10} {"p50 ms":>9} {"p99 ms":>9} '
            f'{"requests":>8} {"conn err":>8} {"4xx/5xx":>7} {"shed":>5}']
  for name, r in rows:
    lines.append(
        f'{name:<12} {r["sessions_per_s"]:>10,.1f} '
        f'{_number(r["p50_ms"], 2):>9} {_number(r["p99_ms"], 2):>9} '
        f'{r["requests"]:>8} {r["connection_errors"]:>8} '
        f'{r["http_errors_4xx_5xx"]:>7} {r["shed_429_503"]:>5}')
  lines += ['', f'{"CPU":<12} {"server s/1k":>11} {"client s/1k":>11} '
            f'{"server cores":>12} {"client busiest":>14} {"others cores":>12}'
            '  bound by']
  for name, r in rows:
    lines.append(
        f'{name:<12} {_number(r.get("server_cpu_s_per_1000_sessions"), 3):>11} '
        f'{_number(r["client_cpu_s_per_1000_sessions"], 3):>11} '
        f'{_number(r.get("server_cores_busy"), 2):>12} '
        f'{r["client_busiest_process"]:>14.0%} '
        f'{_number(r.get("other_processes_cores_busy"), 2):>12}  '
        f'{r.get("bound_by", "")}')
  lines += ['', noise(record), 'goals:']
  lines += [f'  {g["status"]:<7} {g["goal"]}: {g["measured"] or "-"}'
            for g in record['goals']]
  lines += ['', saturation(record), where_the_time_goes(record)]
  return '\n'.join(lines)


def noise(record: Dict[str, Any]) -> str:
  """How much other work shared the machine: it moves every figure."""
  runs = list(record['in_process'].values()) + list(
      record['closed_loop'].values()) + [record['open_loop'] or {}]
  others = [r['other_processes_cores_busy'] for r in runs
            if r.get('other_processes_cores_busy') is not None]
  m = record['machine']
  text = (f'machine: {m["cpus"]} CPUs, load average '
          f'{m["load_average_1_5_15_before"][0]:.1f} before, '
          f'{m["load_average_1_5_15_after"][0]:.1f} after')
  if others:
    text += (f'; other processes kept {min(others):.2f} to {max(others):.2f} '
             'cores busy during the runs')
  return text + '\n'


def saturation(record: Dict[str, Any]) -> str:
  """Whether the best closed-loop level was the server's limit or the
  client's."""
  closed = record['closed_loop']
  n = max(closed, key=lambda k: closed[k]['sessions_per_s'])
  best, ceiling = closed[n], record['client_ceiling']
  text = (f'saturation: the best level, {_clients(n)}, made '
          f'{best["sessions_per_s"]:,.0f} sessions/s')
  if ceiling:
    text += (f', {best["sessions_per_s"] / ceiling["sessions_per_s"]:.0%} of '
             f'the client\'s ceiling')
  text += (f'; the busiest client process was '
           f'{max(r["client_busiest_process"] for r in closed.values()):.0%} '
           'busy at any level: ')
  if best['bound_by'] == 'client':
    return text + 'the client saturated, the server may do more.'
  if best['bound_by'] == 'machine':
    return text + ('the machine was full, and other processes had much of '
                   'it: run again on a quieter machine.')
  return text + 'the server saturated, not the client.'


def where_the_time_goes(record: Dict[str, Any]) -> str:
  """At the level of the throughput goal (else the last one), CPU per
  session: the server's against the model's alone, and who set the pace."""
  closed = record['closed_loop']
  n = str(THROUGHPUT_AT) if str(THROUGHPUT_AT) in closed else list(closed)[-1]
  level, model = closed[n], record['in_process']
  text = f'where the time goes at {_clients(n)} ({level["bound_by"]}-bound): '
  server = level.get('server_cpu_s_per_1000_sessions')
  if server is None:
    return text + 'no server CPU figure (no /proc on this machine).'
  return (text + f'the server spent {server} CPU-s per 1000 sessions '
          f'({_number(level.get("server_cores_busy"), 2)} cores busy), the '
          f'model alone {model["batch1"]["cpu_s_per_1000_sessions"]} at batch '
          f'1 and {model[f"batch{BATCH_SIZE}"]["cpu_s_per_1000_sessions"]} at '
          f'batch {BATCH_SIZE} in process; the client '
          f'{level["client_cpu_s_per_1000_sessions"]}.')


def main(argv: Optional[List[str]] = None) -> int:
  args = _parser().parse_args(argv)
  return reported('serving_load', args.config, args.json,
                  lambda terminal: run(args, terminal), table,
                  lambda: _check(args))


if __name__ == '__main__':
  sys.exit(main())
