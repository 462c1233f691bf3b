"""The Tuner's search as a Vertex AI Vizier study (vertex.tuner.service: vizier).

`VizierOracle` is a KerasTuner Oracle whose trials Vertex AI Vizier decides,
through the Vertex AI SDK's Vizier client (google.cloud.aiplatform.vizier). It
lives where any oracle lives: on the Tuner's chief, which serves it to the
other machines of the flock over KerasTuner's gRPC protocol; only the chief
talks to Vizier, and only once the first trial is asked for.

- The search space (models/hyperparameters.py) becomes the study's spec, with
  one metric, the objective, and Vertex AI's default algorithm
  (ALGORITHM_UNSPECIFIED, Vizier's Bayesian optimisation with a Gaussian
  process): the same kind of search as KerasTuner's local Bayesian oracle,
  without a fixed algorithm the service would have to support.
- The study is created, or resumed, by its display name (`study_name`): the
  same for every machine and every retry of one Tuner execution, different
  for another execution. A resumed study's finished trials count toward
  max_trials and compete for the best, so a retried Tuner carries on.
- The first trial is the configured hyperparameters, as in
  models/tuning.py's ConfiguredFirstOracle. The SDK's Study cannot add a
  trial, so the oracle adds it through the SDK's own gapic client
  (CreateTrial) once it has run, and completes it at once; until then Vizier
  knows nothing of it and cannot hand it to another machine. Every other
  trial is `Study.suggest(count=1, worker=<the asking tuner's id>)`.
- Each finished trial is completed with a final measurement of the
  objective (KerasTuner's score: the best epoch); a failed one as infeasible.

The best trial reaches TFX as every oracle's does: tuner.get_best_hyperparameters()
reads the oracle's trials, and TFX writes them as HyperParameters.get_config()
JSON, which the Trainer reads through hyperparameters.resolve().
"""

import hashlib
import json
import math
from typing import Any, Dict, List, Optional

import keras_tuner
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud.aiplatform import vizier
from google.cloud.aiplatform.compat.types import study as gca_study
from google.cloud.aiplatform.vizier import pyvizier as vz
from keras_tuner.engine import hyperparameters as hp_module
from keras_tuner.engine import trial as trial_module

# The key of the Tuner's custom_config (model_settings) that says who decides
# the trials; pipeline/production/vertex.py writes it (`tuner_settings`).
SETTINGS_KEY = 'tuner_service'
KERAS_TUNER = 'keras_tuner'
VIZIER = 'vizier'

_RUNNING = trial_module.TrialStatus.RUNNING
_STOPPED = trial_module.TrialStatus.STOPPED
_COMPLETED = trial_module.TrialStatus.COMPLETED
_FAILED = trial_module.TrialStatus.FAILED


class VizierError(RuntimeError):
  """A Vertex AI Vizier call failed; the message says which and what to check."""


def tuner_settings(service: str, project: str, region: str,
                   pipeline_name: str) -> Dict[str, Any]:
  """What the Tuner's custom_config carries under SETTINGS_KEY."""
  return {'service': service, 'project': project, 'region': region,
          'pipeline_name': pipeline_name}


def uses_vizier(model_settings: Dict[str, Any]) -> bool:
  return (model_settings.get(SETTINGS_KEY) or {}).get('service') == VIZIER


def study_name(pipeline_name: str, fn_args) -> str:
  """The study's display name: the pipeline's name and a digest of what
  identifies this Tuner execution in tuner_fn's FnArgs.

  On Vertex AI, fn_args.working_dir is '/tmp' on every machine of every run
  (TFX's Vertex Tuner executor passes that constant), and custom_config is
  the compiled Tuner's settings, the same in every run of one compiled
  pipeline. What differs between executions is what they read: the input
  artifacts' URIs (the Transform graph, the examples, the schema), which
  Vertex AI Pipelines places under the producing run's job, and the
  settings, whose image tag and code version change with the code. A retry
  of the execution, and every machine of its flock, sees the same of both,
  so it finds and resumes the same study. A run that reuses every input from
  cache and has the same settings is served the Tuner from cache by Vertex
  AI Pipelines; if it runs the Tuner anyway, the finished study is resumed
  and its best trial returned: the same answer to the same question.
  """
  execution = {
      'custom_config': fn_args.custom_config,
      'transform_graph': fn_args.transform_graph_path,
      'schema': fn_args.schema_path,
      'train_files': sorted(fn_args.train_files or ()),
      'eval_files': sorted(fn_args.eval_files or ()),
  }
  digest = hashlib.sha256(json.dumps(execution, sort_keys=True,
                                     default=str).encode()).hexdigest()[:16]
  return f'{pipeline_name}-tuner-{digest}'


