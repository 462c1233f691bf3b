"""The request log: strict JSON lines, sampling, size rotation, no line lost on
close, and drops counted instead of blocking or crashing."""

import json
import math
import os
import random
import threading
import time
from pathlib import Path

import pytest

from serving.request_log import RequestLog, RequestLogError


def session_record(i: int) -> dict:
  """A line as the server writes it, for one session of a request."""
  return {
      'timestamp': '2026-11-28T09:15:02.123+00:00',
      'model_version': 1700000000,
      'route': 'tf_serving',
      'request_id': f'req-{i // 4}',
      'instance': {'session_id': f'S-{i}', 'mileage_km': 142000 + i,
                   'dtcs': ['P2002', 'P2463']},
      'features': {'session_id': [f'S-{i}'], 'mileage_km': [142000 + i],
                   'dtcs': ['P2002', 'P2463']},
      'prediction': {'recommended_labels': ['part:dpf'],
                     'probabilities': [0.25, 0.5]},
  }


def lines_of(path: Path) -> list:
  """Every line of the log and its rotated files, oldest file first."""
  files = sorted(path.parent.glob(path.name + '.*'),
                 key=lambda p: -int(p.suffix[1:])) + [path]
  return [line for f in files if f.exists()
          for line in f.read_text(encoding='utf-8').splitlines(keepends=True)]


def records_of(path: Path) -> list:
  lines = lines_of(path)
  assert all(line.endswith('\n') for line in lines)
  return [json.loads(line) for line in lines]


def wait_until(condition, seconds: float = 10.0) -> None:
  """Waits for a condition of the writer thread; fails the test if it never
  holds (the assertion is the condition, not the time)."""
  deadline = time.monotonic() + seconds
  while not condition():
    assert time.monotonic() < deadline, 'the writer thread did not get there'
    time.sleep(0.001)


def test_lines_are_strict_compact_json_with_the_records_content(tmp_path):
  path = tmp_path / 'requests.jsonl'
  records = [session_record(i) for i in range(3)]

  with RequestLog(str(path)) as log:
    log.write(records[:2])
    log.write(records[2:])

  text = path.read_text(encoding='utf-8')
  assert text.count('\n') == 3 and ', ' not in text and ': ' not in text
  assert records_of(path) == records
  assert log.written == 3 and log.dropped == 0


def test_a_reopened_log_appends(tmp_path):
  path = tmp_path / 'requests.jsonl'
  with RequestLog(str(path)) as log:
    log.write([session_record(0)])
  with RequestLog(str(path)) as log:
    log.write([session_record(1)])

  assert [r['instance']['session_id'] for r in records_of(path)] == [
      'S-0', 'S-1']


@pytest.mark.parametrize('rate, expected', [(0.0, 0), (1.0, 2000)])
def test_sampling_none_or_all(tmp_path, rate, expected):
  path = tmp_path / 'requests.jsonl'
  with RequestLog(str(path), sample_rate=rate) as log:
    for i in range(2000):
      if log.sampled():
        log.write([session_record(i)])

  assert len(lines_of(path)) == expected


def test_sampling_a_quarter_logs_about_a_quarter_of_the_requests(tmp_path):
  path = tmp_path / 'requests.jsonl'
  with RequestLog(str(path), sample_rate=0.25,
                  rng=random.Random(7)) as log:
    for i in range(4000):
      if log.sampled():
        log.write([session_record(i)])

  # 4000 draws at p = 0.25: the standard deviation is 27 lines.
  assert 850 <= len(lines_of(path)) <= 1150


def test_a_seeded_sample_is_reproducible(tmp_path):
  def picked(seed):
    log = RequestLog(str(tmp_path / f'{seed}.jsonl'), sample_rate=0.25,
                     rng=random.Random(seed))
    try:
      return [i for i in range(200) if log.sampled()]
    finally:
      log.close()

  assert picked(3) == picked(3) != picked(4)


@pytest.mark.parametrize('rate', [-0.1, 1.5, math.nan])
def test_a_sample_rate_outside_0_1_is_refused(tmp_path, rate):
  with pytest.raises(ValueError, match='sample rate'):
    RequestLog(str(tmp_path / 'requests.jsonl'), sample_rate=rate)


def test_rotation_keeps_every_line_whole_and_in_order(tmp_path):
  path = tmp_path / 'requests.jsonl'
  line_bytes = len(json.dumps(session_record(0), separators=(',', ':'))) + 1
  max_bytes = 5 * line_bytes + line_bytes // 2   # five lines, and no sixth

  with RequestLog(str(path), max_bytes=max_bytes, backups=30) as log:
    for i in range(0, 120, 4):      # 30 requests of 4 sessions
      log.write([session_record(j) for j in range(i, i + 4)])

  rotated = sorted(p.name for p in tmp_path.iterdir())
  assert rotated == sorted(['requests.jsonl'] +
                           [f'requests.jsonl.{i}' for i in range(1, 24)])
  for f in tmp_path.iterdir():
    assert f.stat().st_size <= max_bytes
    assert all(json.loads(line) for line in f.read_text().splitlines())
  assert [r['instance']['session_id'] for r in records_of(path)] == [
      f'S-{i}' for i in range(120)]
  assert log.written == 120


