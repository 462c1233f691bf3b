"""`repairml reproduce RUN`: run a recorded run again, and compare.

The run's recorded configuration (pipeline/run_provenance.py) runs again
with the local runner, into a separate root of its own: its own pipeline
root, ML Metadata store and serving directory, so nothing is taken from the
cache and nothing is pushed where models are served. Its test metrics are
then compared with the recorded run's, overall and per slice, within
TOLERANCE: two runs of the same code, configuration, data and seed agree
within it (BENCHMARKS.md, "Determinism").

It refuses, saying why, when the result could not be expected to match:
- the checked-out commit, or the lock file's hash, is not the recorded one;
- the recorded run, or the checkout, has uncommitted changes;
- the data's fingerprint (TFX's, over the files ExampleGen matches) differs
  from the one ExampleGen recorded.
`force` runs it anyway.
"""

import os
import re
from typing import Any, Dict, List, Optional

from lineage import card
from lineage.history import History, Run
from pipeline import run_provenance
from pipeline.config import Config, config_from_dict

TOLERANCE = 1e-6
METRICS = ('macro_f1', 'micro_f1', 'macro_auc', 'macro_pr_auc')


class Refused(Exception):
  """The run cannot be reproduced as it is; the message says why."""


def refusals(history: History, run: Run, root: str = run_provenance.PROJECT_ROOT,
             lock_file: str = run_provenance.LOCK_FILE) -> List[str]:
  """Why reproducing `run` here would not be expected to match; [] if it
  would."""
  recorded = run.recorded
  now = run_provenance.provenance_of_checkout(root, lock_file)
  reasons = []
  commit = recorded.get(run_provenance.PREFIX + 'git_commit', '')
  if commit != now['commit']:
    reasons.append(f'the run was recorded at commit {commit or "(none)"}, '
                   f'but {now["commit"] or "no commit"} is checked out: '
                   f'`git checkout {commit}` first.')
  if recorded.get(run_provenance.PREFIX + 'git_dirty'):
    reasons.append('the run had uncommitted changes, which no commit holds.')
  if now['dirty']:
    reasons.append('the checkout has uncommitted changes: commit or stash '
                   'them.')
  lock = recorded.get(run_provenance.PREFIX + 'lock_sha256', '')
  if lock != now['lock_sha256']:
    reasons.append('requirements.lock is not the one the run used (its hash '
                   'differs): check out the recorded commit and `make '
                   'install`.')
  fingerprint = data_fingerprint(history, run)
  if fingerprint is not None:
    recorded_print, current_print = fingerprint
    if recorded_print != current_print:
      reasons.append(f'the data changed since the run: ExampleGen recorded '
                     f'{recorded_print!r}, the files now give '
                     f'{current_print!r}.')
  return reasons


def data_fingerprint(history: History, run: Run):
  """(recorded, current) input fingerprint of the run's file source, or
  None for a source without one (BigQuery)."""
  examples = run.example_gen.output('examples') if run.example_gen else None
  produced = history.producer(examples) if examples else None
  if produced is None:
    return None
  properties = produced[1].properties
  if not properties.get('input_fingerprint') or not properties.get(
      'input_base'):
    return None
  # pylint: disable=g-import-not-at-top
  from google.protobuf import json_format
  from tfx.components.example_gen import utils
  from tfx.proto import example_gen_pb2
  # pylint: enable=g-import-not-at-top
  splits = json_format.Parse(properties['input_config'],
                             example_gen_pb2.Input()).splits
  try:
    current, _, _ = utils.calculate_splits_fingerprint_span_and_version(
        properties['input_base'], splits)
  except (ValueError, RuntimeError, OSError) as e:
    current = f'unreadable: {e}'
  return properties['input_fingerprint'], current


