"""End to end: the real local pipeline on a small generated data set.

One workspace (conftest.py) runs the pipeline several times, as a user would:
a first run that pushes, an identical rerun served from TFX's cache, a run on
corrupted data that the gate stops, and a run with a deliberately weakened
model that must not replace the pushed one.
"""

import json
import os

import pyarrow
import pytest
import tensorflow as tf
from pipeline_runs import ALL_COMPONENTS, versions, write_config

import local_runner
from data.generator import generate_sessions
from models import export
from pipeline.components.example_gen import row_to_example
from pipeline.config import load_config

pytestmark = pytest.mark.slow

def test_first_run_pushes_a_model_that_loads_and_predicts(first_run, workspace):
  config, summary, summary_path = first_run
  assert summary.status == 'pushed', summary.error
  assert summary.exit_code == 0
  assert summary.blessed is True
  assert summary.anomalies == []
  assert set(summary.component_seconds) == ALL_COMPONENTS
  assert summary.cached_components == []
  assert summary.baseline_metrics is None
  metrics = summary.metrics
  assert 0.0 < metrics['macro_f1'] <= 1.0
  assert 0.0 < metrics['micro_f1'] <= 1.0
  assert 0.5 < metrics['macro_auc'] <= 1.0
  assert 0.0 < metrics['macro_pr_auc'] <= 1.0
  assert set(metrics['per_label']) == set(config.label.vocabulary)
  assert {'f1', 'precision', 'recall', 'auc', 'pr_auc'} <= set(
      metrics['per_label'][config.label.vocabulary[0]])
  assert summary.blessing_failures == []

  with open(summary_path, encoding='utf-8') as f:
    written = json.load(f)
  for key in ('run_id', 'status', 'blessed', 'pushed_model_dir', 'anomalies',
              'metrics', 'baseline_metrics', 'component_seconds',
              'cached_components'):
    assert key in written
  assert written['status'] == 'pushed'

  (version,) = versions(config.paths.serving_dir)
  assert summary.pushed_model_dir == os.path.join(config.paths.serving_dir,
                                                  version)
  model = tf.saved_model.load(summary.pushed_model_dir)
  sessions = generate_sessions(4, seed=99).drop(
      columns=['repair_labels', 'session_date', 'span'])
  outputs = model.signatures['serving_default'](
      examples=tf.constant([
          row_to_example(row).SerializeToString() for row in
          pyarrow.Table.from_pandas(sessions, preserve_index=False).to_pylist()
      ]))
  probabilities = outputs['probabilities'].numpy()
  assert probabilities.shape == (4, config.num_labels)
  assert ((probabilities >= 0) & (probabilities <= 1)).all()
  # The served decision applies the thresholds chosen on the eval split.
  thresholds = export.load_thresholds(summary.pushed_model_dir)
  assert len(thresholds) == config.num_labels
  assert thresholds != [0.5] * config.num_labels
  assert (outputs['recommended'].numpy() == (
      probabilities >= thresholds)).all()
  assert export.load_label_names(summary.pushed_model_dir) == list(
      config.label.vocabulary)


def test_metadata_records_an_execution_for_every_component(first_run):
  import ml_metadata as mlmd  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import metadata  # pylint: disable=g-import-not-at-top
  from pipeline import run_summary  # pylint: disable=g-import-not-at-top
  config, summary, _ = first_run
  store = mlmd.MetadataStore(
      metadata.sqlite_metadata_connection_config(config.paths.metadata))
  run = run_summary.read_run(store, store.get_context_by_type_and_name(
      'pipeline_run', summary.run_id))
  assert set(run.states) == ALL_COMPONENTS
  assert set(run.states.values()) == {metadata_store_pb2.Execution.COMPLETE}


