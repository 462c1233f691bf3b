"""The Evaluator reuses the evaluation that blessed a model only when the
model is judged against itself on the same inputs."""

import json
from pathlib import Path

import pytest
from tfx.types import standard_artifacts

from pipeline.components import evaluator

EVAL_CONFIG = json.dumps({'metrics_specs': [{'metrics': [
    {'class_name': 'ExampleCount'}]}]})
PROPERTIES = {'eval_config': EVAL_CONFIG, 'example_splits': '["test"]',
              'code_version': 'abc'}


def _artifact(kind, uri: Path, artifact_id: int):
  artifact = kind()
  artifact.uri = str(uri)
  artifact.id = artifact_id
  uri.mkdir(parents=True, exist_ok=True)
  return artifact


@pytest.fixture
def earlier(tmp_path):
  """Model 7, blessed by an earlier evaluation of these inputs."""
  model = _artifact(standard_artifacts.Model, tmp_path / 'model', 7)
  examples = _artifact(standard_artifacts.Examples, tmp_path / 'examples', 3)
  evaluation = tmp_path / 'evaluation-1'
  evaluation.mkdir()
  (evaluation / 'metrics-00000-of-00001.tfrecord').write_bytes(b'metrics')
  (evaluation / 'validations.tfrecord').write_bytes(b'ok')
  blessing = _artifact(standard_artifacts.ModelBlessing,
                       tmp_path / 'blessing-1', 11)
  (tmp_path / 'blessing-1' / 'BLESSED').write_text('')
  blessing.set_int_custom_property('blessed', 1)
  blessing.set_int_custom_property('current_model_id', 7)
  blessing.set_string_custom_property('current_model', model.uri)
  inputs = {'examples': [examples], 'model': [model]}
  blessing.set_string_custom_property(
      evaluator.EVALUATION_KEY_PROPERTY,
      evaluator.evaluation_key(inputs, PROPERTIES))
  blessing.set_string_custom_property(evaluator.EVALUATION_URI_PROPERTY,
                                      str(evaluation))
  return {'model': model, 'examples': examples, 'blessing': blessing,
          'evaluation': evaluation}


def _inputs(earlier, baseline=None, blessing=None):
  return {'examples': [earlier['examples']], 'model': [earlier['model']],
          'baseline_model': [baseline or earlier['model']],
          'baseline_blessing': [blessing or earlier['blessing']]}


def test_the_baseline_judged_again_on_the_same_inputs_repeats_its_blessing(
    earlier, tmp_path):
  evaluation = _artifact(standard_artifacts.ModelEvaluation,
                         tmp_path / 'evaluation-2', 0)
  blessing = _artifact(standard_artifacts.ModelBlessing,
                       tmp_path / 'blessing-2', 0)

  evaluator.Executor().Do(_inputs(earlier),
                          {'evaluation': [evaluation], 'blessing': [blessing]},
                          dict(PROPERTIES))

  assert sorted(p.name for p in Path(evaluation.uri).iterdir()) == [
      'metrics-00000-of-00001.tfrecord', 'validations.tfrecord']
  assert (Path(evaluation.uri) / 'metrics-00000-of-00001.tfrecord'
          ).read_bytes() == b'metrics'
  assert (Path(blessing.uri) / 'BLESSED').exists()
  assert blessing.get_int_custom_property('blessed') == 1
  assert blessing.get_int_custom_property('current_model_id') == 7
  assert blessing.get_int_custom_property(
      evaluator.REPEATS_BLESSING_PROPERTY) == 11
  # The next identical run can repeat this one.
  assert blessing.get_string_custom_property(
      evaluator.EVALUATION_URI_PROPERTY) == evaluation.uri
  assert blessing.get_string_custom_property(
      evaluator.EVALUATION_KEY_PROPERTY) == earlier[
          'blessing'].get_string_custom_property(
              evaluator.EVALUATION_KEY_PROPERTY)


def test_a_first_evaluation_has_nothing_to_repeat(earlier):
  inputs = {'examples': [earlier['examples']], 'model': [earlier['model']]}
  key = evaluator.evaluation_key(inputs, PROPERTIES)

  assert evaluator.reusable_blessing(inputs, key) is None


def test_a_new_candidate_is_evaluated_against_the_baseline(earlier, tmp_path):
  other = _artifact(standard_artifacts.Model, tmp_path / 'other', 8)
  inputs = _inputs(earlier, baseline=other)
  key = evaluator.evaluation_key(inputs, PROPERTIES)

  assert evaluator.reusable_blessing(inputs, key) is None


@pytest.mark.parametrize('change', [
    {'eval_config': EVAL_CONFIG.replace('ExampleCount', 'MultiLabelF1')},
    {'example_splits': '["eval"]'},
    {'code_version': 'def'},
])
def test_other_evaluation_settings_or_code_evaluate_afresh(earlier, change):
  inputs = _inputs(earlier)
  key = evaluator.evaluation_key(inputs, dict(PROPERTIES, **change))

  assert evaluator.reusable_blessing(inputs, key) is None


def test_other_examples_evaluate_afresh(earlier, tmp_path):
  inputs = dict(_inputs(earlier), examples=[_artifact(
      standard_artifacts.Examples, tmp_path / 'new-examples', 4)])
  key = evaluator.evaluation_key(inputs, PROPERTIES)

  assert evaluator.reusable_blessing(inputs, key) is None


def test_a_blessing_that_did_not_bless_is_never_repeated(earlier):
  earlier['blessing'].set_int_custom_property('blessed', 0)
  inputs = _inputs(earlier)
  key = evaluator.evaluation_key(inputs, PROPERTIES)

  assert evaluator.reusable_blessing(inputs, key) is None
