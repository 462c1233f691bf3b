"""The request log: one JSON line per predicted session, for monitoring.

The online server samples requests (`sampled()`) and hands the records of a
sampled request to `write()`, which only puts them on a bounded queue: the
server's event loop never waits for the disk. One background thread encodes
them as strict JSON (no NaN or Infinity, which strict readers refuse) and
appends them, rotating the file by size as logging.handlers.
RotatingFileHandler does (path -> path.1 -> ... -> path.N, the oldest
deleted). A line is never split across files, and `close()` writes what is
queued and fsyncs it, so a clean shutdown loses no line.

What cannot be logged is dropped and counted, never raised at the server:
records that find the queue full, records that cannot be encoded, lines a
failing disk refused, and records written after `close()`. `dropped` and
`dropped_by_reason` say how many; `on_drop(n)` is told at once (the server
counts them in Prometheus).

Why not the standard library's QueueHandler, QueueListener and
RotatingFileHandler: QueueHandler formats each record in the caller's thread
(the event loop), and it and the handlers report a full queue or an
unencodable record through `handleError`, a traceback on stderr rather than a
count; RotatingFileHandler encodes every record twice (once to decide on
rollover), flushes after every line and never fsyncs. Wrapping all of that
would be more code than this writer, which encodes once, writes a batch of
lines per system call and counts every drop.

The line format is the caller's. The online server writes, per session:
  timestamp      ISO-8601 UTC with milliseconds, "2026-11-28T09:15:02.123+00:00"
  model_version  the version that answered (an int)
  route          the API the request came through, e.g. "tf_serving", "vertex"
  request_id     the same for every session of one request
  instance       the instance as the client sent it
  features       the features as the model read them: name -> list of values
  prediction     the answer for that session, as in the response body
Monitoring (skew, drift and online F1) reads these fields.
"""

import json
import logging
import os
import queue
import random
import threading
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    TextIO)

DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_BACKUPS = 5
# Records, not bytes: at a few KB per session, at most some tens of MB.
DEFAULT_QUEUE_SIZE = 10_000
# Lines the writer takes off the queue for one write to the file.
_WRITE_BATCH = 512
# Put on the queue by close(): every record before it is written.
_CLOSE = object()

logger = logging.getLogger('repairml.serving')


class RequestLogError(OSError):
  """The request log cannot be opened; the message says where and why."""