def test_the_run_and_its_model_record_code_configuration_and_outcome(
    first_run):
  import ml_metadata as mlmd  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import metadata  # pylint: disable=g-import-not-at-top
  from pipeline import run_provenance, run_summary  # pylint: disable=g-import-not-at-top
  config, summary, _ = first_run
  store = mlmd.MetadataStore(
      metadata.sqlite_metadata_connection_config(config.paths.metadata))
  context = store.get_context_by_type_and_name('pipeline_run', summary.run_id)
  (model,) = store.get_artifacts_by_id([run_provenance.model_artifact_id(
      run_summary.read_run(store, context))])

  on_run = run_provenance.read(context.custom_properties)
  on_model = run_provenance.read(model.custom_properties)
  expected = run_provenance.provenance(config)
  assert on_run['repairml_status'] == 'pushed'
  assert on_run['repairml_config_sha256'] == expected['repairml_config_sha256']
  assert on_run['repairml_git_commit'] == expected['repairml_git_commit']
  assert on_run['repairml_lock_sha256'] == expected['repairml_lock_sha256']
  source = json.loads(on_run['repairml_data_source'])
  assert source['spans'] == ['span-0', 'span-1']
  assert source['files'] == 2 and source['pattern'] == config.data.pattern
  rows = json.loads(on_run['repairml_rows'])
  assert set(rows) == {'train', 'eval', 'test'}
  assert sum(rows.values()) == 3000
  assert json.loads(on_run['repairml_metrics'])['macro_f1'] == pytest.approx(
      summary.metrics['macro_f1'])
  assert {k: v for k, v in on_run.items()
          if k not in run_provenance.RUN_ONLY} == on_model


def _blessing(config, summary):
  """The Evaluator's blessing artifact in the run of `summary`."""
  import ml_metadata as mlmd  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import metadata  # pylint: disable=g-import-not-at-top
  from pipeline import run_summary  # pylint: disable=g-import-not-at-top
  store = mlmd.MetadataStore(
      metadata.sqlite_metadata_connection_config(config.paths.metadata))
  run = run_summary.read_run(store, store.get_context_by_type_and_name(
      'pipeline_run', summary.run_id))
  return run.output('Evaluator', 'blessing')


def test_identical_reruns_reuse_the_evaluation_that_blessed_the_model(
    first_run, workspace):
  from pipeline.components import evaluator  # pylint: disable=g-import-not-at-top
  config, first, _ = first_run
  first_blessing = _blessing(config, first)

  second = local_runner.run_pipeline(config)

  assert second.status == 'pushed', second.error
  # Only the Evaluator and the Pusher have a new input: the first run's model
  # is now the latest blessed one, the baseline. The Evaluator sees that the
  # candidate is that baseline and copies the evaluation that blessed it.
  assert set(second.cached_components) == ALL_COMPONENTS - {
      'LatestBlessedModel', 'Evaluator', 'Pusher'}
  repeated = _blessing(config, second)
  assert repeated.get_int_custom_property(
      evaluator.REPEATS_BLESSING_PROPERTY) == first_blessing.id
  assert repeated.get_int_custom_property('blessed') == 1
  assert repeated.get_string_custom_property(
      evaluator.EVALUATION_KEY_PROPERTY) == first_blessing.get_string_custom_property(
          evaluator.EVALUATION_KEY_PROPERTY)
  assert second.metrics == first.metrics
  assert second.blessing_failures == []
  # The same model is not pushed again as a new version.
  assert second.pushed_model_dir == first.pushed_model_dir
  assert len(versions(config.paths.serving_dir)) == 1

  third = local_runner.run_pipeline(config)

  # The second run's blessing is now the baseline's: the third repeats it.
  assert third.status == 'pushed', third.error
  assert set(third.cached_components) == set(second.cached_components)
  assert _blessing(config, third).get_int_custom_property(
      evaluator.REPEATS_BLESSING_PROPERTY) == repeated.id
  assert third.metrics == first.metrics
  assert third.pushed_model_dir == first.pushed_model_dir
  assert len(versions(config.paths.serving_dir)) == 1


