"""The lineage commands' answers as text for the terminal.

Each function takes the plain dictionary a command computed (the same one
`--json` prints and the web UI shows) and lays it out as aligned tables.
"""

import time
from typing import Any, Dict, List, Optional, Sequence

SLICE_ROWS_SHOWN = 10


def number(value: Any, digits: int = 4) -> str:
  if value is None:
    return '-'
  if isinstance(value, float):
    return str(int(value)) if digits == 0 else f'{value:.{digits}f}'
  return str(value)


def table(headers: Sequence[str], rows: List[Sequence[Any]],
          indent: str = '  ') -> str:
  cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
  widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
  lines = [indent + '  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
           for row in cells]
  lines.insert(1, indent + '  '.join('-' * w for w in widths))
  return '\n'.join(lines)


def _steps(names: List[str]) -> str:
  return ', '.join(names) if names else '-'


def runs_text(rows: List[Dict[str, Any]]) -> str:
  if not rows:
    return 'No runs yet: `repairml run` runs the pipeline.'
  return table(
      ['run', 'started (UTC)', 'seconds', 'status', 'macro F1', 'baseline',
       'pushed', 'cached'],
      [[r['run_id'], r['started'], number(r['seconds'], 1), r['status'],
        number(r['macro_f1']), number(r['baseline_macro_f1']),
        r['pushed_version'] if r['pushed_version'] is not None else '-',
        f'{len(r["cached"])} of {len(r["cached"]) + len(r["ran"])}']
       for r in rows], indent='')


def _ref(ref: Optional[Dict[str, Any]]) -> str:
  return '-' if not ref else f'{ref["type"]} #{ref["artifact_id"]} {ref["uri"]}'


def card_text(card: Dict[str, Any]) -> str:
  model, run, data = card['model'], card['run'], card['data']
  lines = [f'model    {_ref(model)}',
           f'         trained in run {model["trained_in_run"]}; described in '
           f'run {run["run_id"]} ({run["status"]})']
  source = data['source']
  lines += ['', 'data']
  if source.get('format') == 'bigquery':
    lines.append(f'  source       BigQuery {source.get("table")} (car_model='
                 f'{source.get("car_model")!r}, dates {source.get("date_from")}'
                 f'..{source.get("date_to")})')
  elif source:
    lines.append(f'  source       {source.get("format")} '
                 f'{source.get("root")}/{source.get("pattern")} '
                 f'({source.get("files")} files)')
    lines.append(f'  spans        {", ".join(source.get("spans") or []) or "-"}')
    collected = source.get('collected') or {}
    if collected:
      complete = sum(1 for span in collected.values() if span.get('claims_complete'))
      days = sorted(span.get('date') or '' for span in collected.values())
      lines.append(f'  collected    {len(collected)} spans by repairml collect, '
                   f'{days[0]}..{days[-1]}; claim window closed for '
                   f'{complete} of {len(collected)}')
  lines.append(f'  fingerprint  {data["example_gen"].get("input_fingerprint") or "-"}')
  rows = data.get('rows') or {}
  lines.append('  rows         ' + (', '.join(f'{k} {v}' for k, v in
                                              sorted(rows.items())) or '-'))
  lines.append(f'  statistics   {_ref(data.get("statistics"))}')
  anomalies = data.get('anomalies') or []
  lines.append(f'  anomalies    {len(anomalies) or "none"}')
  lines += [f'    [{a["split"]}] {a["feature"]}: {a["description"]}'
            for a in anomalies]
  schema = card['schema']
  lines += ['', 'schema']
  if schema.get('artifact'):
    lines.append(f'  file         {schema["file"]}')
    lines.append(f'  sha256       {schema["sha256"]}')
    lines.append(f'  artifact     {_ref(schema["artifact"])}')
    changes = schema.get('changes')
    if schema.get('previous_run') is None:
      lines.append('  change       - (no earlier run)')
    elif not any((changes or {}).values()):
      lines.append(f'  change       none since run {schema["previous_run"]}')
    else:
      lines.append(f'  change       since run {schema["previous_run"]}: ' +
                   '; '.join(f'{kind} {", ".join(names)}'
                             for kind, names in changes.items() if names))
  lines += ['', f'transform graph  {_ref(card["transform_graph"])}']
  hyper = card['hyperparameters']
  lines += ['', f'hyperparameters  (from the {hyper["source"]})']
  lines += [f'  {k:<15}{number(v)}' for k, v in sorted(hyper['values'].items())]
  if hyper.get('best_trial'):
    best = hyper['best_trial']
    lines.append(f'  best trial   {best["trial_id"]} of {hyper["trials"]}, '
                 f'score {number(best["score"])} (eval macro F1)')
  training = card['training']
  lines += ['', 'training',
            f'  commit       {training["git_commit"] or "-"}'
            + (' (with uncommitted changes)' if training['git_dirty'] else ''),
            f'  config       sha256 {training["config_sha256"] or "-"}',
            f'  lock         sha256 {training["lock_sha256"] or "-"}',
            '  packages     ' + ', '.join(
                f'{k} {v}' for k, v in sorted(training['packages'].items()))]
  lines += ['', evaluation_text(card['evaluation'])]
  lines += ['', push_text(card['push'])]
  return '\n'.join(lines)


