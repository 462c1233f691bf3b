"""The lineage commands: runs, lineage, why, diff, reproduce and ui.

  repairml runs [--config PATH] [--limit N] [--json]
  repairml lineage MODEL [--config PATH] [--json]
  repairml why RUN [--config PATH] [--all] [--json]
  repairml diff RUN_A RUN_B [--config PATH] [--json]
  repairml reproduce RUN [--config PATH] [--root DIR] [--force] [--json]
  repairml ui [--config PATH] [--port 8080] [--host 127.0.0.1]

All of them read the ML Metadata store the configuration names, opened
read-only; `reproduce` writes only into a store of its own. TensorFlow's and
TFX's output goes to the configuration's log file; the answer, a table or
(`--json`) one JSON document, to the terminal.
"""

import argparse
import contextlib
import json
import os
import sys
from typing import List, Optional

from pipeline.config import DEFAULT_CONFIG_PATH, ConfigError, load_config

USAGE_ERROR = 2
MISMATCH = 1


class _OneLineErrors(argparse.ArgumentParser):
  def error(self, message):
    self.exit(USAGE_ERROR, f'{self.prog}: {message}\n')


def _count(text: str) -> int:
  """--limit: a whole number, 0 or more."""
  if not text.isdigit():
    raise argparse.ArgumentTypeError(f'a whole number of runs (0 for all), '
                                     f'got {text!r}')
  return int(text)


def _port(text: str) -> int:
  """--port: 1 to 65535."""
  if not text.isdigit() or not 1 <= int(text) <= 65535:
    raise argparse.ArgumentTypeError(f'a port number from 1 to 65535, got '
                                     f'{text!r}')
  return int(text)


def _parser(command: str, description: str) -> argparse.ArgumentParser:
  parser = _OneLineErrors(prog=f'repairml {command}', description=description)
  parser.add_argument('--config', default=DEFAULT_CONFIG_PATH,
                      help='the configuration whose store is read (default: '
                      '%(default)s)')
  return parser


