"""The load generator of the serving benchmarks: HTTP/1.1 keep-alive clients
on asyncio streams, run in processes of their own.

benchmarks/serving_load.py drives `repairml serve` with it. A client sends
pre-encoded request bytes and reads only what HTTP/1.1 needs to find the end
of an answer (status line, Content-Length or chunks, Connection), so that it
spends little CPU per request; and it runs in separate processes (spawned,
so that they carry no TensorFlow), so that this CPU is not taken from the
interpreter that measures, nor under its GIL.

- Closed loop: N connections, each sending its next request as soon as the
  answer to the last one has arrived, until M requests or T seconds.
- Open loop: requests arrive at a rate (Poisson arrivals), whatever the
  answers. An arrived request takes an idle connection of a pool of N, opens
  one if all are busy, or waits for one; its latency runs from its arrival,
  so that a slow server cannot hide its queue.

Every request ends as exactly one of: ok (200), shed (429 or 503), an HTTP
error (any other status), or a connection error (refused, reset, closed
before the answer, timed out, a malformed answer). Latency percentiles are
those of the ok requests.
"""

import asyncio
import collections
import dataclasses
import multiprocessing
import os
import random
import socket
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

SHED_STATUSES = (429, 503)
START_DELAY_S = 0.3     # lets every client process be ready at the start
FIXED_ANSWER_BODY = b'{"predictions": []}'


@dataclasses.dataclass
class Load:
  """What one run of requests gave, merged over the client processes."""

  latencies_s: List[float] = dataclasses.field(default_factory=list)
  ok: int = 0
  shed: int = 0
  http_errors: int = 0
  connection_errors: int = 0
  statuses: Dict[int, int] = dataclasses.field(default_factory=dict)
  connection_error_kinds: Dict[str, int] = dataclasses.field(
      default_factory=dict)
  # Wall seconds from the first request sent to the last answer.
  seconds: float = 0.0
  client_cpu_s: float = 0.0
  # The busiest client process's CPU seconds over its wall seconds: near 1,
  # the client, not the server, set the pace.
  client_busiest: float = 0.0
  # Open loop: how late the arrivals were released (the client's timers).
  arrival_lateness_p99_ms: Optional[float] = None
  started: float = 0.0    # time.monotonic(), the same clock in every process
  ended: float = 0.0

  @property
  def requests(self) -> int:
    return self.ok + self.shed + self.http_errors + self.connection_errors

  @property
  def failed(self) -> int:
    return self.requests - self.ok

  def record(self, outcome: Union[int, str], seconds: float) -> None:
    """One request's outcome: an HTTP status, or a connection error's kind."""
    if isinstance(outcome, str):
      self.connection_errors += 1
      kinds = self.connection_error_kinds
      kinds[outcome] = kinds.get(outcome, 0) + 1
      return
    if outcome == 200:
      self.ok += 1
      self.latencies_s.append(seconds)
      return
    self.statuses[outcome] = self.statuses.get(outcome, 0) + 1
    if outcome in SHED_STATUSES:
      self.shed += 1
    else:
      self.http_errors += 1

  def percentile_ms(self, q: float) -> Optional[float]:
    if not self.latencies_s:
      return None
    return float(np.percentile(np.array(self.latencies_s) * 1000, q))

  def summary(self) -> Dict[str, object]:
    """The figures a benchmark reports; one session per request."""
    p50, p99 = self.percentile_ms(50), self.percentile_ms(99)
    rate = self.ok / self.seconds if self.seconds > 0 else 0.0
    per_1000 = 1000 / self.ok if self.ok else None
    return {
        'requests': self.requests,
        'ok': self.ok,
        'failed': self.failed,
        'connection_errors': self.connection_errors,
        'http_errors_4xx_5xx': self.http_errors,
        'shed_429_503': self.shed,
        'statuses': {str(k): v for k, v in sorted(self.statuses.items())},
        'connection_error_kinds': dict(sorted(
            self.connection_error_kinds.items())),
        'seconds': round(self.seconds, 3),
        'sessions_per_s': round(rate, 1),
        'p50_ms': None if p50 is None else round(p50, 3),
        'p99_ms': None if p99 is None else round(p99, 3),
        'client_cpu_s': round(self.client_cpu_s, 3),
        'client_cpu_s_per_1000_sessions': (
            None if per_1000 is None else round(self.client_cpu_s * per_1000,
                                                4)),
        'client_busiest_process': round(self.client_busiest, 3),
        'arrival_lateness_p99_ms': self.arrival_lateness_p99_ms,
    }

  @classmethod
  def merged(cls, parts: Sequence['Load']) -> 'Load':
    total = cls()
    for part in parts:
      total.latencies_s.extend(part.latencies_s)
      total.ok += part.ok
      total.shed += part.shed
      total.http_errors += part.http_errors
      total.connection_errors += part.connection_errors
      for mine, theirs in ((total.statuses, part.statuses),
                           (total.connection_error_kinds,
                            part.connection_error_kinds)):
        for key, count in theirs.items():
          mine[key] = mine.get(key, 0) + count
      total.client_cpu_s += part.client_cpu_s
      total.client_busiest = max(total.client_busiest, part.client_busiest)
      if part.arrival_lateness_p99_ms is not None:
        total.arrival_lateness_p99_ms = max(
            total.arrival_lateness_p99_ms or 0.0, part.arrival_lateness_p99_ms)
    total.started = min(p.started for p in parts)
    total.ended = max(p.ended for p in parts)
    total.seconds = total.ended - total.started
    return total