def evaluation_text(evaluation: Dict[str, Any]) -> str:
  if not evaluation.get('artifact'):
    return 'evaluation  none (the run stopped before the Evaluator)'
  candidate, baseline = evaluation['candidate'], evaluation['baseline'] or {}
  lines = [f'evaluation  {_ref(evaluation["artifact"])}',
           f'  baseline model: {_ref(evaluation["baseline_model"])}']
  lines.append(table(['metric (test)', 'model', 'baseline'],
                     [[name, number(candidate.get(name)),
                       number(baseline.get(name))]
                      for name in ('macro_f1', 'micro_f1', 'macro_auc',
                                   'macro_pr_auc', 'example_count')]))
  slices = sorted(evaluation['slices'], key=lambda s: -(s['examples'] or 0))
  lines.append(table(['slice (largest first)', 'examples', 'macro F1',
                      'baseline'],
                     [[s['slice'], number(s['examples']), number(s['macro_f1']),
                       number(s['baseline_macro_f1'])]
                      for s in slices[:SLICE_ROWS_SHOWN]]))
  if len(slices) > SLICE_ROWS_SHOWN:
    lines.append(f'  ... and {len(slices) - SLICE_ROWS_SHOWN} smaller slices '
                 '(--json has every slice)')
  lines.append(blessing_text(evaluation['blessing'], all_rows=False))
  return '\n'.join(lines)


def blessing_text(rules: Optional[Dict[str, Any]], all_rows: bool) -> str:
  # Only the tables of a blessing load TFMA (through lineage.blessing).
  from lineage import blessing  # pylint: disable=g-import-not-at-top
  if rules is None:
    return 'blessing  none'
  if not rules['configured']:
    return ('blessing  no thresholds were configured: every evaluated model '
            'is blessed')
  rows = rules['rows']
  shown = rows if all_rows else [
      r for r in rows if r['outcome'] == blessing.FAIL or r['slice'] ==
      'overall'] + [r for r in rows if r['outcome'] != blessing.FAIL and
                    r['slice'] != 'overall'][:SLICE_ROWS_SHOWN]
  header = ('blessing  ' + ('BLESSED' if rules['blessed'] else 'NOT BLESSED')
            + f': {sum(r["outcome"] == blessing.FAIL for r in rows)} of '
            f'{len(rows)} rule checks failed')
  text = table(['', 'rule', 'slice', 'examples', 'threshold', 'value',
                'baseline'],
               [['FAIL' if r['outcome'] == blessing.FAIL else
                 'ok' if r['outcome'] == blessing.PASS else 'n/a',
                 r['rule'], r['slice'], number(r['examples']),
                 r['threshold'], number(r['value']),
                 number(r['baseline_value'])] for r in shown])
  hidden = len(rows) - len(shown)
  more = f'\n  ... and {hidden} more slice rows that passed or were not judged (--all shows them)' \
      if hidden else ''
  return f'{header}\n{text}{more}'


