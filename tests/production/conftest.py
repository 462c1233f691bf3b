"""Fixtures of the production tests."""
import pytest
from google.auth.credentials import AnonymousCredentials

from pipeline.production import submission


@pytest.fixture
def recorded(monkeypatch):
  """Stops `repairml submit` at the Vertex AI SDK: records what it sends."""
  calls = {}
  monkeypatch.setattr(submission, 'default_credentials', AnonymousCredentials)
  monkeypatch.setattr(submission, 'check_images',
                      lambda job: calls.setdefault('checked', job))
  monkeypatch.setattr(submission, 'submit', lambda job, service_account: (
      calls.update(job=job, service_account=service_account) or
      submission.Submission('projects/p/jobs/j', 'https://console/j')))
  monkeypatch.setattr(
      submission, 'schedule',
      lambda job, cron, display_name, service_account: (
          calls.update(job=job, cron=cron, display_name=display_name,
                       service_account=service_account) or
          submission.Submission('projects/p/schedules/s', 'https://console/s')))
  return calls
