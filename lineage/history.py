"""A pipeline's runs, steps and artifacts, as ML Metadata recorded them.

`History` is the one reader of the store that every lineage command and the
web UI go through. It only reads. It knows three things about how TFX
records a run, and nothing about path layouts:
- a run is a `pipeline_run` context; its executions are the run's steps;
- each execution is also in a `node` context named `<pipeline>.<node id>`;
- events tie executions to the artifacts they read (INPUT) and wrote
  (OUTPUT), under the component's input and output keys.
A cached step is an execution in state CACHED whose outputs are the
artifacts of the run that computed them.
"""

import dataclasses
import json
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ml_metadata.proto import metadata_store_pb2

from pipeline import run_provenance

RUN_CONTEXT = 'pipeline_run'
NODE_CONTEXT = 'node'
LATEST = 'latest'
_INPUT_EVENTS = (metadata_store_pb2.Event.INPUT,
                 metadata_store_pb2.Event.DECLARED_INPUT)
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT,
                  metadata_store_pb2.Event.DECLARED_OUTPUT)
_STATE_NAMES = {value: name.lower() for name, value in
                metadata_store_pb2.Execution.State.items()}


class NotFound(LookupError):
  """Asked for a run, a model or an artifact the store does not have."""


def _value(value: metadata_store_pb2.Value) -> Any:
  kind = value.WhichOneof('value')
  return getattr(value, kind) if kind else None


def _properties(message) -> Dict[str, Any]:
  """Properties and custom properties, without TFX's internal `__` ones."""
  values = {name: _value(v) for name, v in message.properties.items()}
  values.update({name: _value(v)
                 for name, v in message.custom_properties.items()
                 if not name.startswith('__')})
  return values


