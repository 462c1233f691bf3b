"""Where a run's ML Metadata (MLMD) lives, and how repairml connects to it.

The store is SQLite at paths.metadata, or a shared MySQL or MariaDB server
when the configuration has metadata.mysql. `repairml run` writes it through
connection_config(config); the read-only commands open it with
open_store(config, read_only=True), and checksum(config) lets a test prove
that they left it as they found it.

What MLMD 1.16 does when it opens a store (MetadataStore(config):
metadata_store_factory.cc and QueryConfigExecutor::
InitMetadataSourceIfNotExists at v1.16.0), and so what read-only opening must
guard against itself:
- A database without MLMD's tables gets the whole schema created, whatever
  the options: no option opens a store without doing so. On MySQL, MLMD
  also runs CREATE DATABASE IF NOT EXISTS unless skip_db_creation is set.
- A schema older than the library's is upgraded only if
  enable_upgrade_migration=True (the default, False, refuses with
  FailedPrecondition), and a newer one is always refused. (MLMD 0.14
  upgraded by default, silently, and so broke older clients of a shared
  store: google/ml-metadata#15.)
- A schema of the library's own version is only read (its version in MLMDEnv,
  then a probe of each table).
So open_store(read_only=True) first checks, with its own read-only
connection, that the store exists and holds MLMD's tables, and only then
lets MLMD open it: SQLite in READONLY mode, MySQL with skip_db_creation and
as reader_user when one is configured, never with enable_upgrade_migration.
"""

import contextlib
import hashlib
import logging
import os
import pathlib
import re
import sqlite3
from typing import List, Tuple

import ml_metadata as mlmd
import pymysql
from google.protobuf import text_encoding
from ml_metadata.proto import metadata_store_pb2

from pipeline.config import Config, ConfigError

# The table in which MLMD keeps its schema version: a store has it from its
# first open on, before anything is recorded.
_SCHEMA_TABLE = 'MLMDEnv'
_CONNECT_TIMEOUT_SECONDS = 10
_SqliteMode = metadata_store_pb2.SqliteMetadataSourceConfig


class StoreError(Exception):
  """The metadata store cannot be opened or read; the message says which
  store, what is wrong and what to do."""


def connection_config(
    config: Config,
    read_only: bool = False) -> metadata_store_pb2.ConnectionConfig:
  """How MLMD reaches the configured store, with the password read from the
  environment. Read-only: SQLite opened READONLY; MySQL as reader_user (if
  set) and without CREATE DATABASE."""
  connection = metadata_store_pb2.ConnectionConfig()
  mysql = config.metadata.mysql
  if mysql is None:
    connection.sqlite.filename_uri = config.paths.metadata
    connection.sqlite.connection_mode = (
        _SqliteMode.READONLY if read_only else
        _SqliteMode.READWRITE_OPENCREATE)
    return connection
  user, password = _credentials(config, read_only)
  _hide_in_logs(password)
  connection.mysql.host = mysql.host
  connection.mysql.port = mysql.port
  connection.mysql.database = mysql.database
  connection.mysql.user = user
  connection.mysql.password = password
  connection.mysql.skip_db_creation = read_only
  return connection


def open_store(config: Config, read_only: bool = False) -> mlmd.MetadataStore:
  """The configured store. Read-only opening never creates, migrates or
  writes it: a store that does not exist yet, or has no MLMD schema, is a
  StoreError."""
  connection = connection_config(config, read_only)
  if read_only:
    _require_schema(config)
  elif config.metadata.mysql is not None:
    # MLMD reports a failed connection without the server's words
    # ("mysql_real_connect failed: errno: , error:"): ask the server first.
    _mysql_connection(config, read_only=False).close()
  try:
    return mlmd.MetadataStore(connection)
  except RuntimeError as e:  # how MLMD's extension reports a failed open
    problem = str(e)
    raise StoreError(f'{describe(config)}: ML Metadata could not open the '
                     f'store: {_sentence(problem)} '
                     f'{_advice(config, read_only, problem)}') from None


def checksum(config: Config) -> str:
  """A sha256 of the store's whole content: equal before and after a command
  means the command wrote nothing. SQLite: the file's bytes (and its
  write-ahead log, if any); MySQL: CHECKSUM TABLE of every table of the
  database, read as the reader."""
  if config.metadata.mysql is None:
    return _sqlite_checksum(config)
  return _mysql_checksum(config)


def describe(config: Config) -> str:
  """The store as a user would name it: a path, or host:port/database."""
  mysql = config.metadata.mysql
  if mysql is None:
    return config.paths.metadata
  return f'{mysql.host}:{mysql.port}/{mysql.database}'


