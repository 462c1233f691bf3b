"""The Tuner's search as a Vertex AI Vizier study, at the SDK's gapic client
(fake_vizier.py): the study spec it creates, the study it resumes, the trials
it asks for and reports, a KerasTuner search whose best trial reaches the
Trainer's hyperparameters, KerasTuner's distributed mode, and the errors."""

import gc
import json
import socket
import threading

import keras
import keras_tuner
import numpy as np
import pytest
from google.api_core import exceptions as api_exceptions
from google.cloud.aiplatform_v1.types import study as gca_study
from keras_tuner.src.distribute import oracle_chief
from tfx.components.trainer.fn_args_utils import FnArgs

from fake_vizier import PARENT, PROJECT, PROJECT_NUMBER, REGION
from fake_vizier import vizier  # pylint: disable=unused-import
from models import hyperparameters, training, tuning
from models import vizier as vizier_module
from models.vizier import VizierError, VizierOracle, study_name
from pipeline.config import load_config
from pipeline.production import vertex
from pipeline.settings import TUNER_MODULE, model_settings

STUDY = 'repairml-tuner-0123456789abcdef'
IMAGE = 'europe-west4-docker.pkg.dev/my-gcp-project/repairml/repairml:0123abc'
OBJECTIVE = training.OBJECTIVE
# Suggestions the fake's "algorithm" hands out, in order.
POINTS = [
    {'learning_rate': 0.0071, 'hidden_units': 64, 'hidden_layers': 3,
     'embedding_dim': 32, 'dropout': 0.3, 'loss': 'focal'},
    {'learning_rate': 0.0012, 'hidden_units': 256, 'hidden_layers': 1,
     'embedding_dim': 8, 'dropout': 0.0, 'loss': 'soft_macro_f1'},
]
# configs/local.yaml's training section: the configured trial.
CONFIGURED = {'learning_rate': 0.003, 'hidden_units': 128, 'hidden_layers': 2,
              'embedding_dim': 16, 'dropout': 0.1,
              'loss': 'binary_crossentropy'}


@pytest.fixture(scope='module')
def settings():
  return model_settings(load_config('configs/local.yaml'), TUNER_MODULE)


def _oracle(tmp_path, settings, name=STUDY, max_trials=3):
  oracle = VizierOracle(
      objective=keras_tuner.Objective(OBJECTIVE, direction='max'),
      max_trials=max_trials,
      hyperparameters=hyperparameters.search_space(settings),
      study_name=name, project=PROJECT, region=REGION)
  oracle._set_project_dir(str(tmp_path), 'tuning')  # pylint: disable=protected-access
  return oracle


def _run(oracle, tuner_id, score):
  """One trial as a Tuner runs it, scored `score`; returns its values."""
  trial = oracle.create_trial(tuner_id)
  assert trial.status == 'RUNNING'
  oracle.update_trial(trial.trial_id, {OBJECTIVE: score})
  trial.status = 'COMPLETED'
  oracle.end_trial(trial)
  return trial.hyperparameters.values


def _as_dict(message):
  return type(message).to_dict(message, use_integers_for_enums=False,
                               always_print_fields_with_no_presence=False)


def _measured(request):
  return {m.metric_id: m.value for m in request['final_measurement'].metrics}


def test_the_study_spec_is_the_search_space_and_the_objective(vizier, settings,
                                                              tmp_path):
  _oracle(tmp_path, settings).create_trial('tuner0')

  [create] = vizier.calls('create_study')
  assert create['parent'] == PARENT
  assert create['study'].display_name == STUDY
  spec = _as_dict(create['study'].study_spec)
  assert spec['metrics'] == [{'metric_id': OBJECTIVE, 'goal': 'MAXIMIZE'}]
  # Vertex AI's default algorithm: Vizier's Bayesian optimisation.
  assert spec.get('algorithm', 'ALGORITHM_UNSPECIFIED') == (
      'ALGORITHM_UNSPECIFIED')
  assert spec['parameters'] == [
      {'parameter_id': 'learning_rate', 'scale_type': 'UNIT_LOG_SCALE',
       'double_value_spec': {'min_value': 0.001, 'max_value': 0.01}},
      {'parameter_id': 'hidden_units', 'scale_type': 'UNIT_LINEAR_SCALE',
       'discrete_value_spec': {'values': [64.0, 128.0, 256.0]}},
      {'parameter_id': 'hidden_layers', 'scale_type': 'UNIT_LINEAR_SCALE',
       'integer_value_spec': {'min_value': '1', 'max_value': '3'}},
      {'parameter_id': 'embedding_dim', 'scale_type': 'UNIT_LINEAR_SCALE',
       'discrete_value_spec': {'values': [8.0, 16.0, 32.0]}},
      {'parameter_id': 'dropout', 'scale_type': 'UNIT_LINEAR_SCALE',
       'discrete_value_spec': {'values': [0.0, 0.1, 0.2, 0.3]}},
      # Categories are a set: pyvizier sends them sorted.
      {'parameter_id': 'loss', 'categorical_value_spec': {'values': [
          'binary_crossentropy', 'focal', 'soft_macro_f1',
          'weighted_binary_crossentropy']}},
  ]


