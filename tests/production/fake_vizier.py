"""Vertex AI Vizier in memory, behind the aiplatform SDK's gapic client: what
test_vizier.py's oracle creates, resumes, asks and tells.

The SDK's Study and Trial (google.cloud.aiplatform.vizier) run unchanged down
to the v1 VizierServiceClient they use (utils.VizierClientWithOverride, whose
default version is v1); its methods are replaced by FakeVizier's, which record
each request and keep the studies and their trials as the service would: one
study per display name in a location (a second CreateStudy is refused with
AlreadyExists, LookupStudy finds it), trial ids numbered per study, a
SuggestTrials answered first with the trials already assigned to that client
and still active, then with the next of the points the test has queued in
`points`; a completed trial cannot be completed again.
"""

import re
import types as pytypes

import google.auth
import pytest
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform import initializer
from google.cloud.aiplatform_v1.services.vizier_service import \
    VizierServiceClient
from google.cloud.aiplatform_v1.types import study as gca_study
from google.cloud.aiplatform_v1.types import vizier_service

PROJECT = 'repairml-prod'
PROJECT_NUMBER = '123456789'  # Vertex AI names resources by project number
REGION = 'europe-west4'
PARENT = f'projects/{PROJECT}/locations/{REGION}'

State = gca_study.Trial.State


class _Operation:
  """A long-running operation that has finished with `response`."""

  def __init__(self, response):
    self._response = response
    self.operation = pytypes.SimpleNamespace(name=f'{PARENT}/operations/7')

  def result(self, timeout=None):
    del timeout
    return self._response


def _copy(message):
  return type(message).deserialize(type(message).serialize(message))


class FakeVizier:
  """Vertex AI Vizier's studies and trials, in memory.

  `requests` holds every gapic call as (method, request): the request proto,
  its dict, or the keyword arguments of a flattened call. `points` is the
  queue of suggestions, each {parameter id: value}; `fail[method] = error`
  makes that method raise before it changes anything.
  """

  _METHODS = ('create_study', 'lookup_study', 'get_study', 'list_trials',
              'suggest_trials', 'create_trial', 'get_trial', 'complete_trial')

  def __init__(self, monkeypatch):
    self.requests = []
    self.fail = {}
    self.points = []
    self.studies = {}  # study name -> Study
    self.trials = {}   # study name -> [Trial], in the order of their ids
    self._next_study = 100
    for method in self._METHODS:
      monkeypatch.setattr(VizierServiceClient, method, self._recorder(method))

  def _recorder(self, method):
    handle = getattr(self, '_' + method)

    def call(client, request=None, **kwargs):
      del client
      for transport_detail in ('retry', 'timeout', 'metadata'):
        kwargs.pop(transport_detail, None)
      self.requests.append((method, request if request is not None
                            else kwargs))
      if method in self.fail:
        raise self.fail[method]
      if isinstance(request, dict):
        return handle(**request)
      return handle(**kwargs)

    return call

  def calls(self, method):
    return [request for name, request in self.requests if name == method]

  def completed(self):
    """{trial parameters as a plain dict: final objective value} of every
    SUCCEEDED trial, from the study's records."""
    return {tuple(sorted(_plain(t).items())):
            {m.metric_id: m.value for m in t.final_measurement.metrics}
            for trials in self.trials.values() for t in trials
            if t.state == State.SUCCEEDED}

  # Studies. ------------------------------------------------------------------

  def _create_study(self, parent, study):
    location = _location(parent)
    if any(s.display_name == study.display_name and s.name.startswith(location)
           for s in self.studies.values()):
      raise api_exceptions.AlreadyExists(
          f'Study with display name {study.display_name} already exists')
    _check_spec(study.study_spec)
    self._next_study += 1
    created = _copy(study)
    created.name = f'{location}/studies/{self._next_study}'
    created.state = gca_study.Study.State.ACTIVE
    self.studies[created.name] = created
    self.trials[created.name] = []
    return _copy(created)

  def _lookup_study(self, parent, display_name):
    location = _location(parent)
    for study in self.studies.values():
      if study.display_name == display_name and study.name.startswith(
          location):
        return _copy(study)
    raise api_exceptions.NotFound(f'Study {display_name} not found')

  def _get_study(self, name):
    if name not in self.studies:
      raise api_exceptions.NotFound(f'Study {name} not found')
    return _copy(self.studies[name])

  # Trials. -------------------------------------------------------------------

  def _list_trials(self, parent):
    return vizier_service.ListTrialsResponse(
        trials=[_copy(t) for t in self._trials_of(parent)])

  def _suggest_trials(self, parent, suggestion_count, client_id):
    trials = self._trials_of(parent)
    assigned = [t for t in trials
                if t.client_id == client_id and t.state == State.ACTIVE]
    while len(assigned) < suggestion_count and self.points:
      point = self.points.pop(0)
      assigned.append(self._add(parent, point, client_id, State.ACTIVE))
    return _Operation(vizier_service.SuggestTrialsResponse(
        trials=[_copy(t) for t in assigned[:suggestion_count]],
        study_state=gca_study.Study.State.ACTIVE))

  def _create_trial(self, parent, trial):
    spec = self.studies[parent].study_spec
    ids = {p.parameter_id for p in spec.parameters}
    given = {p.parameter_id for p in trial.parameters}
    if given != ids:
      raise api_exceptions.InvalidArgument(
          f'trial parameters {sorted(given)} do not match the study '
          f'{sorted(ids)}')
    # A user-provided trial is neither suggested nor assigned to a client.
    return _copy(self._add(parent, _plain(trial), '', State.ACTIVE))

  def _get_trial(self, name):
    return _copy(self._trial(name))

  def _complete_trial(self, name, final_measurement=None,
                      trial_infeasible=False, infeasible_reason=''):
    trial = self._trial(name)
    if trial.state in (State.SUCCEEDED, State.INFEASIBLE):
      raise api_exceptions.FailedPrecondition(f'Trial {name} is completed')
    if trial_infeasible:
      trial.state = State.INFEASIBLE
      trial.infeasible_reason = infeasible_reason
    else:
      if final_measurement is None:
        raise api_exceptions.InvalidArgument(
            f'Trial {name} has no measurement to complete with')
      trial.final_measurement = final_measurement
      trial.state = State.SUCCEEDED
    return _copy(trial)

  def _add(self, parent, point, client_id, state):
    trials = self._trials_of(parent)
    trial = gca_study.Trial(
        name=f'{parent}/trials/{len(trials) + 1}', id=str(len(trials) + 1),
        state=state, client_id=client_id,
        parameters=[gca_study.Trial.Parameter(parameter_id=k, value=v)
                    for k, v in point.items()])
    trials.append(trial)
    return trial

  def _trials_of(self, study):
    if study not in self.trials:
      raise api_exceptions.NotFound(f'Study {study} not found')
    return self.trials[study]

  def _trial(self, name):
    study = name.rsplit('/trials/', 1)[0]
    for trial in self._trials_of(study):
      if trial.name == name:
        return trial
    raise api_exceptions.NotFound(f'Trial {name} not found')