def push_text(push: Dict[str, Any]) -> str:
  if not push['pushed']:
    retired = push.get('retired_version')
    return ('push  not pushed' + (f' (version {retired} was retired by '
                                  '`repairml model rollback`)'
                                  if retired else ''))
  at = time.strftime('%Y-%m-%d %H:%M:%S UTC',
                     time.gmtime(push['at_ms'] / 1000)) if push['at_ms'] else '-'
  return (f'push  serving version {push["version"]}, {push["destination"]}, '
          f'at {at}')


def why_text(why: Dict[str, Any], all_rows: bool = False) -> str:
  lines = [f'run {why["run_id"]}: {why["status"]}', f'  {why["summary"]}']
  for anomaly in why.get('anomalies', []):
    lines.append(f'  [{anomaly["split"]}] {anomaly["feature"]}: '
                 f'{anomaly["description"]}')
    lines.append(f'      what to do: {anomaly["what_to_do"]}')
  if why['status'] == 'failed':
    lines.append(f'  error: {why.get("error") or "(none recorded)"}')
    if why.get('log'):
      lines.append('  the log\'s last error lines:')
      lines += [f'    {line}' for line in why['log']]
  if why.get('blessing') is not None and why['status'] != 'data_anomalies':
    lines.append(blessing_text(why['blessing'], all_rows))
  return '\n'.join(lines)


def diff_text(diff: Dict[str, Any]) -> str:
  a, b = diff['a'], diff['b']
  lines = [f'A: run {a["run_id"]} ({a["status"]})',
           f'B: run {b["run_id"]} ({b["status"]})']

  def section(title: str, rows: List[Dict[str, Any]], key: str = 'key'):
    if not rows:
      lines.append(f'\n{title}: no change')
      return
    lines.append(f'\n{title}:')
    lines.append(table([key, 'A', 'B'], [[r[key], number(r['a']),
                                           number(r['b'])] for r in rows]))
  section('configuration', diff['configuration'])
  section('code', diff['code'])
  section('data', diff['data'])
  drift = diff['drift']
  if drift:
    lines.append('\ndrift of the train statistics, B against A (TFDV):')
    lines.append(table(['feature', 'measure', 'distance'],
                       [[d['feature'], d['measure'], number(d['distance'])]
                        for d in drift]))
  else:
    lines.append('\ndrift: none (both runs read the same statistics)')
  schema = diff['schema']
  lines.append('\nschema: no change' if not schema else
               f'\nschema: {schema["a"]} -> {schema["b"]} ' + '; '.join(
                   f'{kind} {", ".join(names)}' for kind, names in
                   (schema.get('changes') or {}).items() if names))
  section('hyperparameters', diff['hyperparameters'])
  metrics = diff['metrics']
  if not metrics:
    lines.append('\nmetrics: no change')
  else:
    lines.append('\nmetrics (test):')
    lines.append(table(['slice', 'metric', 'A', 'B'],
                       [[m['slice'], m['metric'], number(m['a']),
                         number(m['b'])] for m in metrics]))
  return '\n'.join(lines)


def reproduce_text(result: Dict[str, Any]) -> str:
  """The overall metrics, and the slices only where they differ."""
  lines = [f'run {result["run_id"]} reproduced as run '
           f'{result["reproduction_run_id"]} in {result["root"]} '
           f'({result["reproduction_status"]})']
  if result['forced']:
    lines.append('  forced, despite:')
    lines += [f'    - {reason}' for reason in result['refusals']]
  rows = result['metrics']
  slices = [r for r in rows if r['slice'] != 'overall']
  shown = [r for r in rows if r['slice'] == 'overall' or not r['within']]
  lines.append(table(['slice', 'metric', 'recorded', 'reproduced',
                      'difference', ''],
                     [[r['slice'], r['metric'], number(r['recorded'], 6),
                       number(r['reproduced'], 6), number(r['difference'], 9),
                       'ok' if r['within'] else 'DIFFERS'] for r in shown]))
  differing = sum(not r['within'] for r in slices)
  lines.append(f'  macro F1 of {len(slices)} slices: ' + (
      f'{differing} differ' if differing else 'all within the tolerance'))
  lines.append(('MATCHES' if result['matches'] else 'DOES NOT MATCH') +
               f' within {result["tolerance"]:g}')
  return '\n'.join(lines)