def reproduction_config(run: Run, root: str) -> Config:
  """The recorded configuration, writing everything under `root`."""
  raw = dict(run.config)
  raw.pop('source_path', None)
  raw.pop('metadata', None)      # its own SQLite store, never a shared one
  raw['paths'] = {
      'pipeline_root': os.path.join(root, 'pipeline'),
      'metadata': os.path.join(root, 'metadata.sqlite'),
      'serving_dir': os.path.join(root, 'serving'),
      'log_file': os.path.join(root, 'logs', 'repairml.log'),
  }
  return config_from_dict(raw, source_path=f'the configuration recorded with '
                          f'run {run.run_id}')


def default_root(config: Config, run: Run) -> str:
  base = os.path.dirname(os.path.abspath(config.paths.metadata))
  return os.path.join(base, 'reproduce', re.sub(r'[^0-9A-Za-z._-]', '-',
                                                run.run_id))


def plan(history: History, config: Config, run_id: str,
         root: Optional[str] = None, force: bool = False) -> Dict[str, Any]:
  """Checks that `run_id` can be reproduced (or `force`), and what with:
  {run_id, root, config, recorded evaluation, refusals}."""
  run = history.run(run_id)
  if not run.config:
    raise Refused(f'run {run.run_id} recorded no configuration (it ran '
                  'before repairml recorded one), so it cannot be re-run.')
  recorded = card.evaluation_section(history, run)
  if recorded['candidate'] is None:
    raise Refused(f'run {run.run_id} ended {run.status} before evaluation: '
                  'there are no metrics to reproduce (`repairml why '
                  f'{run.run_id}`).')
  reasons = refusals(history, run)
  if reasons and not force:
    raise Refused('not reproducible as checked out:\n  - ' +
                  '\n  - '.join(reasons) + '\n(--force runs it anyway)')
  root = os.path.abspath(root or default_root(config, run))
  if os.path.exists(root) and os.listdir(root):
    raise Refused(f'{root} already holds a reproduction; remove it, or pass '
                  '--root with another directory.')
  return {'run_id': run.run_id, 'root': root,
          'config': reproduction_config(run, root), 'recorded': recorded,
          'refusals': reasons}


def execute(planned: Dict[str, Any]) -> Dict[str, Any]:
  """Runs the plan with the local runner, then compares the metrics."""
  import local_runner  # pylint: disable=g-import-not-at-top
  root = planned['root']
  summary = local_runner.run_pipeline(
      planned['config'], os.path.join(root, 'run_summary.json'))
  rows = compare(planned['recorded'], summary.metrics or {})
  return {
      'run_id': planned['run_id'], 'root': root,
      'forced': bool(planned['refusals']), 'refusals': planned['refusals'],
      'reproduction_run_id': summary.run_id,
      'reproduction_status': summary.status, 'tolerance': TOLERANCE,
      'matches': bool(rows) and all(r['within'] for r in rows),
      'metrics': rows,
      'reproduction_model_dir': summary.pushed_model_dir,
  }


def reproduce(history: History, config: Config, run_id: str,
              root: Optional[str] = None, force: bool = False
              ) -> Dict[str, Any]:
  """plan, then execute."""
  return execute(plan(history, config, run_id, root, force))


def compare(recorded: Dict[str, Any],
            metrics: Dict[str, Any]) -> List[Dict[str, Any]]:
  """Each overall metric and slice macro F1: recorded, reproduced, within
  TOLERANCE."""
  pairs = [('overall', name, recorded['candidate'].get(name),
            metrics.get(name)) for name in METRICS]
  slices = metrics.get('slices', {})
  pairs += [(entry['slice'], 'macro_f1', entry['macro_f1'],
             slices.get(entry['slice'], {}).get('macro_f1'))
            for entry in recorded['slices']]
  rows = []
  for slice_name, name, before, after in pairs:
    both = before is not None and after is not None
    rows.append({'slice': slice_name, 'metric': name, 'recorded': before,
                 'reproduced': after,
                 'difference': abs(after - before) if both else None,
                 'within': (abs(after - before) <= TOLERANCE if both
                            else before is None and after is None)})
  return rows