def test_other_kinds_of_hyperparameter_map_both_ways():
  space = keras_tuner.HyperParameters()
  space.Boolean('batch_norm')
  space.Int('layers', 2, 8, step=2, sampling='log')
  space.Float('momentum', 0.5, 0.9)
  space.Choice('activation', ['relu', 'gelu'])
  space.Fixed('epochs', 3)
  spec = _as_dict(vizier_module.problem(
      space, keras_tuner.Objective('loss', 'min')).to_proto())
  assert spec['metrics'] == [{'metric_id': 'loss', 'goal': 'MINIMIZE'}]
  assert spec['parameters'] == [
      {'parameter_id': 'batch_norm',
       'categorical_value_spec': {'values': ['False', 'True']}},
      {'parameter_id': 'layers', 'scale_type': 'UNIT_LOG_SCALE',
       'discrete_value_spec': {'values': [2.0, 4.0, 6.0, 8.0]}},
      {'parameter_id': 'momentum', 'scale_type': 'UNIT_LINEAR_SCALE',
       'double_value_spec': {'min_value': 0.5, 'max_value': 0.9}},
      {'parameter_id': 'activation',
       'categorical_value_spec': {'values': ['gelu', 'relu']}},
  ]
  values = vizier_module.keras_values(space, {
      'batch_norm': 'True', 'layers': 6.0, 'momentum': 0.75,
      'activation': 'gelu'})
  assert values == {'batch_norm': True, 'layers': 6, 'momentum': 0.75,
                    'activation': 'gelu', 'epochs': 3}
  assert type(values['layers']) is int
  with pytest.raises(VizierError, match="'activation'"):
    vizier_module.keras_values(space, {
        'batch_norm': 'True', 'layers': 6.0, 'momentum': 0.75,
        'activation': 'tanh'})


def test_first_the_configuration_then_vizier_suggestions_each_completed(
    vizier, settings, tmp_path):
  vizier.points = [dict(p) for p in POINTS]
  oracle = _oracle(tmp_path, settings)

  first = _run(oracle, 'tuner0', 0.41)
  # The configured trial runs without asking Vizier, and joins the study,
  # complete, once it has run.
  assert first == CONFIGURED
  assert vizier.calls('suggest_trials') == []
  [added] = vizier.calls('create_trial')
  assert added['parent'] == vizier.calls('get_study')[0]['name']
  assert {p.parameter_id: p.value for p in added['trial'].parameters} == {
      'learning_rate': 0.003, 'hidden_units': 128.0, 'hidden_layers': 2.0,
      'embedding_dim': 16.0, 'dropout': 0.1, 'loss': 'binary_crossentropy'}

  second = _run(oracle, 'tuner0', 0.52)
  third = _run(oracle, 'tuner0', 0.47)
  # Vizier's points, with KerasTuner's types: ints as int.
  assert [second, third] == POINTS
  assert [type(second[k]) for k in ('hidden_units', 'hidden_layers',
                                    'embedding_dim')] == [int, int, int]
  study = vizier.calls('get_study')[0]['name']
  assert vizier.calls('suggest_trials') == [
      {'parent': study, 'suggestion_count': 1, 'client_id': 'tuner0'}] * 2
  completions = vizier.calls('complete_trial')
  assert [c['name'] for c in completions] == [
      f'{study}/trials/{i}' for i in (1, 2, 3)]
  assert [_measured(c) for c in completions] == [
      {OBJECTIVE: 0.41}, {OBJECTIVE: 0.52}, {OBJECTIVE: 0.47}]
  # max_trials reached: no fourth trial, no fourth suggestion.
  assert oracle.create_trial('tuner0').status == 'STOPPED'
  assert len(vizier.calls('suggest_trials')) == 2