class MalformedAnswer(Exception):
  """The server's bytes are not an HTTP/1.1 answer."""


class _Connection:
  """One keep-alive connection, opened on first use and after a failure."""

  def __init__(self, host: str, port: int, timeout_s: float):
    self._host, self._port, self._timeout_s = host, port, timeout_s
    self._reader: Optional[asyncio.StreamReader] = None
    self._writer: Optional[asyncio.StreamWriter] = None
    self._timed_out = False

  async def exchange(self, request: bytes) -> Union[int, str]:
    """Sends `request`; the answer's status, or the kind of failure."""
    loop = asyncio.get_running_loop()
    try:
      if self._writer is None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self._host, self._port), self._timeout_s)
        self._writer.get_extra_info('socket').setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
      # A timer that aborts the connection costs less per request than
      # wait_for, which wraps every exchange in a task of its own.
      self._timed_out = False
      timer = loop.call_later(self._timeout_s, self._abort)
      try:
        self._writer.write(request)
        status, close = await _read_answer(self._reader)
      finally:
        timer.cancel()
    except asyncio.TimeoutError:
      self.close()
      return 'timeout'
    except (OSError, EOFError, ValueError, asyncio.LimitOverrunError,
            MalformedAnswer) as e:
      self.close()
      return 'timeout' if self._timed_out else type(e).__name__
    if close:
      self.close()
    return status

  def _abort(self) -> None:
    self._timed_out = True
    if self._writer is not None:
      self._writer.transport.abort()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.transport.abort()   # no lingering: the answer is read
    self._reader = self._writer = None


async def _read_answer(reader: asyncio.StreamReader) -> Tuple[int, bool]:
  """(status, whether the server closes the connection) of one answer,
  whose body is read and dropped."""
  try:
    head = await reader.readuntil(b'\r\n\r\n')
  except asyncio.IncompleteReadError as e:
    if not e.partial:
      raise ConnectionResetError('the server closed the connection before '
                                 'answering') from None
    raise
  status_line, *headers = head[:-4].split(b'\r\n')
  parts = status_line.split()
  if len(parts) < 2 or not parts[0].startswith(b'HTTP/'):
    raise MalformedAnswer(f'not a status line: {status_line[:80]!r}')
  status = int(parts[1])
  close = parts[0] == b'HTTP/1.0'
  length, chunked = None, False
  for header in headers:
    name, _, value = header.partition(b':')
    name, value = name.strip().lower(), value.strip().lower()
    if name == b'content-length':
      length = int(value)
    elif name == b'transfer-encoding':
      chunked = b'chunked' in value
    elif name == b'connection':
      close = value == b'close'
  if chunked:
    while True:
      size = int((await reader.readuntil(b'\r\n')).split(b';')[0], 16)
      if size == 0:
        while (await reader.readuntil(b'\r\n')) != b'\r\n':
          pass    # trailers
        break
      await reader.readexactly(size + 2)
  elif length is not None:
    await reader.readexactly(length)
  else:
    await reader.read()     # the body runs to the end of the connection
    close = True
  return status, close


