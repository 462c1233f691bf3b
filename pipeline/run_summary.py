"""Reads what a finished local run recorded in ML Metadata into a summary.

The summary is the run's answer to the user: its status, whether the model
was blessed and pushed, the anomalies that stopped it, and the evaluation
metrics of the candidate and of the baseline it was compared with. Everything
here is read from ML Metadata and the artifacts it points to, never from the
pipeline code's memory.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx.types import artifact_utils

from pipeline import metrics
from pipeline.components import atomic_pusher, data_gate

STATUS_EXIT_CODES = {
    'pushed': 0,
    'failed': 1,
    'not_blessed': 3,
    'data_anomalies': 4,
    # Blessed, but it is a model `repairml model rollback` retired: the
    # Pusher does not push it again (pipeline/components/atomic_pusher.py).
    'retired': 5,
}
_RUN_CONTEXT = 'pipeline_run'
_NODE_CONTEXT = 'node'
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT,
                  metadata_store_pb2.Event.DECLARED_OUTPUT)
_CACHED = metadata_store_pb2.Execution.CACHED


@dataclasses.dataclass
class RunSummary:
  """What a run did and why; written as the summary JSON."""
  run_id: Optional[str]
  status: str
  blessed: Optional[bool] = None
  pushed_model_dir: Optional[str] = None
  retired_version: Optional[int] = None
  anomalies: List[Dict[str, str]] = dataclasses.field(default_factory=list)
  metrics: Optional[Dict[str, Any]] = None
  blessing_failures: List[str] = dataclasses.field(default_factory=list)
  baseline_metrics: Optional[Dict[str, Any]] = None
  component_seconds: Dict[str, float] = dataclasses.field(default_factory=dict)
  cached_components: List[str] = dataclasses.field(default_factory=list)
  error: Optional[str] = None
  log_file: Optional[str] = None

  @property
  def exit_code(self) -> int:
    return STATUS_EXIT_CODES[self.status]

  def write(self, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    staging = f'{path}.partial'
    with open(staging, 'w', encoding='utf-8') as f:
      json.dump(dataclasses.asdict(self), f, indent=2)
    os.replace(staging, path)


@dataclasses.dataclass
class RunRecord:
  """The executions of one pipeline run and the artifacts they output."""
  run_id: str
  states: Dict[str, int]                    # node id -> execution state
  outputs: Dict[str, Dict[str, List[Any]]]  # node id -> output key -> artifacts

  def output(self, node_id: str, key: str):
    artifacts = self.outputs.get(node_id, {}).get(key, [])
    return artifacts[0] if artifacts else None

  @property
  def cached_nodes(self) -> List[str]:
    return [node for node, state in self.states.items() if state == _CACHED]


def latest_run(store: mlmd.MetadataStore, pipeline_name: str,
               since_ms: int = 0) -> Optional[RunRecord]:
  """The newest run of `pipeline_name` that started at or after `since_ms`."""
  runs = [c for c in store.get_contexts_by_type(_RUN_CONTEXT)
          if c.create_time_since_epoch >= since_ms and _run_of_pipeline(
              store, c, pipeline_name)]
  if not runs:
    return None
  run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
  return read_run(store, run)


def _run_of_pipeline(store, run_context, pipeline_name: str) -> bool:
  executions = store.get_executions_by_context(run_context.id)
  if not executions:
    return False
  pipelines = store.get_contexts_by_execution(executions[0].id)
  return any(c.name == pipeline_name for c in pipelines)


def read_run(store: mlmd.MetadataStore, run_context) -> RunRecord:
  """Collects each node's execution state and output artifacts of one run."""
  executions = store.get_executions_by_context(run_context.id)
  node_type = store.get_context_type(_NODE_CONTEXT)
  states, outputs = {}, {}
  for execution in executions:
    node = next(c for c in store.get_contexts_by_execution(execution.id)
                if c.type_id == node_type.id)
    node_id = node.name.split('.', 1)[1]
    states[node_id] = execution.last_known_state
    events = [e for e in store.get_events_by_execution_ids([execution.id])
              if e.type in _OUTPUT_EVENTS]
    artifacts = {a.id: a for a in store.get_artifacts_by_id(
        [e.artifact_id for e in events])}
    for event in events:
      key = event.path.steps[0].key
      outputs.setdefault(node_id, {}).setdefault(key, []).append(
          _to_tfx_artifact(store, artifacts[event.artifact_id]))
  return RunRecord(run_context.name, states, outputs)


def _to_tfx_artifact(store, mlmd_artifact):
  artifact_type = store.get_artifact_types_by_id([mlmd_artifact.type_id])[0]
  return artifact_utils.deserialize_artifact(artifact_type, mlmd_artifact)


def _custom_int(artifact, name: str) -> Optional[int]:
  if artifact is None or not artifact.has_custom_property(name):
    return None
  return artifact.get_int_custom_property(name)


def summarize(run: Optional[RunRecord], label_names: List[str],
              error: Optional[BaseException], progress) -> RunSummary:
  """Builds the RunSummary of `run`, which may have failed with `error`."""
  summary = RunSummary(run_id=run.run_id if run else None, status='failed',
                       component_seconds=dict(progress.seconds),
                       cached_components=run.cached_nodes if run else [])
  if run is None:
    summary.error = str(error) if error else 'The run recorded nothing.'
    return summary

  anomalies_artifact = run.output('ExampleValidator', 'anomalies')
  if anomalies_artifact is not None:
    summary.anomalies = [dataclasses.asdict(a) for a in
                         data_gate.find_anomalies(anomalies_artifact)]
  if error is not None:
    summary.status = 'data_anomalies' if summary.anomalies else 'failed'
    summary.error = str(error)
    return summary

  evaluation = run.output('Evaluator', 'evaluation')
  if evaluation is not None:
    summary.metrics, summary.baseline_metrics = (
        metrics.candidate_and_baseline(evaluation.uri, label_names))
    summary.blessing_failures = metrics.blessing_failures(evaluation.uri)
  summary.blessed = _custom_int(run.output('Evaluator', 'blessing'),
                                'blessed') == 1
  pushed_model = run.output('Pusher', 'pushed_model')
  if _custom_int(pushed_model, 'pushed') == 1:
    summary.pushed_model_dir = pushed_model.get_string_custom_property(
        'pushed_destination')
  elif pushed_model is not None and pushed_model.has_custom_property(
      atomic_pusher.RETIRED_VERSION_PROPERTY):
    summary.retired_version = int(pushed_model.get_string_custom_property(
        atomic_pusher.RETIRED_VERSION_PROPERTY))
  summary.status = ('pushed' if summary.pushed_model_dir else
                    'retired' if summary.retired_version is not None else
                    'not_blessed')
  return summary