def test_a_failed_trial_is_reported_infeasible(vizier, settings, tmp_path):
  vizier.points = [dict(POINTS[0])]
  oracle = _oracle(tmp_path, settings)
  _run(oracle, 'tuner0', 0.4)
  trial = oracle.create_trial('tuner0')
  trial.status = 'FAILED'
  trial.message = ('Traceback (most recent call last):\n  File "x.py"\n'
                   'ValueError: the loss is NaN')
  oracle.end_trial(trial)

  failed = vizier.calls('complete_trial')[-1]
  assert failed['trial_infeasible'] is True
  assert failed['infeasible_reason'] == 'ValueError: the loss is NaN'
  assert 'final_measurement' not in failed
  assert [t.state for t in list(vizier.trials.values())[0]] == [
      gca_study.Trial.State.SUCCEEDED, gca_study.Trial.State.INFEASIBLE]


def test_a_second_oracle_of_the_same_study_resumes_it(vizier, settings,
                                                      tmp_path):
  vizier.points = [dict(p) for p in POINTS]
  first = _oracle(tmp_path / 'first', settings)
  _run(first, 'tfx-tuner-workerpool0-0', 0.41)
  _run(first, 'tfx-tuner-workerpool0-0', 0.52)

  # The Tuner is retried on a fresh machine: a new oracle, the same name.
  again = _oracle(tmp_path / 'again', settings)
  third = again.create_trial('tfx-tuner-workerpool0-0')

  # No second study: CreateStudy is refused, LookupStudy finds the first.
  assert len(vizier.studies) == 1
  assert len(vizier.calls('create_study')) == 2
  assert [r['display_name'] for r in vizier.calls('lookup_study')] == [STUDY]
  # The finished trials count: the configured one is not run again, the
  # third trial is Vizier's next point, and the budget of 3 is spent.
  assert len(vizier.calls('create_trial')) == 1
  assert third.hyperparameters.values == POINTS[1]
  assert sorted(t.score for t in again.trials.values()
                if t.status == 'COMPLETED') == [0.41, 0.52]
  again.update_trial(third.trial_id, {OBJECTIVE: 0.3})
  third.status = 'COMPLETED'
  again.end_trial(third)
  assert again.create_trial('tfx-tuner-workerpool0-0').status == 'STOPPED'
  assert again.get_best_trials()[0].hyperparameters.values == POINTS[0]


def test_a_retry_gets_back_the_trial_it_was_running(vizier, settings,
                                                   tmp_path):
  vizier.points = [dict(p) for p in POINTS]
  first = _oracle(tmp_path / 'first', settings)
  _run(first, 'tfx-tuner-workerpool1-0', 0.41)
  lost = first.create_trial('tfx-tuner-workerpool1-0')  # the machine dies

  again = _oracle(tmp_path / 'again', settings)
  resumed = again.create_trial('tfx-tuner-workerpool1-0')
  # Vizier hands the tuner its active trial again; no new point is used.
  assert resumed.hyperparameters.values == lost.hyperparameters.values == (
      POINTS[0])
  assert vizier.points == [POINTS[1]]
  again.update_trial(resumed.trial_id, {OBJECTIVE: 0.6})
  resumed.status = 'COMPLETED'
  again.end_trial(resumed)
  study = vizier.calls('get_study')[0]['name']
  assert vizier.calls('complete_trial')[-1]['name'] == f'{study}/trials/2'


def test_a_retry_runs_the_configured_trial_it_lost(vizier, settings,
                                                   tmp_path):
  vizier.points = [dict(p) for p in POINTS]
  _oracle(tmp_path / 'first', settings).create_trial('tuner0')  # dies

  again = _oracle(tmp_path / 'again', settings)
  assert again.create_trial('tuner0').hyperparameters.values == CONFIGURED
  assert vizier.calls('suggest_trials') == []


