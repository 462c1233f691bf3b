"""Loading configs/local.yaml, resolving its paths, and rejecting invalid configurations with a message naming the file and the key."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pydantic
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
    'unknown_distribution': (
        lambda raw: raw['training'].update(distribution='horovod'),
        ['training.distribution', 'multi_worker_mirrored',
         'parameter_server', "'horovod'"]),
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
        ['training.train_steps', 'must be an integer', 'got True']),
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



LOCAL_ONLY_INVALID = {
    # name: (change, fragments the message must hold)
    'parquet_without_root': (
        _set('data', 'root', ''), ['data.root', 'parquet']),
    'cross_of_a_numeric_feature': (
        _set('features', 'crosses', [['dtcs', 'mileage_km']]),
        ['features.crosses[0]', "'mileage_km'"]),
    'cross_of_one_feature': (
        _set('features', 'crosses', [['dtcs', 'dtcs']]),
        ['features.crosses[0]', 'pair']),
    'cross_item_not_a_string': (
        _set('features', 'crosses', [['dtcs', 3]]),
        ['features.crosses[0][1]', 'string', 'got 3']),
    'no_features_at_all': (
        lambda raw: raw['features'].update(numeric=[], categorical=[],
                                           multivalent=[], crosses=[]),
        ['features: declare at least one']),
    'string_for_a_bool': (
        _set('tuning', 'enabled', 'yes'),
        ['tuning.enabled', 'true or false', "'yes'"]),
}


@pytest.mark.parametrize('case', sorted(LOCAL_ONLY_INVALID))
def test_more_invalid_local_configurations_name_file_and_key(tmp_path,
                                                             local_raw, case):
  change, fragments = LOCAL_ONLY_INVALID[case]
  _expect_error(tmp_path, _modified(local_raw, change), *fragments)


def test_a_loaded_configuration_cannot_be_changed_in_place():
  config = load_config(str(LOCAL_YAML))

  with pytest.raises(pydantic.ValidationError, match='frozen'):
    config.training.train_steps = 1
  changed = config.model_copy(update={'training': config.training.model_copy(
      update={'train_steps': 1})})
  assert (changed.training.train_steps, config.training.train_steps) == (
      1, 2000)


# --- metadata: where ML Metadata lives -----------------------------------------

def _with_mysql(**keys):
  mysql = {'database': 'repairml_metadata', 'user': 'repairml', **keys}
  return lambda raw: raw.update(metadata={'mysql': mysql})


def test_without_a_metadata_section_the_store_is_sqlite_at_paths_metadata():
  config = load_config(str(LOCAL_YAML))

  assert config.metadata.mysql is None
  assert config.paths.metadata.endswith(os.path.join('runs',
                                                     'metadata.sqlite'))


def test_a_mysql_store_takes_its_defaults(tmp_path, local_raw):
  config = load_config(str(_write(tmp_path, _modified(local_raw,
                                                      _with_mysql()))))

  mysql = config.metadata.mysql
  assert (mysql.host, mysql.port, mysql.database, mysql.user) == (
      '127.0.0.1', 3306, 'repairml_metadata', 'repairml')
  assert mysql.password_env == 'REPAIRML_METADATA_PASSWORD'
  assert mysql.reader_user == ''
  assert mysql.reader_password_env == 'REPAIRML_METADATA_READER_PASSWORD'


def test_the_commented_metadata_example_in_local_yaml_is_valid(tmp_path,
                                                               local_raw):
  lines = LOCAL_YAML.read_text(encoding='utf-8').splitlines()
  start = lines.index('# metadata:')
  example = []
  for line in lines[start:]:
    if not line.startswith('#'):
      break
    example.append(line[2:])
  raw = _modified(local_raw,
                  lambda raw: raw.update(yaml.safe_load('\n'.join(example))))

  mysql = load_config(str(_write(tmp_path, raw))).metadata.mysql

  assert (mysql.host, mysql.port, mysql.database) == ('127.0.0.1', 3306,
                                                      'repairml_metadata')
  assert (mysql.user, mysql.reader_user) == ('repairml', 'repairml_reader')


METADATA_INVALID = {
    # name: (change, fragments the message must hold)
    'password_in_mysql': (
        _with_mysql(password='s3cret-in-the-file'),
        ['metadata.mysql.password: passwords are never read from the file: '
         'put it in the environment variable named by password_env',
         'REPAIRML_METADATA_PASSWORD']),
    'password_beside_mysql': (
        lambda raw: raw.update(metadata={
            'mysql': {'database': 'm', 'user': 'u'},
            'password': 's3cret-in-the-file'}),
        ['metadata.password: passwords are never read from the file',
         'password_env']),
    'reader_password_in_mysql': (
        _with_mysql(reader_user='reader', reader_password='s3cret-in-the-file'),
        ['metadata.mysql.reader_password: passwords are never read',
         'reader_password_env', 'REPAIRML_METADATA_READER_PASSWORD']),
    'port_zero': (_with_mysql(port=0), ['metadata.mysql.port',
                                         '[1, 65535]', 'got 0']),
    'port_above_the_range': (_with_mysql(port=65536),
                             ['metadata.mysql.port', 'got 65536']),
    'port_as_a_string': (_with_mysql(port='3306'),
                         ['metadata.mysql.port', 'integer', "'3306'"]),
    'no_database': (
        lambda raw: raw.update(metadata={'mysql': {'user': 'repairml'}}),
        ['metadata.mysql.database: required key is missing']),
    'empty_database': (_with_mysql(database=''),
                       ['metadata.mysql.database', 'must not be empty']),
    'database_that_sql_would_misread': (
        _with_mysql(database='repairml-metadata; DROP'),
        ['metadata.mysql.database', 'underscores', "'repairml-metadata; DROP'"]),
    'no_user': (
        lambda raw: raw.update(metadata={'mysql': {'database': 'm'}}),
        ['metadata.mysql.user: required key is missing']),
    'password_env_that_is_no_variable_name': (
        _with_mysql(password_env='MY PASSWORD'),
        ['metadata.mysql.password_env', 'environment variable',
         "'MY PASSWORD'"]),
    'typo_in_a_mysql_key': (
        _with_mysql(hostname='db.example'),
        ['metadata.mysql.hostname: unknown key', 'reader_user']),
    'mysql_not_a_mapping': (
        lambda raw: raw.update(metadata={'mysql': 'db.example:3306'}),
        ['metadata.mysql', 'mapping']),
}


@pytest.mark.parametrize('case', sorted(METADATA_INVALID))
def test_invalid_metadata_section_names_file_and_key(tmp_path, local_raw,
                                                     case):
  change, fragments = METADATA_INVALID[case]
  message = _expect_error(tmp_path, _modified(local_raw, change), *fragments)
  assert 's3cret-in-the-file' not in message


# --- configs/vertex.yaml -------------------------------------------------------

VERTEX_YAML = PROJECT_ROOT / 'configs' / 'vertex.yaml'


@pytest.fixture(scope='module')
def vertex_raw() -> dict:
  """configs/vertex.yaml as written, its base made absolute so that a copy
  in a temporary directory still finds configs/local.yaml."""
  with open(VERTEX_YAML, encoding='utf-8') as f:
    raw = yaml.safe_load(f)
  raw['base'] = str(LOCAL_YAML)
  return raw


def test_vertex_yaml_is_local_yaml_plus_the_google_cloud_keys():
  config = load_config(str(VERTEX_YAML))

  assert config.data.format == 'bigquery'
  assert config.data.table == 'my-gcp-project.repairml.sessions'
  assert config.features == load_config(str(LOCAL_YAML)).features
  assert config.paths.pipeline_root == (
      'gs://my-gcp-project-repairml/pipeline-root')
  assert config.beam_args == []
  assert config.vertex.tuner.parallel_trials == 3
  assert config.vertex.tuner.service == 'vizier'
  assert config.training.distribution == 'multi_worker_mirrored'
  assert config.training.train_steps == load_config(
      str(LOCAL_YAML)).training.train_steps  # the rest of training is local's
  trainer = config.vertex.trainer
  assert (trainer.chief.replica_count, trainer.workers.replica_count,
          trainer.parameter_servers.replica_count) == (1, 1, 0)
  assert trainer.workers.accelerator_type == 'NVIDIA_TESLA_T4'
  assert config.vertex.endpoint.max_replica_count == 3
  assert config.vertex.endpoint.keep_deployed == 2  # the default


def _in_data(**values):
  return lambda raw: raw['data'].update(values)


def _in_vertex(*section, **values):
  def change(raw):
    target = raw['vertex']
    for name in section:
      target = target[name]
    target.update(values)
  return change


VERTEX_INVALID = {
    # name: (change, fragments the message must hold)
    'table_without_project': (
        _in_data(table='repairml.sessions'),
        ['data.table', "'repairml.sessions'", 'project.dataset.table']),
    'no_table': (_in_data(table=''), ['data.table', 'project.dataset.table']),
    'car_model_that_would_end_the_literal': (
        _in_data(car_model="x' OR '1'='1"), ['data.car_model', 'not allowed']),
    'date_that_is_no_date': (
        _in_data(date_from='01/02/2026'), ['data.date_from', 'YYYY-MM-DD']),
    'date_range_that_ends_before_it_starts': (
        _in_data(date_from='2026-02-02', date_to='2026-02-01'),
        ['data.date_from', '2026-02-01', 'empty']),
    'id_column_that_is_no_column_name': (
        _in_data(id_column='session id'), ['data.id_column', "'session id'"]),
    'feature_that_is_no_column_name': (
        lambda raw: raw.update(features={'numeric': ['build_year',
                                                     'fuel trim']}),
        ['features.numeric[1]', "'fuel trim'", 'column name']),
    'features_that_differ_only_in_case': (
        lambda raw: raw.update(features={'categorical': [
            'car_model', 'engine_type', 'country', 'Country']}),
        ['features.categorical[3]', "'Country'", 'case']),
    'sessions_from_parquet': (
        _in_data(format='parquet'), ['data.format', 'bigquery']),
    'local_pipeline_root': (
        lambda raw: raw['paths'].update(pipeline_root='runs/pipeline'),
        ['paths.pipeline_root', 'gs://', "'runs/pipeline'"]),
    'local_dataflow_temp_location': (
        _in_vertex('dataflow', temp_location='/tmp/dataflow'),
        ['vertex.dataflow.temp_location', 'gs://']),
    'tagged_image': (
        lambda raw: raw['vertex'].update(image=raw['vertex']['image'] + ':v1'),
        ['vertex.image', 'tag']),
    'empty_project': (_in_vertex(project=''),
                      ['vertex.project', 'must not be empty']),
    'missing_dataflow': (
        lambda raw: raw['vertex'].pop('dataflow'),
        ['vertex.dataflow: required key is missing']),
    'zero_parallel_trials': (
        _in_vertex('tuner', parallel_trials=0),
        ['vertex.tuner.parallel_trials', 'positive']),
    'trainer_machine_type_of_before_clusters': (
        _in_vertex('trainer', machine_type='n1-standard-8'),
        ['vertex.trainer.machine_type', 'moved', 'chief.machine_type']),
    'two_chiefs': (
        _in_vertex('trainer', 'chief', replica_count=2),
        ['vertex.trainer.chief', 'exactly one chief']),
    'accelerator_without_a_count': (
        _in_vertex('trainer', 'workers', accelerator_count=0),
        ['vertex.trainer.workers.accelerator_count', 'together']),
    'tuner_accelerator_count_without_a_type': (
        _in_vertex('tuner', accelerator_count=2),
        ['vertex.tuner.accelerator_type', 'together']),
    'tagged_trainer_image': (
        _in_vertex('trainer', image='europe-docker.pkg.dev/p/r/gpu:v1'),
        ['vertex.trainer.image', 'tag']),
    'parameter_servers_without_their_strategy': (
        _in_vertex('trainer', parameter_servers={'replica_count': 1}),
        ['vertex.trainer.parameter_servers.replica_count',
         'parameter_server', 'multi_worker_mirrored']),
    'idle_workers': (
        lambda raw: raw['training'].update(distribution='mirrored'),
        ['vertex.trainer.workers.replica_count', 'sit idle', 'mirrored']),
    'parameter_server_without_servers': (
        lambda raw: raw['training'].update(distribution='parameter_server'),
        ['vertex.trainer', 'parameter_servers', 'got 1 and 0']),
    'unknown_tuner_service': (
        _in_vertex('tuner', service='optuna'),
        ['vertex.tuner.service', 'vizier', 'keras_tuner']),
    'traffic_above_everything': (
        _in_vertex('endpoint', traffic_percentage=101),
        ['vertex.endpoint.traffic_percentage', '[0, 100]', '101']),
    'fewer_max_than_min_replicas': (
        _in_vertex('endpoint', min_replica_count=3, max_replica_count=2),
        ['vertex.endpoint.max_replica_count', 'min_replica_count']),
    'zero_deployed_versions_kept': (
        _in_vertex('endpoint', keep_deployed=0),
        ['vertex.endpoint.keep_deployed', 'positive', 'got 0']),
    'typo_in_endpoint_key': (
        _in_vertex('endpoint', traffic=10),
        ['vertex.endpoint.traffic: unknown key', 'keep_deployed',
         'traffic_percentage']),
    'vertex_not_a_mapping': (
        lambda raw: raw.update(vertex='europe-west4'),
        ['vertex', 'mapping', "'europe-west4'"]),
}


@pytest.mark.parametrize('case', sorted(VERTEX_INVALID))
def test_invalid_vertex_configuration_names_file_and_key(tmp_path, vertex_raw,
                                                         case):
  change, fragments = VERTEX_INVALID[case]
  _expect_error(tmp_path, _modified(vertex_raw, change), *fragments)


def test_loading_a_configuration_imports_no_production_or_tensorflow_code():
  loaded = subprocess.run(
      [sys.executable, '-c',
       'import sys; from pipeline.config import load_config; '
       f'load_config({str(VERTEX_YAML)!r}); '
       'print(sorted(m for m in sys.modules if m.split(".")[0] in '
       '("tfx", "tensorflow", "keras") or m.startswith("pipeline.production")))'],
      cwd=PROJECT_ROOT, check=True, capture_output=True, text=True)

  assert loaded.stdout.strip() == '[]'
