"""`repairml diff RUN_A RUN_B`: exactly what changed between two runs.

Each part compares what the store recorded for the two runs, and lists only
what differs:
- configuration: key paths (`training.learning_rate`) with both values;
- code: the commit and the dirty flag;
- data: the spans, the rows per split, ExampleGen's input fingerprint, and
  the drift between the two runs' statistics, per feature: TFDV's own
  comparison (L-infinity distance for categorical features, Jensen-Shannon
  divergence for numeric ones) of B's train split against A's;
- schema: content hash and the features added, removed or changed;
- hyperparameters: the values the Trainer trained with;
- metrics: overall and per slice.
"""

import os
from typing import Any, Dict, List, Optional

from lineage import card
from lineage.history import History, Run

METRICS = ('macro_f1', 'micro_f1', 'macro_auc', 'macro_pr_auc')
# Drift above this is listed (smaller distances are sampling noise).
DRIFT_SHOWN = 1e-9
STATISTICS_FILE = 'FeatureStats.pb'
DRIFT_SPLIT = 'train'


def flatten(value: Any, prefix: str = '') -> Dict[str, Any]:
  """{'training.learning_rate': 0.003, ...}; lists are values."""
  if isinstance(value, dict):
    flat = {}
    for key, inner in value.items():
      flat.update(flatten(inner, f'{prefix}{key}.'))
    return flat
  return {prefix[:-1]: value}


def changed(before: Dict[str, Any], after: Dict[str, Any]) -> List[Dict]:
  return [{'key': key, 'a': before.get(key), 'b': after.get(key)}
          for key in sorted(set(before) | set(after))
          if before.get(key) != after.get(key)]


def _card_parts(history: History, run: Run) -> Dict[str, Any]:
  """The parts of the run's card the diff compares (without its model, if
  the run stopped before training)."""
  trainer = run.step('Trainer')
  transform = run.step('Transform')
  examples = run.example_gen.output('examples') if run.example_gen else None
  schema = run.output('CuratedSchema', 'schema')
  return {
      'data': card.data_section(history, run, examples, run.recorded),
      'schema': card.schema_section(history, run, schema),
      'hyperparameters': (card.hyperparameters_section(history, trainer, run)
                          if trainer else {'values': {}}),
      'evaluation': card.evaluation_section(history, run),
      'transform_graph': transform.output('transform_graph') if transform
                         else None,
  }


def diff_runs(history: History, run_a: str, run_b: str) -> Dict[str, Any]:
  a, b = history.run(run_a), history.run(run_b)
  parts_a, parts_b = _card_parts(history, a), _card_parts(history, b)
  code = changed(
      {k: a.recorded.get('repairml_' + k) for k in ('git_commit',
                                                    'git_dirty')},
      {k: b.recorded.get('repairml_' + k) for k in ('git_commit',
                                                    'git_dirty')})
  data_a, data_b = parts_a['data'], parts_b['data']
  data = changed(
      {'spans': data_a['source'].get('spans'), 'rows': data_a['rows'],
       'fingerprint': data_a['example_gen'].get('input_fingerprint'),
       'pattern': data_a['source'].get('pattern')},
      {'spans': data_b['source'].get('spans'), 'rows': data_b['rows'],
       'fingerprint': data_b['example_gen'].get('input_fingerprint'),
       'pattern': data_b['source'].get('pattern')})
  schema_a, schema_b = parts_a['schema'], parts_b['schema']
  schema = None
  if schema_a.get('sha256') != schema_b.get('sha256'):
    schema = {'a': schema_a.get('sha256'), 'b': schema_b.get('sha256')}
    if schema_a.get('artifact') and schema_b.get('artifact'):
      schema['changes'] = card.schema_changes(
          card.read_file(os.path.join(schema_a['artifact']['uri'],
                                  card.SCHEMA_FILE)) or b'',
          card.read_file(os.path.join(schema_b['artifact']['uri'],
                                  card.SCHEMA_FILE)) or b'')
  return {
      'a': {'run_id': a.run_id, 'status': a.status},
      'b': {'run_id': b.run_id, 'status': b.status},
      'configuration': changed(_config(a), _config(b)),
      'code': code,
      'data': data,
      'drift': statistics_drift(history, data_a['statistics'],
                                data_b['statistics'], schema_b),
      'schema': schema,
      'hyperparameters': changed(parts_a['hyperparameters']['values'],
                                 parts_b['hyperparameters']['values']),
      'metrics': _metrics(parts_a['evaluation'], parts_b['evaluation']),
  }


def _config(run: Run) -> Dict[str, Any]:
  return flatten(run.config)


def _metrics(a: Dict[str, Any], b: Dict[str, Any]) -> List[Dict[str, Any]]:
  before = {('overall', k): v for k, v in (a.get('candidate') or {}).items()
            if k in METRICS}
  after = {('overall', k): v for k, v in (b.get('candidate') or {}).items()
           if k in METRICS}
  for side, evaluation in ((before, a), (after, b)):
    for entry in evaluation.get('slices', []):
      side[(entry['slice'], 'macro_f1')] = entry['macro_f1']
  rows = []
  for key in sorted(set(before) | set(after),
                    key=lambda k: (k[0] != 'overall', k)):
    if before.get(key) != after.get(key):
      rows.append({'slice': key[0], 'metric': key[1], 'a': before.get(key),
                   'b': after.get(key)})
  return rows


def statistics_drift(history: History, statistics_a: Optional[Dict],
                     statistics_b: Optional[Dict],
                     schema: Dict[str, Any]) -> List[Dict[str, Any]]:
  """Per feature, TFDV's distance between the two runs' train statistics,
  largest first; [] when both runs read the same statistics artifact."""
  if not statistics_a or not statistics_b or (
      statistics_a['artifact_id'] == statistics_b['artifact_id']):
    return []
  # pylint: disable=g-import-not-at-top
  import tensorflow_data_validation as tfdv
  from google.protobuf import text_format
  from tensorflow_metadata.proto.v0 import schema_pb2
  # pylint: enable=g-import-not-at-top
  paths = []
  for statistics in (statistics_a, statistics_b):
    artifact = history.tfx_artifact(statistics['artifact_id'])
    from tfx.types import artifact_utils  # pylint: disable=g-import-not-at-top
    paths.append(os.path.join(artifact_utils.get_split_uri(
        [artifact], DRIFT_SPLIT), STATISTICS_FILE))
  if not all(os.path.isfile(p) for p in paths):
    return []
  before, after = (tfdv.load_stats_binary(p) for p in paths)
  text = card.read_file(os.path.join(schema['artifact']['uri'], card.SCHEMA_FILE)
                    ) if schema.get('artifact') else None
  comparing = text_format.Parse(text.decode(), schema_pb2.Schema()) if text \
      else tfdv.infer_schema(after)
  for feature in comparing.feature:
    feature.ClearField('drift_comparator')
    # A threshold this low makes TFDV measure every feature.
    if feature.type == schema_pb2.BYTES:
      feature.drift_comparator.infinity_norm.threshold = DRIFT_SHOWN
    else:
      feature.drift_comparator.jensen_shannon_divergence.threshold = (
          DRIFT_SHOWN)
  anomalies = tfdv.validate_statistics(after, comparing,
                                       previous_statistics=before)
  names = {1: 'L-infinity', 2: 'Jensen-Shannon'}
  drift = [{'feature': '.'.join(info.path.step),
            'measure': names.get(m.type, str(m.type)),
            'distance': m.value}
           for info in anomalies.drift_skew_info
           for m in info.drift_measurements if m.value > DRIFT_SHOWN]
  return sorted(drift, key=lambda d: -d['distance'])
