"""The server in operation, over real HTTP: every bad input a 4xx, overload
refused at once, metrics, health, hot reload under load, connection limits."""

import concurrent.futures
import http.client
import json
import socket
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from harness import (JSON, MODEL, Running, instances_of, push, serve_pushed,
                     strict_json)
from pipeline.components.example_gen import row_to_example
from serving.model_store import ModelStore


@pytest.fixture(scope='module')
def in_process_outputs():
  """The outputs of an exported model's signature on the pipeline's own
  examples of the rows."""
  def outputs(export_dir, rows):
    signature = tf.saved_model.load(export_dir).signatures['serving_default']
    examples = [row_to_example(i).SerializeToString()
                for i in instances_of(rows)]
    return {k: v.numpy() for k, v in
            signature(examples=tf.constant(examples)).items()}
  return outputs


@pytest.fixture(scope='module')
def served(exported_model, tmp_path_factory):
  tmp = tmp_path_factory.mktemp('operations')
  running = serve_pushed(exported_model.export_dir, tmp / 'serving', 1,
                         max_instances=50)
  yield running
  running.stop()


def good_request(exported_model, count=2):
  return {'instances': instances_of(exported_model.held_out_rows[:count])}


def with_value(exported_model, feature, value):
  instance = instances_of(exported_model.held_out_rows[:1])[0]
  instance[feature] = value
  return instance


# Every bad input: a 4xx naming instance and field, and the server goes on. ---

@pytest.mark.parametrize('feature, value, fragment', [
    ('mileage_km', 1e308, 'instances[0].mileage_km: 1e+308 is outside'),
    ('mileage_km', 10**40, 'instances[0].mileage_km: 1e+40 is outside'),
    ('mileage_km', -5, 'instances[0].mileage_km: -5 is outside the range the '
     'model accepts, [0, 1.5e+06]'),
    ('battery_voltage', 1e308, 'instances[0].battery_voltage: 1e+308 is '
     'outside the range the model accepts, [0, 20]'),
    ('coolant_temp_c', 'raw:1e400', 'the body is not valid JSON: number is '
     'infinity'),            # overflows a double
    ('build_year', 2019.5, 'instances[0].build_year: must be an integer'),
    ('build_year', None, 'instances[0].build_year: required, and missing'),
    ('battery_voltage', [12.0, 13.0], 'instances[0].battery_voltage: takes at '
     'most 1 values'),
    ('dtcs', 'P0300', None),     # one string for a list feature: accepted
])
def test_each_bad_value_is_a_400_and_the_server_goes_on(
    served, exported_model, feature, value, fragment):
  body = json.dumps({'instances': [with_value(exported_model, feature,
                                              value)]})
  if isinstance(value, str) and value.startswith('raw:'):
    body = body.replace(json.dumps(value), value[len('raw:'):])
  status, answer, _ = served.call('POST', '/predict', body.encode(), JSON)
  after, good, _ = served.call('POST', '/predict',
                               good_request(exported_model))

  if fragment is None:
    assert status == 200
  else:
    assert status == 400
    assert fragment in answer['error']
    assert '/' not in answer['error'] and 'Traceback' not in answer['error']
  assert after == 200 and len(good['predictions']) == 2


def test_answers_are_strict_json_even_at_the_limits(served, exported_model):
  instance = with_value(exported_model, 'battery_voltage', 20.0)
  instance['coolant_temp_c'] = -40.0
  instance['mileage_km'] = 1_500_000
  status, answer, _ = served.call('POST', '/predict', {'instances': [instance]})
  assert status == 200               # strict_json refused NaN and Infinity
  assert all(np.isfinite(answer['predictions'][0]['probabilities']))


def test_too_many_instances_is_a_413(served, exported_model):
  body = {'instances': instances_of(exported_model.held_out_rows) * 9}
  status, answer, _ = served.call('POST', f'{MODEL}:predict', body)
  assert status == 413
  assert 'the request has 54 sessions; the limit is 50' in answer['error']


def test_the_columnar_format_answers_as_the_rows_do(served, exported_model):
  instances = instances_of(exported_model.held_out_rows[:3])
  columns = {name: [i[name] for i in instances] for name in instances[0]}

  rows = served.call('POST', f'{MODEL}:predict', {'instances': instances})[1]
  status, answer, _ = served.call('POST', f'{MODEL}:predict', {
      'inputs': columns, 'signature_name': 'serving_default'})

  assert status == 200
  assert answer['model_version'] == rows['model_version']
  assert answer['outputs']['recommended_labels'] == [
      p['recommended_labels'] for p in rows['predictions']]
  assert answer['outputs']['probabilities'] == [
      p['probabilities'] for p in rows['predictions']]
  assert answer['outputs']['top_k'] == [p['top_k'] for p in rows['predictions']]


