"""Batch prediction: a Beam job over parquet or TFRecord sessions.

Given a serving directory holding the small exported model as version 1 and a
few hundred generated sessions, the job writes one JSON line per session with
what the SavedModel predicts for it in-process; bad rows go to the errors
output; the output directory appears whole or not at all.
"""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from data.generator import generate_sessions, write_spans
from models import export
from pipeline.components.example_gen import row_to_example
from serving import batch, pushed
from serving.instances import serialized_examples

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ROWS = 240
VERSION = 1
BEAM_ARGS = ['--direct_running_mode=in_memory', '--direct_num_workers=1']


def _plain(value):
  """A parquet value as a client sends it: lists as lists, NaN as None."""
  if isinstance(value, np.ndarray):
    return list(value)
  if isinstance(value, float) and math.isnan(value):
    return None
  return value


def _rows(frame: pd.DataFrame):
  return [{k: _plain(v) for k, v in row.items()}
          for row in frame.to_dict('records')]


def _read_lines(output_dir: Path, prefix: str):
  return [json.loads(line) for path in sorted(output_dir.glob(f'{prefix}-*'))
          for line in path.read_text().splitlines()]


def _leftover_staging(parent: Path):
  return [p.name for p in parent.iterdir()
          if p.name.startswith(batch.STAGING_PREFIX)]


@pytest.fixture(scope='module')
def serving_dir(exported_model, tmp_path_factory) -> Path:
  directory = tmp_path_factory.mktemp('serving')
  shutil.copytree(exported_model.export_dir, directory / str(VERSION))
  return directory


@pytest.fixture(scope='module')
def sessions(tmp_path_factory):
  """ROWS generated sessions in two parquet spans, and the frame itself."""
  root = tmp_path_factory.mktemp('sessions')
  frame = generate_sessions(ROWS, seed=21, spans=2)
  write_spans(frame, root)
  return frame, root


@pytest.fixture(scope='module')
def in_process(serving_dir):
  """Calls the SavedModel directly: session id -> (probabilities, recommended)."""
  model_dir = str(serving_dir / str(VERSION))
  serve = tf.saved_model.load(model_dir).signatures['serving_default']
  features = export.load_serving_features(model_dir)

  def predict(frame: pd.DataFrame):
    rows = [{k: v for k, v in row.items() if k in features}
            for row in _rows(frame)]
    outputs = serve(examples=tf.constant(serialized_examples(rows, features)))
    return {row['session_id']: (p, r) for row, p, r in zip(
        rows, outputs['probabilities'].numpy(),
        outputs['recommended'].numpy())}
  return predict


def _write_bad_row(root: Path, span: str, **values) -> None:
  """A span file of one session whose `values` replace a good session's."""
  row = generate_sessions(1, seed=22).astype(object)
  for name, value in values.items():
    row.at[0, name] = value
  (root / span).mkdir()
  row.to_parquet(root / span / 'sessions.parquet')


@pytest.fixture(scope='module')
def parquet_job(serving_dir, sessions, tmp_path_factory):
  """One job over the two spans plus two files of one bad row each."""
  frame, root = sessions
  # Text where the model reads an integer: it cannot become a tf.Example.
  _write_bad_row(root, 'span-8', session_id='bad-mileage', mileage_km='lots')
  # No car model: the tf.Example is made, but the model requires one.
  _write_bad_row(root, 'span-9', session_id='no-car-model', car_model=None)
  output = tmp_path_factory.mktemp('job') / 'predictions'
  result = batch.run_batch_prediction(
      str(serving_dir), str(root / 'span-*' / '*.parquet'), str(output),
      beam_args=BEAM_ARGS, batch_size=64)
  return result, output


def test_every_session_is_predicted_once_as_the_model_predicts_it(
    parquet_job, sessions, in_process, exported_model):
  result, output = parquet_job
  frame, _ = sessions
  lines = _read_lines(output, batch.PREDICTIONS_PREFIX)
  expected = in_process(frame)
  labels = export.load_label_names(exported_model.export_dir)

  assert sorted(line['session_id'] for line in lines) == sorted(expected)
  assert result.predicted == ROWS
  for line in lines:
    probabilities, _ = expected[line['session_id']]
    assert line['model_version'] == VERSION
    assert list(line['probabilities']) == labels
    np.testing.assert_allclose(list(line['probabilities'].values()),
                               probabilities, atol=1e-6)


