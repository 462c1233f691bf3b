"""The REST server: TF Serving's and Vertex AI's formats over real HTTP, hot reload, rollback, errors."""

import http.client
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from harness import JSON, MODEL, Running, instances_of, push
from models import export
from pipeline.components.example_gen import row_to_example
from serving import server as serving_server
from serving.app import is_loopback
from serving.model_store import ModelStore
from serving.request_log import RequestLog

LOCAL_CONFIG = Path(__file__).resolve().parents[2] / 'configs' / 'local.yaml'

@pytest.fixture(scope='module')
def served(exported_model, tmp_path_factory):
  """Version 1 of the exported model, served with a request log."""
  tmp = tmp_path_factory.mktemp('served')
  push(exported_model.export_dir, tmp / 'serving', 1)
  store = ModelStore(str(tmp / 'serving'))
  store.reload()
  running = Running(store, request_log=RequestLog(str(tmp / 'requests.jsonl')))
  yield running
  running.stop()


@pytest.fixture(scope='module')
def in_process(exported_model):
  """The SavedModel's outputs on the pipeline's own examples of the rows."""
  signature = tf.saved_model.load(
      exported_model.export_dir).signatures['serving_default']
  def predict(rows):
    examples = [row_to_example(i).SerializeToString()
                for i in instances_of(rows)]
    return {k: v.numpy() for k, v in
            signature(examples=tf.constant(examples)).items()}
  return predict


def assert_same_outputs(predictions, expected):
  for name in ('probabilities', 'recommended', 'recommendation_scores'):
    np.testing.assert_allclose([p[name] for p in predictions], expected[name],
                               rtol=1e-6, atol=1e-7)


def test_it_listens_on_loopback_only_by_default(served):
  assert served.server.address[0] == '127.0.0.1'
  assert serving_server.build_parser().parse_args([]).host == '127.0.0.1'
  assert served.server.settings.admin
  assert not is_loopback('0.0.0.0')
  assert is_loopback('::1')


def test_tf_serving_predict_equals_the_model_in_process(
    served, exported_model, in_process):
  rows = exported_model.held_out_rows

  status, answer, _ = served.call('POST', f'{MODEL}:predict', {
      'signature_name': 'serving_default', 'instances': instances_of(rows)})

  assert status == 200
  assert answer['model_version'] == '1'
  assert len(answer['predictions']) == len(rows)
  assert_same_outputs(answer['predictions'], in_process(rows))


def test_recommended_labels_follow_the_thresholds(served, exported_model):
  labels = exported_model.config.label.vocabulary
  thresholds = np.float32(exported_model.thresholds)

  _, answer, _ = served.call('POST', f'{MODEL}:predict', {
      'instances': instances_of(exported_model.held_out_rows)})

  recommended = 0
  for prediction in answer['predictions']:
    probabilities = np.float32(prediction['probabilities'])
    expected = [name for name, p, t in zip(labels, probabilities, thresholds)
                if p >= t]
    assert prediction['recommended_labels'] == expected
    recommended += len(expected)
  assert 0 < recommended < len(labels) * len(answer['predictions'])


def test_top_k_ranks_labels_by_recommendation_score(served, exported_model):
  labels = exported_model.config.label.vocabulary
  instances = instances_of(exported_model.held_out_rows[:2])

  _, default, _ = served.call('POST', f'{MODEL}:predict',
                              {'instances': instances})
  _, three, _ = served.call('POST', f'{MODEL}:predict',
                            {'instances': instances, 'top_k': 3})
  _, every, _ = served.call('POST', f'{MODEL}:predict',
                            {'instances': instances, 'top_k': 1000})

  for prediction in default['predictions']:
    top = prediction['top_k']
    scores = prediction['recommendation_scores']
    assert len(top) == 5
    assert [t['score'] for t in top] == sorted(scores, reverse=True)[:5]
    for entry in top:
      j = labels.index(entry['label'])
      assert entry['score'] == scores[j]
      assert entry['probability'] == prediction['probabilities'][j]
  assert [p['top_k'] for p in three['predictions']] == [
      p['top_k'][:3] for p in default['predictions']]
  assert all(len(p['top_k']) == len(labels) for p in every['predictions'])


