"""Micro-batching: concurrent requests share model calls; overload is refused at once."""

import threading
import time

import numpy as np
import pytest

from serving.batching import DEADLINE, QUEUE_FULL, MicroBatcher, Overloaded
from serving.contract import RequestError


class CountingModel:
  """Stands in for a ServedModel: answers each session with its own number,
  records the size of every call, and can be held to keep the thread busy."""

  def __init__(self):
    self.calls = []
    self.release = threading.Event()
    self.release.set()
    self.entered = threading.Event()

  def predict(self, serialized):
    self.entered.set()
    self.release.wait(10)
    if b'bad' in serialized:
      raise RequestError('instances[0].x: bad')
    self.calls.append(len(serialized))
    numbers = np.array([int(s) for s in serialized])
    return {'probabilities': numbers[:, None] * np.ones((1, 2))}


def later(seconds=10.0):
  return time.monotonic() + seconds


@pytest.fixture
def batcher():
  made = []
  def make(**options):
    made.append(MicroBatcher(**options))
    return made[-1]
  yield make
  for b in made:
    b.close()


def test_requests_waiting_together_share_one_call(batcher):
  model = CountingModel()
  b = batcher(max_batch_size=32, batch_timeout=0.05)
  model.release.clear()
  first = b.submit(model, [b'0'], later())       # holds the thread
  model.entered.wait(5)
  queued = [b.submit(model, [str(i).encode(), str(i + 100).encode()], later())
            for i in range(1, 11)]
  model.release.set()

  assert first.result(5)['probabilities'][:, 0].tolist() == [0]
  for i, future in enumerate(queued, start=1):
    assert future.result(5)['probabilities'][:, 0].tolist() == [i, i + 100]
  assert model.calls == [1, 20]          # the ten waiting requests: one call


def test_a_batch_never_exceeds_max_batch_size(batcher):
  model = CountingModel()
  b = batcher(max_batch_size=4, batch_timeout=0.05)
  model.release.clear()
  b.submit(model, [b'0'], later())
  model.entered.wait(5)
  futures = [b.submit(model, [b'1', b'2', b'3'], later()) for _ in range(3)]
  model.release.set()
  for future in futures:
    future.result(5)
  assert model.calls == [1, 3, 3, 3]     # 3 + 3 would exceed 4


def test_a_bad_request_fails_alone(batcher):
  model = CountingModel()
  b = batcher(max_batch_size=32, batch_timeout=0.05)
  model.release.clear()
  b.submit(model, [b'0'], later())
  model.entered.wait(5)
  good = b.submit(model, [b'1'], later())
  bad = b.submit(model, [b'bad'], later())
  model.release.set()

  assert good.result(5)['probabilities'][:, 0].tolist() == [1]
  with pytest.raises(RequestError):
    bad.result(5)


def test_a_full_queue_refuses_at_once(batcher):
  model = CountingModel()
  b = batcher(max_batch_size=1, batch_timeout=0.0, max_queued_sessions=2)
  model.release.clear()
  b.submit(model, [b'0'], later())
  model.entered.wait(5)
  queued = [b.submit(model, [b'1'], later()), b.submit(model, [b'2'], later())]

  started = time.monotonic()
  with pytest.raises(Overloaded) as refused:
    b.submit(model, [b'3'], later())
  assert time.monotonic() - started < 0.1
  assert refused.value.reason == QUEUE_FULL
  model.release.set()
  assert [f.result(5)['probabilities'][0, 0] for f in queued] == [1, 2]


def test_a_request_past_its_deadline_never_reaches_the_model(batcher):
  model = CountingModel()
  b = batcher(max_batch_size=1, batch_timeout=0.0)
  model.release.clear()
  b.submit(model, [b'0'], later())
  model.entered.wait(5)
  expired = b.submit(model, [b'1'], time.monotonic() + 0.01)
  time.sleep(0.05)
  model.release.set()

  with pytest.raises(Overloaded) as shed:
    expired.result(5)
  assert shed.value.reason == DEADLINE
  assert model.calls == [1]


def test_a_request_that_cannot_meet_its_deadline_is_refused_at_once(batcher):
  model = CountingModel()
  b = batcher(max_batch_size=1, batch_timeout=0.0, max_queued_sessions=1000)
  slow = threading.Event()
  original = model.predict
  def predict_slowly(serialized):
    slow.wait(0.02)                       # 20 ms per call
    return original(serialized)
  model.predict = predict_slowly
  b.submit(model, [b'0'], later()).result(5)   # the batcher learns the speed
  model.release.clear()
  b.submit(model, [b'1'], later())
  model.entered.wait(5)
  for i in range(20):                          # about 400 ms of work queued
    b.submit(model, [b'2'], later())

  with pytest.raises(Overloaded) as refused:
    b.submit(model, [b'3'], time.monotonic() + 0.1)
  assert refused.value.reason == DEADLINE
  model.release.set()


def test_close_answers_what_is_queued(batcher):
  model = CountingModel()
  b = MicroBatcher(max_batch_size=2, batch_timeout=0.0)
  model.release.clear()
  futures = [b.submit(model, [str(i).encode()], later()) for i in range(5)]
  model.release.set()
  b.close()
  assert [f.result(0)['probabilities'][0, 0] for f in futures] == [0, 1, 2, 3,
                                                                   4]
  with pytest.raises(Overloaded):
    b.submit(model, [b'9'], later())


def test_a_batch_waits_only_for_requests_on_their_way(batcher):
  model = CountingModel()
  b = batcher(max_batch_size=32, batch_timeout=5.0)
  started = time.monotonic()
  b.submit(model, [b'0'], later()).result(5)     # nothing on its way
  assert time.monotonic() - started < 1.0

  with b.expecting():                            # one being read meanwhile
    first = b.submit(model, [b'1'], later())
    time.sleep(0.1)
    second = b.submit(model, [b'2'], later())
  first.result(5), second.result(5)
  assert model.calls == [1, 2]                   # the window joined them
