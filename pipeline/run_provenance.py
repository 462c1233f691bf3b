"""What ML Metadata does not record by itself, attached to every run.

TFX records executions, artifacts and their lineage, but not the code, the
configuration or the environment that produced them. After each run this
module attaches them, as custom properties, to the run's `pipeline_run`
context and to the model the Trainer made, so that a model can be explained
and reproduced from the store alone:

  repairml_git_commit     the commit of the checkout that ran (or '' outside
                          a git checkout)
  repairml_git_dirty      1 if the work tree had uncommitted changes
  repairml_config         the resolved configuration, as JSON
  repairml_config_sha256  its hash (the same configuration, the same hash)
  repairml_lock_sha256    the hash of requirements.lock
  repairml_packages       JSON {package: version} of TFX, TF, TFT, TFMA,
                          TFDV and Beam
  repairml_data_source    JSON: the source's format and, for files, the root,
                          the pattern, the spans (top folders) and the number
                          of files it matched, and for spans that
                          `repairml collect` wrote their date, content
                          fingerprint and claim completeness (its
                          manifest); for BigQuery, the table and the
                          filter's values
  repairml_rows           JSON {split: rows}, from StatisticsGen's statistics
  repairml_status         the run only: pushed, not_blessed, data_anomalies,
                          retired or failed
  repairml_log            the run only: JSON {path, start, end}, the byte
                          range of the log file the run wrote
  repairml_metrics        the run only: JSON {macro_f1, baseline_macro_f1},
                          its test macro F1 and its baseline's, as its
                          evaluation artifact holds them

It writes to the store only these properties, after the run; nothing reads
them back to decide anything (they are not part of any cache key).
"""

import glob
import hashlib
import importlib.metadata
import json
import os
import subprocess
from typing import Any, Dict, List, Optional

from pipeline.config import Config

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK_FILE = os.path.join(PROJECT_ROOT, 'requirements.lock')
PACKAGES = ('tfx', 'tensorflow', 'tensorflow-transform',
            'tensorflow-model-analysis', 'tensorflow-data-validation',
            'apache-beam')
PREFIX = 'repairml_'
STATUS = PREFIX + 'status'
DATA_SOURCE = PREFIX + 'data_source'
ROWS = PREFIX + 'rows'
LOG = PREFIX + 'log'
METRICS = PREFIX + 'metrics'
# The values that describe the run, not the model it trained or reused.
RUN_ONLY = (STATUS, LOG, METRICS)
STATISTICS_FILE = 'FeatureStats.pb'
RUN_CONTEXT = 'pipeline_run'
TRAINER = 'Trainer'


def provenance(config: Config, root: str = PROJECT_ROOT,
               lock_file: str = LOCK_FILE) -> Dict[str, Any]:
  """The code, configuration and environment of a run, as property values."""
  # The file it was read from is not part of the configuration.
  config_json = json.dumps(
      config.model_dump(mode='json', exclude={'source_path'}), sort_keys=True)
  checkout = provenance_of_checkout(root, lock_file)
  return {
      PREFIX + 'git_commit': checkout['commit'],
      PREFIX + 'git_dirty': int(checkout['dirty']),
      PREFIX + 'config': config_json,
      PREFIX + 'config_sha256': _sha256(config_json.encode()),
      PREFIX + 'lock_sha256': checkout['lock_sha256'],
      PREFIX + 'packages': json.dumps(package_versions(), sort_keys=True),
  }


def provenance_of_checkout(root: str = PROJECT_ROOT,
                           lock_file: str = LOCK_FILE) -> Dict[str, Any]:
  """The commit, dirty flag and lock hash of the code at `root` now."""
  commit, dirty = _git_state(root)
  return {'commit': commit, 'dirty': dirty,
          'lock_sha256': (_file_sha256(lock_file)
                          if os.path.isfile(lock_file) else '')}


def data_source(config: Config) -> Dict[str, Any]:
  """What the run read: for files, the spans (the pattern's top folders,
  such as span-3) and the files it matched now, before the run starts."""
  data = config.data
  if data.format == 'bigquery':
    return {'format': data.format, 'table': data.table,
            'car_model': data.car_model, 'date_from': data.date_from,
            'date_to': data.date_to, 'sample_fraction': data.sample_fraction}
  root = os.path.abspath(data.root)
  files = sorted(glob.glob(os.path.join(root, data.pattern)))
  spans = sorted({os.path.relpath(path, root).split(os.sep)[0]
                  for path in files if os.sep in os.path.relpath(path, root)})
  source = {'format': data.format, 'root': root, 'pattern': data.pattern,
             'spans': spans, 'files': len(files),
             'sample_fraction': data.sample_fraction}
  collected = _collected_spans(root, spans)
  if collected:
    source['collected'] = collected
  return source