def test_recommended_labels_follow_the_thresholds_and_top_k_the_probabilities(
    parquet_job, sessions, in_process, exported_model):
  _, output = parquet_job
  expected = in_process(sessions[0])
  labels = export.load_label_names(exported_model.export_dir)
  thresholds = exported_model.thresholds
  recommended_somewhere = 0

  for line in _read_lines(output, batch.PREDICTIONS_PREFIX):
    probabilities, recommended = expected[line['session_id']]
    assert line['recommended_labels'] == [
        label for label, p, t in zip(labels, probabilities, thresholds)
        if p >= t]
    assert line['recommended_labels'] == [
        label for label, r in zip(labels, recommended) if r]
    recommended_somewhere += bool(line['recommended_labels'])
    top = [line['probabilities'][label] for label in line['top_k']]
    assert len(top) == batch.DEFAULT_TOP_K
    assert top == sorted(top, reverse=True)
    assert top[-1] >= sorted(probabilities)[-batch.DEFAULT_TOP_K] - 1e-6
  assert recommended_somewhere  # the check above is not vacuous


def test_bad_rows_go_to_errors_and_the_rest_succeed(parquet_job):
  result, output = parquet_job
  errors = {line['session_id']: line['error']
            for line in _read_lines(output, batch.ERRORS_PREFIX)}

  assert result.errors == 2
  assert set(errors) == {'bad-mileage', 'no-car-model'}
  assert errors['bad-mileage'].startswith('mileage_km: must be an integer')
  assert 'car_model' in errors['no-car-model']
  summary = json.loads((output / batch.SUMMARY_FILE).read_text())
  assert (summary['predicted'], summary['errors']) == (ROWS, 2)
  assert summary['model_version'] == VERSION
  assert not _leftover_staging(output.parent)


def test_tfrecord_input_replaces_an_existing_output_when_told_to(
    serving_dir, sessions, in_process, tmp_path):
  frame = sessions[0].iloc[:100]
  path = tmp_path / 'sessions.tfrecord'
  with tf.io.TFRecordWriter(str(path)) as writer:
    for row in _rows(frame):  # with the labels: the model must ignore them
      writer.write(row_to_example(row).SerializeToString())
    writer.write(row_to_example({'car_model': 'city_car'}).SerializeToString())
  output = tmp_path / 'out'
  output.mkdir()
  (output / 'old.txt').write_text('an earlier run')

  result = batch.run_batch_prediction(
      str(serving_dir), str(path), str(output), input_format=batch.TFRECORD,
      beam_args=BEAM_ARGS, overwrite=True)

  expected = in_process(frame)
  lines = _read_lines(output, batch.PREDICTIONS_PREFIX)
  assert sorted(line['session_id'] for line in lines) == sorted(expected)
  for line in lines:
    np.testing.assert_allclose(list(line['probabilities'].values()),
                               expected[line['session_id']][0], atol=1e-6)
  (error,) = _read_lines(output, batch.ERRORS_PREFIX)
  assert error['session_id'] is None and 'session_id' in error['error']
  assert (result.predicted, result.errors) == (100, 1)
  assert not (output / 'old.txt').exists()
  assert not _leftover_staging(tmp_path)


def test_a_failed_job_leaves_the_output_as_it_was(serving_dir, sessions,
                                                  tmp_path, monkeypatch):
  def broken(self, session_batch):
    raise RuntimeError('the model server caught fire')
  monkeypatch.setattr(batch.PredictSessions, '_lines', broken)
  fresh, existing = tmp_path / 'fresh', tmp_path / 'existing'
  existing.mkdir()
  (existing / 'old.txt').write_text('an earlier run')
  pattern = str(sessions[1] / 'span-0' / '*.parquet')

  for output in (fresh, existing):
    with pytest.raises(Exception, match='caught fire'):
      batch.run_batch_prediction(str(serving_dir), pattern, str(output),
                                 beam_args=BEAM_ARGS, overwrite=True)

  assert not fresh.exists()
  assert [p.name for p in existing.iterdir()] == ['old.txt']
  assert not _leftover_staging(tmp_path)


def test_an_existing_output_is_refused(serving_dir, sessions, tmp_path):
  (tmp_path / 'out').mkdir()
  with pytest.raises(batch.BatchPredictionError, match='already exists.*--overwrite'):
    batch.run_batch_prediction(str(serving_dir),
                               str(sessions[1] / 'span-*' / '*.parquet'),
                               str(tmp_path / 'out'))


def _version(serving: Path, name: str, complete: bool = True) -> None:
  (serving / name).mkdir(parents=True)
  if complete:
    (serving / name / 'saved_model.pb').write_bytes(b'')