async def _closed_loop(host: str, port: int, requests: Sequence[bytes],
                       connections: int, max_requests: int, start_at: float,
                       seconds: float, timeout_s: float, offset: int) -> Load:
  load = Load()
  deadline = start_at + seconds
  left = [max_requests]
  order = iter(range(offset, offset + max_requests))

  async def client():
    connection = _Connection(host, port, timeout_s)
    try:
      while left[0] > 0 and time.monotonic() < deadline:
        left[0] -= 1
        request = requests[next(order) % len(requests)]
        sent = time.perf_counter()
        outcome = await connection.exchange(request)
        load.record(outcome, time.perf_counter() - sent)
    finally:
      connection.close()

  await asyncio.sleep(max(0.0, start_at - time.monotonic()))
  load.started = time.monotonic()
  await asyncio.gather(*(client() for _ in range(connections)))
  load.ended = time.monotonic()
  return load


def arrival_offsets(rate: float, seconds: float, seed: int) -> List[float]:
  """Poisson arrivals at `rate` per second over `seconds`, as offsets."""
  rng = random.Random(seed)
  offsets, t = [], rng.expovariate(rate)
  while t < seconds:
    offsets.append(t)
    t += rng.expovariate(rate)
  return offsets


class _Pool:
  """At most `size` connections; an idle one is reused before another is
  opened (the last one freed first, as HTTP clients' pools do), and requests
  wait for a connection in the order they came."""

  def __init__(self, host: str, port: int, timeout_s: float, size: int):
    self._open = lambda: _Connection(host, port, timeout_s)
    self._idle: List[_Connection] = []
    self._all: List[_Connection] = []
    self._free = asyncio.Semaphore(size)

  async def exchange(self, request: bytes) -> Union[int, str]:
    async with self._free:
      if self._idle:
        connection = self._idle.pop()
      else:
        connection = self._open()
        self._all.append(connection)
      try:
        return await connection.exchange(request)
      finally:
        self._idle.append(connection)

  def close(self) -> None:
    for connection in self._all:
      connection.close()


async def _open_loop(host: str, port: int, requests: Sequence[bytes],
                     connections: int, rate: float, start_at: float,
                     seconds: float, timeout_s: float, offset: int,
                     seed: int) -> Load:
  load = Load()
  pool = _Pool(host, port, timeout_s, connections)
  lateness, in_flight = [], []

  async def send(arrival: float, request: bytes):
    outcome = await pool.exchange(request)
    load.record(outcome, time.monotonic() - arrival)

  await asyncio.sleep(max(0.0, start_at - time.monotonic()))
  load.started = time.monotonic()
  try:
    for i, at in enumerate(arrival_offsets(rate, seconds, seed)):
      delay = start_at + at - time.monotonic()
      if delay > 0:
        await asyncio.sleep(delay)
      # A request arrives when it is released: the timers' own lateness (a
      # millisecond or so) is the client's, and is reported apart.
      now = time.monotonic()
      lateness.append(now - start_at - at)
      in_flight.append(asyncio.create_task(
          send(now, requests[(offset + i) % len(requests)])))
    await asyncio.gather(*in_flight)
  finally:
    pool.close()
  load.ended = time.monotonic()
  if lateness:
    load.arrival_lateness_p99_ms = round(
        float(np.percentile(lateness, 99)) * 1000, 3)
  return load


_JOBS = {'closed_loop': _closed_loop, 'open_loop': _open_loop}


def _event_loop_runner():
  """uvloop's loop where installed (it is, with uvicorn[standard]): the
  client then spends less CPU per request than on asyncio's own loop."""
  try:
    import uvloop  # pylint: disable=g-import-not-at-top
    return 'uvloop', uvloop.run
  except ImportError:
    return 'asyncio', asyncio.run


