"""Batch prediction: a Beam job over parquet or TFRecord sessions.

Given a serving directory holding the small exported model as version 1 and a
few hundred generated sessions, the job writes one JSON line per session: the
prediction of the one contract (serving/contract.py) that the SavedModel
gives for it in-process, as the server answers it; bad rows go to the errors
output with the server's message; the output is committed whole or not at
all. The same job runs with the model in TensorFlow's ram:// and the input
and output in an in-memory object store behind Beam's FileSystems (memfs.py),
as it runs on gs:// paths on Dataflow.
"""

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml
from apache_beam.io.filesystems import FileSystems

import memfs
from data.generator import generate_sessions, write_spans
from models import export
from pipeline.components.example_gen import row_to_example
from serving import batch, contract, pushed
from serving.instances import RequestError, serialized_examples

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ROWS = 240
VERSION = 1
BEAM_ARGS = ['--direct_running_mode=in_memory', '--direct_num_workers=1']
LINE_KEYS = ['session_id', 'model_version', *contract.PREDICTION_KEYS]


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


def _strict(text: str):
  def refuse(name):
    raise ValueError(f'{name} is not JSON')
  return json.loads(text, parse_constant=refuse)


def _read_lines(output_dir: Path, prefix: str):
  return [_strict(line) for path in sorted(output_dir.glob(f'{prefix}-*'))
          for line in path.read_text().splitlines()]


def _leftover_staging(parent: Path):
  return [p.name for p in parent.iterdir()
          if p.name.startswith(batch.STAGING_PREFIX)]


def _online_error(row, features) -> str:
  """What the server answers for `row` sent as the first instance, without
  the 'instances[0].' that batch has no use for."""
  with pytest.raises(RequestError) as error:
    serialized_examples([{k: v for k, v in row.items() if k in features}],
                        features)
  return str(error.value).replace('instances[0].', '', 1)


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
  """The SavedModel called directly, its outputs read by the contract:
  session id -> the prediction the server answers for it."""
  model_dir = str(serving_dir / str(VERSION))
  serve = tf.saved_model.load(model_dir).signatures['serving_default']
  features = export.load_serving_features(model_dir)
  labels = export.load_label_names(model_dir)

  def predict(frame: pd.DataFrame, top_k=batch.DEFAULT_TOP_K):
    rows = _rows(frame)
    outputs = serve(examples=tf.constant(serialized_examples(
        [{k: v for k, v in row.items() if k in features} for row in rows],
        features)))
    predictions = contract.predictions(
        labels, {k: v.numpy() for k, v in outputs.items()}, top_k)
    return {row['session_id']: p for row, p in zip(rows, predictions)}
  return predict


def _assert_same_prediction(line, expected):
  assert list(line) == LINE_KEYS
  assert line['recommended'] == expected['recommended']
  assert line['recommended_labels'] == expected['recommended_labels']
  np.testing.assert_allclose(line['probabilities'], expected['probabilities'],
                             atol=1e-6)
  np.testing.assert_allclose(line['recommendation_scores'],
                             expected['recommendation_scores'], atol=1e-6)
  assert [t['label'] for t in line['top_k']] == [
      t['label'] for t in expected['top_k']]


def _write_bad_row(root: Path, span: str, **values) -> dict:
  """A span file of one session whose `values` replace a good session's."""
  row = generate_sessions(1, seed=22).astype(object)
  for name, value in values.items():
    row.at[0, name] = value
  (root / span).mkdir()
  row.to_parquet(root / span / 'sessions.parquet')
  return _rows(pd.read_parquet(root / span / 'sessions.parquet'))[0]


@pytest.fixture(scope='module')
def parquet_job(serving_dir, sessions, tmp_path_factory):
  """One job over the two spans plus three files of one bad row each."""
  frame, root = sessions
  bad = {
      # Text where the model reads an integer: it cannot become a tf.Example.
      'bad-mileage': _write_bad_row(root, 'span-7', session_id='bad-mileage',
                                    mileage_km='lots'),
      # No car model: the model requires one.
      'no-car-model': _write_bad_row(root, 'span-8',
                                     session_id='no-car-model',
                                     car_model=None),
      # Outside the schema's domain.
      'negative-mileage': _write_bad_row(root, 'span-9',
                                         session_id='negative-mileage',
                                         mileage_km=-5),
  }
  output = tmp_path_factory.mktemp('job') / 'predictions'
  result = batch.run_batch_prediction(
      str(serving_dir), str(root / 'span-*' / '*.parquet'), str(output),
      beam_args=BEAM_ARGS, batch_size=64)
  return result, output, bad


def test_every_session_is_predicted_once_as_the_server_answers_it(
    parquet_job, sessions, in_process):
  result, output, _ = parquet_job
  lines = _read_lines(output, batch.PREDICTIONS_PREFIX)
  expected = in_process(sessions[0])

  assert sorted(line['session_id'] for line in lines) == sorted(expected)
  assert result.predicted == ROWS
  for line in lines:
    assert line['model_version'] == str(VERSION)  # a string, as online
    _assert_same_prediction(line, expected[line['session_id']])