def test_the_study_is_named_after_the_tuner_execution():
  def fn_args(transform='gs://b/root/123/run-1/Transform_1/transform_graph',
              config=None, working_dir='/tmp'):
    return FnArgs(working_dir=working_dir,
                  train_files=['gs://b/root/123/run-1/Gen_2/examples/train/*'],
                  eval_files=['gs://b/root/123/run-1/Gen_2/examples/eval/*'],
                  transform_graph_path=transform,
                  schema_path='gs://b/root/123/run-1/Schema_3/schema.pbtxt',
                  custom_config=config or {'code_version': 'a'})

  name = study_name('repairml', fn_args())
  assert name.startswith('repairml-tuner-')
  # A retry, or another machine of the flock: the same execution.
  assert study_name('repairml', fn_args()) == name
  # Another run's inputs, other settings, another pipeline: another study.
  assert study_name('repairml', fn_args(
      transform='gs://b/root/123/run-2/Transform_1/transform_graph')) != name
  assert study_name('repairml', fn_args(config={'code_version': 'b'})) != name
  assert study_name('other', fn_args()) != name


def test_tuner_custom_config_asks_for_the_vizier_oracle(vizier, tmp_path):
  config = load_config('configs/vertex.yaml')
  custom_config = vertex.tuner_custom_config(
      config, IMAGE, model_settings(config, TUNER_MODULE))
  assert custom_config['tuner_service'] == {
      'service': 'vizier', 'project': 'my-gcp-project',
      'region': 'europe-west4', 'pipeline_name': config.pipeline_name}
  args = FnArgs(working_dir='/tmp', train_files=['gs://t/*'],
                eval_files=['gs://e/*'], transform_graph_path='gs://g',
                custom_config=custom_config)

  chosen = tuning.oracle(custom_config, args)
  assert isinstance(chosen, VizierOracle)
  assert chosen.study_name == study_name(config.pipeline_name, args)
  assert (chosen.project, chosen.region) == ('my-gcp-project', 'europe-west4')
  assert chosen.max_trials == config.tuning.max_trials
  # Nothing is asked of Vizier until a trial is.
  assert vizier.requests == []
  with pytest.raises(ValueError, match='fn_args'):
    tuning.oracle(custom_config)
  custom_config['tuner_service']['service'] = 'keras_tuner'
  # tuning.ConfiguredFirstOracle, looked up now: TFX reloads user modules.
  assert isinstance(tuning.oracle(custom_config, args),
                    tuning.ConfiguredFirstOracle)


def test_a_refused_vizier_call_is_one_line_naming_the_study(vizier, settings,
                                                            tmp_path):
  vizier.fail['create_study'] = api_exceptions.PermissionDenied(
      "Permission 'aiplatform.studies.create' denied on resource\n"
      f"'//aiplatform.googleapis.com/projects/{PROJECT}/locations/{REGION}'")
  with pytest.raises(VizierError) as refused:
    _oracle(tmp_path, settings).create_trial('tuner0')
  message = str(refused.value)
  assert '\n' not in message
  assert f'"{STUDY}"' in message
  assert f'projects/{PROJECT}/locations/{REGION}' in message
  assert 'PermissionDenied' in message
  assert 'aiplatform.studies.create' in message
  assert 'roles/aiplatform.user' in message


# A KerasTuner search of a tiny model. ------------------------------------------


class _Objective(keras.callbacks.Callback):
  """Reports OBJECTIVE as ThresholdedMacroF1 does: into the epoch's logs."""

  def on_epoch_end(self, epoch, logs=None):
    logs[OBJECTIVE] = 1.0 / (1.0 + logs['val_loss'])


def _tiny_model(built):
  """A logistic regression from zero weights: after a few Adam steps the
  trial with the largest learning rate has the lowest loss, the best score."""
  def build(hp):
    built.append(dict(hp.values))
    inputs = keras.Input((4,))
    output = keras.layers.Dense(1, activation='sigmoid',
                                kernel_initializer='zeros')(inputs)
    model = keras.Model(inputs, output)
    model.compile(optimizer=keras.optimizers.Adam(hp.values['learning_rate']),
                  loss='binary_crossentropy', run_eagerly=True)
    return model
  return build