class RequestLog:
  """Appends sampled records as JSON lines from a background thread.

  `write()` and `sampled()` may be called from any thread. `on_drop` is
  called with the number of records just dropped, from the caller's thread
  (a full queue) or from the writer's (encoding or disk failures): it must be
  quick and thread-safe, as a Prometheus counter's `inc` is.
  """

  def __init__(self, path: str, sample_rate: float = 1.0,
               max_bytes: int = DEFAULT_MAX_BYTES,
               backups: int = DEFAULT_BACKUPS,
               queue_size: int = DEFAULT_QUEUE_SIZE,
               rng: Optional[random.Random] = None,
               on_drop: Optional[Callable[[int], None]] = None):
    if not 0.0 <= sample_rate <= 1.0:
      raise ValueError(f'request log sample rate must be in [0, 1], got '
                       f'{sample_rate!r}.')
    if max_bytes <= 0 or backups < 1 or queue_size < 1:
      raise ValueError(
          'request log: max_bytes and queue_size must be positive and '
          f'backups at least 1, got max_bytes={max_bytes}, backups={backups}, '
          f'queue_size={queue_size}.')
    self.path = os.path.abspath(path)
    self.sample_rate = sample_rate
    self.max_bytes = max_bytes
    self.backups = backups
    self._rng = rng or random.Random()
    self.on_drop = on_drop
    self._queue: 'queue.Queue[Any]' = queue.Queue(queue_size)
    self._counts_lock = threading.Lock()    # guards the counts below
    self._dropped: Dict[str, int] = {}
    self._written = 0
    self._closing = False                   # guarded by _accept_lock
    self._accept_lock = threading.Lock()
    self._closed = threading.Event()
    # Held by the writer thread while it touches the file.
    self._file_lock = threading.Lock()
    self._file: Optional[TextIO] = self._open()
    self._size = self._file_size()
    self._writer = threading.Thread(target=self._write_queued,
                                    name='repairml-request-log', daemon=True)
    self._writer.start()

  # The caller's side -------------------------------------------------------

  def sampled(self) -> bool:
    """Whether to log this request: true for a `sample_rate` share of calls."""
    if self.sample_rate >= 1.0:
      return True
    return self.sample_rate > 0.0 and self._rng.random() < self.sample_rate

  def write(self, records: Sequence[Mapping[str, Any]]) -> None:
    """Queues the records to be appended; never blocks and never raises.

    They are encoded later, on the writer thread: the caller must not change
    them afterwards.
    """
    dropped = 0
    with self._accept_lock:
      if self._closing:
        self._count_drops('closed', len(records))
        return
      for i, record in enumerate(records):
        try:
          self._queue.put_nowait(record)
        except queue.Full:
          dropped = len(records) - i
          break
    if dropped:
      self._count_drops('queue_full', dropped)

  @property
  def dropped(self) -> int:
    """Records dropped so far, for whatever reason."""
    with self._counts_lock:
      return sum(self._dropped.values())

  @property
  def dropped_by_reason(self) -> Dict[str, int]:
    """{queue_full, unencodable, write_failed, closed: records dropped}."""
    with self._counts_lock:
      return dict(self._dropped)

  @property
  def written(self) -> int:
    """Lines appended to the file (and its rotated predecessors) so far."""
    with self._counts_lock:
      return self._written

  def close(self) -> None:
    """Writes every queued record, fsyncs the file and closes it; the writer
    thread has ended when it returns. Calling it again does nothing."""
    with self._accept_lock:
      first, self._closing = not self._closing, True
    if not first:
      self._closed.wait()
      return
    try:
      self._queue.put(_CLOSE)   # may wait for the writer to make room
      self._writer.join()
      with self._file_lock:
        self._close_file(fsync=True)
    finally:
      self._closed.set()

  def __enter__(self) -> 'RequestLog':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  # The writer thread -------------------------------------------------------

  def _open(self) -> TextIO:
    directory = os.path.dirname(self.path)
    try:
      os.makedirs(directory, exist_ok=True)
      return open(self.path, 'a', encoding='utf-8')  # pylint: disable=consider-using-with
    except OSError as e:
      error = RequestLogError(
          f'cannot write the request log {self.path}: '
          f'{e.strerror or e}. Choose a path in a writable directory.')
      error.errno = e.errno
      raise error from e

  def _write_queued(self) -> None:
    while True:
      batch = [self._queue.get()]
      with self._file_lock:
        while len(batch) < _WRITE_BATCH:
          try:
            batch.append(self._queue.get_nowait())
          except queue.Empty:
            break
        closing = batch[-1] is _CLOSE   # nothing is queued after it
        records = batch[:-1] if closing else batch
        try:
          self._append(self._encoded(records))
        except Exception:  # pylint: disable=broad-except
          # A bug here must not end the thread: close() waits for it.
          logger.exception('Request log %s: could not write %d records.',
                           self.path, len(records))
          self._count_drops('write_failed', len(records))
      if closing:
        return

  def _encoded(self, records: List[Mapping[str, Any]]) -> List[str]:
    lines = []
    for record in records:
      try:
        lines.append(json.dumps(record, allow_nan=False,
                                separators=(',', ':')) + '\n')
      except Exception as e:  # pylint: disable=broad-except
        # Whatever the caller built (NaN, an object json cannot encode, a
        # mapping that fails to iterate): this line is lost, the others not.
        self._count_drops('unencodable', 1, f'{type(e).__name__}: {e}')
    return lines

  def _append(self, lines: List[str]) -> None:
    """Writes the lines, rotating first whenever the next would overflow."""
    chunk: List[str] = []
    chunk_size = 0
    for line in lines:
      # ensure_ascii (json's default): characters are bytes.
      if self._size + chunk_size + len(line) > self.max_bytes and (
          self._size + chunk_size > 0):
        self._write_chunk(chunk)
        chunk, chunk_size = [], 0
        self._rotate()
      chunk.append(line)
      chunk_size += len(line)
    self._write_chunk(chunk)

  def _write_chunk(self, chunk: List[str]) -> None:
    if not chunk:
      return
    try:
      if self._file is None:   # the last rotation could not reopen it
        self._file = self._open()
        self._size = self._file_size()
      self._file.write(''.join(chunk))
      self._file.flush()
    except OSError as e:
      logger.error('Request log %s: could not append %d lines: %s', self.path,
                   len(chunk), e)
      self._count_drops('write_failed', len(chunk), str(e))
      self._size = self._file_size()
      return
    self._size += sum(len(line) for line in chunk)
    with self._counts_lock:
      self._written += len(chunk)

  def _rotate(self) -> None:
    """path -> path.1 -> ... -> path.<backups>; the oldest is overwritten."""
    self._close_file(fsync=False)
    try:
      for i in range(self.backups - 1, 0, -1):
        older = f'{self.path}.{i}'
        if os.path.exists(older):
          os.replace(older, f'{self.path}.{i + 1}')
      os.replace(self.path, f'{self.path}.1')
    except OSError as e:
      # Keep appending to the file there is, over its size, rather than lose
      # lines; the next line tries to rotate again.
      logger.error('Request log %s: could not rotate: %s', self.path, e)
    try:
      self._file = self._open()
    except OSError as e:
      logger.error('%s', e)   # the next write tries again
    self._size = self._file_size()

  def _close_file(self, fsync: bool) -> None:
    if self._file is None:
      return
    try:
      self._file.flush()
      if fsync:
        os.fsync(self._file.fileno())
    except OSError as e:
      logger.error('Request log %s: its last lines may not be on disk: %s',
                   self.path, e)
    finally:
      self._file.close()
      self._file = None

  def _file_size(self) -> int:
    try:
      return os.path.getsize(self.path)
    except OSError:
      return 0

  def _count_drops(self, reason: str, n: int, detail: str = '') -> None:
    with self._counts_lock:
      first = reason not in self._dropped
      self._dropped[reason] = self._dropped.get(reason, 0) + n
    if first:   # once per reason: the counts say how many followed
      logger.warning('Request log %s: dropped %d record(s) (%s%s); further '
                     'drops are counted, not logged.', self.path, n, reason,
                     f': {detail}' if detail else '')
    if self.on_drop:
      self.on_drop(n)