def test_vertex_routes_predict_the_same(served, exported_model, in_process):
  rows = exported_model.held_out_rows[:3]

  status, answer, _ = served.call('POST', '/predict', {
      'instances': instances_of(rows), 'parameters': {'top_k': 3}})
  health = served.call('GET', '/health')[:2]

  assert status == 200
  assert set(answer) == {'model_version', 'predictions'}
  assert_same_outputs(answer['predictions'], in_process(rows))
  assert all(len(p['top_k']) == 3 for p in answer['predictions'])
  assert health == (200, {'status': 'ready', 'model_version': '1'})


def test_a_version_can_be_asked_for_by_number(served, exported_model):
  instances = instances_of(exported_model.held_out_rows[:1])

  status, answer, _ = served.call('POST', f'{MODEL}/versions/1:predict',
                                  {'instances': instances})
  missing = served.call('POST', f'{MODEL}/versions/9:predict',
                        {'instances': instances})[:2]

  assert status == 200 and answer['model_version'] == '1'
  assert missing[0] == 404 and 'version 9' in missing[1]['error']


def test_status_and_metadata(served, exported_model):
  status = served.call('GET', MODEL)[:2]
  _, metadata, _ = served.call('GET', f'{MODEL}/metadata')

  assert status == (200, {'model_version_status': [{
      'version': '1', 'state': 'AVAILABLE',
      'status': {'error_code': 'OK', 'error_message': ''}}]})
  assert metadata['model_spec']['version'] == '1'
  details = metadata['metadata']
  assert details['label_names'] == exported_model.config.label.vocabulary
  assert details['thresholds'] == pytest.approx(exported_model.thresholds)
  assert details['features'] == export.load_serving_features(
      exported_model.export_dir)
  assert details['pinned'] is False
  signature = details['signature_def']['signature_def']['serving_default']
  assert signature['inputs']['examples']['dtype'] == 'DT_STRING'
  assert set(signature['outputs']) == {'probabilities', 'recommended',
                                       'recommendation_scores'}


@pytest.mark.parametrize('change, fragment', [
    (lambda i: i[1].update(build_year='old'),
     'instances[1].build_year: must be an integer'),
    (lambda i: i[0].pop('car_model'),
     'instances[0].car_model: required, and missing'),
    (lambda i: i[2].update(colour='red'),
     'instances[2].colour: not a feature of this model'),
])
def test_a_bad_instance_is_a_400_naming_instance_and_feature(
    served, exported_model, change, fragment):
  instances = instances_of(exported_model.held_out_rows[:3])
  change(instances)

  status, answer, _ = served.call('POST', f'{MODEL}:predict',
                                  {'instances': instances})

  assert status == 400
  assert fragment in answer['error']
  assert 'Traceback' not in answer['error']
  assert 'Graph execution' not in answer['error']


@pytest.mark.parametrize('body, headers, status, fragment', [
    (b'{"instances": [', JSON, 400, 'not valid JSON'),
    (b'[1, 2]', JSON, 400, 'must be a JSON object'),
    (b'\xff\xfe', JSON, 400, 'not UTF-8'),
    (b'{"inputs": {}}', JSON, 400, '"inputs" must be an object'),
    (b'{"instances": [{}], "inputs": {}}', JSON, 400, 'not both'),
    (b'{"inputs": {"car_model": ["a"], "dtcs": []}}', JSON, 400,
     'one value per session'),
    (b'{"instances": [{"mileage_km": NaN}]}', JSON, 400, 'holds NaN'),
    (b'{"instances": [{"mileage_km": Infinity}]}', JSON, 400,
     'holds Infinity'),
    (b'{"instances": [{}], "signature_name": "x"}', JSON, 400,
     'signature_name'),
    (b'{"instances": [{}], "top_k": -1}', JSON, 400, 'top_k'),
    (b'{"instances": []}', JSON, 400, 'non-empty list'),
    (b'{"instances": [{}]}', {'Content-Type': 'text/plain'}, 415,
     'application/json'),
])
def test_malformed_requests_are_refused(served, body, headers, status,
                                        fragment):
  answer = served.call('POST', f'{MODEL}:predict', body, headers)[:2]

  assert answer[0] == status
  assert fragment in answer[1]['error']


def _announce_two_mib(served, headers: str) -> bytes:
  """Everything the server answers to a predict request that announces a
  2 MiB body (and sends none of it), with these extra header lines."""
  host, port = served.server.address
  with socket.create_connection((host, port), timeout=10) as client:
    client.sendall(f'POST {MODEL}:predict HTTP/1.1\r\nHost: x\r\n{headers}'
                   f'Content-Length: {2 << 20}\r\n\r\n'.encode())
    answer = b''
    while chunk := client.recv(65536):      # the server closes after it
      answer += chunk
  return answer