def event_loop_name() -> str:
  return _event_loop_runner()[0]


def _client_process(pipe, requests: Sequence[bytes]) -> None:
  """A client process: runs the jobs it receives, sends back their Load."""
  _, run = _event_loop_runner()
  while True:
    job = pipe.recv()
    if job is None:
      return
    kind, arguments = job
    cpu = time.process_time()
    load = run(_JOBS[kind](requests=requests, **arguments))
    load.client_cpu_s = time.process_time() - cpu
    wall = load.ended - load.started
    load.client_busiest = load.client_cpu_s / wall if wall > 0 else 0.0
    pipe.send(load)


class LoadClient:
  """Client processes holding the requests to send, ready for runs of load.

  With connections over several processes, each process takes its share of
  the connections, of the request count and of the arrival rate.
  """

  def __init__(self, requests: Sequence[bytes], processes: int = 2,
               timeout_s: float = 30.0):
    if not requests:
      raise ValueError('no requests to send')
    self._requests = list(requests)
    self._timeout_s = timeout_s
    context = multiprocessing.get_context('spawn')
    self._workers = []
    for _ in range(processes):
      mine, theirs = context.Pipe()
      process = context.Process(target=_client_process,
                                args=(theirs, self._requests), daemon=True)
      process.start()
      self._workers.append((process, mine))

  def __enter__(self) -> 'LoadClient':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    for process, pipe in self._workers:
      try:
        pipe.send(None)
      except OSError:
        pass    # the process is gone already
    for process, _ in self._workers:
      process.join(timeout=10)
      if process.is_alive():
        process.terminate()
        process.join()
    self._workers = []

  def closed_loop(self, host: str, port: int, connections: int,
                  max_requests: int, seconds: float) -> Load:
    """`connections` clients sending back to back, until `max_requests` in
    all or `seconds` (answers still awaited then are waited for)."""
    shares = self._shares(connections)
    requests = _split(max_requests, shares)
    return self._run('closed_loop', [
        dict(host=host, port=port, connections=c, max_requests=r,
             seconds=seconds, timeout_s=self._timeout_s)
        for c, r in zip(shares, requests)])

  def open_loop(self, host: str, port: int, connections: int, rate: float,
                seconds: float, seed: int = 0) -> Load:
    """Poisson arrivals at `rate` requests/s for `seconds`, over a pool of
    at most `connections` connections."""
    shares = self._shares(connections)
    return self._run('open_loop', [
        dict(host=host, port=port, connections=c,
             rate=rate * c / connections, seconds=seconds,
             timeout_s=self._timeout_s, seed=seed + i)
        for i, c in enumerate(shares)])

  def _shares(self, connections: int) -> List[int]:
    if connections <= 0:
      raise ValueError(f'connections must be positive, got {connections}')
    return [c for c in _split(connections, [1] * len(self._workers)) if c]

  def _run(self, kind: str, jobs: List[dict]) -> Load:
    start_at = time.monotonic() + START_DELAY_S
    stride = len(self._requests) // len(jobs)
    for i, ((_, pipe), job) in enumerate(zip(self._workers, jobs)):
      pipe.send((kind, dict(job, start_at=start_at, offset=i * stride)))
    try:
      return Load.merged([pipe.recv() for (_, pipe), _ in
                          zip(self._workers, jobs)])
    except EOFError:
      raise RuntimeError('a client process of the load generator died; its '
                         'traceback went to its stderr') from None


