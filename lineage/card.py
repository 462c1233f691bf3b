"""The provenance card: where one model came from, read from ML Metadata.

Starting from the Model artifact, the card follows the store's events
upstream: the Trainer that computed the model read the transform graph, the
transformed examples and the hyperparameters; the Transform that made the
graph read the raw examples and the schema; the ExampleGen that made the
examples recorded the source, its pattern and its fingerprint. The
statistics and anomalies are those computed over the same examples. The
evaluation, the blessing and the push are those of the run the card is
about (lineage/models.py says which run that is). Files are read only where
an artifact's URI points.
"""

import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, List, Optional

from lineage import blessing, models
from lineage.history import Artifact, History, Run
from pipeline import run_provenance

SCHEMA_FILE = 'schema.pbtxt'
HYPERPARAMETERS_FILE = 'best_hyperparameters.txt'
TUNER_RESULTS_FILE = 'tuner_results.json'
TUNED = ('learning_rate', 'hidden_units', 'hidden_layers', 'embedding_dim',
         'dropout', 'loss')


def read_file(path: str) -> Optional[bytes]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, 'rb') as f:
    return f.read()


def _ref(artifact: Optional[Artifact]) -> Optional[Dict[str, Any]]:
  return None if artifact is None else {'artifact_id': artifact.id,
                                        'type': artifact.type,
                                        'uri': artifact.uri}


def _upstream_step(history: History, artifact_id: Optional[int]):
  produced = history.producer(artifact_id) if artifact_id else None
  return produced[1] if produced else None


def _consumer_step(history: History, artifact_id: int, node_id: str,
                   run: Run):
  """The step of `node_id` that read `artifact_id`: in `run` if it has one,
  else the first that computed anything."""
  steps = [c for c in history.neighbours(artifact_id)['consumers']
           if c['node_id'] == node_id]
  for entry in steps:
    if entry['run_id'] == run.run_id:
      return entry['step']
  computed = [c for c in steps if c['state'] != 'cached'] or steps
  return computed[0]['step'] if computed else None


def data_section(history: History, run: Run, examples_id: Optional[int],
                 recorded: Dict[str, Any]) -> Dict[str, Any]:
  """The source, spans, rows per split, statistics and anomalies of the raw
  examples `examples_id`; `recorded` is what run_provenance attached."""
  examples = history.artifact(examples_id)
  example_gen = _upstream_step(history, examples_id)
  section: Dict[str, Any] = {
      'examples': _ref(examples),
      'source': run_provenance.read_json(recorded,
                                         run_provenance.DATA_SOURCE, {}),
      'example_gen': {
          name: example_gen.properties.get(name) for name in (
              'input_base', 'input_config', 'input_fingerprint', 'span',
              'version')} if example_gen else {},
      'rows': run_provenance.read_json(recorded, run_provenance.ROWS, {}),
      'statistics': None, 'anomalies': [],
  }
  if examples is None:
    return section
  statistics_step = _consumer_step(history, examples.id, 'StatisticsGen', run)
  statistics = history.artifact(statistics_step.output('statistics')
                                if statistics_step else None)
  section['statistics'] = _ref(statistics)
  if statistics is not None:
    if not section['rows']:
      section['rows'] = run_provenance.rows_per_split(
          history.tfx_artifact(statistics.id))
    validator = _consumer_step(history, statistics.id, 'ExampleValidator',
                               run)
    anomalies = history.artifact(validator.output('anomalies')
                                 if validator else None)
    section['anomalies_artifact'] = _ref(anomalies)
    section['anomalies'] = anomalies_of(history, anomalies)
  return section


def anomalies_of(history: History,
                 anomalies: Optional[Artifact]) -> List[Dict[str, str]]:
  from pipeline.components import data_gate  # pylint: disable=g-import-not-at-top
  if anomalies is None:
    return []
  return [dataclasses.asdict(a) for a in
          data_gate.find_anomalies(history.tfx_artifact(anomalies.id))]


def schema_section(history: History, run: Run,
                   schema_id: Optional[int]) -> Dict[str, Any]:
  """The schema's file, content hash, and its change from the schema of the
  run before `run`."""
  schema = history.artifact(schema_id)
  if schema is None:
    return {'artifact': None}
  producer = _upstream_step(history, schema.id)
  content = read_file(os.path.join(schema.uri, SCHEMA_FILE)) or b''
  section = {'artifact': _ref(schema),
             'file': producer.properties.get('schema_file') if producer else '',
             'sha256': hashlib.sha256(content).hexdigest(),
             'previous_run': None, 'changes': None}
  previous = history.previous_run(run)
  while previous is not None and previous.output('CuratedSchema',
                                                 'schema') is None:
    previous = history.previous_run(previous)
  if previous is not None:
    before = history.artifact(previous.output('CuratedSchema', 'schema'))
    section['previous_run'] = previous.run_id
    section['changes'] = schema_changes(
        read_file(os.path.join(before.uri, SCHEMA_FILE)) or b'', content)
  return section


def schema_changes(before: bytes, after: bytes) -> Dict[str, List[str]]:
  """Features added, removed and changed between two schema.pbtxt texts,
  and whether anything outside the features changed."""
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  old = text_format.Parse(before.decode(), schema_pb2.Schema())
  new = text_format.Parse(after.decode(), schema_pb2.Schema())
  old_features = {f.name: f for f in old.feature}
  new_features = {f.name: f for f in new.feature}
  del old.feature[:]
  del new.feature[:]
  return {
      'added': sorted(set(new_features) - set(old_features)),
      'removed': sorted(set(old_features) - set(new_features)),
      'changed': sorted(name for name in set(old_features) & set(new_features)
                        if old_features[name] != new_features[name]),
      'other': [] if old == new else ['schema-level settings'],
  }


