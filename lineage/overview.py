"""`repairml runs`: every run of the pipeline, newest first, in one line each.

A line: when it started and how long it took, its status, the candidate's
and the baseline's test macro F1 (from the run's evaluation artifact), the
steps that ran and those that came from TFX's cache, and the serving
version it pushed, if any.
"""

import time
from typing import Any, Dict, List

from lineage import models
from lineage.history import History, Run
from pipeline import run_provenance


def iso_time(ms: int) -> str:
  return time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(ms / 1000))


def macro_f1s(history: History, run: Run):
  """(candidate, baseline) test macro F1 of the run's evaluation: as the
  run recorded it, or read from its evaluation artifact."""
  recorded = run_provenance.read_json(run.recorded, run_provenance.METRICS)
  if recorded:
    return recorded.get('macro_f1'), recorded.get('baseline_macro_f1')
  from pipeline import metrics  # pylint: disable=g-import-not-at-top
  evaluation = history.artifact(run.output('Evaluator', 'evaluation'))
  if evaluation is None:
    return None, None
  labels = run.config.get('label', {}).get('vocabulary', [])
  try:
    candidate, baseline = metrics.candidate_and_baseline(evaluation.uri,
                                                         labels)
  except (OSError, IOError, ValueError):   # the files were removed
    return None, None
  return ((candidate or {}).get('macro_f1'),
          (baseline or {}).get('macro_f1'))


def run_row(history: History, run: Run) -> Dict[str, Any]:
  macro_f1, baseline = macro_f1s(history, run)
  return {
      'run_id': run.run_id,
      'started': iso_time(run.started_ms),
      'started_ms': run.started_ms,
      'seconds': round(run.seconds, 1),
      'status': run.status,
      'macro_f1': macro_f1,
      'baseline_macro_f1': baseline,
      'ran': [s.node_id for s in run.steps.values() if not s.cached],
      'cached': [s.node_id for s in run.steps.values() if s.cached],
      'pushed_version': models.pushed_version(history, run),
  }


def run_rows(history: History, limit: int = 0) -> List[Dict[str, Any]]:
  runs = history.runs()
  return [run_row(history, run) for run in (runs[:limit] if limit else runs)]