def _collected_spans(root: str, spans: List[str]) -> Dict[str, Any]:
  """{span folder: its date, content fingerprint and claim completeness},
  from the manifest of `repairml collect` (collection/spans.py), if any."""
  manifest_path = os.path.join(root, 'manifest.json')
  if not os.path.isfile(manifest_path):
    return {}
  try:
    with open(manifest_path, encoding='utf-8') as f:
      manifest = json.load(f)
    entries = {entry['file'].split('/')[0]: entry
               for entry in manifest.get('spans', {}).values()}
  except (OSError, ValueError, KeyError, AttributeError):
    return {}
  return {span: {name: entries[span].get(name) for name in
                 ('date', 'content_fingerprint', 'claims_complete')}
          for span in spans if span in entries}


def rows_per_split(statistics) -> Dict[str, int]:
  """{split: number of examples}, read from a statistics artifact."""
  # pylint: disable=g-import-not-at-top
  import tensorflow_data_validation as tfdv
  from tfx.types import artifact_utils
  # pylint: enable=g-import-not-at-top
  rows = {}
  for split in artifact_utils.decode_split_names(statistics.split_names):
    path = os.path.join(artifact_utils.get_split_uri([statistics], split),
                        STATISTICS_FILE)
    if os.path.isfile(path):
      rows[split] = sum(d.num_examples for d in
                        tfdv.load_stats_binary(path).datasets)
  return rows


def run_values(source: Dict[str, Any], run, log_file: str, log_start: int,
               summary=None) -> Dict[str, Any]:
  """The data source, the rows of the run's statistics, its log range and
  (from its RunSummary) its test macro F1 and the baseline's."""
  statistics = run.output('StatisticsGen', 'statistics') if run else None
  rows = rows_per_split(statistics) if statistics is not None else {}
  log_end = os.path.getsize(log_file) if os.path.isfile(log_file) else 0
  candidate = (summary.metrics or {}) if summary else {}
  baseline = (summary.baseline_metrics or {}) if summary else {}
  return {
      METRICS: json.dumps({'macro_f1': candidate.get('macro_f1'),
                           'baseline_macro_f1': baseline.get('macro_f1')}),
      DATA_SOURCE: json.dumps(source, sort_keys=True),
      ROWS: json.dumps(rows, sort_keys=True),
      LOG: json.dumps({'path': os.path.abspath(log_file), 'start': log_start,
                       'end': log_end}),
  }


def package_versions() -> Dict[str, str]:
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = ''
  return versions


def _git_state(root: str):
  """(commit, dirty) of the checkout at `root`; ('', False) outside one."""
  def git(*args: str) -> Optional[str]:
    try:
      return subprocess.run(['git', *args], cwd=root, check=True,
                            capture_output=True, text=True,
                            timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
      return None
  commit = git('rev-parse', 'HEAD')
  if commit is None:
    return '', False
  status = git('status', '--porcelain', '--untracked-files=no')
  return commit.strip(), bool(status and status.strip())


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _file_sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return _sha256(f.read())


def record(store, run_id: str, status: str, values: Dict[str, Any],
           model_artifact_id: Optional[int] = None) -> None:
  """Attaches `values` and the status to the run's context, and `values` to
  the model artifact if there is one and it has none yet: a model the
  Trainer's cache handed to this run keeps the provenance of the run that
  trained it."""
  context = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
  if context is None:
    return          # the run never started: nothing to attach to
  _set(context.custom_properties, {**values, STATUS: status})
  store.put_contexts([context])
  if model_artifact_id is not None:
    (artifact,) = store.get_artifacts_by_id([model_artifact_id])
    if read(artifact.custom_properties):
      return        # a model from the cache keeps the run that made it
    _set(artifact.custom_properties,
         {k: v for k, v in values.items() if k not in RUN_ONLY})
    store.put_artifacts([artifact])


def read(properties) -> Dict[str, Any]:
  """The values this module attached, from a context's or an artifact's
  custom properties."""
  return {name: getattr(value, value.WhichOneof('value'))
          for name, value in properties.items()
          if name.startswith(PREFIX)}


def read_json(values: Dict[str, Any], name: str, default: Any = None) -> Any:
  """One of the JSON values `read` returned, decoded; `default` if absent."""
  return json.loads(values[name]) if values.get(name) else default


def _set(properties, values: Dict[str, Any]) -> None:
  for name, value in values.items():
    if isinstance(value, int):
      properties[name].int_value = value
    else:
      properties[name].string_value = str(value)


def model_artifact_id(run) -> Optional[int]:
  """The id of the model the run's Trainer output (a RunRecord), or None."""
  model = run.output(TRAINER, 'model') if run else None
  return model.id if model is not None else None

