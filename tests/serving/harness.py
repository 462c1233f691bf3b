"""The serving tests' HTTP harness: a real server on a loopback port, and a
client that insists on strict JSON."""

import http.client
import json
import os
import shutil

from serving.app import ServiceSettings
from serving.model_store import ModelStore
from serving.server import PredictionServer

NOT_AT_SERVING = ('repair_labels', 'session_date', 'span')
NAME = 'repairml'
MODEL = f'/v1/models/{NAME}'
JSON = {'Content-Type': 'application/json'}


def instances_of(rows):
  return [{k: v for k, v in row.items() if k not in NOT_AT_SERVING}
          for row in rows]


def push(export_dir, serving_dir, version):
  shutil.copytree(export_dir, os.path.join(str(serving_dir), str(version)))


def strict_json(data: bytes):
  """The body parsed as strict JSON: NaN or Infinity fail the test."""
  def refuse(name):
    raise AssertionError(f'the answer holds {name}, which is not JSON')
  return json.loads(data, parse_constant=refuse)


class Running:
  """A real server on a free loopback port, serving from a thread."""

  SETTINGS = ('admin', 'max_request_bytes', 'max_instances',
              'deadline_seconds')

  def __init__(self, store, **options):
    self.store = store
    settings = ServiceSettings(NAME, **{key: options.pop(key)
                                        for key in self.SETTINGS
                                        if key in options})
    self.server = PredictionServer(store, settings, '127.0.0.1', 0,
                                   **options).start()

  def call(self, method, path, body=None, headers=None):
    """(status, JSON answer, response); `body` a dict is sent as JSON."""
    if isinstance(body, (dict, list)):
      body, headers = json.dumps(body).encode(), {**JSON, **(headers or {})}
    host, port = self.server.address
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
      connection.request(method, path, body=body, headers=headers or {})
      response = connection.getresponse()
      data = response.read()
      assert response.getheader('Content-Type') == 'application/json'
      return response.status, strict_json(data), response
    finally:
      connection.close()

  def call_metrics(self) -> str:
    """GET /metrics, in Prometheus' text format."""
    host, port = self.server.address
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
      connection.request('GET', '/metrics')
      response = connection.getresponse()
      assert response.status == 200
      assert response.getheader('Content-Type').startswith('text/plain')
      return response.read().decode()
    finally:
      connection.close()

  def stop(self):
    self.server.stop()


def serve_pushed(export_dir, serving_dir, version=1, **options) -> Running:
  """The exported model pushed as `version`, loaded and served."""
  push(export_dir, serving_dir, version)
  store = ModelStore(str(serving_dir))
  store.reload()
  return Running(store, **options)