def test_top_k_ranks_by_recommendation_score_not_probability(
    parquet_job, exported_model):
  _, output, _ = parquet_job
  labels = export.load_label_names(exported_model.export_dir)
  ranked_otherwise = 0

  for line in _read_lines(output, batch.PREDICTIONS_PREFIX):
    scores, probabilities = (line['recommendation_scores'],
                             line['probabilities'])
    top = line['top_k']
    assert len(top) == batch.DEFAULT_TOP_K
    assert [t['score'] for t in top] == sorted(scores, reverse=True)[:len(top)]
    for entry in top:
      assert entry['score'] == scores[labels.index(entry['label'])]
      assert entry['probability'] == probabilities[labels.index(
          entry['label'])]
    assert line['recommended_labels'] == [
        label for label, flag in zip(labels, line['recommended']) if flag]
    by_probability = sorted(range(len(labels)), key=lambda j: -probabilities[j])
    ranked_otherwise += [t['label'] for t in top] != [
        labels[j] for j in by_probability[:len(top)]]
  assert ranked_otherwise  # the thresholds differ: so do the two rankings


def test_bad_rows_go_to_errors_with_the_servers_message(parquet_job,
                                                        serving_dir):
  result, output, bad = parquet_job
  features = export.load_serving_features(str(serving_dir / str(VERSION)))
  errors = {line['session_id']: line['error']
            for line in _read_lines(output, batch.ERRORS_PREFIX)}

  assert result.errors == len(bad)
  assert errors == {session_id: _online_error(row, features)
                    for session_id, row in bad.items()}
  assert errors['bad-mileage'].startswith('mileage_km: must be an integer')
  assert errors['negative-mileage'].startswith(
      'mileage_km: -5 is outside the range')
  summary = json.loads((output / batch.SUMMARY_FILE).read_text())
  assert (summary['predicted'], summary['errors']) == (ROWS, len(bad))
  assert summary['model_version'] == str(VERSION)
  assert not _leftover_staging(output.parent)


def test_tfrecord_input_is_checked_as_online_and_replaces_an_existing_output(
    serving_dir, sessions, in_process, tmp_path):
  frame = sessions[0].iloc[:100]
  out_of_range = {**_rows(frame.iloc[:1])[0], 'session_id': 'cold-car',
                  'coolant_temp_c': -1000.0}
  path = tmp_path / 'sessions.tfrecord'
  with tf.io.TFRecordWriter(str(path)) as writer:
    for row in _rows(frame):  # with the labels: the model must ignore them
      writer.write(row_to_example(row).SerializeToString())
    writer.write(row_to_example({'car_model': 'city_car'}).SerializeToString())
    writer.write(row_to_example(out_of_range).SerializeToString())
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
    _assert_same_prediction(line, expected[line['session_id']])
  errors = {e['session_id']: e['error']
            for e in _read_lines(output, batch.ERRORS_PREFIX)}
  features = export.load_serving_features(str(serving_dir / str(VERSION)))
  assert errors.keys() == {None, 'cold-car'}
  assert 'session_id' in errors[None]
  assert errors['cold-car'] == _online_error(out_of_range, features)
  assert (result.predicted, result.errors) == (100, 2)
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


def test_a_serving_directory_url_is_read_through_gfile_by_the_same_rule():
  # TensorFlow's ram:// filesystem stands for gs://: the os module cannot
  # see into either.
  serving = 'ram://resolve/serving'
  for name, complete in (('3', True), ('12', True), ('.staging-999', True),
                         ('1000', False)):
    tf.io.gfile.makedirs(f'{serving}/{name}')
    if complete:
      with tf.io.gfile.GFile(f'{serving}/{name}/saved_model.pb', 'wb') as f:
        f.write(b'')

  assert pushed.filesystem(serving) is not pushed.versions.LOCAL
  assert pushed.pushed_versions(serving, pushed.filesystem(serving)) == [3, 12]
  assert batch.resolve_model_dir(serving + '/') == f'{serving}/12'
  assert batch.resolve_model_dir(serving, version=3) == f'{serving}/3'
  with pytest.raises(batch.BatchPredictionError,
                     match='no version 1000 .* the pushed versions are 3, 12'):
    batch.resolve_model_dir(serving, version=1000)


def test_an_old_model_without_the_features_asset_still_says_its_features(
    exported_model):
  # The signature says the types; the schema's limits only the asset holds.
  def types(features):
    return {name: {k: spec[k] for k in ('dtype', 'list')}
            for name, spec in features.items()}
  assert pushed.features_from_signature(exported_model.export_dir) == types(
      export.load_serving_features(exported_model.export_dir))


@pytest.fixture(scope='module')
def foreign_model(tmp_path_factory) -> str:
  """Not one of ours: a serving signature over a float tensor, no
  tf.Example parser, no features asset, none of the contract's outputs."""
  path = str(tmp_path_factory.mktemp('foreign') / 'model')
  module = tf.Module()
  module.serve = tf.function(lambda x: {'y': x * 2.0}, input_signature=[
      tf.TensorSpec([None], tf.float32)])
  tf.saved_model.save(module, path,
                      signatures={'serving_default': module.serve})
  return path