def raw_exchange(served, request: bytes) -> bytes:
  """Sends raw bytes; everything the server answers until it closes."""
  with socket.create_connection(served.server.address, timeout=10) as client:
    client.sendall(request)
    answer = b''
    while chunk := client.recv(65536):
      answer += chunk
  return answer


def test_malformed_http_gets_a_json_400(served):
  answer = raw_exchange(served, b'GARBAGE \x01\x02\r\n\r\n')
  head, body = answer.split(b'\r\n\r\n', 1)
  assert head.startswith(b'HTTP/1.1 400')
  assert b'content-type: application/json' in head.lower()
  assert 'malformed HTTP request' in strict_json(body)['error']


def test_a_chunked_body_over_the_limit_is_a_413(exported_model, tmp_path):
  running = serve_pushed(exported_model.export_dir, tmp_path, 1,
                         max_request_bytes=1000)
  try:
    chunk = b'{"instances": [' + b' ' * 2000
    answer = raw_exchange(running, (
        f'POST {MODEL}:predict HTTP/1.1\r\nHost: localhost\r\n'
        'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n'
        f'{len(chunk):x}\r\n').encode() + chunk + b'\r\n0\r\n\r\n')
  finally:
    running.stop()
  head, body = answer.split(b'\r\n\r\n', 1)
  assert head.startswith(b'HTTP/1.1 413')
  assert 'the limit is 1000' in strict_json(body)['error']


# Admin routes: loopback Host only. -------------------------------------------

@pytest.mark.parametrize('host, status', [
    ('localhost:8501', 200), ('127.0.0.1', 200), ('[::1]:8501', 200),
    ('attacker.example', 403), ('10.0.0.7:8501', 403), ('', 403),
])
def test_admin_routes_check_the_host(served, host, status):
  answer = served.call('POST', f'{MODEL}:unpin', {}, {'Host': host})[:2]
  assert answer[0] == status
  if status == 403:
    assert 'loopback' in answer[1]['error']


# Health. ----------------------------------------------------------------------

def test_live_at_once_ready_only_with_a_warmed_up_model(exported_model,
                                                        tmp_path):
  push(exported_model.export_dir, tmp_path, 1)
  store = ModelStore(str(tmp_path))
  running = Running(store)                        # nothing loaded yet
  try:
    before = [running.call('GET', path)[:2] for path in ('/live', '/ready',
                                                         '/health')]
    store.reload()
    after = [running.call('GET', path)[:2] for path in ('/live', '/ready',
                                                        '/health')]
  finally:
    running.stop()
  assert [status for status, _ in before] == [200, 503, 503]
  assert after == [(200, {'status': 'alive'}),
                   (200, {'status': 'ready', 'model_version': '1'}),
                   (200, {'status': 'ready', 'model_version': '1'})]


# Overload. ---------------------------------------------------------------------

class HeldModel:
  """Takes the batching thread and keeps it until released: a model call
  that runs long. Requests behind it wait in the server's queue."""

  def __init__(self):
    self.entered = threading.Event()
    self.release = threading.Event()

  def predict(self, serialized):
    self.entered.set()
    self.release.wait(30)
    return {'probabilities': np.zeros((len(serialized), 1))}


def hold_the_model(running) -> HeldModel:
  held = HeldModel()
  running.server.batcher.submit(held, [b''], time.monotonic() + 60)
  assert held.entered.wait(10)
  return held


def post_in_background(running, body, count):
  pool = concurrent.futures.ThreadPoolExecutor(count)
  futures = [pool.submit(running.call, 'POST', f'{MODEL}:predict', body)
             for _ in range(count)]
  return pool, futures


def wait_until(condition, seconds=10):
  deadline = time.monotonic() + seconds
  while not condition():
    assert time.monotonic() < deadline, 'timed out'
    time.sleep(0.01)


def test_a_full_queue_answers_503_at_once_and_nothing_hangs(exported_model,
                                                             tmp_path):
  running = serve_pushed(exported_model.export_dir, tmp_path, 1,
                         max_queued_sessions=4, deadline_seconds=30)
  body = good_request(exported_model, 2)
  try:
    held = hold_the_model(running)
    pool, waiting = post_in_background(running, body, 2)   # fill the queue
    wait_until(lambda: running.server.batcher.queued_sessions == 4)

    started = time.monotonic()
    status, answer, response = running.call('POST', f'{MODEL}:predict', body)
    refused_in = time.monotonic() - started
    held.release.set()
    answered = [f.result(30)[0] for f in waiting]
    pool.shutdown()
    metrics = running.call_metrics()
  finally:
    running.stop()
  assert status == 503 and refused_in < 1.0
  assert response.getheader('Retry-After') == '1'
  assert 'at capacity' in answer['error']
  assert answered == [200, 200]
  assert 'repairml_serving_shed_requests_total{reason="queue_full"} 1.0' in (
      metrics)


