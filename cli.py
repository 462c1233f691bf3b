"""The `repairml` command: one entry point to every user-facing operation.

  repairml data generate --rows N --seed S --out DIR [--spans K] [--raw]
  repairml data report [--config PATH] [--output PATH]
  repairml collect [--config PATH] [--date-from D] [--date-to D] [--car-model M]
  repairml init --data PATTERN --label COLUMN [--id COLUMN] [--out configs/NAME.yaml] [--force]
  repairml run [--config PATH] [--summary PATH]
  repairml schema diff [--config PATH]
  repairml bench quality [--config PATH] [--rows N] [--json PATH]
  repairml serve [--config PATH] [--port N] [--version N]
  repairml predict --input PATTERN --output DIR [--config PATH] [--version N]
  repairml model rollback [--config PATH] [--to VERSION]
  repairml model restore VERSION [--config PATH]
  repairml model list [--config PATH] [--json]
  repairml runs [--config PATH] [--limit N] [--json] [--vertex]
  repairml lineage MODEL [--config PATH] [--json] [--vertex]
  repairml why RUN [--config PATH] [--all] [--json]
  repairml diff RUN_A RUN_B [--config PATH] [--json]
  repairml reproduce RUN [--config PATH] [--root DIR] [--force] [--json]
  repairml ui [--config PATH] [--port 8080]
  repairml compile [--pipeline modeling|collection] [--config configs/vertex.yaml] [--output PATH]
                   [--image-tag TAG]
  repairml submit [--pipeline modeling|collection] [--config configs/vertex.yaml]
                  [--schedule [CRON] | --kfp-host URL]
                  [--car-model M] [--date-from D] [--date-to D] [--train-steps N]
  repairml promote [--config configs/vertex.yaml] [--version ID]
"""

import os
import sys
from typing import List, Optional

COMMANDS = {
    ('data', 'generate'): 'write a synthetic diagnostic-session data set',
    ('data', 'report'): 'the data-quality report (HTML) of the collected '
                        'table',
    ('collect',): 'collect the raw diagnostics and warranty sources into '
                  'daily spans (the data collection pipeline)',
    ('init',): 'write a configuration and a schema for a new table',
    ('run',): 'run the whole pipeline locally',
    ('schema', 'diff'): 'diff the schema SchemaGen proposes against the '
                        'curated one',
    ('bench', 'quality'): 'the pushed model against the exact posterior and '
                          'scikit-learn baselines',
    ('serve',): 'serve the pushed model over REST (TF Serving and Vertex AI '
                'formats)',
    ('predict',): 'batch prediction: a Beam job over a set of sessions',
    ('model', 'rollback'): 'retire the newest served version (or all newer '
                           'than --to); servers follow',
    ('model', 'restore'): 'bring a retired version back into serving',
    ('model', 'list'): 'the pushed and retired versions, and the one served',
    ('runs',): 'the runs recorded in ML Metadata, newest first',
    ('lineage',): 'the provenance card of a model: data, schema, '
                  'hyperparameters, code, evaluation, push',
    ('why',): 'why a run pushed nothing (or what it pushed)',
    ('diff',): 'what changed between two runs',
    ('reproduce',): 'run a recorded run again and compare its metrics',
    ('ui',): 'a read-only web UI over runs, artifacts and lineage',
    ('compile',): 'compile the pipeline for Vertex AI Pipelines or Kubeflow',
    ('submit',): 'compile, then run or schedule it on Vertex AI (or Kubeflow)',
    ('promote',): 'make a canary the default version, with all of the '
                  'endpoint\'s traffic',
}

LINEAGE_COMMANDS = ('runs', 'lineage', 'why', 'diff', 'reproduce', 'ui')
# The options of kubeflow_runner.py that send the compiled pipeline somewhere.
SEND_OPTIONS = ('--submit', '--schedule', '--kfp-host')
# The benchmarks are not part of the installed package (setup.py) nor of the
# component image: they run from a checkout, where they sit next to this file.
CHECKOUT_DIR = os.path.dirname(os.path.abspath(__file__))
NO_BENCHMARKS = (
    'repairml bench quality: the benchmarks are not installed here (the '
    'repairml package and the component image leave them out); run it from a '
    'checkout of the repository: make install, then .venv/bin/repairml bench '
    'quality.')


