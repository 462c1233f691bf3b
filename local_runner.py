"""Runs repairml's pipeline locally: LocalDagRunner, Beam DirectRunner, SQLite MLMD.

Usage: python local_runner.py [--config configs/local.yaml] [--summary PATH]
(the same as `repairml run`). Prints one line per component, writes the run
summary JSON, and exits with the status's code: 0 pushed, 1 failed,
3 not blessed, 4 data anomalies, 5 retired (2 is an invalid configuration or
usage).
"""

import argparse
import glob
import os
import sys
import time
from typing import List, Optional

from pipeline.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config

USAGE_ERROR = 2


def check_inputs(config: Config) -> None:
  """Fails early, and clearly, when the run's input files are not there."""
  pattern = os.path.join(config.data.root, config.data.pattern)
  if not glob.glob(pattern):
    raise ConfigError(
        f'{config.source_path}: data: no files match {pattern}. Generate the '
        'default data with `repairml data generate` (or `make data`), or set '
        'data.root and data.pattern to your own files.')
  if not os.path.isfile(config.schema):
    raise ConfigError(f'{config.source_path}: schema: no schema file at '
                      f'{config.schema}.')


def run_pipeline(config: Config, summary_path: Optional[str] = None):
  """Runs the whole pipeline; returns its RunSummary (written to summary_path).

  From here on, everything the libraries print goes to the run's log file;
  the terminal gets one progress line per component.
  """
  check_inputs(config)
  # pylint: disable=g-import-not-at-top
  from pipeline import run_provenance
  # pylint: enable=g-import-not-at-top
  # The code and the data the run starts from, and where its log starts:
  # taken before it starts.
  before = (run_provenance.provenance(config),
            run_provenance.data_source(config),
            os.path.getsize(config.paths.log_file)
            if os.path.isfile(config.paths.log_file) else 0)
  # The progress module imports nothing heavy, so the redirection is in place
  # before TensorFlow, Beam and TFX are imported and start printing.
  from pipeline import progress  # pylint: disable=g-import-not-at-top
  with progress.output_to_log_file(config.paths.log_file) as terminal:
    terminal.write(f'log: {config.paths.log_file}\n')
    return _run_and_summarize(config, summary_path, terminal, progress,
                              before)


def _run_and_summarize(config, summary_path, terminal, progress, before):
  # pylint: disable=g-import-not-at-top
  from absl import logging
  import ml_metadata as mlmd
  from tfx.orchestration.local.local_dag_runner import LocalDagRunner
  from pipeline import metadata_store, run_provenance, run_summary
  from pipeline.pipeline import create_pipeline
  # pylint: enable=g-import-not-at-top

  if config.metadata.mysql is None:  # MLMD makes an SQLite file, not its folder
    os.makedirs(os.path.dirname(config.paths.metadata), exist_ok=True)
  connection = metadata_store.connection_config(config)
  tfx_pipeline = create_pipeline(config, metadata_connection_config=connection)
  started_ms = int(time.time() * 1000)
  error = None
  with progress.component_progress(
      terminal, len(tfx_pipeline.components)) as component_progress:
    try:
      LocalDagRunner().run(tfx_pipeline)
    except Exception as e:  # pylint: disable=broad-except
      # Any failure is reported in the summary; its trace is in the log.
      logging.exception('The pipeline run failed.')
      component_progress.fail_current()
      error = e
  store = mlmd.MetadataStore(connection)
  run = run_summary.latest_run(store, config.pipeline_name, since_ms=started_ms)
  summary = run_summary.summarize(run, config.label.vocabulary, error,
                                  component_progress)
  summary.log_file = config.paths.log_file
  if run is not None:
    try:
      sys.stdout.flush()
      sys.stderr.flush()
      code, source, log_start = before
      run_provenance.record(
          store, run.run_id, summary.status,
          {**code, **run_provenance.run_values(
              source, run, config.paths.log_file, log_start, summary)},
          run_provenance.model_artifact_id(run))
    except Exception:  # pylint: disable=broad-except
      # The run's outcome stands; the log says what could not be recorded.
      logging.exception('Could not attach the run\'s provenance to ML '
                        'Metadata.')
  if summary_path:
    summary.write(summary_path)
  return summary


def print_summary(summary, summary_path: Optional[str]) -> None:
  print(f'\nrun {summary.run_id}: {summary.status}')
  if summary.metrics:
    line = (f'  test macro F1 {summary.metrics["macro_f1"]:.4f}, '
            f'micro F1 {summary.metrics["micro_f1"]:.4f}')
    if summary.baseline_metrics:
      line += (f' (baseline macro F1 '
               f'{summary.baseline_metrics["macro_f1"]:.4f})')
    print(line)
    if summary.metrics.get('macro_auc') is not None:
      print(f'  test macro AUC {summary.metrics["macro_auc"]:.4f}, '
            f'macro PR-AUC {summary.metrics["macro_pr_auc"]:.4f}')
  if summary.pushed_model_dir:
    print(f'  pushed to {summary.pushed_model_dir}')
  elif summary.status == 'not_blessed':
    print('  not blessed: the model did not meet the evaluation thresholds; '
          'the last pushed model stays in place.')
    for failure in summary.blessing_failures:
      print(f'    {failure}')
  elif summary.status == 'retired':
    print(f'  not pushed: the model is version {summary.retired_version}, '
          'which `repairml model rollback` retired; the served model stays '
          f'in place (`repairml model restore {summary.retired_version}` '
          'serves it again).')
  if summary.status == 'data_anomalies':
    print(f'  {summary.error}')
  elif summary.error:
    print(f'  error: {summary.error}')
  if summary.status != 'pushed':
    print(f'  full log: {summary.log_file}')
  if summary_path:
    print(f'  summary: {summary_path}')


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog='repairml run', description='Run the repairml pipeline locally.')
  parser.add_argument('--config', default=DEFAULT_CONFIG_PATH,
                      help='run configuration YAML (default: %(default)s)')
  parser.add_argument('--summary', default=None,
                      help='where to write the run summary JSON (default: '
                      'run_summary.json beside the metadata store)')
  args = parser.parse_args(argv)
  try:
    config = load_config(args.config)
    summary_path = args.summary or os.path.join(
        os.path.dirname(config.paths.metadata), 'run_summary.json')
    summary = run_pipeline(config, summary_path)
  except ConfigError as e:
    print(f'repairml: {e}', file=sys.stderr)
    return USAGE_ERROR
  print_summary(summary, summary_path)
  return summary.exit_code


if __name__ == '__main__':
  sys.exit(main())
