"""ML Metadata through pipeline/metadata_store.py, on SQLite and on a
throwaway MariaDB server: the writer creates the store, the reader reads it
and can neither write nor create it, a read-only open never changes a store
(its checksum proves it), and every failure names the store and what to do."""

import copy
import logging
import socket
import sqlite3
import uuid
from pathlib import Path

import ml_metadata as mlmd
import pytest
import yaml
from absl import logging as absl_logging
from ml_metadata import errors as mlmd_errors
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.orchestration import metadata as tfx_metadata

from pipeline import metadata_store
from pipeline.config import Config, ConfigError, config_from_dict
from pipeline.metadata_store import StoreError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Not the defaults: the configured names must be the ones read.
WRITER_PASSWORD_ENV = 'TEST_METADATA_WRITER_PASSWORD'
READER_PASSWORD_ENV = 'TEST_METADATA_READER_PASSWORD'


@pytest.fixture(scope='module')
def local_raw() -> dict:
  with open(PROJECT_ROOT / 'configs' / 'local.yaml', encoding='utf-8') as f:
    return yaml.safe_load(f)


def _config(local_raw: dict, tmp_path: Path, mysql=None) -> Config:
  raw = copy.deepcopy(local_raw)
  raw['paths']['metadata'] = str(tmp_path / 'store' / 'metadata.sqlite')
  if mysql is not None:
    raw['metadata'] = {'mysql': mysql}
  return config_from_dict(raw, source_path=str(tmp_path / 'run.yaml'))


def _mysql_keys(mariadb, database: str, reader: bool = True) -> dict:
  keys = {'host': mariadb.host, 'port': mariadb.port, 'database': database,
          'user': mariadb.writer.user, 'password_env': WRITER_PASSWORD_ENV,
          'reader_password_env': READER_PASSWORD_ENV}
  if reader:
    keys['reader_user'] = mariadb.reader.user
  return keys


@pytest.fixture
def sqlite_config(local_raw, tmp_path) -> Config:
  config = _config(local_raw, tmp_path)
  Path(config.paths.metadata).parent.mkdir()
  return config


@pytest.fixture
def mysql_database(mariadb, monkeypatch) -> str:
  """A new empty database on the throwaway server, and the passwords of its
  writer and reader in their environment variables."""
  database = f'mlmd_{uuid.uuid4().hex[:12]}'
  mariadb.create_database(database)
  monkeypatch.setenv(WRITER_PASSWORD_ENV, mariadb.writer.password)
  monkeypatch.setenv(READER_PASSWORD_ENV, mariadb.reader.password)
  return database


@pytest.fixture
def mysql_config(local_raw, tmp_path, mariadb, mysql_database) -> Config:
  return _config(local_raw, tmp_path, _mysql_keys(mariadb, mysql_database))


@pytest.fixture(params=['sqlite', 'mysql'])
def store_config(request) -> Config:
  """The same behaviour, asked of both backends."""
  return request.getfixturevalue(f'{request.param}_config')


def _record_run(store: mlmd.MetadataStore, run: str, model_uri: str) -> None:
  """A pipeline-run context and a Model artifact attributed to it."""
  run_type = store.put_context_type(
      metadata_store_pb2.ContextType(name='pipeline_run'))
  model_type = store.put_artifact_type(
      metadata_store_pb2.ArtifactType(name='Model'))
  [run_id] = store.put_contexts(
      [metadata_store_pb2.Context(type_id=run_type, name=run)])
  [model_id] = store.put_artifacts(
      [metadata_store_pb2.Artifact(type_id=model_type, uri=model_uri)])
  store.put_attributions_and_associations(
      [metadata_store_pb2.Attribution(context_id=run_id,
                                      artifact_id=model_id)], [])


def _recorded(store: mlmd.MetadataStore):
  """{run: [model uris]}, as a reader sees them."""
  return {context.name: sorted(artifact.uri for artifact in
                               store.get_artifacts_by_context(context.id))
          for context in store.get_contexts()}


# --- Both backends ---------------------------------------------------------

def test_the_writer_records_and_the_reader_reads_it_back(store_config):
  writer = metadata_store.open_store(store_config)
  _record_run(writer, 'run-1', '/models/1')

  reader = metadata_store.open_store(store_config, read_only=True)

  assert _recorded(reader) == {'run-1': ['/models/1']}