@dataclasses.dataclass
class Artifact:
  """One artifact: its type, where it is, and what TFX and repairml said."""
  id: int
  type: str
  uri: str
  state: str
  created_ms: int
  properties: Dict[str, Any]

  def json_property(self, name: str, default: Any = None) -> Any:
    value = self.properties.get(name)
    return json.loads(value) if value else default

  def to_json(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass
class Step:
  """One component's execution in one run."""
  node_id: str
  execution_id: int
  state: str                     # complete, cached, failed, running, ...
  started_ms: int
  finished_ms: int
  inputs: Dict[str, List[int]]   # input key -> artifact ids
  outputs: Dict[str, List[int]]  # output key -> artifact ids
  properties: Dict[str, Any]     # the execution properties TFX recorded
  error: str = ''                # what TFX recorded of a failure

  @property
  def cached(self) -> bool:
    return self.state == 'cached'

  @property
  def seconds(self) -> float:
    return max(0, self.finished_ms - self.started_ms) / 1000

  def output(self, key: str) -> Optional[int]:
    ids = self.outputs.get(key, [])
    return ids[0] if ids else None

  def input(self, key: str) -> Optional[int]:
    ids = self.inputs.get(key, [])
    return ids[0] if ids else None

  def to_json(self) -> Dict[str, Any]:
    return {**dataclasses.asdict(self), 'cached': self.cached,
            'seconds': self.seconds}


@dataclasses.dataclass
class Run:
  """One pipeline run: its steps in the order they ran, and what repairml
  recorded about it (pipeline/run_provenance.py)."""
  run_id: str
  context_id: int
  started_ms: int
  finished_ms: int
  steps: Dict[str, Step]
  recorded: Dict[str, Any]

  @property
  def status(self) -> str:
    """The recorded outcome; for a run that recorded none (still running,
    or killed), what its steps say."""
    status = self.recorded.get(run_provenance.STATUS)
    if status:
      return status
    states = {step.state for step in self.steps.values()}
    if 'failed' in states:
      return 'failed'
    return 'running' if states & {'new', 'running'} else 'unknown'

  @property
  def seconds(self) -> float:
    return max(0, self.finished_ms - self.started_ms) / 1000

  @property
  def config(self) -> Dict[str, Any]:
    return run_provenance.read_json(self.recorded, run_provenance.PREFIX +
                                    'config', {})

  def step(self, node_id: str) -> Optional[Step]:
    return self.steps.get(node_id)

  def output(self, node_id: str, key: str) -> Optional[int]:
    step = self.steps.get(node_id)
    return step.output(key) if step else None

  @property
  def example_gen(self) -> Optional[Step]:
    """The step that made the run's examples (FileBasedExampleGen locally,
    BigQueryExampleGen on Vertex AI)."""
    return next((s for s in self.steps.values()
                 if s.node_id.endswith('ExampleGen')), None)

  @property
  def failed_step(self) -> Optional[Step]:
    return next((s for s in self.steps.values() if s.state == 'failed'), None)


class History:
  """The runs of one pipeline in one ML Metadata store. Read-only."""

  def __init__(self, store, pipeline_name: str):
    self.store = store
    self.pipeline_name = pipeline_name
    self._node_of: Optional[Dict[int, str]] = None
    self._types: Dict[int, str] = {}
    self._runs: Optional[List[Run]] = None
    self._step_of: Optional[Dict[int, Tuple[str, Step]]] = None

  # Runs ------------------------------------------------------------------

  def _nodes(self) -> Dict[int, str]:
    """execution id -> node id, for this pipeline's executions."""
    if self._node_of is None:
      prefix = self.pipeline_name + '.'
      self._node_of = {}
      for node in self.store.get_contexts_by_type(NODE_CONTEXT):
        if node.name.startswith(prefix):
          for execution in self.store.get_executions_by_context(node.id):
            self._node_of[execution.id] = node.name[len(prefix):]
    return self._node_of

  def runs(self) -> List[Run]:
    """Every run of the pipeline, newest first."""
    if self._runs is None:
      nodes = self._nodes()
      runs = []
      for context in self.store.get_contexts_by_type(RUN_CONTEXT):
        executions = [e for e in self.store.get_executions_by_context(
            context.id) if e.id in nodes]
        if executions:
          runs.append(self._run(context, executions))
      self._runs = sorted(runs, key=lambda r: (r.started_ms, r.context_id),
                          reverse=True)
    return self._runs

  def _run(self, context, executions) -> Run:
    nodes = self._nodes()
    events = self.store.get_events_by_execution_ids([e.id for e in executions])
    keyed: Dict[int, Tuple[Dict, Dict]] = {e.id: ({}, {}) for e in executions}
    for event in events:
      inputs, outputs = keyed[event.execution_id]
      side = (inputs if event.type in _INPUT_EVENTS else
              outputs if event.type in _OUTPUT_EVENTS else None)
      if side is not None and event.path.steps:
        side.setdefault(event.path.steps[0].key, []).append(event.artifact_id)
    steps = {}
    for execution in sorted(executions, key=lambda e: (
        e.create_time_since_epoch, e.id)):
      inputs, outputs = keyed[execution.id]
      steps[nodes[execution.id]] = Step(
          node_id=nodes[execution.id], execution_id=execution.id,
          state=_STATE_NAMES.get(execution.last_known_state, 'unknown'),
          started_ms=execution.create_time_since_epoch,
          finished_ms=execution.last_update_time_since_epoch,
          inputs=inputs, outputs=outputs,
          properties=_properties(execution), error=_failure(execution))
    return Run(
        run_id=context.name, context_id=context.id,
        started_ms=min(s.started_ms for s in steps.values()),
        finished_ms=max(s.finished_ms for s in steps.values()),
        steps=steps, recorded=run_provenance.read(context.custom_properties))

  def run(self, run_id: str) -> Run:
    """The run named `run_id`; 'latest' is the newest, 'latest~N' the one
    N runs before it."""
    runs = self.runs()
    if not runs:
      raise NotFound(f'no runs of pipeline {self.pipeline_name!r} in the '
                     'store yet: run the pipeline first (`repairml run`).')
    if run_id == LATEST:
      return runs[0]
    back = run_id[len(LATEST) + 1:] if run_id.startswith(LATEST + '~') else ''
    if back.isdigit():
      if int(back) >= len(runs):
        raise NotFound(f'{run_id}: the store holds only {len(runs)} runs of '
                       f'pipeline {self.pipeline_name!r}.')
      return runs[int(back)]
    for run in runs:
      if run.run_id == run_id:
        return run
    raise NotFound(f'no run {run_id!r} of pipeline {self.pipeline_name!r}; '
                   '`repairml runs` lists them.')

  def previous_run(self, run: Run) -> Optional[Run]:
    """The run that started before `run`, if any."""
    runs = self.runs()
    index = next(i for i, r in enumerate(runs) if r.run_id == run.run_id)
    return runs[index + 1] if index + 1 < len(runs) else None

  # Artifacts -------------------------------------------------------------

  def _type_name(self, type_id: int) -> str:
    if type_id not in self._types:
      (artifact_type,) = self.store.get_artifact_types_by_id([type_id])
      self._types[type_id] = artifact_type.name
    return self._types[type_id]

  def artifacts(self, ids: Iterable[int]) -> List[Artifact]:
    ids = list(ids)
    found = {a.id: a for a in self.store.get_artifacts_by_id(ids)} if ids else {}
    return [Artifact(
        id=a.id, type=self._type_name(a.type_id), uri=a.uri,
        state=metadata_store_pb2.Artifact.State.Name(a.state).lower(),
        created_ms=a.create_time_since_epoch, properties=_properties(a))
            for a in (found[i] for i in ids if i in found)]

  def artifact(self, artifact_id: Optional[int]) -> Optional[Artifact]:
    if artifact_id is None:
      return None
    found = self.artifacts([artifact_id])
    return found[0] if found else None

  def tfx_artifact(self, artifact_id: int):
    """The artifact as a TFX Artifact, for TFX's readers (split URIs)."""
    from tfx.types import artifact_utils  # pylint: disable=g-import-not-at-top
    (artifact,) = self.store.get_artifacts_by_id([artifact_id])
    (artifact_type,) = self.store.get_artifact_types_by_id([artifact.type_id])
    return artifact_utils.deserialize_artifact(artifact_type, artifact)

  def _steps(self) -> Dict[int, Tuple[str, Step]]:
    """execution id -> (run id, step), for every run of the pipeline."""
    if self._step_of is None:
      self._step_of = {step.execution_id: (run.run_id, step)
                       for run in self.runs() for step in run.steps.values()}
    return self._step_of

  def neighbours(self, artifact_id: int) -> Dict[str, List[Dict[str, Any]]]:
    """The executions that wrote and read `artifact_id`: {'producers':
    [...], 'consumers': [...]}, each {execution_id, node_id, state, run_id}."""
    step_of = self._steps()
    found = {'producers': [], 'consumers': []}
    for event in self.store.get_events_by_artifact_ids([artifact_id]):
      if event.execution_id not in step_of:   # another pipeline's
        continue
      run_id, step = step_of[event.execution_id]
      side = ('producers' if event.type in _OUTPUT_EVENTS else
              'consumers' if event.type in _INPUT_EVENTS else None)
      if side:
        found[side].append({'execution_id': event.execution_id,
                            'node_id': step.node_id, 'state': step.state,
                            'run_id': run_id, 'step': step})
    return found

  def producer(self, artifact_id: int) -> Optional[Tuple[str, Step]]:
    """(run id, step) of the execution that computed `artifact_id`: not a
    cached step that only handed it on."""
    computed = _computing(self.neighbours(artifact_id)['producers'])
    if not computed:
      return None
    first = min(computed, key=lambda p: p['execution_id'])
    return first['run_id'], first['step']

  def lineage(self, artifact_id: int, hops: int = 3) -> Dict[str, Any]:
    """The artifacts upstream and downstream of `artifact_id`, up to `hops`
    executions away: {'upstream': [...], 'downstream': [...]}, each entry
    {hop, node_id, run_id, execution_id, artifacts: [Artifact]}."""
    return {'upstream': self._walk(artifact_id, hops, 'producers', 'inputs'),
            'downstream': self._walk(artifact_id, hops, 'consumers',
                                     'outputs')}

  def _walk(self, start: int, hops: int, side: str, key: str):
    seen_artifacts, seen_executions, found = {start}, set(), []
    frontier = [start]
    for hop in range(1, hops + 1):
      following = []
      for artifact_id in frontier:
        executions = self.neighbours(artifact_id)[side]
        if side == 'producers':   # the computation, not the cache hits
          executions = _computing(executions)
        for entry in executions:
          if entry['execution_id'] in seen_executions:
            continue
          seen_executions.add(entry['execution_id'])
          ids = [i for ids in getattr(entry['step'], key).values() for i in ids
                 if i not in seen_artifacts]
          seen_artifacts.update(ids)
          following += ids
          found.append({'hop': hop, 'node_id': entry['node_id'],
                        'run_id': entry['run_id'],
                        'execution_id': entry['execution_id'],
                        'state': entry['state'],
                        'artifacts': self.artifacts(ids)})
      frontier = following
    return found


def _computing(producers: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """The producers that computed an artifact, not the cached steps that
  handed it on; all of them if every one was a cache hit."""
  return [p for p in producers if p['state'] != 'cached'] or producers


def _failure(execution) -> str:
  """The message TFX recorded when an execution failed, if any."""
  value = execution.custom_properties.get('__execution_result__')
  if value is None or not value.string_value:
    return ''
  try:
    return json.loads(value.string_value).get('resultMessage', '')
  except ValueError:
    return value.string_value
