"""Vertex AI's job service in memory, behind the aiplatform SDK's gapic
JobServiceClient: the CustomJobs that TFX's Vertex Training client
(tfx.extensions.google_cloud_ai_platform.training_clients.VertexJobClient)
would create for the Trainer and the Tuner.

As in fake_vertex.py, the client runs unchanged up to its methods, which are
replaced by FakeJobService's. create_custom_job builds its request proto from
the flattened arguments as the real method does, so a field or enum name
that Vertex AI's API does not know fails here too. A created job has
SUCCEEDED by the time it is first asked for: TFX's runner asks once before it
starts polling, so it never sleeps.
"""

import google.auth
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient
from google.cloud.aiplatform_v1.types import custom_job as gca_custom_job
from google.cloud.aiplatform_v1.types import job_service
from google.cloud.aiplatform_v1.types import job_state


def _copy(message):
  return type(message).deserialize(type(message).serialize(message))


class FakeJobService:
  """Vertex AI's CustomJobs, in memory.

  `created` holds (the client's API endpoint, CreateCustomJobRequest) of
  each create_custom_job call; `asked` the names get_custom_job was asked
  for. `final_state` is the state every job reaches.
  """

  def __init__(self, monkeypatch):
    self.created = []
    self.asked = []
    self.jobs = {}
    self.final_state = job_state.JobState.JOB_STATE_SUCCEEDED
    for method in ('create_custom_job', 'get_custom_job'):
      monkeypatch.setattr(JobServiceClient, method,
                          self._as_client_method(getattr(self, '_' + method)))

  @staticmethod
  def _as_client_method(handle):
    def call(client, *args, **kwargs):
      return handle(client, *args, **kwargs)
    return call

  def _create_custom_job(self, client, request=None, *, parent=None,
                         custom_job=None, **transport_details):
    del transport_details  # retry, timeout, metadata
    request = job_service.CreateCustomJobRequest(request)
    if parent is not None:
      request.parent = parent
    if custom_job is not None:
      request.custom_job = custom_job
    self.created.append((client.api_endpoint, request))
    job = _copy(request.custom_job)
    job.name = f'{request.parent}/customJobs/{len(self.jobs) + 1}'
    job.state = job_state.JobState.JOB_STATE_PENDING
    self.jobs[job.name] = job
    return _copy(job)

  def _get_custom_job(self, client, request=None, *, name=None,
                      **transport_details):
    del client, transport_details
    name = name if name is not None else request.name
    self.asked.append(name)
    job = self.jobs[name]
    job.state = self.final_state
    return _copy(job)

  def custom_job(self) -> gca_custom_job.CustomJob:
    """The one CustomJob created."""
    ((_, request),) = self.created
    return request.custom_job


@pytest.fixture
def vertex_jobs(monkeypatch) -> FakeJobService:
  """FakeJobService, reached with anonymous credentials."""
  monkeypatch.setattr(google.auth, 'default',
                      lambda *args, **kwargs: (AnonymousCredentials(),
                                               'my-gcp-project'))
  return FakeJobService(monkeypatch)
