"""Loading configs/local.yaml, resolving its paths, and rejecting invalid configurations with a message naming the file and the key."""

import copy
import os
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCAL_YAML = PROJECT_ROOT / 'configs' / 'local.yaml'


@pytest.fixture(scope='module')
def local_raw() -> dict:
  with open(LOCAL_YAML, encoding='utf-8') as f:
    return yaml.safe_load(f)


def _write(tmp_path: Path, raw) -> Path:
  path = tmp_path / 'run.yaml'
  path.write_text(yaml.safe_dump(raw), encoding='utf-8')
  return path


def _modified(local_raw: dict, change) -> dict:
  raw = copy.deepcopy(local_raw)
  change(raw)
  return raw


def _expect_error(tmp_path: Path, raw, *fragments: str) -> str:
  path = _write(tmp_path, raw)
  with pytest.raises(ConfigError) as error:
    load_config(str(path))
  message = str(error.value)
  assert message.startswith(f'{path}: '), message
  for fragment in fragments:
    assert fragment in message, message
  return message


def test_local_yaml_loads_with_its_declared_values(local_raw):
  config = load_config(str(LOCAL_YAML))

  assert config.pipeline_name == 'repairml'
  assert config.data.format == 'parquet'
  assert config.features.categorical == ['car_model', 'engine_type', 'country']
  assert config.features.multivalent == ['dtcs', 'symptoms']
  assert config.label.column == 'repair_labels'
  assert config.label.vocabulary == local_raw['label']['vocabulary']
  assert config.num_labels == len(local_raw['label']['vocabulary'])
  assert config.slices == [['country'], ['engine_type'], ['car_model'],
                           ['dtcs']]
  assert config.training.train_steps == local_raw['training']['train_steps']
  assert config.source_path == str(LOCAL_YAML)


def test_relative_paths_become_absolute_against_the_working_directory(
    tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)

  config = load_config(str(LOCAL_YAML))

  assert config.schema == str(tmp_path / 'schema' / 'schema.pbtxt')
  assert config.data.root == str(tmp_path / 'data' / 'sessions')
  assert config.paths.pipeline_root == str(tmp_path / 'runs' / 'pipeline')
  assert config.paths.metadata == str(tmp_path / 'runs' / 'metadata.sqlite')
  assert config.paths.serving_dir == str(tmp_path / 'runs' / 'serving')
  assert config.paths.log_file == str(tmp_path / 'runs' / 'logs' /
                                      'repairml.log')


def test_gcs_paths_stay_untouched(tmp_path, local_raw):
  def to_gcs(raw):
    raw['schema'] = 'gs://repairml/schema/schema.pbtxt'
    raw['data']['root'] = 'gs://repairml/sessions'
    raw['paths'] = {'pipeline_root': 'gs://repairml/pipeline',
                    'metadata': 'gs://repairml/metadata.sqlite',
                    'serving_dir': 'gs://repairml/serving',
                    'log_file': 'gs://repairml/logs/repairml.log'}

  config = load_config(str(_write(tmp_path, _modified(local_raw, to_gcs))))

  assert config.schema == 'gs://repairml/schema/schema.pbtxt'
  assert config.data.root == 'gs://repairml/sessions'
  assert config.paths.pipeline_root == 'gs://repairml/pipeline'
  assert config.paths.serving_dir == 'gs://repairml/serving'
  assert config.paths.log_file == 'gs://repairml/logs/repairml.log'


def test_omitted_optional_sections_take_their_defaults(tmp_path, local_raw):
  def drop_optional(raw):
    for key in ('splits', 'evaluation', 'training', 'tuning', 'paths',
                'beam_args'):
      del raw[key]

  config = load_config(
      str(_write(tmp_path, _modified(local_raw, drop_optional))))

  assert (config.splits.train, config.splits.eval, config.splits.test) == (
      8, 1, 1)
  assert config.training.train_steps == 2000
  assert config.beam_args == []
  assert os.path.isabs(config.paths.pipeline_root)


def test_an_integer_is_accepted_where_a_float_is_declared(tmp_path, local_raw):
  def integer_fraction(raw):
    raw['data']['sample_fraction'] = 1

  config = load_config(
      str(_write(tmp_path, _modified(local_raw, integer_fraction))))

  assert config.data.sample_fraction == 1.0
  assert isinstance(config.data.sample_fraction, float)


def _set(section, key, value):
  def change(raw):
    target = raw[section] if section else raw
    target[key] = value
  return change


def _delete(section, key):
  def change(raw):
    del (raw[section] if section else raw)[key]
  return change