def _with_json(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
  parser.add_argument('--json', action='store_true',
                      help='print the answer as one JSON document')
  return parser


def parse(command: str, argv: List[str]) -> argparse.Namespace:
  descriptions = {
      'runs': 'The runs of the pipeline, newest first.',
      'lineage': 'The provenance card of a model: MODEL is latest, a serving '
                 'version (N or version:N), artifact:ID (a Model artifact '
                 'id) or a run id.',
      'why': 'Why a run ended as it did (RUN: a run id, latest, or '
             'latest~N, N runs before the latest).',
      'diff': 'What changed between two runs (a run id, latest or '
              'latest~N each), e.g. diff latest~1 latest.',
      'reproduce': 'Run a recorded run again in a root of its own and compare '
                   'its metrics with the recorded ones.',
      'ui': 'A read-only web UI over the store, on 127.0.0.1.',
  }
  parser = _parser(command, descriptions[command])
  if command != 'ui':
    _with_json(parser)
  if command == 'runs':
    parser.add_argument('--limit', type=_count, default=0,
                        help='show only the newest N runs (0: all)')
    parser.add_argument('--vertex', action='store_true',
                        help='read Vertex ML Metadata (the configuration\'s '
                        'vertex section) instead of the local store')
  elif command == 'lineage':
    parser.add_argument('model', metavar='MODEL')
    parser.add_argument('--vertex', action='store_true',
                        help='read Vertex ML Metadata instead of the local '
                        'store (MODEL: latest or a pipeline job name)')
  elif command == 'why':
    parser.add_argument('run', metavar='RUN')
    parser.add_argument('--all', action='store_true',
                        help='every rule row, passing slices included')
  elif command == 'diff':
    parser.add_argument('run_a', metavar='RUN_A')
    parser.add_argument('run_b', metavar='RUN_B')
  elif command == 'reproduce':
    parser.add_argument('run', metavar='RUN')
    parser.add_argument('--root', default=None,
                        help='where the reproduction writes (default: '
                        'reproduce/RUN beside the metadata store)')
    parser.add_argument('--force', action='store_true',
                        help='run even when the commit, the lock or the data '
                        'differ from the recorded ones')
  else:
    parser.add_argument('--port', type=_port, default=8080)
    parser.add_argument('--host', default='127.0.0.1',
                        help='the address to listen on (default: %(default)s,'
                        ' this machine only)')
  return parser.parse_args(argv)


def answer(command: str, args: argparse.Namespace, config):
  """(text, JSON-able value, exit code) of a read command; for reproduce,
  the checked plan of the run to make."""
  # pylint: disable=g-import-not-at-top
  from lineage import text
  from lineage.history import History
  from pipeline import metadata_store
  # pylint: enable=g-import-not-at-top
  if getattr(args, 'vertex', False):
    from lineage import vertex_metadata  # pylint: disable=g-import-not-at-top
    return vertex_metadata.answer(command, args, config)
  history = History(metadata_store.open_store(config, read_only=True),
                    config.pipeline_name)
  if command == 'runs':
    from lineage import overview  # pylint: disable=g-import-not-at-top
    rows = overview.run_rows(history, args.limit)
    return text.runs_text(rows), rows, 0
  if command == 'lineage':
    from lineage import card  # pylint: disable=g-import-not-at-top
    found = card.provenance_card(history, config.paths.serving_dir,
                                 args.model)
    return text.card_text(found), found, 0
  if command == 'why':
    from lineage import why  # pylint: disable=g-import-not-at-top
    found = why.explain(history, args.run)
    return text.why_text(found, args.all), found, 0
  if command == 'diff':
    from lineage import diff  # pylint: disable=g-import-not-at-top
    found = diff.diff_runs(history, args.run_a, args.run_b)
    return text.diff_text(found), found, 0
  from lineage import reproduce  # pylint: disable=g-import-not-at-top
  return None, reproduce.plan(history, config, args.run, args.root,
                              args.force), 0


@contextlib.contextmanager
def _stdout_to_stderr():
  """While the reproduction runs, its progress lines go to stderr, so that
  stdout holds the JSON answer alone."""
  sys.stdout.flush()
  saved = os.dup(1)
  os.dup2(2, 1)
  try:
    with contextlib.redirect_stdout(sys.stderr):   # Python's own prints too
      yield
  finally:
    sys.stdout.flush()
    os.dup2(saved, 1)
    os.close(saved)


def main(command: str, argv: Optional[List[str]] = None) -> int:
  args = parse(command, sys.argv[2:] if argv is None else argv)
  try:
    config = load_config(args.config)
  except ConfigError as e:
    print(f'repairml {command}: {e}', file=sys.stderr)
    return USAGE_ERROR
  from pipeline import progress  # pylint: disable=g-import-not-at-top
  if command == 'ui':
    # TensorFlow's and TFX's output goes to the log, from their import on.
    with progress.output_to_log_file(config.paths.log_file) as terminal:
      from lineage import ui  # pylint: disable=g-import-not-at-top
      return ui.serve(config, args.host, args.port, terminal)
  problem = None
  with progress.output_to_log_file(config.paths.log_file):
    try:
      found_text, found, code = answer(command, args, config)
    except Exception as e:  # pylint: disable=broad-except
      problem = _user_error(e)
      if problem is None:
        raise
  if problem is not None:
    print(f'repairml {command}: {problem}', file=sys.stderr)
    return USAGE_ERROR
  if command == 'reproduce':
    from lineage import reproduce, text  # pylint: disable=g-import-not-at-top
    with (_stdout_to_stderr() if args.json else contextlib.nullcontext()):
      found = reproduce.execute(found)
    found_text = text.reproduce_text(found)
    code = 0 if found['matches'] else MISMATCH
  print(json.dumps(found, indent=2, sort_keys=True, default=str)
        if args.json else found_text, flush=True)
  if command == 'reproduce':
    _quiet_exit(config.paths.log_file)
  return code


def _quiet_exit(log_file: str) -> None:
  """TensorFlow complains on stderr while the interpreter shuts down after a
  run in this process; its complaints go to the log file."""
  sys.stderr.flush()
  with open(log_file, 'a', encoding='utf-8') as log:
    os.dup2(log.fileno(), 2)


def _user_error(error: Exception) -> Optional[str]:
  """The message of an error that is the user's to fix, else None."""
  # pylint: disable=g-import-not-at-top
  from lineage.history import NotFound
  from lineage.reproduce import Refused
  from lineage.vertex_metadata import VertexError
  from pipeline import metadata_store
  # pylint: enable=g-import-not-at-top
  if isinstance(error, (NotFound, Refused, metadata_store.StoreError,
                        ConfigError, VertexError)):
    return str(error.args[0]) if error.args else str(error)
  return None
