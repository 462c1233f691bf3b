"""The quality benchmark: known thresholds, F1 as the Evaluator counts it, the oracle,
featurisation, the train split, and one-line errors for user mistakes."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import f1_score
from tfx.components.example_gen import base_example_gen_executor as tfx_executor
from tfx.proto import example_gen_pb2

from benchmarks import quality
from models.thresholds import best_thresholds
from data.generator import generate_sessions, write_spans
from pipeline.components.example_gen import row_to_example
from pipeline.config import load_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCAL_CONFIG = PROJECT_ROOT / 'configs' / 'local.yaml'


def _f1(decisions, truth):
  tp = np.sum(decisions & truth)
  return 2 * tp / (np.sum(decisions) + np.sum(truth))


# --- best_thresholds ---------------------------------------------------------------------


def test_best_thresholds_matches_a_brute_force_search():
  rng = np.random.default_rng(0)
  labels = rng.random((300, 6)) < [0.02, 0.1, 0.3, 0.5, 0.9, 0.05]
  # Informative but noisy scores, rounded so that ties are common.
  probabilities = np.round(np.clip(0.3 * labels + rng.random(labels.shape), 0, 1), 2)

  thresholds = best_thresholds(probabilities, labels)

  for j in range(labels.shape[1]):
    best = max(_f1(probabilities[:, j] >= t, labels[:, j]) for t in probabilities[:, j])
    assert _f1(probabilities[:, j] >= thresholds[j], labels[:, j]) == pytest.approx(best)


# --- F1 -----------------------------------------------------------------------------------


def test_f1_scores_agree_with_scikit_learn_when_every_label_occurs():
  rng = np.random.default_rng(1)
  truth = rng.random((500, 5)) < 0.3
  decisions = rng.random((500, 5)) < 0.4

  scores = quality.f1_scores(decisions, truth)

  assert scores['macro_f1'] == pytest.approx(f1_score(truth, decisions, average='macro'))
  assert scores['micro_f1'] == pytest.approx(f1_score(truth, decisions, average='micro'))
  np.testing.assert_allclose(scores['per_label_f1'], f1_score(truth, decisions, average=None))


def test_f1_scores_leave_a_label_that_never_occurs_out_of_macro_f1():
  truth = np.array([[1, 0], [0, 0]], dtype=bool)
  decisions = np.array([[1, 0], [0, 0]], dtype=bool)

  scores = quality.f1_scores(decisions, truth)

  assert scores['macro_f1'] == 1.0
  assert np.isnan(scores['per_label_f1'][1])


# --- The oracle ---------------------------------------------------------------------------


def test_oracle_beats_the_best_constant_predictor():
  config = load_config(str(LOCAL_CONFIG))
  held_out, validation = generate_sessions(2000, seed=7), generate_sessions(2000, seed=8)

  oracle = quality.evaluate_oracle(held_out, validation, config)

  # The best constant predictor: each label's base rate, thresholded at its best,
  # which means recommending the label to everyone or to no one.
  base_rate = quality.label_matrix(validation, config).mean(axis=0)
  constant = np.broadcast_to(base_rate, (len(validation), config.num_labels))
  thresholds = best_thresholds(constant, quality.label_matrix(validation, config))
  constant_scores = quality.f1_scores(
      np.broadcast_to(base_rate, (len(held_out), config.num_labels)) >= thresholds,
      quality.label_matrix(held_out, config))
  assert oracle.macro_f1 > constant_scores['macro_f1'] + 0.2
  assert oracle.micro_f1 > constant_scores['micro_f1']
  assert len(oracle.per_label_f1) == config.num_labels


# --- Featurisation ------------------------------------------------------------------------


def _featurizer():
  return quality.SessionFeaturizer(numeric=['mileage_km'], categorical=['engine_type'],
                                   multivalent=['dtcs'])


TRAIN = pd.DataFrame({
    'mileage_km': [1000.0, None, 3000.0],
    'engine_type': ['petrol', 'diesel', 'petrol'],
    'dtcs': [['P0300'], [], ['U0100', 'P0300']],
})


def test_featurizer_one_hot_multi_hot_and_missing_indicators():
  featurizer = _featurizer().fit(TRAIN)

  assert featurizer.feature_names == [
      'mileage_km', 'mileage_km_missing', 'engine_type=diesel', 'engine_type=petrol',
      'dtcs:P0300', 'dtcs:U0100']
  np.testing.assert_array_equal(featurizer.transform(TRAIN), [
      [1000.0, 0, 0, 1, 1, 0],
      [2000.0, 1, 1, 0, 0, 0],  # missing mileage: the training mean, flagged
      [3000.0, 0, 0, 1, 1, 1],
  ])


def test_featurizer_ignores_values_first_seen_at_test_time():
  featurizer = _featurizer().fit(TRAIN)
  # Parquet gives lists as numpy arrays and missing lists as None.
  test = pd.DataFrame({
      'mileage_km': [np.nan, 500.0],
      'engine_type': ['ev', None],
      'dtcs': [np.array(['P9999', 'U0100'], dtype=object), None],
  })

  np.testing.assert_array_equal(featurizer.transform(test), [
      [2000.0, 1, 0, 0, 0, 1],
      [500.0, 0, 0, 0, 0, 0],
  ])


def test_featurizer_names_a_missing_column():
  with pytest.raises(quality.BenchmarkError, match="'engine_type'"):
    _featurizer().fit(TRAIN.drop(columns=['engine_type']))


# --- Baselines ----------------------------------------------------------------------------


def test_a_label_never_seen_in_training_is_never_recommended():
  rng = np.random.default_rng(2)

  def data(rows, unseen_rate):
    features = rng.normal(size=(rows, 3))
    labels = np.column_stack([features[:, 0] > 0.5, rng.random(rows) < unseen_rate])
    return {'features': features, 'labels': labels.astype(float)}

  # Label 1 never occurs in training, but does in validation: tuning its
  # threshold on a constant 0 score would recommend it to everyone.
  result = quality.evaluate_baseline(
      'logistic_regression', quality.logistic_regression,
      data(300, 0.0), data(300, 0.5), data(300, 0.5))

  assert result.thresholds[1] == np.inf
  assert result.per_label_f1[1] == 0.0  # positives in held-out, none recommended
  assert result.per_label_f1[0] > 0.8


# --- The train split ----------------------------------------------------------------------


def test_split_of_matches_tfx_example_gen():
  split_config = example_gen_pb2.SplitConfig(partition_feature_name='session_id')
  ids = [f'S42-{i:08d}' for i in range(300)] + [7, 123456]

  ours = [quality.split_of(i, 'session_id', [8, 1, 1]) for i in ids]
  theirs = [tfx_executor._PartitionFn(  # pylint: disable=protected-access
      row_to_example({'session_id': i}), 3, [8, 9, 10], split_config) for i in ids]

  assert ours == theirs
  assert set(ours) == {0, 1, 2}


def test_training_sessions_are_the_sampled_train_split(tmp_path):
  sessions = generate_sessions(1000, seed=3, spans=2)
  write_spans(sessions, tmp_path / 'sessions')
  raw = yaml.safe_load(_config(tmp_path, serving_dir=tmp_path / 'serving',
                               data_root=tmp_path / 'sessions').read_text())
  raw['data']['sample_fraction'] = 0.5
  (tmp_path / 'sampled.yaml').write_text(yaml.safe_dump(raw))

  train = quality.read_training_sessions(load_config(str(tmp_path / 'sampled.yaml')))

  # About 1000 * 0.5 sampled * 0.8 train; every one in the train split.
  assert 330 <= len(train) <= 470
  assert all(quality.split_of(i, 'session_id', [8, 1, 1]) == 0 for i in train['session_id'])
  assert set(train['session_id']) < set(sessions['session_id'])
  assert set(train['span']) == {0, 1}


# --- Command line -------------------------------------------------------------------------


def _config(tmp_path, **paths) -> Path:
  """configs/local.yaml with its data, schema and paths moved as given."""
  raw = yaml.safe_load(LOCAL_CONFIG.read_text())
  raw['data']['root'] = str(paths.get('data_root', PROJECT_ROOT / raw['data']['root']))
  raw['schema'] = str(PROJECT_ROOT / raw['schema'])
  raw['paths'] = {'pipeline_root': str(tmp_path / 'pipeline'),
                  'metadata': str(tmp_path / 'metadata.sqlite'),
                  'serving_dir': str(paths['serving_dir']),
                  'log_file': str(tmp_path / 'repairml.log')}
  path = tmp_path / 'config.yaml'
  path.write_text(yaml.safe_dump(raw))
  return path


def _one_line_error(capsys) -> str:
  err = capsys.readouterr().err.strip()
  assert 'Traceback' not in err
  assert len(err.splitlines()) == 1, err
  return err


def test_main_without_a_pushed_model_says_to_run_the_pipeline(tmp_path, capsys):
  serving = tmp_path / 'serving'
  (serving / '.staging-123').mkdir(parents=True)  # a push in progress is not a model
  config = _config(tmp_path, serving_dir=serving)

  code = quality.main(['--config', str(config), '--json', str(tmp_path / 'q.json')])

  assert code == 2
  err = _one_line_error(capsys)
  assert str(serving) in err and 'run `make run` first' in err
  assert not (tmp_path / 'q.json').exists()


def test_main_without_training_files_names_the_pattern(tmp_path, capsys):
  serving = tmp_path / 'serving'
  (serving / '123').mkdir(parents=True)
  (serving / '123' / 'saved_model.pb').write_bytes(b'')  # a version (models/versions.py)
  config = _config(tmp_path, serving_dir=serving, data_root=tmp_path / 'no-data')

  code = quality.main(['--config', str(config), '--json', str(tmp_path / 'q.json')])

  assert code == 2
  assert str(tmp_path / 'no-data') in _one_line_error(capsys)


def test_main_with_a_missing_config_fails_in_one_line(tmp_path, capsys):
  code = quality.main(['--config', str(tmp_path / 'absent.yaml')])

  assert code == 2
  assert 'absent.yaml' in _one_line_error(capsys)


@pytest.mark.parametrize('flag', ['--rows', '--baseline-train-rows'])
def test_main_rejects_a_non_positive_row_count(flag, capsys):
  assert quality.main([flag, '0']) == 2
  assert flag in _one_line_error(capsys)