def _location(parent):
  """projects/<id or number>/locations/<region>, by project number."""
  project, region = re.fullmatch(r'projects/([^/]+)/locations/([^/]+)',
                                 parent).groups()
  assert project in (PROJECT, PROJECT_NUMBER), parent
  return f'projects/{PROJECT_NUMBER}/locations/{region}'


def _plain(trial):
  """A trial's parameters as {id: value}: numbers arrive as floats."""
  return {p.parameter_id: p.value for p in trial.parameters}


def _check_spec(spec):
  """What Vertex AI refuses in a StudySpec."""
  if len(spec.metrics) < 1:
    raise api_exceptions.InvalidArgument('study_spec.metrics is required')
  seen = set()
  for parameter in spec.parameters:
    if parameter.parameter_id in seen:
      raise api_exceptions.InvalidArgument(
          f'duplicate parameter {parameter.parameter_id}')
    seen.add(parameter.parameter_id)
    kind = parameter._pb.WhichOneof('parameter_value_spec')  # pylint: disable=protected-access
    if kind is None:
      raise api_exceptions.InvalidArgument(
          f'parameter {parameter.parameter_id} has no value spec')
    if kind == 'discrete_value_spec':
      values = list(parameter.discrete_value_spec.values)
      if any(b - a < 1e-10 for a, b in zip(values, values[1:])):
        raise api_exceptions.InvalidArgument(
            f'discrete values of {parameter.parameter_id} must increase')
    if kind in ('double_value_spec', 'integer_value_spec'):
      bounds = getattr(parameter, kind)
      if not bounds.min_value < bounds.max_value:
        raise api_exceptions.InvalidArgument(
            f'min_value of {parameter.parameter_id} must be below max_value')
    if (parameter.scale_type == gca_study.StudySpec.ParameterSpec.ScaleType
        .UNIT_LOG_SCALE and kind == 'double_value_spec' and
        parameter.double_value_spec.min_value <= 0):
      raise api_exceptions.InvalidArgument(
          f'log-scaled {parameter.parameter_id} must stay above 0')


@pytest.fixture
def vizier(monkeypatch) -> FakeVizier:
  """The SDK with anonymous credentials and a fresh global configuration,
  talking to FakeVizier."""
  monkeypatch.setattr(initializer, 'global_config', initializer._Config())  # pylint: disable=protected-access
  monkeypatch.setattr(google.auth, 'default',
                      lambda *args, **kwargs: (AnonymousCredentials(),
                                               PROJECT))
  return FakeVizier(monkeypatch)