def test_the_reader_cannot_write(store_config):
  _record_run(metadata_store.open_store(store_config), 'run-1', '/models/1')
  reader = metadata_store.open_store(store_config, read_only=True)
  model_type = reader.get_artifact_type('Model').id

  # SQLite refuses in READONLY mode, MariaDB by the reader's grants.
  with pytest.raises(mlmd_errors.StatusError, match='readonly|denied'):
    reader.put_artifacts(
        [metadata_store_pb2.Artifact(type_id=model_type, uri='/models/2')])
  assert _recorded(metadata_store.open_store(store_config, read_only=True)
                  ) == {'run-1': ['/models/1']}


def test_a_read_leaves_the_checksum_and_a_write_changes_it(store_config):
  writer = metadata_store.open_store(store_config)
  _record_run(writer, 'run-1', '/models/1')
  before = metadata_store.checksum(store_config)

  assert _recorded(metadata_store.open_store(store_config, read_only=True))
  after_a_read = metadata_store.checksum(store_config)
  _record_run(writer, 'run-2', '/models/2')
  after_a_write = metadata_store.checksum(store_config)

  assert after_a_read == before
  assert after_a_write != before
  assert len(before) == 64 and int(before, 16) >= 0


def _set_schema_version(store_config: Config, mariadb_server, version: int):
  """Pretends that another MLMD version wrote the store."""
  if store_config.metadata.mysql is None:
    with sqlite3.connect(store_config.paths.metadata) as connection:
      connection.execute('UPDATE MLMDEnv SET schema_version = ?', (version,))
    return
  connection = mariadb_server.connect_as_root(
      store_config.metadata.mysql.database)
  try:
    with connection.cursor() as cursor:
      cursor.execute('UPDATE MLMDEnv SET schema_version = %s', (version,))
  finally:
    connection.close()


def _schema_version(store_config: Config, mariadb_server) -> int:
  if store_config.metadata.mysql is None:
    with sqlite3.connect(store_config.paths.metadata) as connection:
      return connection.execute('SELECT schema_version FROM MLMDEnv'
                                ).fetchone()[0]
  connection = mariadb_server.connect_as_root(
      store_config.metadata.mysql.database)
  try:
    with connection.cursor() as cursor:
      cursor.execute('SELECT schema_version FROM MLMDEnv')
      return cursor.fetchone()[0]
  finally:
    connection.close()


def test_a_store_of_an_older_schema_is_refused_and_not_migrated(
    store_config, request):
  mariadb_server = (request.getfixturevalue('mariadb')
                    if store_config.metadata.mysql else None)
  _record_run(metadata_store.open_store(store_config), 'run-1', '/models/1')
  current = _schema_version(store_config, mariadb_server)
  _set_schema_version(store_config, mariadb_server, current - 1)
  before = metadata_store.checksum(store_config)

  with pytest.raises(StoreError) as error:
    metadata_store.open_store(store_config, read_only=True)

  message = str(error.value)
  assert message.startswith(f'{metadata_store.describe(store_config)}: ')
  assert f'version {current - 1} is older' in message
  assert 'never migrates' in message
  assert _schema_version(store_config, mariadb_server) == current - 1
  assert metadata_store.checksum(store_config) == before


# --- SQLite ----------------------------------------------------------------

def test_sqlite_connections_are_tfx_s_for_writing_and_read_only_for_reading(
    sqlite_config):
  path = sqlite_config.paths.metadata
  modes = metadata_store_pb2.SqliteMetadataSourceConfig

  writing = metadata_store.connection_config(sqlite_config)
  reading = metadata_store.connection_config(sqlite_config, read_only=True)

  assert writing == tfx_metadata.sqlite_metadata_connection_config(path)
  assert writing.sqlite.connection_mode == modes.READWRITE_OPENCREATE
  assert reading.sqlite.filename_uri == path
  assert reading.sqlite.connection_mode == modes.READONLY


def test_a_read_only_open_of_a_missing_sqlite_store_creates_nothing(
    local_raw, tmp_path):
  config = _config(local_raw, tmp_path)  # its folder does not exist either
  path = config.paths.metadata

  with pytest.raises(StoreError) as error:
    metadata_store.open_store(config, read_only=True)

  message = str(error.value)
  assert message.startswith(f'{path}: ')
  assert f'no run has recorded anything yet at {path}' in message
  assert f'repairml run --config {config.source_path}' in message
  assert error.value.__cause__ is None
  assert not Path(path).parent.exists()
  with pytest.raises(StoreError, match='no run has recorded anything yet'):
    metadata_store.checksum(config)


