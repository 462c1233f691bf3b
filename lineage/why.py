"""`repairml why RUN`: why a run ended as it did, read from ML Metadata.

- Stopped at the data gate: each anomaly ExampleValidator recorded, by split
  and feature, with what to do about it.
- Not blessed: each blessing rule on each slice, its threshold, the
  candidate's and the baseline's values, failing rows first
  (lineage/blessing.py).
- Failed: the step that failed, the error TFX recorded, and the last error
  lines of the run's own part of the log (its byte range is recorded with
  the run, pipeline/run_provenance.py).
- Pushed or retired: where the model went, or why it did not.
"""

from typing import Any, Dict, List, Optional

from lineage import blessing, card
from lineage.history import History, Run
from pipeline import run_provenance

LOG_LINES = 15
DEFAULT_ADVICE = ('fix the data; or, if the change is intended, update '
                  'schema/schema.pbtxt (`repairml schema diff` shows what '
                  'SchemaGen proposes).')
# What to do, by TFDV's anomaly type (tensorflow_metadata's AnomalyInfo).
ADVICE = {
    'SCHEMA_MISSING_COLUMN': (
        'the column is missing from the data: restore it in the source; or, '
        'if it is gone for good, remove the feature from the configuration '
        'and from schema/schema.pbtxt.'),
    'ENUM_TYPE_UNEXPECTED_STRING_VALUES': (
        'values outside the schema\'s domain: if they are legitimate (a new '
        'market, a new code), add them to the domain in schema/schema.pbtxt '
        '(`repairml schema diff` shows what SchemaGen proposes); otherwise '
        'fix the source.'),
    'FEATURE_TYPE_LOW_FRACTION_PRESENT': (
        'the feature is missing in more rows than the schema allows: check '
        'the extraction, or lower its presence min_fraction in the schema.'),
    'FEATURE_TYPE_LOW_NUMBER_PRESENT': (
        'the feature is present in too few rows: check the extraction, or '
        'lower its presence min_count in the schema.'),
    'UNEXPECTED_DATA_TYPE': (
        'the column\'s type is not the schema\'s: fix the type in the source, '
        'or change the feature\'s type in the schema.'),
    'DATASET_LOW_NUM_EXAMPLES': (
        'fewer rows than the schema requires: check which spans the pattern '
        'matched, or the query\'s date range.'),
    'COMPARATOR_L_INFTY_HIGH': (
        'the distribution moved beyond the comparator\'s threshold: check the '
        'source for a change; raise the threshold in the schema if the shift '
        'is real and expected.'),
    'COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH': (
        'the distribution moved beyond the comparator\'s threshold: check the '
        'source for a change; raise the threshold in the schema if the shift '
        'is real and expected.'),
}


def explain(history: History, run_id: str) -> Dict[str, Any]:
  """{'run_id', 'status', 'summary', and the details of that status}."""
  run = history.run(run_id)
  status = run.status
  found: Dict[str, Any] = {'run_id': run.run_id, 'status': status}
  validator = run.step('ExampleValidator')
  anomalies = card.anomalies_of(history, history.artifact(
      validator.output('anomalies') if validator else None))
  if anomalies:
    found['anomalies'] = [
        {**a, 'what_to_do': ADVICE.get(a.get('kind', ''), DEFAULT_ADVICE)}
        for a in anomalies]
  if status == 'data_anomalies':
    found['summary'] = (f'The data gate stopped the run: {len(anomalies)} '
                        'anomal' + ('y' if len(anomalies) == 1 else 'ies') +
                        ' against the curated schema. Nothing was trained.')
  elif status == 'failed':
    step = run.failed_step
    found['failed_step'] = step.node_id if step else None
    found['log'] = log_excerpt(run)
    # TFX records no message for a failed local execution: the log's last
    # line, the exception, says it.
    found['error'] = (step.error if step and step.error else
                      found['log'][-1] if found['log'] else '')
    found['summary'] = (f'{step.node_id} failed.' if step else
                        'The run failed before any component finished.')
  else:
    evaluator = run.step('Evaluator')
    rules = (blessing.evaluation_rules(history, evaluator)
             if evaluator else None)
    found['blessing'] = rules
    found['summary'] = _evaluated(history, run, status, rules)
  return found


def _evaluated(history: History, run: Run, status: str,
               rules: Optional[Dict[str, Any]]) -> str:
  if rules is not None and not rules['configured']:
    thresholds = ('No blessing thresholds were configured, so every '
                  'evaluated model is blessed. ')
  else:
    thresholds = ''
  if status == 'pushed':
    push = card.push_section(history, run, None)
    return (f'{thresholds}The model was blessed and is serving version '
            f'{push["version"]} ({push["destination"]}).')
  if status == 'retired':
    push = card.push_section(history, run, None)
    return (f'{thresholds}The model was blessed, but it is version '
            f'{push.get("retired_version")}, which `repairml model rollback` '
            'retired; the Pusher does not push it again (`repairml model '
            f'restore {push.get("retired_version")}` serves it).')
  if status == 'not_blessed':
    failing = [r for r in (rules or {}).get('rows', [])
               if r['outcome'] == blessing.FAIL]
    return (f'{thresholds}The model failed {len(failing)} blessing '
            'rule' + ('' if len(failing) == 1 else 's') + '; the last '
            'pushed model stays in place.')
  return f'{thresholds}The run is {status}.'


def log_excerpt(run: Run, lines: int = LOG_LINES) -> List[str]:
  """The last error lines of the run's part of its log file: its last
  traceback, else its last ERROR lines."""
  where = run_provenance.read_json(run.recorded, run_provenance.LOG, {})
  try:
    with open(where.get('path', ''), 'rb') as f:
      f.seek(where.get('start', 0))
      text = f.read(max(0, where.get('end', 0) - where.get('start', 0)))
  except OSError:
    return []
  log = text.decode('utf-8', 'replace').splitlines()
  starts = [i for i, line in enumerate(log) if line.startswith('Traceback')]
  if starts:
    block = log[starts[-1]:]
    end = next((i + 1 for i, line in enumerate(block)
                if i and line and not line.startswith((' ', 'Traceback',
                                                       'During', 'The '))),
               len(block))
    return block[:end][-lines:]
  return [line for line in log if 'ERROR' in line][-lines:]