def test_rotation_deletes_the_files_beyond_the_backups(tmp_path):
  path = tmp_path / 'requests.jsonl'
  line_bytes = len(json.dumps(session_record(0), separators=(',', ':'))) + 1

  with RequestLog(str(path), max_bytes=line_bytes, backups=2) as log:
    for i in range(10):
      log.write([session_record(i)])

  assert sorted(p.name for p in tmp_path.iterdir()) == [
      'requests.jsonl', 'requests.jsonl.1', 'requests.jsonl.2']
  assert [r['instance']['session_id'] for r in records_of(path)] == [
      'S-7', 'S-8', 'S-9']


def test_a_line_longer_than_max_bytes_gets_a_file_of_its_own(tmp_path):
  path = tmp_path / 'requests.jsonl'
  with RequestLog(str(path), max_bytes=50, backups=5) as log:
    log.write([session_record(i) for i in range(3)])

  for f in tmp_path.iterdir():
    assert len(f.read_text().splitlines()) == 1
  assert len(records_of(path)) == 3


def test_close_after_a_burst_writes_every_record(tmp_path):
  path = tmp_path / 'requests.jsonl'
  log = RequestLog(str(path), queue_size=20_000)
  for i in range(20_000):
    log.write([session_record(i)])

  log.close()

  records = records_of(path)
  assert len(records) == 20_000 and log.dropped == 0
  assert records[-1]['instance']['session_id'] == 'S-19999'
  log.close()  # again: nothing happens
  assert len(lines_of(path)) == 20_000


def test_close_fsyncs_the_file(tmp_path, monkeypatch):
  path = tmp_path / 'requests.jsonl'
  log = RequestLog(str(path))
  log.write([session_record(0)])
  synced = []
  real_fsync = os.fsync
  monkeypatch.setattr(os, 'fsync', lambda fd: synced.append(
      os.readlink(f'/proc/self/fd/{fd}')) or real_fsync(fd))

  log.close()

  assert synced == [str(path)]


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
  path = tmp_path / 'requests.jsonl'
  told = []
  log = RequestLog(str(path), queue_size=3, on_drop=told.append)
  # Hold the writer up: it takes the first record, then waits for the file.
  log._file_lock.acquire()  # pylint: disable=protected-access
  try:
    log.write([session_record(0)])
    wait_until(lambda: log._queue.empty())  # pylint: disable=protected-access
    burst = [session_record(i) for i in range(1, 11)]
    writing = threading.Thread(target=log.write, args=(burst,))
    writing.start()
    writing.join(timeout=10)
    assert not writing.is_alive(), 'write() blocked on a full queue'

    assert log.dropped == 7 and told == [7]
    assert log.dropped_by_reason == {'queue_full': 7}
  finally:
    log._file_lock.release()  # pylint: disable=protected-access
  log.close()

  assert [r['instance']['session_id'] for r in records_of(path)] == [
      'S-0', 'S-1', 'S-2', 'S-3']
  assert log.written == 4


def test_a_record_that_is_not_strict_json_is_dropped_and_counted(tmp_path):
  path = tmp_path / 'requests.jsonl'
  told = []
  nan = dict(session_record(1), prediction={'probabilities': [math.nan]})
  infinite = dict(session_record(2), features={'mileage_km': [math.inf]})
  unencodable = dict(session_record(3), instance=object())

  with RequestLog(str(path), on_drop=told.append) as log:
    log.write([session_record(0), nan, infinite])
    log.write([unencodable, session_record(4)])

  text = path.read_text(encoding='utf-8')
  assert 'NaN' not in text and 'Infinity' not in text
  assert [r['instance']['session_id'] for r in records_of(path)] == [
      'S-0', 'S-4']
  assert log.dropped == 3 and sum(told) == 3
  assert log.dropped_by_reason == {'unencodable': 3}


def test_records_written_after_close_are_counted_as_dropped(tmp_path):
  log = RequestLog(str(tmp_path / 'requests.jsonl'))
  log.close()

  log.write([session_record(0), session_record(1)])

  assert log.dropped_by_reason == {'closed': 2}


def test_a_failing_disk_loses_its_lines_and_the_writer_goes_on(tmp_path):
  path = tmp_path / 'requests.jsonl'
  log = RequestLog(str(path))
  real_file = log._file  # pylint: disable=protected-access

  class FullDisk:
    def write(self, _):
      raise OSError(28, 'No space left on device')

  log._file_lock.acquire()  # pylint: disable=protected-access
  log._file = FullDisk()  # pylint: disable=protected-access
  log._file_lock.release()  # pylint: disable=protected-access
  log.write([session_record(0)])
  wait_until(lambda: log.dropped == 1)
  with log._file_lock:  # pylint: disable=protected-access
    log._file = real_file  # pylint: disable=protected-access
  log.write([session_record(1)])
  log.close()

  assert log.dropped_by_reason == {'write_failed': 1}
  assert [r['instance']['session_id'] for r in records_of(path)] == ['S-1']


def test_a_log_in_an_unwritable_place_fails_at_open_with_the_path(tmp_path):
  not_a_directory = tmp_path / 'file'
  not_a_directory.write_text('')
  path = not_a_directory / 'requests.jsonl'

  with pytest.raises(RequestLogError) as raised:
    RequestLog(str(path))

  assert isinstance(raised.value, OSError)
  message = str(raised.value)
  assert str(path) in message and '\n' not in message
  assert 'writable' in message