@pytest.mark.parametrize('content', ['empty', 'other_tables'])
def test_a_sqlite_file_without_mlmd_s_schema_is_refused_and_left_as_it_is(
    sqlite_config, content):
  path = Path(sqlite_config.paths.metadata)
  path.touch()
  if content == 'other_tables':
    with sqlite3.connect(path) as connection:
      connection.execute('CREATE TABLE sessions (id TEXT)')
  before = path.read_bytes()

  with pytest.raises(StoreError, match='not an ML Metadata store') as error:
    metadata_store.open_store(sqlite_config, read_only=True)

  assert str(error.value).startswith(f'{path}: ')
  assert path.read_bytes() == before


def test_a_file_that_is_not_sqlite_is_a_store_error(sqlite_config):
  path = Path(sqlite_config.paths.metadata)
  path.write_text('not a database, but long enough to have a header' * 4)

  with pytest.raises(StoreError, match='not an SQLite database'):
    metadata_store.open_store(sqlite_config, read_only=True)


# --- MariaDB ---------------------------------------------------------------

def test_the_writer_creates_mlmd_s_schema_in_the_empty_database(
    mysql_config, mariadb):
  database = mysql_config.metadata.mysql.database
  assert mariadb.tables(database) == []

  metadata_store.open_store(mysql_config)

  assert 'MLMDEnv' in mariadb.tables(database)
  assert 'Artifact' in mariadb.tables(database)


def test_mysql_connections_use_the_writer_and_the_reader(mysql_config,
                                                         mariadb):
  writing = metadata_store.connection_config(mysql_config).mysql
  reading = metadata_store.connection_config(mysql_config,
                                             read_only=True).mysql

  assert (writing.host, writing.port, writing.database) == (
      mariadb.host, mariadb.port, mysql_config.metadata.mysql.database)
  assert (writing.user, writing.password) == (mariadb.writer.user,
                                              mariadb.writer.password)
  assert (reading.user, reading.password) == (mariadb.reader.user,
                                              mariadb.reader.password)
  assert not writing.skip_db_creation and reading.skip_db_creation


@pytest.mark.parametrize('as_whom', ['reader', 'writer_without_reader_user'])
def test_a_read_only_open_of_an_empty_database_fails_and_leaves_it_empty(
    local_raw, tmp_path, mariadb, mysql_database, as_whom):
  # Without reader_user the read-only open connects as the writer, whose
  # grants would let MLMD create the schema: the check must refuse first.
  config = _config(local_raw, tmp_path,
                   _mysql_keys(mariadb, mysql_database,
                               reader=as_whom == 'reader'))

  with pytest.raises(StoreError) as error:
    metadata_store.open_store(config, read_only=True)

  message = str(error.value)
  assert message.startswith(
      f'{mariadb.host}:{mariadb.port}/{mysql_database}: ')
  assert 'no ML Metadata schema' in message
  assert f'repairml run --config {config.source_path}' in message
  assert mariadb.tables(mysql_database) == []


def test_the_reader_s_grants_alone_refuse_creating_the_schema(mysql_config,
                                                              mariadb):
  # MLMD itself, without open_store's check: the reader's SELECT-only grants
  # are the second line of defence.
  with pytest.raises(RuntimeError, match='denied'):
    mlmd.MetadataStore(
        metadata_store.connection_config(mysql_config, read_only=True))

  assert mariadb.tables(mysql_config.metadata.mysql.database) == []


def _closed_port() -> int:
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


@pytest.mark.parametrize('read_only', [True, False])
def test_no_server_at_the_configured_address_is_a_store_error(
    local_raw, tmp_path, mariadb, mysql_database, read_only):
  keys = dict(_mysql_keys(mariadb, mysql_database), port=_closed_port())
  config = _config(local_raw, tmp_path, keys)

  with pytest.raises(StoreError) as error:
    metadata_store.open_store(config, read_only=read_only)

  message = str(error.value)
  assert message.startswith(f'127.0.0.1:{keys["port"]}/{mysql_database}: ')
  assert "Can't connect" in message
  assert f'server runs at 127.0.0.1:{keys["port"]}' in message
  assert error.value.__cause__ is None


