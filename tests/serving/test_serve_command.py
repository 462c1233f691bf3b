"""`repairml serve` as a process: as a user starts it, and as the serving
image starts it in a Vertex AI endpoint (AIP_* variables); a clean stop
loses no request log line."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness import NAME, instances_of, push

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def config_file(tmp_path, serving_dir) -> str:
  path = tmp_path / 'config.yaml'
  path.write_text(
      f'base: {ROOT / "configs" / "local.yaml"}\n'
      f'paths:\n  serving_dir: {serving_dir}\n'
      f'  log_file: {tmp_path / "logs" / "repairml.log"}\n')
  return str(path)


def get(url: str):
  try:
    with urllib.request.urlopen(url, timeout=10) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def post(url: str, body):
  request = urllib.request.Request(
      url, json.dumps(body).encode(), {'Content-Type': 'application/json'})
  with urllib.request.urlopen(request, timeout=30) as response:
    return response.status, json.loads(response.read())


def start(args, env=None) -> subprocess.Popen:
  return subprocess.Popen(
      [sys.executable, str(ROOT / 'cli.py'), 'serve', *args],
      cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)


def wait_ready(process, url: str, seconds=120):
  deadline = time.monotonic() + seconds
  while time.monotonic() < deadline:
    assert process.poll() is None, process.communicate()
    try:
      status, _ = get(url)
      if status == 200:
        return
    except OSError:
      pass
    time.sleep(0.2)
  raise AssertionError(f'{url} was not ready in {seconds} s')


def stop(process) -> str:
  process.send_signal(signal.SIGTERM)
  out, _ = process.communicate(timeout=60)
  assert process.returncode == 0
  return out


def test_a_clean_stop_loses_no_request_log_line(exported_model, tmp_path):
  push(exported_model.export_dir, tmp_path / 'serving', 3)
  port = free_port()
  log = tmp_path / 'requests.jsonl'
  process = start(['--config', config_file(tmp_path, tmp_path / 'serving'),
                   '--port', str(port), '--request-log', str(log)])
  url = f'http://127.0.0.1:{port}'
  try:
    wait_ready(process, f'{url}/ready')
    assert get(f'{url}/live') == (200, {'status': 'alive'})
    instances = instances_of(exported_model.held_out_rows)
    for _ in range(20):
      status, answer = post(f'{url}/v1/models/{NAME}:predict',
                            {'instances': instances})
      assert status == 200 and answer['model_version'] == '3'
  finally:
    out = stop(process)
  assert 'serving repairml version 3' in out and out.endswith('stopped\n')
  lines = log.read_text().splitlines()
  assert len(lines) == 20 * len(instances)
  assert all(json.loads(line)['model_version'] == 3 for line in lines)


def test_in_a_vertex_endpoint_it_serves_the_model_in_aip_storage_uri(
    exported_model, tmp_path):
  """The serving image's command, with what Vertex AI sets: the port, the
  routes, and the model to serve; its Vertex route answers as locally."""
  storage = tmp_path / 'bucket' / 'model'
  shutil.copytree(exported_model.export_dir, storage)
  port = free_port()
  env = {'AIP_STORAGE_URI': str(storage), 'AIP_HTTP_PORT': str(port),
         'AIP_HEALTH_ROUTE': '/v1/endpoints/1/deployedModels/2',
         'AIP_PREDICT_ROUTE': '/v1/endpoints/1/deployedModels/2:predict'}
  process = start(['--config', config_file(tmp_path, tmp_path / 'local'),
                   '--no-request-log'], env)
  url = f'http://127.0.0.1:{port}'
  instances = instances_of(exported_model.held_out_rows[:3])
  try:
    wait_ready(process, url + env['AIP_HEALTH_ROUTE'])
    vertex = post(url + env['AIP_PREDICT_ROUTE'],
                  {'instances': instances, 'parameters': {'top_k': 3}})
    local = post(f'{url}/v1/models/{NAME}:predict',
                 {'instances': instances, 'top_k': 3})
  finally:
    stop(process)
  assert vertex == local
  assert vertex[1]['model_version'] == '1'


def test_a_bad_aip_storage_uri_is_one_line(tmp_path):
  env = {'AIP_STORAGE_URI': str(tmp_path / 'nothing'),
         'AIP_HTTP_PORT': str(free_port())}
  process = start(['--config', config_file(tmp_path, tmp_path / 'local')],
                  env)
  _, err = process.communicate(timeout=120)
  assert process.returncode == 2
  assert err.startswith('repairml serve: ') and err.count('\n') == 1
  assert 'Traceback' not in err
