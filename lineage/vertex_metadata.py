"""`repairml runs --vertex` and `repairml lineage --vertex`: the same
questions, answered by Vertex AI Pipelines and Vertex ML Metadata.

A pipeline run on Vertex AI is a PipelineJob. What the local store records
as run contexts, executions and events, Vertex records on the job:
- `job.labels`: the commit, branch and dirty flag (`repairml submit` sets
  them, pipeline/production/submission.py);
- `job.runtime_config.parameter_values`: the run's car model and date range;
- `job.task_details`: one entry per step, with its state (SKIPPED means
  served from Vertex's cache), its execution (whose metadata holds the
  step's parameters as `input:NAME`: the BigQuery queries of the ExampleGen
  among them) and its output artifacts, each with its URI and metadata (the
  custom properties TFX set: `blessed`, `pushed`, `pushed_destination`...).

By hand, the same answers come from the Vertex AI SDK:

  from google.cloud import aiplatform
  aiplatform.init(project=PROJECT, location=REGION)
  jobs = aiplatform.PipelineJob.list(filter='pipeline_name="repairml"')
  job = jobs[0]; job.labels; job.task_details
  aiplatform.Artifact(ARTIFACT_RESOURCE_NAME).lineage_subgraph  # upstream

The test metrics live in the Evaluator's files on Cloud Storage, which these
commands do not read: `--vertex` shows the blessing outcome instead.
"""

import json
from typing import Any, Dict, List, Optional, Tuple

from pipeline.config import Config, ConfigError

SKIPPED = 'SKIPPED'
PARAMETER_PREFIX = 'input:'


class VertexError(Exception):
  """Vertex AI could not answer; the message says what to check."""


def _check(config: Config) -> None:
  if config.vertex is None:
    raise ConfigError(f'{config.source_path}: --vertex reads the Vertex AI '
                      'project of the vertex section, which this '
                      'configuration has none of; pass --config '
                      'configs/vertex.yaml.')


def list_jobs(config: Config, credentials=None):
  """The pipeline's jobs on Vertex AI, newest first."""
  # pylint: disable=g-import-not-at-top
  from google.api_core import exceptions as api_exceptions
  from google.auth import exceptions as auth_exceptions
  from google.cloud import aiplatform
  # pylint: enable=g-import-not-at-top
  _check(config)
  try:
    jobs = aiplatform.PipelineJob.list(
        filter=f'pipeline_name="{config.pipeline_name}"',
        project=config.vertex.project, location=config.vertex.region,
        credentials=credentials)
  except (api_exceptions.GoogleAPICallError, api_exceptions.RetryError,
          auth_exceptions.GoogleAuthError) as e:
    raise VertexError(
        f'cannot list the pipeline jobs of {config.pipeline_name!r} in '
        f'project {config.vertex.project}, region {config.vertex.region}: '
        f'{getattr(e, "message", e)}. Check `gcloud auth application-default '
        'login` and that your account may read Vertex AI Pipelines.') from e
  return sorted(jobs, key=lambda job: job.gca_resource.create_time,
                reverse=True)


def _tasks(job) -> Dict[str, Any]:
  """The job's steps by name, from the job as fetched (the SDK's
  `task_details` and `state` would fetch it again on every access)."""
  return {task.task_name: task for task in
          job.gca_resource.job_detail.task_details
          if task.task_name and task.task_name != job.name}


def with_details(job, credentials=None):
  """The job with its steps: a list may leave them out, a get has them."""
  from google.cloud import aiplatform  # pylint: disable=g-import-not-at-top
  if job.gca_resource.job_detail.task_details:
    return job
  return aiplatform.PipelineJob.get(job.resource_name,
                                    credentials=credentials)


def _artifact_metadata(task, key: str) -> Dict[str, Any]:
  outputs = task.outputs.get(key) if task is not None else None
  if not outputs or not outputs.artifacts:
    return {}
  artifact = outputs.artifacts[0]
  return {'uri': artifact.uri, 'name': artifact.name,
          **_plain(artifact).get('metadata', {})}


def _plain(message) -> Dict[str, Any]:
  """A proto-plus message as plain JSON values (Struct fields included)."""
  return type(message).to_dict(message)


def _state(value) -> str:
  return getattr(value, 'name', str(value))


def status(job) -> str:
  """pushed, not_blessed, data_anomalies, failed or the job's own state."""
  tasks = _tasks(job)
  state = _state(job.gca_resource.state).replace('PIPELINE_STATE_', '')
  if state == 'FAILED':
    gate = tasks.get('DataGate')
    return ('data_anomalies' if gate is not None and _state(gate.state) ==
            'FAILED' else 'failed')
  if state != 'SUCCEEDED':
    return state.lower()
  pushed = _artifact_metadata(tasks.get('Pusher'), 'pushed_model')
  if pushed.get('pushed') == 1:
    return 'pushed'
  blessing = _artifact_metadata(tasks.get('Evaluator'), 'blessing')
  return 'not_blessed' if blessing.get('blessed') == 0 else 'not_pushed'


def _ms(timestamp) -> Optional[int]:
  return int(timestamp.timestamp() * 1000) if timestamp else None