def test_a_too_large_body_is_refused_before_it_is_read(exported_model,
                                                       served):
  # Announces 2 MiB but sends none of it: the answer must come anyway.
  answer = _announce_two_mib(served, 'Content-Type: application/json\r\n')
  head, body = answer.decode().split('\r\n\r\n', 1)
  assert head.startswith('HTTP/1.1 413')
  assert 'limit is 1048576' in json.loads(body)['error']

  big = {'instances': instances_of(exported_model.held_out_rows) * 2000}
  assert served.call('POST', '/predict', big)[0] == 413


@pytest.mark.parametrize('method, path, status', [
    ('GET', '/v1/models/other', 404),
    ('POST', '/v1/models/other:predict', 404),
    ('GET', '/v2/anything', 404),
    ('GET', f'{MODEL}/versions/9', 404),
    ('GET', f'{MODEL}/versions/9/metadata', 404),
    ('GET', f'{MODEL}:predict', 405),
    ('DELETE', MODEL, 405),
    ('GET', f'{MODEL}/versions/1:pin', 405),
])
def test_unknown_models_versions_and_routes(served, method, path, status):
  body = b'{}' if method == 'POST' else None
  answer = served.call(method, path, body, JSON if body else None)[:2]

  assert answer[0] == status
  assert answer[1]['error']


def logged(path, session_id, seconds=10):
  """The request log lines of a session (written just after its answer)."""
  deadline = time.monotonic() + seconds
  while True:
    with open(path, encoding='utf-8') as f:
      records = [json.loads(line) for line in f]
    found = [r for r in records
             if r['instance'].get('session_id') == session_id]
    if found or time.monotonic() > deadline:
      return found
    time.sleep(0.01)


def test_every_session_is_logged_for_monitoring(served, exported_model):
  rows = exported_model.held_out_rows[:2]
  instances = instances_of(rows)
  instances[0]['session_id'] = 'logged-session'
  instances[1]['session_id'] = 'logged-session-2'
  instances[1]['dtcs'] = []

  _, answer, _ = served.call('POST', f'{MODEL}:predict',
                             {'instances': instances})

  path = served.server.request_log.path
  (first,) = logged(path, 'logged-session')
  (second,) = logged(path, 'logged-session-2')
  assert first['model_version'] == 1 and first['route'] == 'tf_serving'
  assert first['instance'] == instances[0]              # as it was sent
  assert first['features']['car_model'] == [rows[0]['car_model']]
  assert 'dtcs' not in second['features']               # as the model read it
  assert 'repair_labels' not in first['features']
  assert [first['prediction'], second['prediction']] == answer['predictions']
  assert first['request_id'] == second['request_id']
  assert first['timestamp'].endswith('+00:00') and first['latency_ms'] > 0


def test_no_model_yet_is_a_503(tmp_path):
  running = Running(ModelStore(str(tmp_path)))
  try:
    assert running.call('GET', '/health')[0] == 503
    assert running.call('GET', MODEL)[0] == 503
    assert running.call('POST', f'{MODEL}:predict',
                        {'instances': [{}]})[:2] == (
                            503, {'error': 'no model version is loaded yet.'})
  finally:
    running.stop()


def wait_for_version(running, version, seconds=30):
  deadline = time.monotonic() + seconds
  while time.monotonic() < deadline:
    _, metadata, _ = running.call('GET', f'{MODEL}/metadata')
    if metadata['model_spec']['version'] == str(version):
      return
    time.sleep(0.05)
  raise AssertionError(f'version {version} was not served in {seconds} s')