@pytest.fixture
def frozen_heap():
  """KerasTuner collects garbage before each trial's model (tuner.py), a
  second each over this process's TensorFlow and TFX heap; frozen, the
  collection looks at the trial's objects only."""
  gc.collect()
  gc.freeze()
  yield
  gc.unfreeze()


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 4)).astype('float32')
  return x, (x.sum(axis=1) > 0).astype('float32')


def _best_expected(vizier):
  """The values of the trial the study scored highest, as the test gave
  them (the fake keeps every number as a float)."""
  completed = vizier.completed()
  best = max(completed, key=lambda params: completed[params][OBJECTIVE])
  best = dict(best)
  return next(p for p in [CONFIGURED] + POINTS
              if all(abs(float(v) - best[k]) < 1e-9 if not isinstance(v, str)
                     else v == best[k] for k, v in p.items()))


def test_a_search_takes_vizier_points_and_its_best_reaches_the_trainer(
    vizier, settings, tmp_path, frozen_heap):
  vizier.points = [dict(p) for p in POINTS]
  built = []
  tuner = keras_tuner.Tuner(oracle=_oracle(tmp_path, settings),
                            hypermodel=_tiny_model(built),
                            directory=str(tmp_path), project_name='search')
  x, y = _data()
  tuner.search(x, y, validation_data=(x, y), epochs=1, batch_size=32,
               verbose=0, callbacks=[_Objective()])

  # KerasTuner builds the model once with the defaults before the search.
  assert built[1:] == [CONFIGURED] + POINTS
  # Every trial trained and was measured; the largest learning rate won.
  assert len(vizier.completed()) == 3
  assert _best_expected(vizier) == POINTS[0]
  best = tuner.get_best_hyperparameters()[0].get_config()
  # As TFX writes it (best_hyperparameters.txt) and the Trainer reads it.
  trained = hyperparameters.resolve(settings, json.loads(json.dumps(best)))
  assert trained == _best_expected(vizier)
  assert type(trained['hidden_units']) is int


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return str(s.getsockname()[1])


def test_on_a_flock_the_chief_serves_the_vizier_oracle(vizier, settings,
                                                       tmp_path, monkeypatch,
                                                       frozen_heap):
  """TFX's Vertex Tuner: the chief's oracle behind KerasTuner's gRPC server
  (loopback here), a worker's Tuner asking it for trials."""
  vizier.points = [dict(p) for p in POINTS]
  monkeypatch.setenv('KERASTUNER_ORACLE_IP', '127.0.0.1')
  monkeypatch.setenv('KERASTUNER_ORACLE_PORT', _free_port())
  monkeypatch.setenv('KERASTUNER_TUNER_ID', 'chief')
  built = []
  chief = keras_tuner.Tuner(oracle=_oracle(tmp_path, settings),
                            hypermodel=_tiny_model(built),
                            directory=str(tmp_path / 'chief'),
                            project_name='search')
  server = threading.Thread(target=oracle_chief.start_server,
                            args=(chief.oracle,), daemon=True)
  server.start()
  monkeypatch.setenv('KERASTUNER_TUNER_ID', 'tfx-tuner-workerpool1-0')
  worker = keras_tuner.Tuner(oracle=_oracle(tmp_path, settings),
                             hypermodel=_tiny_model(built),
                             directory=str(tmp_path / 'worker'),
                             project_name='search')
  x, y = _data()
  worker.search(x, y, validation_data=(x, y), epochs=1, batch_size=32,
                verbose=0, callbacks=[_Objective()])
  server.join(timeout=30)
  assert not server.is_alive()

  # Only the chief's oracle spoke to Vizier, for the worker's tuner id.
  assert [r['client_id'] for r in vizier.calls('suggest_trials')] == [
      'tfx-tuner-workerpool1-0'] * 2
  assert len(vizier.calls('create_study')) == 1
  assert built[-3:] == [CONFIGURED] + POINTS
  # TFX's chief writes the best hyperparameters from its own tuner.
  best = chief.get_best_hyperparameters()[0].get_config()
  assert hyperparameters.resolve(settings, best) == _best_expected(vizier) == (
      POINTS[0])
  assert PROJECT_NUMBER in vizier.calls('complete_trial')[0]['name']