def test_a_wrong_password_is_a_store_error_naming_the_user(
    mysql_config, mariadb, monkeypatch):
  _record_run(metadata_store.open_store(mysql_config), 'run-1', '/models/1')
  monkeypatch.setenv(READER_PASSWORD_ENV, 'not-the-password')

  with pytest.raises(StoreError, match='Access denied') as error:
    metadata_store.open_store(mysql_config, read_only=True)

  assert repr(mariadb.reader.user) in str(error.value)
  assert 'not-the-password' not in str(error.value)


@pytest.mark.parametrize('read_only, key, variable', [
    (False, 'password_env', WRITER_PASSWORD_ENV),
    (True, 'reader_password_env', READER_PASSWORD_ENV),
])
def test_a_password_variable_that_is_not_set_is_a_config_error_naming_it(
    local_raw, tmp_path, monkeypatch, read_only, key, variable):
  monkeypatch.delenv(variable, raising=False)
  config = _config(local_raw, tmp_path, {
      'database': 'repairml_metadata', 'user': 'repairml',
      'reader_user': 'repairml_reader', 'password_env': WRITER_PASSWORD_ENV,
      'reader_password_env': READER_PASSWORD_ENV})

  with pytest.raises(ConfigError) as error:
    metadata_store.open_store(config, read_only=read_only)

  message = str(error.value)
  assert message.startswith(f'{config.source_path}: metadata.mysql.{key}: ')
  assert f'environment variable {variable}' in message
  assert f'export {variable}=' in message


def test_a_database_the_reader_has_no_grant_on_is_a_store_error_saying_so(
    local_raw, tmp_path, mariadb, mysql_database):
  config = _config(local_raw, tmp_path,
                   _mysql_keys(mariadb, mysql_database + '_elsewhere'))

  with pytest.raises(StoreError) as error:
    metadata_store.open_store(config, read_only=True)

  message = str(error.value)
  assert message.startswith(
      f'{mariadb.host}:{mariadb.port}/{mysql_database}_elsewhere: ')
  assert f"'{mariadb.reader.user}' may not use the database" in message
  assert f'SELECT on {mysql_database}_elsewhere.*' in message


def test_the_local_runner_s_log_shows_no_password(mysql_config, mariadb,
                                                  tmp_path, caplog):
  # LocalDagRunner logs its whole deployment config, the connection with
  # its password included, at INFO: the log file must not hold it.
  empty_pipeline = tfx.dsl.Pipeline(
      pipeline_name='repairml', pipeline_root=str(tmp_path / 'root'),
      components=[],
      metadata_connection_config=metadata_store.connection_config(
          mysql_config))
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.INFO)
  try:
    with caplog.at_level(logging.INFO):
      tfx.orchestration.LocalDagRunner().run(empty_pipeline)
  finally:
    absl_logging.set_verbosity(verbosity)

  logged = '\n'.join(record.getMessage() for record in caplog.records)
  assert 'Using deployment config' in logged
  assert f'user: "{mariadb.writer.user}"' in logged
  assert 'password: "<redacted>"' in logged
  assert mariadb.writer.password not in logged


def test_a_logged_password_is_redacted_whatever_its_characters(
    local_raw, tmp_path, monkeypatch, caplog):
  password = 'quote" backslash\\ é end'
  monkeypatch.setenv(WRITER_PASSWORD_ENV, password)
  config = _config(local_raw, tmp_path, {
      'database': 'repairml_metadata', 'user': 'repairml',
      'password_env': WRITER_PASSWORD_ENV})
  connection = metadata_store.connection_config(config)

  with caplog.at_level(logging.INFO):
    absl_logging.warning('connection: %s', connection)
    absl_logging.warning('on one line: %r', str(connection))
    absl_logging.warning('in a message of its own: %s.', password)

  messages = [record.getMessage() for record in caplog.records]
  assert len(messages) == 3
  for message in messages:
    assert 'backslash' not in message and 'end' not in message, message
  assert 'password: "<redacted>"\n' in messages[0]
  assert 'database: "repairml_metadata"' in messages[1]
  assert messages[2] == 'in a message of its own: <redacted>.'