def _float_steps(hp) -> List[float]:
  count = int(math.floor((hp.max_value - hp.min_value) / hp.step + 1e-9)) + 1
  return [round(hp.min_value + i * hp.step, 10) for i in range(count)]


_SCALES = {'linear': vz.ScaleType.LINEAR, 'log': vz.ScaleType.LOG,
           'reverse_log': vz.ScaleType.REVERSE_LOG}


def problem(hyperparameters: keras_tuner.HyperParameters,
            objective: keras_tuner.Objective) -> vz.StudyConfig:
  """The study's spec: the search space, the objective, the algorithm.

  Float -> DOUBLE (or DISCRETE with a step), Int -> INTEGER (or DISCRETE with
  a step above 1), Choice of numbers -> DISCRETE, of strings -> CATEGORICAL,
  Boolean -> CATEGORICAL 'False'/'True'; log sampling -> UNIT_LOG_SCALE.
  Fixed values are not searched. No default values: the configured trial is
  added to the study as a trial of its own (see VizierOracle).
  """
  config = vz.StudyConfig(algorithm=vz.Algorithm.ALGORITHM_UNSPECIFIED)
  goal = (vz.ObjectiveMetricGoal.MAXIMIZE if objective.direction == 'max'
          else vz.ObjectiveMetricGoal.MINIMIZE)
  config.metric_information.append(
      vz.MetricInformation(name=objective.name, goal=goal))
  root = config.search_space.root
  for hp in hyperparameters.space:
    if getattr(hp, 'conditions', None):
      raise ValueError(f'Hyperparameter {hp.name!r} is conditional; the '
                       'Vizier oracle searches flat spaces only.')
    if isinstance(hp, hp_module.Fixed):
      continue
    if isinstance(hp, hp_module.Boolean):
      root.add_categorical_param(hp.name, ['False', 'True'])
    elif isinstance(hp, hp_module.Choice):
      if _numeric_choice(hp):
        root.add_discrete_param(hp.name, sorted(hp.values),
                                scale_type=vz.ScaleType.LINEAR)
      else:
        root.add_categorical_param(hp.name, [str(v) for v in hp.values])
    elif isinstance(hp, hp_module.Int):
      if hp.step and hp.step != 1:
        root.add_discrete_param(
            hp.name, list(range(hp.min_value, hp.max_value + 1, hp.step)),
            scale_type=_SCALES[hp.sampling])
      else:
        root.add_int_param(hp.name, hp.min_value, hp.max_value,
                           scale_type=_SCALES[hp.sampling])
    elif isinstance(hp, hp_module.Float):
      if hp.step:
        root.add_discrete_param(hp.name, _float_steps(hp),
                                scale_type=_SCALES[hp.sampling])
      else:
        root.add_float_param(hp.name, hp.min_value, hp.max_value,
                             scale_type=_SCALES[hp.sampling])
    else:
      raise ValueError(f'Hyperparameter {hp.name!r} is a '
                       f'{type(hp).__name__}, which the Vizier oracle cannot '
                       'search.')
  return config


def keras_values(hyperparameters: keras_tuner.HyperParameters,
                 parameters: Dict[str, Any]) -> Dict[str, Any]:
  """A Vizier trial's parameters ({name: pyvizier ParameterValue or plain
  value}) as KerasTuner values of each hyperparameter's own type: Vizier
  sends every number as a float."""
  values = {}
  for hp in hyperparameters.space:
    if isinstance(hp, hp_module.Fixed):
      values[hp.name] = hp.value
      continue
    if hp.name not in parameters:
      raise VizierError(f'Vizier trial has no value for {hp.name!r}; its '
                        f'parameters are {sorted(parameters)}.')
    raw = getattr(parameters[hp.name], 'value', parameters[hp.name])
    if isinstance(hp, hp_module.Boolean):
      value = str(raw) == 'True'
    elif isinstance(hp, hp_module.Choice):
      value = next((v for v in hp.values if _same(v, raw)), None)
      if value is None:
        raise VizierError(f'Vizier suggested {raw!r} for {hp.name!r}, which '
                          f'is not one of {list(hp.values)}.')
    elif isinstance(hp, hp_module.Int):
      value = int(round(float(raw)))
    else:
      value = float(raw)
    values[hp.name] = value
  return values