# --- Credentials -------------------------------------------------------------

def _credentials(config: Config, read_only: bool) -> Tuple[str, str]:
  """(user, password) of the writer, or of the reader when read-only and a
  reader_user is configured."""
  mysql = config.metadata.mysql
  if read_only and mysql.reader_user:
    user, key, variable = (mysql.reader_user, 'reader_password_env',
                           mysql.reader_password_env)
  else:
    user, key, variable = mysql.user, 'password_env', mysql.password_env
  password = os.environ.get(variable)
  if password is None:
    raise ConfigError(
        f'{config.source_path}: metadata.mysql.{key}: the environment '
        f'variable {variable}, the password of {user!r} on the metadata '
        f'store {describe(config)}, is not set. Set it (export '
        f'{variable}=...) and run the command again.')
  return user, password


def _advice(config: Config, read_only: bool, problem: str = '') -> str:
  if 'database version' in problem:  # MLMD's words for a schema mismatch
    return ('The store was written by another ML Metadata version than '
            f'this one ({mlmd.__version__}), and repairml never migrates a '
            'store: migrate it once, from one client, as ML Metadata '
            'documents (enable_upgrade_migration), or use the repairml '
            'whose ml-metadata wrote it.')
  mysql = config.metadata.mysql
  if mysql is None:
    return (f'Check that {config.paths.metadata} is the store that '
            f'`repairml run` writes (paths.metadata in {config.source_path}).')
  user = mysql.reader_user if read_only and mysql.reader_user else mysql.user
  return (f'Check that the server runs at {mysql.host}:{mysql.port} and that '
          f'{user!r} and its password are right (metadata.mysql in '
          f'{config.source_path}).')


def _sentence(problem) -> str:
  text = str(problem).strip()
  return text if text.endswith(('.', '!', '?')) else text + '.'


def _run_first(config: Config) -> str:
  """What makes a store, as the end of a sentence."""
  return f'run `repairml run --config {config.source_path}` first'


class _PasswordRedaction(logging.Filter):
  """Blanks passwords in log records: the value of any `password:` field of
  a printed proto, and every known password wherever it appears (also as
  protobuf text or repr escape it). TFX's LocalDagRunner logs its whole
  deployment config at INFO ('Using deployment config'), MLMD its
  ConnectionConfig at DEBUG, and a run's log file keeps both."""
  _FIELD = re.compile(r'(password: )"(?:[^"\\]|\\.)*"')
  # Shorter passwords are left to _FIELD: blanking every "ab" in the log
  # would make it unreadable.
  _MIN_KNOWN_LENGTH = 4

  def __init__(self):
    super().__init__()
    self._known: List[str] = []

  def add(self, password: str) -> None:
    if len(password) < self._MIN_KNOWN_LENGTH:
      return
    forms = {password,
             text_encoding.CEscape(password.encode('utf-8'), as_utf8=False),
             text_encoding.CEscape(password.encode('utf-8'), as_utf8=True)}
    forms |= {repr(form)[1:-1] for form in forms}
    # Longest first, so that no form is left half blanked by a shorter one.
    self._known = sorted(set(self._known) | forms, key=len, reverse=True)

  def filter(self, record: logging.LogRecord) -> bool:
    try:
      message = record.getMessage()
    except (TypeError, ValueError):  # logging reports it when it emits
      return True
    redacted = message
    for known in self._known:  # first: _FIELD could cut one in two
      redacted = redacted.replace(known, '<redacted>')
    redacted = self._FIELD.sub(r'\1"<redacted>"', redacted)
    if redacted != message:
      record.msg, record.args = redacted, ()
    return True


_REDACTION = _PasswordRedaction()


def _hide_in_logs(password: str) -> None:
  """Blanks `password` in what TFX and MLMD log (through absl's logger)
  from now on, before it goes into a ConnectionConfig."""
  logger = logging.getLogger('absl')
  if _REDACTION not in logger.filters:
    logger.addFilter(_REDACTION)
  _REDACTION.add(password)


# --- SQLite ------------------------------------------------------------------