def test_a_request_past_its_deadline_answers_503(exported_model, tmp_path):
  running = serve_pushed(exported_model.export_dir, tmp_path, 1,
                         deadline_seconds=0.2)
  try:
    held = hold_the_model(running)
    started = time.monotonic()
    status, answer, response = running.call('POST', f'{MODEL}:predict',
                                            good_request(exported_model))
    waited = time.monotonic() - started
    held.release.set()
    after = running.call('POST', f'{MODEL}:predict',
                         good_request(exported_model))[0]
  finally:
    running.stop()
  assert status == 503 and response.getheader('Retry-After') == '1'
  assert 'deadline' in answer['error']
  assert 0.15 < waited < 2.0
  assert after == 200


def test_connections_over_the_limit_are_refused_with_json(exported_model,
                                                          tmp_path):
  running = serve_pushed(exported_model.export_dir, tmp_path, 1,
                         max_connections=2)
  try:
    kept = [socket.create_connection(running.server.address, timeout=10)
            for _ in range(2)]
    time.sleep(0.2)        # both accepted
    answer = raw_exchange(running, b'GET /live HTTP/1.1\r\nHost: x\r\n\r\n')
    for connection in kept:
      connection.close()
    time.sleep(0.2)
    again = running.call('GET', '/live')[0]
  finally:
    running.stop()
  head, body = answer.split(b'\r\n\r\n', 1)
  assert head.startswith(b'HTTP/1.1 503') and b'retry-after: 1' in head
  assert 'connections open' in strict_json(body)['error']
  assert again == 200


# Metrics. ---------------------------------------------------------------------

def test_metrics_count_known_traffic(exported_model, tmp_path):
  running = serve_pushed(exported_model.export_dir, tmp_path, 7)
  try:
    for _ in range(3):
      assert running.call('POST', f'{MODEL}:predict',
                          good_request(exported_model, 2))[0] == 200
    assert running.call('POST', '/predict', good_request(exported_model,
                                                         1))[0] == 200
    assert running.call('POST', f'{MODEL}:predict',
                        {'instances': [{}]})[0] == 400
    assert running.call('GET', '/nowhere')[0] == 404
    metrics = running.call_metrics()
  finally:
    running.stop()
  lines = set(metrics.splitlines())
  for line in [
      'repairml_serving_requests_total{code="200",route="predict"} 3.0',
      'repairml_serving_requests_total{code="200",route="vertex_predict"} 1.0',
      'repairml_serving_requests_total{code="400",route="predict"} 1.0',
      'repairml_serving_requests_total{code="404",route="unknown"} 1.0',
      'repairml_serving_request_seconds_count{route="predict"} 4.0',
      'repairml_serving_batch_sessions_count 4.0',
      'repairml_serving_batch_sessions_sum 7.0',
      'repairml_serving_queue_sessions 0.0',
      'repairml_serving_model_version 7.0',
      'repairml_serving_model_load_failures_total 0.0',
  ]:
    assert line in lines, line


# Hot reload under load. -------------------------------------------------------

def test_hot_reload_under_load_fails_no_request(exported_model, tmp_path,
                                                in_process_outputs):
  running = serve_pushed(exported_model.export_dir, tmp_path, 1)
  store = running.store
  store.start_polling(0.05)
  rows = exported_model.held_out_rows
  body = json.dumps({'instances': instances_of(rows)}).encode()
  expected = {'1': in_process_outputs(exported_model.export_dir, rows),
              '2': in_process_outputs(exported_model.other_export_dir, rows)}
  stop = threading.Event()
  answers, failures = [], []

  def client():
    host, port = running.server.address
    connection = http.client.HTTPConnection(host, port, timeout=30)
    while not stop.is_set():
      try:
        connection.request('POST', f'{MODEL}:predict', body, JSON)
        response = connection.getresponse()
        data = response.read()
      except OSError as e:
        failures.append(repr(e))
        connection.close()
        continue
      if response.status != 200:
        failures.append((response.status, data))
      else:
        answers.append(strict_json(data))
    connection.close()

  threads = [threading.Thread(target=client) for _ in range(8)]
  try:
    for thread in threads:
      thread.start()
    wait_until(lambda: len(answers) > 20)
    push(exported_model.other_export_dir, tmp_path, 2)
    wait_until(lambda: answers and answers[-1]['model_version'] == '2', 60)
    served_after = len(answers)
    wait_until(lambda: len(answers) > served_after + 20)
  finally:
    stop.set()
    for thread in threads:
      thread.join()
    store.stop_polling()
    running.stop()

  assert failures == []
  versions = [a['model_version'] for a in answers]
  assert set(versions) == {'1', '2'} and versions[-1] == '2'
  # The versions really differ, and each answer is its own version's.
  assert expected['1']['recommended'].tolist() != (
      expected['2']['recommended'].tolist())
  for answer in answers:
    recommended = [p['recommended'] for p in answer['predictions']]
    assert recommended == expected[answer['model_version']][
        'recommended'].tolist()