def _same(choice, raw) -> bool:
  if isinstance(choice, str) or isinstance(raw, str):
    return str(choice) == str(raw)
  return abs(float(choice) - float(raw)) < 1e-9


def _numeric_choice(hp) -> bool:
  return all(isinstance(v, (int, float)) and not isinstance(v, bool)
             for v in hp.values)


def _vizier_value(hp, value):
  """A KerasTuner value as the study's parameter: numbers as floats,
  categories (Boolean, strings, mixed choices) as strings."""
  numeric = (isinstance(hp, (hp_module.Int, hp_module.Float)) or
             (isinstance(hp, hp_module.Choice) and _numeric_choice(hp)))
  return float(value) if numeric else str(value)


def _hint(error: Exception, project: str, region: str) -> str:
  if isinstance(error, (api_exceptions.PermissionDenied,
                        api_exceptions.Unauthenticated,
                        auth_exceptions.GoogleAuthError)):
    return (f'check that the Tuner\'s service account (vertex.service_account) '
            f'has the Vertex AI User role (roles/aiplatform.user) in project '
            f'{project} and that the Vertex AI API is enabled there')
  if isinstance(error, (api_exceptions.NotFound,
                        api_exceptions.InvalidArgument)):
    return (f'check vertex.project ({project}) and vertex.region ({region}): '
            'Vizier studies live in one region of one project')
  return ('check Vertex AI\'s status and quota for Vizier in '
          f'{project}/{region}; a retry of the Tuner resumes the study')