def _usage() -> str:
  lines = ['usage: repairml COMMAND [options]', '', 'commands:']
  lines += [f'  {" ".join(words):<16} {help_text}'
            for words, help_text in COMMANDS.items()]
  lines.append('\nUse `repairml COMMAND --help` for the options of a command.')
  return '\n'.join(lines)


def _log_file(argv: List[str]) -> str:
  """The log file of the configuration that `--config` names, if it loads."""
  # pylint: disable=g-import-not-at-top
  import argparse
  from pipeline.config import DEFAULT_CONFIG_PATH, ConfigError, Paths
  from pipeline.config import load_config
  # pylint: enable=g-import-not-at-top
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument('--config', default=DEFAULT_CONFIG_PATH)
  known, _ = parser.parse_known_args(argv)
  try:
    return load_config(known.config).paths.log_file
  except ConfigError:  # the command itself reports it
    return os.path.abspath(Paths().log_file)


def _benchmarks_importable() -> bool:
  """Whether this is a checkout with the benchmarks; if so, they are made
  importable (the console script's sys.path holds installed packages only)."""
  if not os.path.isfile(os.path.join(CHECKOUT_DIR, 'benchmarks',
                                     'quality.py')):
    return False
  if CHECKOUT_DIR not in sys.path:
    sys.path.insert(0, CHECKOUT_DIR)
  return True


def _bench_quality(argv: List[str]) -> int:
  """TensorFlow, Beam and scikit-learn write to the log; the table to you."""
  if not _benchmarks_importable():
    print(NO_BENCHMARKS, file=sys.stderr)
    return 2
  from pipeline import progress  # pylint: disable=g-import-not-at-top
  log_file = _log_file(argv)
  with progress.output_to_log_file(log_file) as terminal:
    terminal.write(f'log: {log_file}\n')
    from benchmarks import quality  # pylint: disable=g-import-not-at-top
    return quality.main(argv, terminal)


def main(argv: Optional[List[str]] = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  for words in COMMANDS:
    if tuple(argv[:len(words)]) == words:
      rest = argv[len(words):]
      # Each command imports its own dependencies only when it runs.
      if words == ('data', 'generate'):
        from data import generator  # pylint: disable=g-import-not-at-top
        return generator.main(rest)
      if words == ('data', 'report'):
        from collection import report  # pylint: disable=g-import-not-at-top
        return report.main(rest)
      if words == ('collect',):
        from collection import cli as collection_cli  # pylint: disable=g-import-not-at-top
        return collection_cli.main(rest)
      if words == ('init',):
        from pipeline import new_table  # pylint: disable=g-import-not-at-top
        return new_table.main(rest)
      if words == ('run',):
        import local_runner  # pylint: disable=g-import-not-at-top
        return local_runner.main(rest)
      if words == ('schema', 'diff'):
        from pipeline import schema_diff  # pylint: disable=g-import-not-at-top
        return schema_diff.main(rest)
      if words == ('bench', 'quality'):
        return _bench_quality(rest)
      if words == ('serve',):
        from serving import server  # pylint: disable=g-import-not-at-top
        return server.main(rest)
      if words == ('predict',):
        from serving import batch  # pylint: disable=g-import-not-at-top
        return batch.main(rest)
      if words[0] == 'model':
        from serving import rollback  # pylint: disable=g-import-not-at-top
        return rollback.main([words[1]] + rest)
      if words[0] in LINEAGE_COMMANDS:
        from lineage import cli as lineage_cli  # pylint: disable=g-import-not-at-top
        return lineage_cli.main(words[0], rest)
      if words == ('promote',):
        from pipeline.production import promotion  # pylint: disable=g-import-not-at-top
        return promotion.main(rest)
      import kubeflow_runner  # pylint: disable=g-import-not-at-top
      if words == ('compile',):
        if any(a.split('=')[0] in SEND_OPTIONS for a in rest):
          print('repairml compile: only compiles; use `repairml submit` to '
                'run or schedule.', file=sys.stderr)
          return 2
        return kubeflow_runner.main(rest)
      if words == ('submit',):
        sends = any(a.split('=')[0] in SEND_OPTIONS for a in rest)
        return kubeflow_runner.main(rest if sends else rest + ['--submit'])
  if argv in ([], ['-h'], ['--help']):
    print(_usage())
    return 0
  print(f'repairml: unknown command {" ".join(argv)!r}\n\n{_usage()}',
        file=sys.stderr)
  return 2


if __name__ == '__main__':
  sys.exit(main())