INVALID = {
    # name: (change, fragments the message must hold)
    'unknown_loss': (
        lambda raw: raw['training'].update(loss='hinge'),
        ['training.loss', 'soft_macro_f1', "'hinge'"]),
    'negative_focal_gamma': (
        lambda raw: raw['training'].update(focal_gamma=-1),
        ['training.focal_gamma', 'at least 0']),
    'zero_patience': (
        lambda raw: raw['training'].update(early_stopping_patience=0),
        ['training.early_stopping_patience', 'positive']),
    'typo_top_level_key': (
        lambda raw: raw.update(trainig=raw.pop('training')),
        ['trainig: unknown key', 'training']),
    'typo_nested_key': (
        lambda raw: raw['training'].update(
            train_stpes=raw['training'].pop('train_steps')),
        ['training.train_stpes: unknown key', 'train_steps']),
    'missing_required_top_level_key': (
        _delete(None, 'label'), ['label: required key is missing']),
    'missing_required_nested_key': (
        _delete('features', 'numeric'),
        ['features.numeric: required key is missing']),
    'string_for_train_steps': (
        _set('training', 'train_steps', '2000'),
        ['training.train_steps', 'int', "'2000'"]),
    'bool_for_train_steps': (
        _set('training', 'train_steps', True),
        ['training.train_steps', 'must be a number']),
    'bool_for_learning_rate': (
        _set('training', 'learning_rate', False),
        ['training.learning_rate', 'must be a number']),
    'float_for_integer_steps': (
        _set('training', 'eval_steps', 2.5), ['training.eval_steps', 'int']),
    'zero_train_steps': (
        _set('training', 'train_steps', 0),
        ['training.train_steps', 'positive', 'got 0']),
    'negative_eval_steps': (
        _set('training', 'eval_steps', -5),
        ['training.eval_steps', 'positive', 'got -5']),
    'zero_tuning_steps': (
        _set('tuning', 'steps_per_trial', 0), ['tuning.steps_per_trial']),
    'sample_fraction_zero': (
        _set('data', 'sample_fraction', 0.0), ['data.sample_fraction', '(0, 1]']),
    'sample_fraction_above_one': (
        _set('data', 'sample_fraction', 1.5),
        ['data.sample_fraction', '1.5']),
    'section_not_a_mapping': (
        _set(None, 'training', [1, 2]), ['training', 'mapping']),
    'list_expected': (
        _set('features', 'numeric', 'mileage_km'),
        ['features.numeric', 'must be a list']),
    'slice_not_a_list': (
        _set(None, 'slices', ['country']), ['slices[0]', 'must be a list']),
    'feature_declared_in_two_kinds': (
        lambda raw: raw['features']['multivalent'].append('country'),
        ['features.multivalent[2]', "'country'", 'twice']),
    'feature_declared_twice_in_one_kind': (
        lambda raw: raw['features']['numeric'].append('mileage_km'),
        ['features.numeric[5]', "'mileage_km'", 'twice']),
    'feature_is_the_label_column': (
        lambda raw: raw['features']['multivalent'].append('repair_labels'),
        ['features.multivalent[2]', "'repair_labels'", 'label']),
    'feature_is_the_id_column': (
        lambda raw: raw['features']['categorical'].append('session_id'),
        ['features.categorical[3]', "'session_id'"]),
    'duplicate_label_names': (
        lambda raw: raw['label']['vocabulary'].append('op:replace_dpf'),
        ['label.vocabulary', 'unique', 'op:replace_dpf']),
    'single_label': (
        lambda raw: raw['label'].update(vocabulary=['part:dpf']),
        ['label.vocabulary', 'at least two']),
    'slice_on_undeclared_feature': (
        _set(None, 'slices', [['country'], ['gearbox']]),
        ['slices[1]', "'gearbox'"]),
    'slice_on_numeric_feature': (
        _set(None, 'slices', [['build_year']]), ['slices[0]', "'build_year'"]),
    'empty_slice': (_set(None, 'slices', [[]]), ['slices[0]']),
    'pipeline_name_with_upper_case_and_underscore': (
        _set(None, 'pipeline_name', 'Repair_ML'),
        ['pipeline_name', "'Repair_ML'"]),
    'pipeline_name_starting_with_a_digit': (
        _set(None, 'pipeline_name', '1repairml'), ['pipeline_name']),
    'beam_arg_without_dashes': (
        lambda raw: raw['beam_args'].append('direct_num_workers=2'),
        ['beam_args[2]', "'direct_num_workers=2'"]),
    'unknown_data_format': (
        _set('data', 'format', 'avro'), ['data.format', "'avro'"]),
    'zero_split_weight': (
        _set(None, 'splits', {'train': 8, 'eval': 0, 'test': 1}),
        ['splits.eval']),
    'lower_bound_above_one': (
        _set('evaluation', 'macro_f1_lower_bound', 1.2),
        ['evaluation.macro_f1_lower_bound']),
    'negative_slice_floor': (
        _set('evaluation', 'slice_macro_f1_floor', -0.1),
        ['evaluation.slice_macro_f1_floor']),
    'zero_min_slice_examples': (
        _set('evaluation', 'min_slice_examples', 0),
        ['evaluation.min_slice_examples']),
    'dropout_of_one': (_set('training', 'dropout', 1.0), ['training.dropout']),
}


@pytest.mark.parametrize('case', sorted(INVALID))
def test_invalid_configuration_names_file_and_key(tmp_path, local_raw, case):
  change, fragments = INVALID[case]
  _expect_error(tmp_path, _modified(local_raw, change), *fragments)


@pytest.mark.parametrize('content', ['- a\n- b\n', 'just a string\n', ''])
def test_a_file_that_is_not_a_mapping_is_rejected(tmp_path, content):
  path = tmp_path / 'run.yaml'
  path.write_text(content, encoding='utf-8')

  with pytest.raises(ConfigError, match='must hold a mapping') as error:
    load_config(str(path))
  assert str(error.value).startswith(f'{path}: ')


def test_invalid_yaml_is_rejected_with_the_file_name(tmp_path):
  path = tmp_path / 'run.yaml'
  path.write_text('pipeline_name: repairml\ndata: {format: parquet\n',
                  encoding='utf-8')

  with pytest.raises(ConfigError, match='not valid YAML') as error:
    load_config(str(path))
  assert str(error.value).startswith(f'{path}: ')


def test_a_missing_file_is_rejected_with_its_path(tmp_path):
  path = tmp_path / 'nowhere.yaml'

  with pytest.raises(ConfigError, match='no such configuration file') as error:
    load_config(str(path))
  assert str(error.value).startswith(f'{path}: ')

