"""One prediction contract: the local server's TF Serving routes (rows and
columns), its Vertex AI route (what the serving image answers in an
endpoint) and batch prediction give the same answer for the same sessions,
and that answer is the model's own outputs, named and ranked."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from data.generator import generate_sessions, write_spans
from harness import MODEL, Running, instances_of, push
from models import export
from pipeline.components.example_gen import row_to_example
from serving import batch
from serving.model_store import ModelStore

VERSION = 4
TOP_K = 4
BEAM_ARGS = ['--direct_running_mode=in_memory', '--direct_num_workers=1']


def plain(value):
  if isinstance(value, np.ndarray):
    return [plain(v) for v in value]
  if isinstance(value, float) and math.isnan(value):
    return None
  if isinstance(value, np.generic):
    return value.item()
  return value


@pytest.fixture(scope='module')
def answers(exported_model, tmp_path_factory):
  """session id -> {route: its prediction} for 40 generated sessions."""
  tmp = tmp_path_factory.mktemp('contract')
  serving_dir = tmp / 'serving'
  push(exported_model.export_dir, serving_dir, VERSION)
  frame = generate_sessions(40, seed=33, spans=1)
  write_spans(frame, tmp / 'sessions')
  rows = instances_of([{k: plain(v) for k, v in row.items()}
                       for row in frame.to_dict('records')])
  ids = [row['session_id'] for row in rows]

  store = ModelStore(str(serving_dir))
  store.reload()
  running = Running(store)
  try:
    tf_serving = running.call('POST', f'{MODEL}:predict',
                              {'instances': rows, 'top_k': TOP_K})[1]
    vertex = running.call('POST', '/predict', {
        'instances': rows, 'parameters': {'top_k': TOP_K}})[1]
    columns = running.call('POST', f'{MODEL}:predict', {
        'inputs': {name: [row.get(name) for row in rows]
                   for name in rows[0]}, 'top_k': TOP_K})[1]
  finally:
    running.stop()

  output = tmp / 'predictions'
  batch.run_batch_prediction(str(serving_dir),
                             str(tmp / 'sessions' / 'span-*' / '*.parquet'),
                             str(output), beam_args=BEAM_ARGS, top_k=TOP_K)
  lines = [json.loads(line) for path in sorted(output.glob('predictions-*'))
           for line in path.read_text().splitlines()]

  by_session = {i: {} for i in ids}
  for route, answer in (('tf_serving', tf_serving), ('vertex', vertex)):
    assert answer['model_version'] == str(VERSION)
    for session_id, prediction in zip(ids, answer['predictions']):
      by_session[session_id][route] = prediction
  outputs = columns['outputs']
  for i, session_id in enumerate(ids):
    by_session[session_id]['columnar'] = {key: values[i]
                                          for key, values in outputs.items()}
  for line in lines:
    assert line.pop('model_version') == str(VERSION)
    by_session[line.pop('session_id')]['batch'] = line
  return by_session, rows


def test_every_route_answers_every_session(answers):
  by_session, _ = answers
  assert all(set(routes) == {'tf_serving', 'vertex', 'columnar', 'batch'}
             for routes in by_session.values())


def test_the_routes_agree_on_the_decision_and_the_ranking(answers):
  by_session, _ = answers
  for routes in by_session.values():
    reference = routes['tf_serving']
    for route, prediction in routes.items():
      assert list(prediction) == list(reference), route
      assert prediction['recommended_labels'] == (
          reference['recommended_labels']), route
      assert prediction['recommended'] == reference['recommended'], route
      assert [t['label'] for t in prediction['top_k']] == [
          t['label'] for t in reference['top_k']], route
      np.testing.assert_allclose(prediction['probabilities'],
                                 reference['probabilities'], atol=1e-6)


def test_the_answer_is_the_models_own_outputs(answers, exported_model):
  """Against the SavedModel called directly on the pipeline's examples:
  names from labels.txt, decisions at each label's threshold, ranking by
  recommendation score."""
  by_session, rows = answers
  signature = tf.saved_model.load(
      exported_model.export_dir).signatures['serving_default']
  outputs = signature(examples=tf.constant(
      [row_to_example(row).SerializeToString() for row in rows]))
  labels = export.load_label_names(exported_model.export_dir)
  for i, row in enumerate(rows):
    prediction = by_session[row['session_id']]['batch']
    probabilities = outputs['probabilities'][i].numpy()
    scores = outputs['recommendation_scores'][i].numpy()
    np.testing.assert_allclose(prediction['probabilities'], probabilities,
                               rtol=1e-6)
    assert prediction['recommended_labels'] == [
        name for name, p, t in zip(labels, probabilities,
                                   exported_model.thresholds)
        if p >= np.float32(t)]
    best = sorted(range(len(labels)), key=lambda j: (-scores[j], j))[:TOP_K]
    assert [t['label'] for t in prediction['top_k']] == [labels[j]
                                                        for j in best]