def run_row(job) -> Dict[str, Any]:
  tasks = _tasks(job)
  started, ended = _ms(job.create_time), _ms(job.gca_resource.end_time)
  pushed = _artifact_metadata(tasks.get('Pusher'), 'pushed_model')
  from lineage.overview import iso_time  # pylint: disable=g-import-not-at-top
  return {
      'run_id': job.name, 'resource_name': job.resource_name,
      'started': iso_time(started) if started else '-',
      'started_ms': started,
      'seconds': round((ended - started) / 1000, 1) if started and ended
                 else None,
      'status': status(job),
      'macro_f1': None, 'baseline_macro_f1': None,
      'ran': sorted(n for n, t in tasks.items() if _state(t.state) != SKIPPED),
      'cached': sorted(n for n, t in tasks.items()
                       if _state(t.state) == SKIPPED),
      'pushed_version': pushed.get('pushed_version') if pushed.get(
          'pushed') == 1 else None,
      'labels': dict(job.labels),
  }


def _parameters(task) -> Dict[str, Any]:
  metadata = _plain(task.execution).get('metadata', {}) if (
      task is not None and task.execution) else {}
  return {k[len(PARAMETER_PREFIX):]: v for k, v in metadata.items()
          if k.startswith(PARAMETER_PREFIX)}


def _queries(task) -> List[Dict[str, str]]:
  config = _parameters(task).get('input_config')
  try:
    return [{'split': s.get('name'), 'query': s.get('pattern')}
            for s in json.loads(config).get('splits', [])] if config else []
  except ValueError:
    return []


def card(job) -> Dict[str, Any]:
  """The provenance card of one job, as Vertex recorded it."""
  tasks = _tasks(job)
  example_gen = next((t for n, t in tasks.items() if 'ExampleGen' in n), None)
  labels = dict(job.labels)
  parameters = dict(job.gca_resource.runtime_config.parameter_values.items())
  return {
      'run': run_row(job),
      'data': {'source': {'format': 'bigquery', 'runtime_parameters':
                          parameters, 'queries': _queries(example_gen)},
               'statistics': _artifact_metadata(tasks.get('StatisticsGen'),
                                                'statistics')},
      'schema': _artifact_metadata(tasks.get('CuratedSchema'), 'schema'),
      'transform_graph': _artifact_metadata(tasks.get('Transform'),
                                            'transform_graph'),
      'hyperparameters': _artifact_metadata(tasks.get('Tuner'),
                                            'best_hyperparameters'),
      'training': {'git_commit': labels.get('git-commit'),
                   'git_dirty': labels.get('git-dirty') == 'true',
                   'git_branch': labels.get('git-branch'),
                   'config_sha256': labels.get('config-sha256'),
                   'lock_sha256': labels.get('lock-sha256')},
      'model': _artifact_metadata(tasks.get('Trainer'), 'model'),
      'evaluation': _artifact_metadata(tasks.get('Evaluator'), 'evaluation'),
      'blessing': _artifact_metadata(tasks.get('Evaluator'), 'blessing'),
      'push': _artifact_metadata(tasks.get('Pusher'), 'pushed_model'),
  }


def _find(jobs, name: str):
  if name == 'latest':
    if not jobs:
      raise VertexError('no pipeline jobs on Vertex AI yet: `repairml '
                        'submit` starts one.')
    return jobs[0]
  for job in jobs:
    if name in (job.name, job.resource_name):
      return job
  raise VertexError(f'no pipeline job {name!r} on Vertex AI; `repairml runs '
                    '--vertex` lists them.')


def card_text(found: Dict[str, Any]) -> str:
  run, training, data = found['run'], found['training'], found['data']
  lines = [f'pipeline job  {run["resource_name"]} ({run["status"]})',
           f'started       {run["started"]}, {run["seconds"]} s',
           '', 'data          BigQuery, runtime parameters ' +
           json.dumps(data['source']['runtime_parameters'], sort_keys=True)]
  lines += [f'  {q["split"]}: {q["query"]}' for q in data['source']['queries']]
  for title, key in (('statistics', None), ('schema', 'schema'),
                     ('transform graph', 'transform_graph'),
                     ('hyperparameters', 'hyperparameters'),
                     ('model', 'model'), ('evaluation', 'evaluation')):
    artifact = data['statistics'] if key is None else found[key]
    lines.append(f'{title:<14}{artifact.get("uri", "-")}')
  lines += ['', f'training      commit {training["git_commit"] or "-"}'
            + (' (dirty)' if training['git_dirty'] else '') +
            f', branch {training["git_branch"] or "-"}',
            f'              config sha256 {training["config_sha256"] or "-"}, '
            f'lock sha256 {training["lock_sha256"] or "-"}']
  blessing = found['blessing']
  lines.append('blessing      ' + ('-' if not blessing else 'blessed' if
                                   blessing.get('blessed') == 1 else
                                   'not blessed'))
  push = found['push']
  lines.append('push          ' + (f'{push.get("pushed_destination")}' if
                                   push.get('pushed') == 1 else 'not pushed'))
  return '\n'.join(lines)


def answer(command: str, args, config: Config) -> Tuple[str, Any, int]:
  """(text, JSON-able value, exit code) of runs or lineage, on Vertex."""
  from lineage import text  # pylint: disable=g-import-not-at-top
  jobs = list_jobs(config)
  if command == 'runs':
    rows = [run_row(with_details(job)) for job in
            (jobs[:args.limit] if args.limit else jobs)]
    return text.runs_text(rows), rows, 0
  found = card(with_details(_find(jobs, args.model)))
  return card_text(found), found, 0