def hyperparameters_section(history: History, trainer,
                            run: Run) -> Dict[str, Any]:
  """The values the Trainer trained with, and the Tuner's best trial."""
  artifact = history.artifact(trainer.input('hyperparameters')
                              if trainer else None)
  if artifact is None:
    training = run.config.get('training', {})
    return {'source': 'configuration (tuning off)', 'artifact': None,
            'values': {name: training.get(name) for name in TUNED},
            'best_trial': None, 'trials': 0}
  raw = read_file(os.path.join(artifact.uri, HYPERPARAMETERS_FILE))
  values = json.loads(raw).get('values', {}) if raw else {}
  tuner = _upstream_step(history, artifact.id)
  trials = []
  results = history.artifact(tuner.output('tuner_results') if tuner else None)
  if results is not None:
    raw_results = read_file(os.path.join(results.uri, TUNER_RESULTS_FILE))
    trials = json.loads(raw_results) if raw_results else []
  best = max(trials, key=lambda t: t.get('score') or float('-inf'),
             default=None)
  return {'source': 'tuner', 'artifact': _ref(artifact), 'values': values,
          'best_trial': ({'trial_id': best['trial_id'],
                          'score': best['score']} if best else None),
          'trials': len(trials)}


def recorded_on(model: Artifact) -> Dict[str, Any]:
  """What run_provenance attached to the model when it was trained."""
  return {k: v for k, v in model.properties.items()
          if k.startswith(run_provenance.PREFIX)}


def training_section(model: Artifact) -> Dict[str, Any]:
  recorded = recorded_on(model)
  return {
      'git_commit': recorded.get(run_provenance.PREFIX + 'git_commit'),
      'git_dirty': recorded.get(run_provenance.PREFIX + 'git_dirty'),
      'config_sha256': recorded.get(run_provenance.PREFIX + 'config_sha256'),
      'lock_sha256': recorded.get(run_provenance.PREFIX + 'lock_sha256'),
      'packages': run_provenance.read_json(
          recorded, run_provenance.PREFIX + 'packages', {}),
  }


def evaluation_section(history: History, run: Run) -> Dict[str, Any]:
  """Overall and per-slice metrics of the candidate and the baseline, and
  each blessing rule's outcome."""
  from pipeline import metrics  # pylint: disable=g-import-not-at-top
  evaluator = run.step('Evaluator')
  evaluation = history.artifact(evaluator.output('evaluation')
                                if evaluator else None)
  if evaluation is None:
    return {'artifact': None, 'candidate': None, 'baseline': None,
            'baseline_model': None, 'slices': [], 'blessing': None}
  labels = run.config.get('label', {}).get('vocabulary', [])
  candidate, baseline = metrics.candidate_and_baseline(evaluation.uri, labels)
  slices = [{'slice': name, 'examples': _count(values.get('example_count')),
             'macro_f1': values.get('macro_f1'),
             'baseline_macro_f1': ((baseline or {}).get('slices', {}).get(
                 name, {}).get('macro_f1'))}
            for name, values in sorted((candidate or {}).get('slices',
                                                             {}).items())]
  overall = ('macro_f1', 'micro_f1', 'macro_auc', 'macro_pr_auc',
             'example_count')
  return {
      'artifact': _ref(evaluation),
      'candidate': {k: (candidate or {}).get(k) for k in overall},
      'baseline': ({k: baseline.get(k) for k in overall} if baseline
                   else None),
      'baseline_model': _ref(history.artifact(
          evaluator.input('baseline_model'))),
      'slices': slices,
      'per_label': (candidate or {}).get('per_label', {}),
      'blessing': blessing.evaluation_rules(history, evaluator),
  }


def _count(value: Optional[float]) -> Optional[int]:
  return None if value is None else int(value)


def push_section(history: History, run: Run,
                 version: Optional[int]) -> Dict[str, Any]:
  pushed = history.artifact(run.output(models.PUSHER, 'pushed_model'))
  if pushed is None:
    return {'pushed': False, 'destination': None, 'version': version,
            'at_ms': None}
  return {'pushed': pushed.properties.get('pushed') == 1,
          'destination': pushed.properties.get('pushed_destination'),
          'version': models.pushed_version(history, run) or version,
          'at_ms': run.step(models.PUSHER).finished_ms,
          'retired_version': pushed.properties.get('retired_version')}


def provenance_card(history: History, serving_dir: str,
                    name: str) -> Dict[str, Any]:
  """The card of the model `name` means (lineage/models.py)."""
  found = models.resolve(history, serving_dir, name)
  model, run = found.model, found.run
  trained = history.producer(model.id)
  trainer = trained[1] if trained else None
  transform = _upstream_step(history, trainer.input('transform_graph')
                             if trainer else None)
  raw_examples = transform.input('examples') if transform else None
  return {
      'model': {**_ref(model), 'trained_in_run': trained[0] if trained
                else None},
      'run': {'run_id': run.run_id, 'status': run.status,
              'started_ms': run.started_ms, 'seconds': run.seconds},
      'data': data_section(history, run, raw_examples,
                           recorded_on(model) or run.recorded),
      'schema': schema_section(history, run, transform.input('schema')
                               if transform else None),
      'transform_graph': _ref(history.artifact(
          trainer.input('transform_graph') if trainer else None)),
      'hyperparameters': hyperparameters_section(history, trainer, run),
      'training': training_section(model),
      'evaluation': evaluation_section(history, run),
      'push': push_section(history, run, found.version),
  }
