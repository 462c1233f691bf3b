"""The data gate over real ExampleValidator output: clean sessions pass, each kind of bad data is named and stops the run."""

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from tfx.components.example_validator import executor as validator_executor
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils, standard_artifacts

from data.generator import generate_sessions
from pipeline.components.data_gate import (DataAnomaliesError, DataAnomaly,
                                           DataGate, anomaly_report,
                                           find_anomalies)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CURATED_SCHEMA = PROJECT_ROOT / 'schema' / 'schema.pbtxt'
SPLITS = ('train', 'eval')


@pytest.fixture(scope='module')
def sessions() -> pd.DataFrame:
  return generate_sessions(rows=2000, seed=5)


@pytest.fixture(scope='module')
def schema_artifact(tmp_path_factory):
  schema = standard_artifacts.Schema()
  schema.uri = str(tmp_path_factory.mktemp('schema'))
  shutil.copy(CURATED_SCHEMA, schema.uri)
  return schema


@pytest.fixture
def validate(tmp_path, schema_artifact):
  """Runs StatisticsGen's layout + the real ExampleValidator on split frames."""

  def run(frames):
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(tmp_path / 'statistics')
    statistics.splits = list(frames)
    for split, frame in frames.items():
      split_dir = artifact_utils.get_split_uri([statistics], split)
      os.makedirs(split_dir)
      stats = tfdv.generate_statistics_from_dataframe(frame)
      with open(os.path.join(split_dir,
                             stats_artifact_utils.BINARY_PB_BASENAME),
                'wb') as f:
        f.write(stats.SerializeToString())
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / 'anomalies')
    validator_executor.Executor().Do(
        {'statistics': [statistics], 'schema': [schema_artifact]},
        {'anomalies': [anomalies]}, {'exclude_splits': '[]'})
    return anomalies

  return run


def _split(frame: pd.DataFrame):
  cut = len(frame) * 4 // 5
  return {'train': frame.iloc[:cut], 'eval': frame.iloc[cut:]}


def _run_gate(anomalies):
  gate = DataGate.EXECUTOR_SPEC.executor_class()
  gate.Do({'anomalies': [anomalies]}, {}, {'code_version': 'any'})


def test_clean_sessions_have_no_anomalies_and_pass_the_gate(sessions,
                                                            validate):
  anomalies = validate(_split(sessions))

  assert anomalies.get_json_value_custom_property('blessed') == {
      'train': 1, 'eval': 1}
  assert find_anomalies(anomalies) == []
  _run_gate(anomalies)  # does not raise


def test_a_trickle_of_unseen_car_models_is_tolerated(sessions, validate):
  trickle = sessions.copy()
  trickle.loc[trickle.index[:5], 'car_model'] = 'hover_car'  # 0.25%

  assert find_anomalies(validate(_split(trickle))) == []


def _drop_country(frame):
  return frame.drop(columns=['country'])


def _mileage_as_strings(frame):
  return frame.assign(mileage_km=frame['mileage_km'].astype(str))


def _flood_of_unseen_car_models(frame):
  frame = frame.copy()
  frame.loc[frame.index[::3], 'car_model'] = 'hover_car'  # ~33%
  return frame


def _one_unknown_repair_label(frame):
  frame = frame.copy()
  frame.at[frame.index[0], 'repair_labels'] = ['op:replace_flux_capacitor']
  return frame


BAD_DATA = {
    # name: (corruption, offending feature, words its description holds)
    'missing_column': (_drop_country, 'country', 'missing'),
    'wrong_type': (_mileage_as_strings, 'mileage_km', 'STRING'),
    'unseen_category_flood': (_flood_of_unseen_car_models, 'car_model',
                              'hover_car'),
    'unknown_repair_label': (_one_unknown_repair_label, 'repair_labels',
                             'op:replace_flux_capacitor'),
}


@pytest.mark.parametrize('case', sorted(BAD_DATA))
def test_bad_split_is_named_with_its_feature(sessions, validate, case):
  corrupt, feature, words = BAD_DATA[case]
  frames = _split(sessions)
  frames['eval'] = corrupt(frames['eval'])

  anomalies = validate(frames)
  found = find_anomalies(anomalies)

  assert [(a.split, a.feature) for a in found] == [('eval', feature)]
  assert words in found[0].description
  assert anomalies.get_json_value_custom_property('blessed') == {
      'train': 1, 'eval': 0}


@pytest.mark.parametrize('case', sorted(BAD_DATA))
def test_gate_stops_the_run_with_a_readable_report(sessions, validate, case):
  corrupt, feature, words = BAD_DATA[case]
  frames = _split(sessions)
  frames['train'] = corrupt(frames['train'])

  with pytest.raises(DataAnomaliesError) as error:
    _run_gate(validate(frames))

  report = str(error.value)
  assert report.startswith('The data has 1 anomaly against the curated schema')
  assert f'[train] {feature}: ' in report
  assert words in report
  assert 'schema/schema.pbtxt' in report


def test_anomalies_are_reported_over_all_splits_sorted_by_feature(sessions,
                                                                  validate):
  frames = _split(sessions)
  frames['train'] = _mileage_as_strings(frames['train'])
  frames['eval'] = _drop_country(_mileage_as_strings(frames['eval']))

  found = find_anomalies(validate(frames))

  assert [(a.feature, a.split) for a in found] == [
      ('country', 'eval'), ('mileage_km', 'eval'), ('mileage_km', 'train')]


def test_report_counts_and_lists_every_anomaly():
  found = [DataAnomaly('train', 'country', 'Column is completely missing'),
           DataAnomaly('eval', 'mileage_km', 'Expected INT but got STRING')]

  assert anomaly_report(found).splitlines()[:3] == [
      'The data has 2 anomalies against the curated schema; the run stops '
      'before Transform:',
      '  [train] country: Column is completely missing',
      '  [eval] mileage_km: Expected INT but got STRING',
  ]
