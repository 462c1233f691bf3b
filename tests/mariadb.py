"""A throwaway MariaDB server for the tests of ML Metadata on MySQL.

MariaDbServer initializes a fresh data directory with Debian's
mariadb-install-db, starts mariadbd on it, listening on a free port of
127.0.0.1 only, and creates a database with two users: a writer (all
privileges on the database) and a reader (SELECT only). Their passwords are
random, made anew for every server. stop() shuts the server down; as a
context manager it always does, and the data directory goes with it.

`make test-services` installs the programs; without them, start() fails
saying so (the tests that need a server fail, they are not skipped).
"""

import dataclasses
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from typing import List, Optional

import pymysql

# Debian puts mariadbd in /usr/sbin, which a non-root PATH may lack.
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get('PATH', ''), '/usr/sbin', '/usr/local/sbin'])
_START_SECONDS = 60
_STOP_SECONDS = 30
# A Unix socket's path must fit in sockaddr_un (108 bytes, with the NUL).
_MAX_SOCKET_PATH = 100


class MariaDbError(RuntimeError):
  """The server could not be set up; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Account:
  user: str
  password: str


def find_program(name: str) -> str:
  """The path of a MariaDB program, or a MariaDbError naming what to run."""
  path = shutil.which(name, path=_SEARCH_PATH)
  if path is None:
    raise MariaDbError(
        f'{name} is not installed, and the tests of ML Metadata on MariaDB '
        'start a throwaway server with it. Run `make test-services` (it '
        'installs Debian\'s mariadb-server), then the tests again.')
  return path


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


def _quoted(name: str) -> str:
  return '`' + name.replace('`', '``') + '`'


class MariaDbServer:
  """A MariaDB server of its own in `directory` (a new temporary directory
  if None), with `database`, a writer and a reader. Use it as a context
  manager, or call start() and stop()."""

  host = '127.0.0.1'

  def __init__(self, directory: Optional[str] = None,
               database: str = 'repairml_metadata'):
    self._own_directory = directory is None
    self.directory = directory or tempfile.mkdtemp(prefix='repairml-mariadb-')
    self.database = database
    self.port = 0
    self.writer = Account('repairml_writer', secrets.token_urlsafe(18))
    self.reader = Account('repairml_reader', secrets.token_urlsafe(18))
    self._socket = os.path.join(self.directory, 'mariadbd.sock')
    self._log = os.path.join(self.directory, 'mariadbd.log')
    self._process: Optional[subprocess.Popen] = None

  def __enter__(self) -> 'MariaDbServer':
    try:
      return self.start()
    except BaseException:
      self.stop()
      raise

  def __exit__(self, *exc_info) -> None:
    self.stop()

  # --- Starting -------------------------------------------------------------

  def start(self) -> 'MariaDbServer':
    """Initializes the data directory, starts mariadbd and waits until it
    accepts connections, then creates the database and its two users."""
    install_db = find_program('mariadb-install-db')
    mariadbd = find_program('mariadbd')
    if len(self._socket) > _MAX_SOCKET_PATH:
      raise MariaDbError(f'{self._socket}: the socket path is too long for '
                         'Unix sockets; give the server a shorter directory '
                         '(e.g. pytest --basetemp=/tmp/pytest).')
    data_dir = os.path.join(self.directory, 'data')
    self._run(self._as_root([
        install_db, '--no-defaults', f'--datadir={data_dir}',
        '--auth-root-authentication-method=normal', '--skip-test-db',
        '--innodb-log-file-size=8M']), 'mariadb-install-db')
    # Another process may take the probed port before mariadbd binds it.
    for attempt in range(3):
      self.port = _free_port()
      self._process = self._spawn(mariadbd, data_dir)
      if self._wait_until_ready():
        break
      if attempt == 2 or 'already in use' not in self._log_tail():
        raise MariaDbError('mariadbd did not start; the end of its log '
                           f'({self._log}):\n{self._log_tail()}')
    self.create_database(self.database)
    return self

  def _as_root(self, command: List[str]) -> List[str]:
    # As root, MariaDB refuses to run unless told to run as root.
    return command + ['--user=root'] if os.geteuid() == 0 else command

  def _run(self, command: List[str], name: str) -> None:
    done = subprocess.run(command, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    if done.returncode != 0:
      raise MariaDbError(f'{name} failed (exit {done.returncode}):\n'
                         f'{done.stdout[-3000:]}')

  def _spawn(self, mariadbd: str, data_dir: str) -> subprocess.Popen:
    command = self._as_root([
        mariadbd, '--no-defaults', f'--datadir={data_dir}',
        f'--socket={self._socket}', f'--port={self.port}',
        '--bind-address=127.0.0.1', '--skip-networking=0',
        '--skip-name-resolve', f'--log-error={self._log}',
        f'--pid-file={os.path.join(self.directory, "mariadbd.pid")}',
        f'--tmpdir={self.directory}', '--innodb-log-file-size=8M',
        '--innodb-buffer-pool-size=64M'])
    return subprocess.Popen(command, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

  def _wait_until_ready(self) -> bool:
    """True once the server answers on its socket and its port; False if
    mariadbd exited first."""
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline:
      if self._process.poll() is not None:
        return False
      try:
        self.connect_as_root(tcp=True).close()
        return True
      except pymysql.err.OperationalError:
        time.sleep(0.1)
    raise MariaDbError(f'mariadbd did not accept connections within '
                       f'{_START_SECONDS} s; the end of its log ({self._log}):'
                       f'\n{self._log_tail()}')

  def _log_tail(self) -> str:
    try:
      with open(self._log, encoding='utf-8', errors='replace') as f:
        return ''.join(f.readlines()[-20:])
    except FileNotFoundError:
      return '(no log written)'

  # --- Using ----------------------------------------------------------------

  def connect_as_root(self, database: Optional[str] = None,
                      tcp: bool = False) -> pymysql.connections.Connection:
    """A root connection (the tests' own, to set up and inspect)."""
    where = ({'host': self.host, 'port': self.port} if tcp else
             {'unix_socket': self._socket})
    return pymysql.connect(user='root', database=database, autocommit=True,
                           connect_timeout=5, **where)

  def create_database(self, name: str) -> None:
    """A new empty database, with the writer and the reader granted on it
    (the users are created with the first database)."""
    connection = self.connect_as_root()
    try:
      with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE {_quoted(name)}')
        for account in (self.writer, self.reader):
          cursor.execute('CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s',
                         (account.user, self.host, account.password))
        cursor.execute(f'GRANT ALL PRIVILEGES ON {_quoted(name)}.* TO %s@%s',
                       (self.writer.user, self.host))
        cursor.execute(f'GRANT SELECT ON {_quoted(name)}.* TO %s@%s',
                       (self.reader.user, self.host))
    finally:
      connection.close()

  def tables(self, database: str) -> List[str]:
    """The tables of `database`, sorted."""
    connection = self.connect_as_root()
    try:
      with connection.cursor() as cursor:
        cursor.execute('SELECT table_name FROM information_schema.tables '
                       'WHERE table_schema = %s ORDER BY table_name',
                       (database,))
        return [name for name, in cursor.fetchall()]
    finally:
      connection.close()

  # --- Stopping -------------------------------------------------------------

  def stop(self) -> None:
    """Shuts the server down (killing it if it does not stop in time) and
    removes its directory if the server made it. Safe to call twice."""
    process, self._process = self._process, None
    if process is not None and process.poll() is None:
      try:
        connection = self.connect_as_root()
        try:
          with connection.cursor() as cursor:
            cursor.execute('SHUTDOWN')
        finally:
          connection.close()
      except pymysql.err.MySQLError:
        process.terminate()
      try:
        process.wait(timeout=_STOP_SECONDS)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if self._own_directory:
      shutil.rmtree(self.directory, ignore_errors=True)
