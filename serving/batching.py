"""Micro-batching: concurrent requests share one model call.

The server's event loop parses a request and builds its tf.Examples; the
examples then wait here, in one bounded queue, for the batching thread. That
thread takes the oldest request, gathers the requests behind it for the same
model version until `max_batch_size` sessions or `batch_timeout` seconds
have passed (waiting only while requests are on their way: read by the
server, not yet queued; see `expecting`), runs the model once and hands each request its rows. These are
TF Serving's batching parameters (`max_batch_size`, `batch_timeout_micros`,
`max_enqueued_batches`), on one thread: the model call releases the GIL, so
the event loop keeps reading requests while the model computes, and the
next batch forms meanwhile.

Overload is answered at once, never by a growing queue: `submit` raises
`Overloaded` when the queue holds `max_queued_sessions`, or when the
expected wait (the batches queued ahead, at the measured speed of recent
model calls) would miss the request's deadline. A request whose deadline passes while it
waits is dropped before the model sees it.

A request the model cannot read fails its whole batch; the batch is then run
again one request at a time, so that only the bad request gets the error.
"""

import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Deque, Iterator, List, Optional

logger = logging.getLogger('repairml.serving')

# Queue-full and deadline answers tell the client to come back in this long.
RETRY_AFTER_SECONDS = 1
QUEUE_FULL = 'queue_full'
DEADLINE = 'deadline'
SHUTTING_DOWN = 'shutting_down'


class Overloaded(Exception):
  """The request was shed: why (QUEUE_FULL, DEADLINE, SHUTTING_DOWN)."""

  def __init__(self, reason: str, message: str):
    super().__init__(message)
    self.reason = reason
    self.message = message


@dataclasses.dataclass
class _Request:
  model: Any                    # a ServedModel: predict(serialized) -> outputs
  serialized: List[bytes]
  deadline: float               # time.monotonic()
  future: concurrent.futures.Future


class MicroBatcher:
  """The queue and the thread that runs batched model calls."""

  def __init__(self, max_batch_size: int = 32, batch_timeout: float = 0.001,
               max_queued_sessions: int = 256,
               on_batch: Optional[Callable[[int], None]] = None,
               on_queue_depth: Optional[Callable[[int], None]] = None):
    self.max_batch_size = max_batch_size
    self.batch_timeout = batch_timeout
    self.max_queued_sessions = max_queued_sessions
    self._on_batch = on_batch or (lambda sessions: None)
    self._on_queue_depth = on_queue_depth or (lambda sessions: None)
    self._queue: Deque[_Request] = collections.deque()
    self._queued_sessions = 0
    self._expected = 0      # requests arriving, not yet submitted
    self._condition = threading.Condition()
    self._closed = False
    # Seconds per model call, recently: for a request's expected wait.
    self._seconds_per_batch = 0.0
    self._thread = threading.Thread(target=self._run, daemon=True,
                                    name='repairml-batcher')
    self._thread.start()

  @contextlib.contextmanager
  def expecting(self) -> Iterator[None]:
    """Around a request from its arrival to its submit(): while requests
    are on their way, a batch waits (up to batch_timeout) for them to join;
    with none on their way, it runs at once, and a lone client never pays
    for the window."""
    with self._condition:
      self._expected += 1
    try:
      yield
    finally:
      with self._condition:
        self._expected -= 1
        if not self._expected:     # a batch waiting for it need not
          self._condition.notify()

  @property
  def queued_sessions(self) -> int:
    with self._condition:
      return self._queued_sessions

  def submit(self, model: Any, serialized: List[bytes],
             deadline: float) -> concurrent.futures.Future:
    """Queues a request; its future gets {output: rows} or an exception.

    Raises Overloaded at once when the request cannot be served in time.
    """
    sessions = len(serialized)
    future: concurrent.futures.Future = concurrent.futures.Future()
    with self._condition:
      if self._closed:
        raise Overloaded(SHUTTING_DOWN, 'the server is shutting down; send '
                         'the request again.')
      if self._queued_sessions + sessions > max(self.max_queued_sessions,
                                                sessions):
        raise Overloaded(QUEUE_FULL, f'the server is at capacity '
                         f'({self._queued_sessions} sessions waiting); retry '
                         f'in {RETRY_AFTER_SECONDS} s.')
      # The batches ahead of it, at the speed of recent ones. With nothing
      # queued it runs next: admitted, whatever one slow call took.
      batches_ahead = -(-self._queued_sessions // self.max_batch_size)
      expected = batches_ahead * self._seconds_per_batch
      if time.monotonic() + expected > deadline:
        raise Overloaded(DEADLINE, f'the server cannot answer within the '
                         f'deadline (about {expected * 1000:.0f} ms of work '
                         f'is waiting); retry in {RETRY_AFTER_SECONDS} s.')
      self._queue.append(_Request(model, serialized, deadline, future))
      self._queued_sessions += sessions
      self._on_queue_depth(self._queued_sessions)
      self._condition.notify()
    return future

  def close(self) -> None:
    """Answers what is queued, then stops the thread."""
    with self._condition:
      self._closed = True
      self._condition.notify()
    self._thread.join()

  # The batching thread --------------------------------------------------------

  def _run(self) -> None:
    while True:
      batch = self._next_batch()
      if batch is None:
        return
      if batch:
        self._predict(batch)

  def _next_batch(self) -> Optional[List[_Request]]:
    """The oldest request and those behind it for the same model, up to
    max_batch_size sessions or batch_timeout; None once closed and empty."""
    with self._condition:
      while not self._queue:
        if self._closed:
          return None
        self._condition.wait()
      first = self._take()
      batch, sessions = [first], len(first.serialized)
      window_ends = time.monotonic() + self.batch_timeout
      while sessions < self.max_batch_size:
        if not self._queue:
          remaining = window_ends - time.monotonic()
          if remaining <= 0 or self._closed or not self._expected:
            break
          self._condition.wait(remaining)
          continue
        following = self._queue[0]
        if (following.model is not first.model or
            sessions + len(following.serialized) > self.max_batch_size):
          break
        batch.append(self._take())
        sessions += len(following.serialized)
      self._on_queue_depth(self._queued_sessions)
    now = time.monotonic()
    live = []
    for request in batch:
      if not request.future.set_running_or_notify_cancel():
        continue                   # the client gave up (its deadline passed)
      if request.deadline < now:
        request.future.set_exception(Overloaded(
            DEADLINE, 'the request waited past its deadline; retry in '
            f'{RETRY_AFTER_SECONDS} s.'))
        continue
      live.append(request)
    return live

  def _take(self) -> _Request:
    request = self._queue.popleft()
    self._queued_sessions -= len(request.serialized)
    return request

  def _predict(self, batch: List[_Request]) -> None:
    serialized = [data for request in batch for data in request.serialized]
    started = time.perf_counter()
    try:
      outputs = batch[0].model.predict(serialized)
    except Exception as e:  # pylint: disable=broad-except
      if len(batch) == 1:
        batch[0].future.set_exception(e)
      else:
        # One bad request fails the model call; alone, only it fails.
        for request in batch:
          self._predict([request])
      return
    self._learn_speed(time.perf_counter() - started)
    self._on_batch(len(serialized))
    start = 0
    for request in batch:
      end = start + len(request.serialized)
      request.future.set_result({name: rows[start:end]
                                 for name, rows in outputs.items()})
      start = end

  def _learn_speed(self, seconds: float) -> None:
    with self._condition:
      if self._seconds_per_batch == 0.0:
        self._seconds_per_batch = seconds
      else:
        self._seconds_per_batch += 0.1 * (seconds - self._seconds_per_batch)
