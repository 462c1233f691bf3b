"""End to end: the real local pipeline on a small generated data set.

One module-scoped workspace runs the pipeline several times, as a user would:
a first run that pushes, an identical rerun served from TFX's cache, a run on
corrupted data that the gate stops, and a run with a deliberately weakened
model that must not replace the pushed one.
"""

import json
import os

import pyarrow
import pyarrow.parquet
import pytest
import tensorflow as tf
import yaml

import local_runner
from data.generator import generate_sessions, write_spans
from models import export
from pipeline.components.example_gen import row_to_example
from pipeline.config import load_config

pytestmark = pytest.mark.slow

ALL_COMPONENTS = {
    'FileBasedExampleGen', 'CuratedSchema', 'StatisticsGen', 'ProposedSchema',
    'ExampleValidator', 'DataGate', 'Transform', 'Tuner', 'Trainer',
    'LatestBlessedModel', 'Evaluator', 'Pusher'
}


def _write_config(workspace, name: str, data_root: str, **overrides) -> str:
  with open('configs/local.yaml', encoding='utf-8') as f:
    raw = yaml.safe_load(f)
  raw['data']['root'] = data_root
  raw['paths'] = {
      'pipeline_root': str(workspace / 'pipeline'),
      'metadata': str(workspace / 'metadata.sqlite'),
      'serving_dir': str(workspace / 'serving'),
      'log_file': str(workspace / 'logs' / f'{name}.log'),
  }
  raw['training'].update(train_steps=150, eval_steps=5, batch_size=64)
  raw['tuning'].update(max_trials=1, steps_per_trial=20)
  # Real floors: this small run's model reaches a test macro F1 of about
  # 0.40 (the default run's: 0.57), and its one slice of 100+ test sessions
  # about 0.38.
  raw['evaluation'].update(macro_f1_lower_bound=0.3, slice_macro_f1_floor=0.25,
                           min_slice_examples=100)
  for section, values in overrides.items():
    if isinstance(values, dict):
      raw[section].update(values)
    else:
      raw[section] = values
  path = workspace / f'{name}.yaml'
  path.write_text(yaml.safe_dump(raw), encoding='utf-8')
  return str(path)


def _versions(serving_dir: str):
  return sorted(name for name in os.listdir(serving_dir) if name.isdigit())


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
  root = tmp_path_factory.mktemp('e2e')
  write_spans(generate_sessions(3000, seed=5, spans=2), root / 'sessions')
  return root


@pytest.fixture(scope='module')
def first_run(workspace):
  config = load_config(_write_config(workspace, 'first',
                                     str(workspace / 'sessions')))
  summary_path = str(workspace / 'first_summary.json')
  summary = local_runner.run_pipeline(config, summary_path)
  return config, summary, summary_path


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

  (version,) = _versions(config.paths.serving_dir)
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
  assert {k: v for k, v in on_run.items() if k != 'repairml_status'} == (
      on_model)


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
  assert len(_versions(config.paths.serving_dir)) == 1

  third = local_runner.run_pipeline(config)

  # The second run's blessing is now the baseline's: the third repeats it.
  assert third.status == 'pushed', third.error
  assert set(third.cached_components) == set(second.cached_components)
  assert _blessing(config, third).get_int_custom_property(
      evaluator.REPEATS_BLESSING_PROPERTY) == repeated.id
  assert third.metrics == first.metrics
  assert third.pushed_model_dir == first.pushed_model_dir
  assert len(_versions(config.paths.serving_dir)) == 1


def test_corrupted_data_stops_at_the_gate_and_pushes_nothing(
    first_run, workspace):
  config, _, _ = first_run
  before = _versions(config.paths.serving_dir)
  corrupted = generate_sessions(600, seed=6)
  corrupted['country'] = 'XX'          # an unseen category flood
  corrupted = corrupted.drop(columns=['engine_type'])  # a missing column
  os.makedirs(workspace / 'corrupted' / 'span-0')
  pyarrow.parquet.write_table(
      pyarrow.Table.from_pandas(corrupted, preserve_index=False),
      workspace / 'corrupted' / 'span-0' / 'sessions.parquet')
  config_path = _write_config(workspace, 'corrupted',
                              str(workspace / 'corrupted'))

  exit_code = local_runner.main(['--config', config_path, '--summary',
                                 str(workspace / 'corrupted_summary.json')])

  assert exit_code == 4
  with open(workspace / 'corrupted_summary.json', encoding='utf-8') as f:
    summary = json.load(f)
  assert summary['status'] == 'data_anomalies'
  flagged = {anomaly['feature'] for anomaly in summary['anomalies']}
  assert {'country', 'engine_type'} <= flagged
  assert 'Transform' not in summary['component_seconds']
  assert summary['pushed_model_dir'] is None
  assert _versions(config.paths.serving_dir) == before


def test_a_model_worse_than_the_baseline_is_not_blessed_or_pushed(
    first_run, workspace):
  config, first, _ = first_run
  before = _versions(config.paths.serving_dir)
  # With the country alone the model cannot tell repairs apart: it falls to
  # base rates, recommends nothing, and its macro F1 drops to zero.
  weakened = _write_config(
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
  assert _versions(config.paths.serving_dir) == before
  assert any(failure.startswith('overall: macro_f1 changed by')
             for failure in summary.blessing_failures)


def test_a_slice_below_the_fairness_floor_withholds_the_push(
    first_run, workspace):
  config, first, _ = first_run
  before = _versions(config.paths.serving_dir)
  # The first run's model, judged again: no slice of 100+ sessions reaches a
  # macro F1 of 0.99, while the overall rules (floor 0, same as the baseline)
  # still pass. Only the Evaluator and the Pusher run again.
  strict = _write_config(
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
  assert _versions(config.paths.serving_dir) == before


# Two runs agree within this much (see BENCHMARKS.md, "Determinism").
SAME_SEED_TOLERANCE = 1e-6


def test_same_configuration_data_and_seed_give_the_same_model(
    first_run, workspace):
  _, first, _ = first_run
  # A second, independent run: its own pipeline root, metadata and serving
  # directory, so nothing comes from the first run's cache.
  twin = workspace / 'twin'
  twin_config = _write_config(
      workspace, 'twin', str(workspace / 'sessions'),
      paths={'pipeline_root': str(twin / 'pipeline'),
             'metadata': str(twin / 'metadata.sqlite'),
             'serving_dir': str(twin / 'serving')})

  summary = local_runner.run_pipeline(load_config(twin_config))

  assert summary.status == 'pushed', summary.error
  assert summary.cached_components == []
  for name in ('macro_f1', 'micro_f1', 'macro_auc', 'macro_pr_auc'):
    assert summary.metrics[name] == pytest.approx(
        first.metrics[name], abs=SAME_SEED_TOLERANCE), name
  assert export.load_thresholds(summary.pushed_model_dir) == pytest.approx(
      export.load_thresholds(first.pushed_model_dir), abs=SAME_SEED_TOLERANCE)


def test_missing_data_is_a_clear_error_before_anything_runs(workspace, capsys):
  config_path = _write_config(workspace, 'nodata', str(workspace / 'nowhere'))
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