class VizierOracle(keras_tuner.Oracle):
  """Trials decided by a Vertex AI Vizier study; the first one is the
  configured hyperparameters.

  Args:
    objective: the keras_tuner.Objective, the study's one metric.
    max_trials: trials at most, those of a resumed study included.
    hyperparameters: the search space; each default is the configured value.
    study_name: the study's display name (see `study_name()`).
    project, region: where the study lives.
    **kwargs: for keras_tuner.Oracle (seed, max_retries_per_trial, ...).
  """

  def __init__(self, objective, max_trials, hyperparameters, study_name,
               project, region, **kwargs):
    super().__init__(objective=objective, max_trials=max_trials,
                     hyperparameters=hyperparameters, **kwargs)
    self.study_name = study_name
    self.project = project
    self.region = region
    self._study = None
    # KerasTuner trial id -> the Vizier trial's resource name; None for the
    # configured trial while it runs (it joins the study when it ends).
    self._vizier_trials: Dict[str, Optional[str]] = {}
    self._handles: Dict[str, Any] = {}
    # Trial ids whose outcome the study has (a retried end_trial sends none).
    self._reported = set()
    self._configured_done = False
    self._asking_tuner = None

  # The study. ----------------------------------------------------------------

  def _call(self, what: str, function, *args, **kwargs):
    try:
      return function(*args, **kwargs)
    except (api_exceptions.GoogleAPIError,
            auth_exceptions.GoogleAuthError) as error:
      detail = ' '.join(str(getattr(error, 'message', None) or error).split())
      raise VizierError(
          f'The Tuner\'s Vertex AI Vizier study "{self.study_name}" '
          f'(projects/{self.project}/locations/{self.region}): could not '
          f'{what}: {type(error).__name__}: {detail}; '
          f'{_hint(error, self.project, self.region)}.') from error

  def _connect(self):
    """Creates or resumes the study, once, and takes in its finished
    trials."""
    if self._study is not None:
      return self._study
    study = self._call(
        'create or load it', vizier.Study.create_or_load,
        display_name=self.study_name,
        problem=problem(self.hyperparameters, self.objective),
        project=self.project, location=self.region)
    known = {name for name in self._vizier_trials.values() if name}
    configured = self._configured_values()
    for found in self._call('list the trials', study.trials):
      record = found.gca_resource
      if record.name in known:
        continue
      values = self._parameters_of(record)
      if values == configured:
        self._configured_done = True
      state = record.state
      if state == gca_study.Trial.State.SUCCEEDED:
        self._take_in(record, values, _COMPLETED)
      elif state == gca_study.Trial.State.INFEASIBLE:
        self._take_in(record, values, _FAILED)
      # Active trials stay with the service, which hands each back to the
      # tuner it was suggested to when that tuner asks again.
    self._study = study
    return study

  def _parameters_of(self, record) -> Optional[Dict[str, Any]]:
    parameters = vz.TrialConverter.from_proto(record).parameters
    try:
      return keras_values(self.hyperparameters, parameters)
    except VizierError:
      return None

  def _configured_values(self) -> Dict[str, Any]:
    return {hp.name: hp.default for hp in self.hyperparameters.space}

  def _take_in(self, record, values, status):
    """A trial a previous attempt finished, as a KerasTuner trial."""
    if values is None:
      return
    trial_id = f'{{:0{len(str(self.max_trials))}d}}'.format(len(self.trials))
    hps = self.hyperparameters.copy()
    hps.values = values
    trial = trial_module.Trial(hyperparameters=hps, trial_id=trial_id,
                               status=status)
    measured = {m.metric_id: m.value for m in record.final_measurement.metrics}
    if status == _COMPLETED and self.objective.name in measured:
      trial.metrics.register(self.objective.name,
                             direction=self.objective.direction)
      trial.metrics.update(self.objective.name, measured[self.objective.name],
                           step=int(record.final_measurement.step_count))
      self.score_trial(trial)
    elif status == _COMPLETED:
      trial.status = _FAILED
    self.trials[trial_id] = trial
    self._vizier_trials[trial_id] = record.name
    self._reported.add(trial_id)
    self._record_values(trial)
    self.start_order.append(trial_id)
    self.end_order.append(trial_id)
    self._save_trial(trial)

  # KerasTuner's Oracle. --------------------------------------------------------

  @keras_tuner.synchronized
  def create_trial(self, tuner_id):
    self._connect()
    self._asking_tuner = tuner_id
    return super().create_trial(tuner_id)

  def populate_space(self, trial_id):
    if not self._configured_done:
      self._configured_done = True
      self._vizier_trials[trial_id] = None
      return {'status': _RUNNING, 'values': self._configured_values()}
    suggested = self._call('suggest a trial', self._study.suggest, count=1,
                           worker=self._asking_tuner)
    if not suggested:
      # The study has nothing more to try.
      return {'status': _STOPPED}
    handle = suggested[0]
    values = keras_values(self.hyperparameters,
                          self._call('read a suggested trial',
                                     lambda: handle.parameters))
    self._vizier_trials[trial_id] = handle.resource_name
    self._handles[trial_id] = handle
    return {'status': _RUNNING, 'values': values}

  @keras_tuner.synchronized
  def end_trial(self, trial):
    try:
      super().end_trial(trial)
    finally:
      self._report(self.trials[trial.trial_id])
      self.save()  # with what the study has been told

  def _report(self, trial):
    """Completes the trial in the study once KerasTuner is done with it."""
    if trial.status not in (_COMPLETED, _FAILED):
      return  # INVALID: KerasTuner runs it again.
    if (trial.trial_id not in self._vizier_trials or
        trial.trial_id in self._reported):
      return
    handle = self._handles.pop(trial.trial_id, None)
    if handle is None:
      name = self._vizier_trials[trial.trial_id]
      if name is None:
        handle = self._add_configured_trial(trial)
      else:
        handle = self._call('find a trial', vizier.Trial, name)
    if trial.status == _COMPLETED:
      measurement = vz.Measurement(
          metrics={self.objective.name: float(trial.score)},
          steps=int(trial.best_step or 0))
      self._call('complete a trial', handle.complete, measurement)
    else:
      reason = (trial.message or 'the trial failed').strip().splitlines()
      self._call('report an infeasible trial', handle.complete,
                 infeasible_reason=reason[-1][:500])
    self._reported.add(trial.trial_id)

  def _add_configured_trial(self, trial):
    """The configured trial joins the study (CreateTrial) once it has run."""
    parameters = [
        gca_study.Trial.Parameter(
            parameter_id=hp.name,
            value=_vizier_value(hp, trial.hyperparameters.values[hp.name]))
        for hp in self.hyperparameters.space
        if not isinstance(hp, hp_module.Fixed)]
    created = self._call(
        'add the configured trial',
        lambda: self._study.api_client.create_trial(
            parent=self._study.resource_name,
            trial=gca_study.Trial(parameters=parameters)))
    self._vizier_trials[trial.trial_id] = created.name
    return self._call('find the configured trial', vizier.Trial, created.name)

  def get_state(self):
    state = super().get_state()
    state['vizier_trials'] = dict(self._vizier_trials)
    state['vizier_reported'] = sorted(self._reported)
    state['vizier_configured_done'] = self._configured_done
    return state

  def set_state(self, state):
    super().set_state(state)
    self._vizier_trials = dict(state.get('vizier_trials', {}))
    self._reported = set(state.get('vizier_reported', ()))
    self._configured_done = state.get('vizier_configured_done', False)