def _sqlite_tables(config: Config) -> List[str]:
  """The tables of the SQLite store, read without creating or changing it."""
  path = config.paths.metadata
  if not os.path.isfile(path):
    raise StoreError(
        f'{path}: no metadata store: no run has recorded anything yet at '
        f'{path}: {_run_first(config)}, or point paths.metadata at the store '
        'it wrote.')
  uri = pathlib.Path(os.path.abspath(path)).as_uri() + '?mode=ro'
  try:
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
      rows = connection.execute(
          "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
  except sqlite3.DatabaseError as e:
    raise StoreError(f'{path}: not an SQLite database ({e}). Point '
                     'paths.metadata at the store `repairml run` '
                     'writes.') from None
  return [name for name, in rows]


def _sqlite_checksum(config: Config) -> str:
  _sqlite_tables(config)  # the same error when there is no store
  digest = hashlib.sha256()
  for path in (config.paths.metadata, config.paths.metadata + '-wal'):
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
          digest.update(block)
  return digest.hexdigest()


# --- MySQL -------------------------------------------------------------------

def _mysql_connection(config: Config, read_only: bool = True
                      ) -> pymysql.connections.Connection:
  """A connection as the reader (or the writer if no reader_user is
  configured), to the database; for writing, as the writer, to the server
  only: MLMD creates the database if it is missing."""
  mysql = config.metadata.mysql
  user, password = _credentials(config, read_only)
  try:
    return pymysql.connect(host=mysql.host, port=mysql.port, user=user,
                           password=password,
                           database=mysql.database if read_only else None,
                           connect_timeout=_CONNECT_TIMEOUT_SECONDS)
  except pymysql.err.MySQLError as e:
    if e.args and e.args[0] == 1049:  # ER_BAD_DB_ERROR
      raise StoreError(
          f'{describe(config)}: the database {mysql.database} does not exist '
          f'on {mysql.host}:{mysql.port}, so no run has recorded anything '
          f'there yet: {_run_first(config)}.') from None
    if e.args and e.args[0] == 1044:  # ER_DBACCESS_DENIED_ERROR
      needed = 'SELECT' if read_only else 'ALL PRIVILEGES'
      raise StoreError(
          f'{describe(config)}: {user!r} may not use the database '
          f'{mysql.database}: {_mysql_problem(e)} Check metadata.mysql.'
          f'database in {config.source_path}, or have {needed} on '
          f'{mysql.database}.* granted to {user!r}.') from None
    raise StoreError(f'{describe(config)}: cannot connect as {user!r}: '
                     f'{_mysql_problem(e)} {_advice(config, read_only)}'
                     ) from None


def _mysql_tables(connection) -> List[str]:
  with connection.cursor() as cursor:
    cursor.execute('SELECT table_name FROM information_schema.tables '
                   'WHERE table_schema = DATABASE() ORDER BY table_name')
    return [name for name, in cursor.fetchall()]


def _mysql_checksum(config: Config) -> str:
  connection = _mysql_connection(config)
  try:
    tables = _mysql_tables(connection)
    rows = []
    if tables:
      with connection.cursor() as cursor:
        cursor.execute('CHECKSUM TABLE ' +
                       ', '.join(_quoted(name) for name in tables))
        rows = cursor.fetchall()
  except pymysql.err.MySQLError as e:
    raise StoreError(f'{describe(config)}: cannot checksum the tables: '
                     f'{_mysql_problem(e)}') from None
  finally:
    connection.close()
  digest = hashlib.sha256()
  for table, table_checksum in rows:
    digest.update(f'{table}\t{table_checksum}\n'.encode())
  return digest.hexdigest()


def _mysql_problem(error: pymysql.err.MySQLError) -> str:
  """The server's words, without pymysql's (code, 'message') wrapping."""
  message = error.args[1] if len(error.args) > 1 else str(error)
  return _sentence(message)


def _quoted(table: str) -> str:
  return '`' + table.replace('`', '``') + '`'


# --- The schema check before a read-only open --------------------------------

def _require_schema(config: Config) -> None:
  """A StoreError unless the store exists and holds MLMD's tables, so that
  MLMD never creates them on a read-only open."""
  if config.metadata.mysql is None:
    tables = _sqlite_tables(config)
    if _SCHEMA_TABLE not in tables:
      raise StoreError(
          f'{config.paths.metadata}: not an ML Metadata store (it has no '
          f'{_SCHEMA_TABLE} table), so no run has recorded anything there: '
          f'{_run_first(config)}, or point paths.metadata at the store it '
          'wrote.')
    return
  connection = _mysql_connection(config)
  try:
    tables = _mysql_tables(connection)
  except pymysql.err.MySQLError as e:
    raise StoreError(f'{describe(config)}: cannot list the tables: '
                     f'{_mysql_problem(e)}') from None
  finally:
    connection.close()
  if _SCHEMA_TABLE.lower() not in (name.lower() for name in tables):
    raise StoreError(
        f'{describe(config)}: the database has no ML Metadata schema, so no '
        f'run has recorded anything there yet: {_run_first(config)} (the '
        'read-only commands never create it).')