def test_a_model_that_parses_no_examples_is_a_clear_error(foreign_model):
  with pytest.raises(batch.BatchPredictionError,
                     match='no assets/serving_features.json'):
    batch._features(foreign_model)  # pylint: disable=protected-access


def test_a_model_without_the_contracts_outputs_is_refused(foreign_model,
                                                          exported_model):
  assert set(pushed.signature_outputs(exported_model.export_dir)) == set(
      export.SERVING_OUTPUTS)
  with pytest.raises(batch.BatchPredictionError,
                     match='no probabilities or recommended or '
                           'recommendation_scores output.*`make run`'):
    batch._check_outputs(foreign_model)  # pylint: disable=protected-access


# --- Where the data is: non-local paths end to end ---------------------------------


def _copy_tree_with_gfile(source: str, destination: str) -> None:
  for directory, _, names in tf.io.gfile.walk(source):
    target = destination + directory[len(source):]
    tf.io.gfile.makedirs(target)
    for name in names:
      tf.io.gfile.copy(os.path.join(directory, name), f'{target}/{name}')


@pytest.fixture
def object_store():
  memfs.MemoryFileSystem.reset()
  yield memfs
  memfs.MemoryFileSystem.reset()


def test_the_job_runs_on_non_local_paths_as_it_does_on_local_ones(
    serving_dir, sessions, parquet_job, object_store):
  """The model in ram:// (read through tf.io.gfile, as gs:// is), the input
  and the output in an object store behind Beam's FileSystems."""
  _copy_tree_with_gfile(str(serving_dir), 'ram://job/serving')
  root = sessions[1]
  for span in ('span-0', 'span-1'):
    with FileSystems.create(f'memfs://bucket/in/{span}/sessions.parquet') as f:
      f.write((root / span / 'sessions.parquet').read_bytes())
  output = 'memfs://bucket/predictions/2026-11-28'

  result = batch.run_batch_prediction(
      'ram://job/serving', 'memfs://bucket/in/span-*/*.parquet', output,
      beam_args=BEAM_ARGS, batch_size=64)

  written = object_store.files('memfs://bucket/predictions/')
  assert sorted(path[len(output) + 1:] for path in written) == [
      'errors-00000-of-00001.jsonl', 'predictions-00000-of-00001.jsonl',
      batch.SUMMARY_FILE]  # and no staging left beside it
  lines = [_strict(line) for line in written[
      f'{output}/predictions-00000-of-00001.jsonl'].decode().splitlines()]
  local = {line['session_id']: line for line in
           _read_lines(parquet_job[1], batch.PREDICTIONS_PREFIX)}
  assert lines and all(line == local[line['session_id']] for line in lines)
  assert (result.predicted, result.errors) == (ROWS, 0)
  assert result.model_dir == f'ram://job/serving/{VERSION}'
  summary = json.loads(written[f'{output}/{batch.SUMMARY_FILE}'])
  assert (summary['model_version'], summary['predicted']) == ('1', ROWS)
  # Committed file by file, the completion marker last.
  renamed = [op[2] for op in object_store.MemoryFileSystem.log
             if op[0] == 'rename' and op[2].startswith(output + '/')]
  assert renamed[-1] == f'{output}/{batch.SUMMARY_FILE}'
  assert len(renamed) == 3


def test_a_failed_job_on_an_object_store_leaves_nothing(serving_dir, sessions,
                                                        object_store,
                                                        monkeypatch):
  def broken(self, session_batch):
    raise RuntimeError('the model server caught fire')
  monkeypatch.setattr(batch.PredictSessions, '_lines', broken)
  with FileSystems.create('memfs://bucket/in/sessions.parquet') as f:
    f.write((sessions[1] / 'span-0' / 'sessions.parquet').read_bytes())

  with pytest.raises(Exception, match='caught fire'):
    batch.run_batch_prediction(str(serving_dir),
                               'memfs://bucket/in/*.parquet',
                               'memfs://bucket/out', beam_args=BEAM_ARGS)

  assert list(object_store.files()) == ['memfs://bucket/in/sessions.parquet']


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


def test_predict_model_flag_takes_a_savedmodel_instead_of_the_serving_dir(
    config_path, sessions, exported_model, tmp_path, capfd):
  empty = tmp_path / 'empty.yaml'
  empty.write_text(yaml.safe_dump({
      'base': str(config_path), 'paths': {'serving_dir': str(tmp_path / 'e')}}))
  output = tmp_path / 'out'

  code = batch.main(['--config', str(empty), '--model',
                     exported_model.export_dir, '--input',
                     str(sessions[1] / 'span-0' / '*.parquet'),
                     '--output', str(output)])

  out = capfd.readouterr().out
  assert code == 0
  assert f'model: {exported_model.export_dir}\n' in out  # no version: not pushed
  (line, *_) = _read_lines(output, batch.PREDICTIONS_PREFIX)
  assert line['model_version'] is None


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