def test_corrupted_data_stops_at_the_gate_and_pushes_nothing(anomaly_run):
  exit_code, summary_path, config_path = anomaly_run
  assert exit_code == 4
  with open(summary_path, encoding='utf-8') as f:
    summary = json.load(f)
  assert summary['status'] == 'data_anomalies'
  flagged = {anomaly['feature'] for anomaly in summary['anomalies']}
  assert {'country', 'engine_type'} <= flagged
  assert 'Transform' not in summary['component_seconds']
  assert summary['pushed_model_dir'] is None
  config = load_config(config_path)
  assert len(versions(config.paths.serving_dir)) == 1


def test_a_model_worse_than_the_baseline_is_not_blessed_or_pushed(
    first_run, workspace):
  config, first, _ = first_run
  before = versions(config.paths.serving_dir)
  # With the country alone the model cannot tell repairs apart: it falls to
  # base rates, recommends nothing, and its macro F1 drops to zero.
  weakened = write_config(
      workspace, 'weakened', str(workspace / 'sessions'),
      features={'numeric': [], 'categorical': ['country'], 'multivalent': [],
                'crosses': []},
      slices=[['country']])

  summary = local_runner.run_pipeline(load_config(weakened))

  assert summary.status == 'not_blessed', summary.error
  assert summary.exit_code == 3
  assert summary.blessed is False
  assert summary.metrics['macro_f1'] < summary.baseline_metrics['macro_f1']
  assert summary.baseline_metrics['macro_f1'] == pytest.approx(
      first.metrics['macro_f1'])
  assert summary.pushed_model_dir is None
  assert versions(config.paths.serving_dir) == before
  assert any(failure.startswith('overall: macro_f1 changed by')
             for failure in summary.blessing_failures)


def test_a_slice_below_the_fairness_floor_withholds_the_push(
    first_run, workspace):
  config, first, _ = first_run
  before = versions(config.paths.serving_dir)
  # The first run's model, judged again: no slice of 100+ sessions reaches a
  # macro F1 of 0.99, while the overall rules (floor 0, same as the baseline)
  # still pass. Only the Evaluator and the Pusher run again.
  strict = write_config(
      workspace, 'strict', str(workspace / 'sessions'),
      evaluation={'slice_macro_f1_floor': 0.99, 'min_slice_examples': 100})

  summary = local_runner.run_pipeline(load_config(strict))

  assert summary.status == 'not_blessed', summary.error
  assert summary.metrics['macro_f1'] == pytest.approx(first.metrics['macro_f1'])
  assert summary.blessing_failures
  for failure in summary.blessing_failures:
    slice_label = failure.split(':')[0]
    assert slice_label != 'overall'
    assert summary.metrics['slices'][slice_label]['example_count'] >= 100
    assert 'below the slice floor' in failure
  assert versions(config.paths.serving_dir) == before


def test_missing_data_is_a_clear_error_before_anything_runs(workspace, capsys):
  config_path = write_config(workspace, 'nodata', str(workspace / 'nowhere'))
  assert local_runner.main(['--config', config_path]) == 2
  err = capsys.readouterr().err
  assert 'no files match' in err and 'nowhere' in err
  assert 'Traceback' not in err


def test_quality_benchmark_compares_the_pushed_model_with_oracle_and_baselines(
    first_run, workspace):
  from benchmarks import quality  # pylint: disable=g-import-not-at-top
  config, first, _ = first_run
  report_path = workspace / 'quality.json'

  exit_code = quality.main([
      '--config', str(workspace / 'first.yaml'), '--rows', '400',
      '--baseline-train-rows', '800', '--json', str(report_path)])

  assert exit_code == 0
  with open(report_path, encoding='utf-8') as f:
    report = json.load(f)
  assert report['model_dir'] == first.pushed_model_dir
  systems = report['systems']
  assert {'model', 'oracle', 'logistic_regression',
          'hist_gradient_boosting'} <= set(systems)
  assert systems['oracle']['ratio_to_oracle'] == pytest.approx(1.0)
  for name in ('model', 'logistic_regression', 'hist_gradient_boosting'):
    assert 0.0 <= systems[name]['macro_f1'] <= 1.0
    assert set(systems[name]['per_label_f1']) == set(config.label.vocabulary)