def _split(total: int, weights: Sequence[int]) -> List[int]:
  """`total` in integer parts proportional to `weights`."""
  whole = sum(weights)
  parts = [total * w // whole for w in weights]
  for i in range(total - sum(parts)):
    parts[i % len(parts)] += 1
  return parts


class _FixedAnswer(asyncio.Protocol):
  """Answers every request on its connection at once with `answer`; reads
  only the end of the headers and the Content-Length, so that it costs the
  client's ceiling little."""

  def __init__(self, answer: bytes):
    self._answer = answer
    self._buffer = b''
    self._transport = None

  def connection_made(self, transport) -> None:
    self._transport = transport

  def data_received(self, data: bytes) -> None:
    self._buffer += data
    while (end := self._buffer.find(b'\r\n\r\n')) >= 0:
      headers = self._buffer[:end].lower()
      at = headers.find(b'content-length:')
      length = (int(headers[at + 15:].split(b'\r\n', 1)[0]) if at >= 0
                else 0)
      if len(self._buffer) < end + 4 + length:
        return
      self._buffer = self._buffer[end + 4 + length:]
      self._transport.write(self._answer)


def _answer_fixed(port_pipe, body_bytes: int) -> None:
  """A server that answers every request at once with a fixed 200 and a body
  of `body_bytes`: what the client can do when the server costs nothing."""
  body = FIXED_ANSWER_BODY.ljust(body_bytes)   # JSON allows the spaces
  answer = (b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n'
            b'Content-Length: %d\r\n\r\n' % len(body) + body)

  async def serve():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _FixedAnswer(answer),
                                      '127.0.0.1', 0, backlog=1024)
    port_pipe.send(server.sockets[0].getsockname()[1])
    async with server:
      await server.serve_forever()

  _event_loop_runner()[1](serve())


class FixedAnswerServer:
  """_answer_fixed in a process of its own, on a free loopback port."""

  def __init__(self, body_bytes: int):
    context = multiprocessing.get_context('spawn')
    mine, theirs = context.Pipe()
    self.process = context.Process(target=_answer_fixed,
                                   args=(theirs, body_bytes), daemon=True)
    self.process.start()
    if not mine.poll(30):
      self.close()
      raise RuntimeError('the fixed-answer server did not start')
    self.port: int = mine.recv()

  def __enter__(self) -> 'FixedAnswerServer':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    self.process.terminate()
    self.process.join()


def process_cpu_seconds(pid: int) -> Optional[Tuple[float, int]]:
  """(CPU seconds, threads) of process `pid` and its live descendants, from
  /proc (Linux); None where there is no /proc. CPU seconds are user +
  system, with the children the process has waited for."""
  ticks = os.sysconf('SC_CLK_TCK')
  try:
    stats = {}
    for entry in (int(name) for name in os.listdir('/proc') if name.isdigit()):
      stat = _proc_stat(entry)
      if stat is not None:
        stats[entry] = stat
  except OSError:
    return None
  if pid not in stats:
    return None
  children = collections.defaultdict(list)
  for entry, stat in stats.items():
    children[stat[1]].append(entry)
  cpu, threads, todo = 0, 0, [pid]
  while todo:
    entry = todo.pop()
    _, _, utime, stime, cutime, cstime, num_threads = stats[entry]
    cpu += utime + stime + cutime + cstime
    threads += num_threads
    todo.extend(children[entry])
  return cpu / ticks, threads


def machine_busy_seconds() -> Optional[float]:
  """CPU seconds all processors have spent busy since boot, from /proc/stat
  (Linux); None where there is none. Over a run, less the server's and the
  client's, it shows what other work took from the machine."""
  try:
    with open('/proc/stat', 'rb') as f:
      fields = [int(v) for v in f.readline().split()[1:]]
  except OSError:
    return None
  idle = fields[3] + fields[4]    # idle, iowait
  # guest and guest_nice (fields 9, 10) are inside user and nice already.
  return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def _proc_stat(pid: int) -> Optional[tuple]:
  """(pid, ppid, utime, stime, cutime, cstime, num_threads) from
  /proc/PID/stat, or None for a process gone meanwhile."""
  try:
    with open(f'/proc/{pid}/stat', 'rb') as f:
      text = f.read()
  except (FileNotFoundError, ProcessLookupError):
    return None
  # The command name, in parentheses, may itself hold spaces or ')'.
  fields = text[text.rindex(b')') + 2:].split()
  # fields[0] is field 3 of proc(5): state.
  return (pid, int(fields[1]), int(fields[11]), int(fields[12]),
          int(fields[13]), int(fields[14]), int(fields[17]))