def test_hot_reload_serves_a_newly_pushed_version(exported_model, tmp_path):
  push(exported_model.export_dir, tmp_path, 1)
  store = ModelStore(str(tmp_path))
  store.reload()
  running = Running(store)
  store.start_polling(0.05)
  instances = instances_of(exported_model.held_out_rows[:1])
  try:
    shutil.copytree(exported_model.export_dir, tmp_path / '.staging-3')
    (tmp_path / '4').mkdir()                      # incomplete: ignored
    push(exported_model.export_dir, tmp_path, 2)
    wait_for_version(running, 2)
    # A broken version is reported, and the working one stays.
    (tmp_path / '5').mkdir()
    (tmp_path / '5' / 'saved_model.pb').write_bytes(b'garbage')
    deadline = time.monotonic() + 30
    while 5 not in store.failures() and time.monotonic() < deadline:
      time.sleep(0.05)

    _, status, _ = running.call('GET', MODEL)
    _, answer, _ = running.call('POST', f'{MODEL}:predict',
                                {'instances': instances})
  finally:
    store.stop_polling()
    running.stop()
  states = {s['version']: s['state'] for s in status['model_version_status']}
  assert states == {'5': 'END', '2': 'AVAILABLE', '1': 'AVAILABLE'}
  assert answer['model_version'] == '2'


def test_pin_rolls_back_and_unpin_returns_to_the_newest(exported_model,
                                                        tmp_path):
  push(exported_model.export_dir, tmp_path, 1)
  push(exported_model.export_dir, tmp_path, 2)
  store = ModelStore(str(tmp_path))
  store.reload()
  running = Running(store)
  instances = {'instances': instances_of(exported_model.held_out_rows[:1])}
  try:
    refused = running.call('POST', f'{MODEL}/versions/1:pin', b'')[:2]
    pinned = running.call('POST', f'{MODEL}/versions/1:pin', {})[:2]
    push(exported_model.export_dir, tmp_path, 3)
    store.reload()
    while_pinned = running.call('POST', f'{MODEL}:predict', instances)[1]
    unknown = running.call('POST', f'{MODEL}/versions/7:pin', {})[0]
    unpinned = running.call('POST', f'{MODEL}:unpin', {})[:2]
    after = running.call('POST', f'{MODEL}:predict', instances)[1]
  finally:
    running.stop()

  assert refused[0] == 415                        # no JSON content type
  assert pinned == (200, {'model_version': '1', 'pinned': True})
  assert while_pinned['model_version'] == '1'
  assert unknown == 404
  assert unpinned == (200, {'model_version': '3', 'pinned': False})
  assert after['model_version'] == '3'


def test_admin_endpoints_are_off_unless_enabled(served):
  running = Running(served.store, admin=False)
  try:
    answer = running.call('POST', f'{MODEL}/versions/1:pin', {})[:2]
  finally:
    running.stop()
  assert answer[0] == 403 and '--admin' in answer[1]['error']
  assert served.store.pinned is None


def _config(tmp_path, serving_dir):
  path = tmp_path / 'config.yaml'
  path.write_text(
      f'base: {LOCAL_CONFIG}\n'
      f'paths:\n  serving_dir: {serving_dir}\n'
      f'  log_file: {tmp_path / "logs" / "repairml.log"}\n')
  return str(path)


def test_serve_without_a_pushed_model_says_what_to_do(tmp_path, capfd):
  code = serving_server.main(['--config', _config(tmp_path, tmp_path / 'no')])

  err = capfd.readouterr().err.strip()
  assert code == 2
  assert err.startswith('repairml serve: no pushed model in ')
  assert 'run `make run` first' in err and '\n' not in err


def test_serve_on_a_busy_port_says_so(exported_model, tmp_path, capfd):
  push(exported_model.export_dir, tmp_path / 'serving', 1)
  with socket.socket() as busy:
    busy.bind(('127.0.0.1', 0))
    busy.listen()
    port = busy.getsockname()[1]
    code = serving_server.main(['--config',
                                _config(tmp_path, tmp_path / 'serving'),
                                '--port', str(port)])
  err = capfd.readouterr().err.strip()
  assert code == 2
  assert err == (f'repairml serve: port {port} on 127.0.0.1 is in use; stop '
                 'what uses it or pass another --port.')


def test_serve_with_an_invalid_config_says_so(tmp_path, capfd):
  code = serving_server.main(['--config', str(tmp_path / 'none.yaml')])

  err = capfd.readouterr().err.strip()
  assert code == 2
  assert err.startswith('repairml serve: ') and 'no such configuration' in err
  assert 'Traceback' not in err


def test_a_client_expecting_100_continue_hears_413_first(served):
  answer = _announce_two_mib(served, 'Content-Type: application/json\r\n'
                             'Expect: 100-continue\r\n')
  assert answer.startswith(b'HTTP/1.1 413')
  assert b'100 Continue' not in answer