def test_the_newest_complete_version_is_chosen(tmp_path):
  serving = tmp_path / 'serving'
  for name in ('3', '12', '200'):
    _version(serving, name)
  _version(serving, '.staging-999')  # a push in progress
  _version(serving, '1000', complete=False)  # not a SavedModel
  _version(serving, 'latest')

  assert pushed.latest_version(str(serving)) == 200
  assert batch.resolve_model_dir(str(serving)) == str(serving / '200')
  assert batch.resolve_model_dir(str(serving), version=3) == str(serving / '3')
  assert batch.resolve_model_dir(str(serving / '12')) == str(serving / '12')
  with pytest.raises(batch.BatchPredictionError,
                     match='no version 7 .* the pushed versions are 3, 12, 200'):
    batch.resolve_model_dir(str(serving), version=7)
  with pytest.raises(batch.BatchPredictionError, match='run `make run` first'):
    batch.resolve_model_dir(str(tmp_path / 'nothing'))


def test_an_old_model_without_the_features_asset_still_says_its_features(
    exported_model):
  assert pushed.features_from_signature(exported_model.export_dir) == (
      export.load_serving_features(exported_model.export_dir))


def test_a_model_that_parses_no_examples_is_a_clear_error(tmp_path):
  # Not one of ours: a serving signature over a float tensor, no tf.Example
  # parser and no features asset.
  module = tf.Module()
  module.serve = tf.function(lambda x: {'y': x * 2.0}, input_signature=[
      tf.TensorSpec([None], tf.float32)])
  tf.saved_model.save(module, str(tmp_path / 'foreign'),
                      signatures={'serving_default': module.serve})

  with pytest.raises(batch.BatchPredictionError,
                     match='no assets/serving_features.json'):
    batch._features(str(tmp_path / 'foreign'))  # pylint: disable=protected-access


# --- repairml predict --------------------------------------------------------------


@pytest.fixture
def config_path(tmp_path, serving_dir):
  path = tmp_path / 'config.yaml'
  path.write_text(yaml.safe_dump({
      'base': str(PROJECT_ROOT / 'configs' / 'local.yaml'),
      'paths': {'serving_dir': str(serving_dir),
                'log_file': str(tmp_path / 'logs' / 'repairml.log')},
  }))
  return path


def test_predict_prints_a_few_lines_and_logs_the_rest(config_path, sessions,
                                                      tmp_path, capfd):
  output = tmp_path / 'out'
  code = batch.main(['--config', str(config_path), '--input',
                     str(sessions[1] / 'span-0' / '*.parquet'),
                     '--output', str(output)])

  out = capfd.readouterr().out
  spans = sessions[0]['span'].value_counts()
  assert code == 0
  assert f'model: version {VERSION} ' in out
  assert f'predicted {spans[0]} sessions' in out and ', 0 errors' in out
  assert f'output: {output}' in out
  assert len(out.splitlines()) == 4
  assert len(_read_lines(output, batch.PREDICTIONS_PREFIX)) == spans[0]
  assert (tmp_path / 'logs' / 'repairml.log').exists()  # where the noise goes


@pytest.mark.parametrize('case, fragment', [
    ('no model', 'run `make run` first'),
    ('no input', 'no input files match'),
    ('output exists', 'already exists'),
])
def test_predict_user_mistakes_are_one_line_and_exit_2(
    case, fragment, config_path, sessions, tmp_path, capfd):
  pattern = str(sessions[1] / 'span-*' / '*.parquet')
  output = tmp_path / 'out'
  if case == 'no model':
    empty = tmp_path / 'empty.yaml'
    empty.write_text(yaml.safe_dump({
        'base': str(config_path), 'paths': {'serving_dir': str(tmp_path / 'e')}}))
    config_path = empty
  elif case == 'no input':
    pattern = str(tmp_path / 'nowhere' / '*.parquet')
  else:
    output.mkdir()

  code = batch.main(['--config', str(config_path), '--input', pattern,
                     '--output', str(output)])

  err = capfd.readouterr().err
  assert code == 2
  assert fragment in err
  assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err


def test_predict_a_failed_job_is_one_line_exit_1_and_writes_nothing(
    config_path, sessions, tmp_path, capfd):
  output = tmp_path / 'out'
  code = batch.main(['--config', str(config_path), '--format', 'tfrecord',
                     '--input', str(sessions[1] / 'span-0' / '*.parquet'),
                     '--output', str(output)])

  err = capfd.readouterr().err
  assert code == 1
  assert 'failed, and wrote nothing' in err and 'Not a valid TFRecord' in err
  assert len(err.strip().splitlines()) == 1
  assert 'Traceback' in (tmp_path / 'logs' / 'repairml.log').read_text()
  assert not output.exists() and not _leftover_staging(tmp_path)
