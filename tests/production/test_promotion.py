"""`repairml promote`, offline: the requests the aiplatform SDK would send to make a canary the production model, against the in-memory Vertex AI of fake_vertex.py."""

from pathlib import Path

import pytest
from google.api_core import exceptions as api_exceptions

from fake_vertex import PROJECT, REGION
from fake_vertex import vertex  # pylint: disable=unused-import
from pipeline.production import promotion
from pipeline.production.model_registry import VertexModelRegistry
from pipeline.production.promotion import PromotionError, promote

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VERTEX_CONFIG = PROJECT_ROOT / 'configs' / 'vertex.yaml'
MODEL, ENDPOINT = 'repairml', 'repairml-endpoint'


def _registry():
  return VertexModelRegistry(PROJECT, REGION)


def _canaries(vertex, versions=2, traffic=(90, 10), endpoint=ENDPOINT):
  """Version 1, the default, and canaries 2.. deployed, oldest first."""
  model = vertex.add_model(MODEL, versions=versions)
  endpoint_name, deployed = vertex.add_endpoint(
      endpoint, serving=[f'{model}@{v}' for v in range(1, versions + 1)],
      traffic=list(traffic))
  return model, endpoint_name, deployed


def test_promote_makes_the_newest_canary_the_default_with_all_traffic(vertex):
  model, endpoint, [stable, canary] = _canaries(vertex)

  done = promote(_registry(), MODEL, ENDPOINT)

  [update] = vertex.calls('update_endpoint')
  assert update['endpoint'].name == endpoint
  assert dict(update['endpoint'].traffic_split) == {canary: 100}
  assert list(update['update_mask'].paths) == ['traffic_split']
  [merge] = vertex.calls('merge_version_aliases')
  assert merge == {'name': f'{model}@2', 'version_aliases': ['default']}
  # Traffic first: what users get changes before the bookkeeping.
  assert vertex.changes() == ['update_endpoint', 'merge_version_aliases']
  assert vertex.default_version(model) == '2'
  assert vertex.traffic(endpoint) == {canary: 100}
  # The old version stays deployed, without traffic, to go back to.
  assert vertex.deployed(endpoint) == [(stable, '1'), (canary, '2')]
  assert (done.version.versioned_name, done.deployed_model_id,
          done.previous_default, done.changed) == (f'{model}@2', canary, '1',
                                                   True)


def test_the_newest_of_several_canaries_is_promoted(vertex):
  model, endpoint, [_, _, newest] = _canaries(vertex, versions=3,
                                              traffic=(80, 10, 10))

  promote(_registry(), MODEL, ENDPOINT)

  assert vertex.default_version(model) == '3'
  assert vertex.traffic(endpoint) == {newest: 100}


def test_a_named_version_is_promoted(vertex):
  model, endpoint, [_, older, _] = _canaries(vertex, versions=3,
                                             traffic=(80, 10, 10))

  promote(_registry(), MODEL, ENDPOINT, version_id='2')

  assert vertex.default_version(model) == '2'
  assert vertex.traffic(endpoint) == {older: 100}


def test_going_back_to_the_previous_version_is_a_promotion(vertex):
  model, endpoint, [stable, _] = _canaries(vertex)
  promote(_registry(), MODEL, ENDPOINT)

  promote(_registry(), MODEL, ENDPOINT, version_id='1')

  assert vertex.default_version(model) == '1'
  assert vertex.traffic(endpoint) == {stable: 100}


def test_promoting_again_changes_nothing(vertex):
  _canaries(vertex)
  promote(_registry(), MODEL, ENDPOINT, version_id='2')
  before = vertex.state()
  vertex.requests.clear()

  done = promote(_registry(), MODEL, ENDPOINT, version_id='2')

  assert vertex.changes() == []
  assert vertex.state() == before
  assert not done.changed


def test_a_half_done_promotion_is_finished_by_the_next(vertex):
  model, endpoint, [_, canary] = _canaries(vertex)
  vertex.fail['merge_version_aliases'] = api_exceptions.ServiceUnavailable(
      'Try again')
  with pytest.raises(RuntimeError, match='ServiceUnavailable'):
    promote(_registry(), MODEL, ENDPOINT, version_id='2')
  assert vertex.traffic(endpoint) == {canary: 100}
  del vertex.fail['merge_version_aliases']
  vertex.requests.clear()

  promote(_registry(), MODEL, ENDPOINT, version_id='2')

  assert vertex.changes() == ['merge_version_aliases']
  assert vertex.default_version(model) == '2'


@pytest.mark.parametrize('version_id, message', [
    (None, 'no canary to promote on .*: the versions of .* deployed there are '
     '1, and version 1 is the default already; pass --version ID'),
    ('2', r'version 2 of .* is not deployed on .* \(deployed: 1\): promote '
     'one of those, or push the model first'),
])
def test_nothing_to_promote_is_one_message(vertex, version_id, message):
  model = vertex.add_model(MODEL, versions=2)
  vertex.add_endpoint(ENDPOINT, serving=[f'{model}@1'])

  with pytest.raises(PromotionError, match=message):
    promote(_registry(), MODEL, ENDPOINT, version_id)

  assert vertex.changes() == []


def test_a_missing_model_or_endpoint_is_named(vertex):
  with pytest.raises(PromotionError, match=(
      f'no Vertex AI Model is called "{MODEL}" in project {PROJECT}, region '
      f'{REGION}: push a model first')):
    promote(_registry(), MODEL, ENDPOINT)

  vertex.add_model(MODEL)
  with pytest.raises(PromotionError, match=(
      f'no Vertex AI endpoint is called "{ENDPOINT}"')):
    promote(_registry(), MODEL, ENDPOINT)


# The command --------------------------------------------------------------


def _config(tmp_path):
  """configs/vertex.yaml, its endpoint renamed to the one the tests make."""
  path = tmp_path / 'vertex.yaml'
  path.write_text(f'base: {VERTEX_CONFIG}\nvertex:\n  endpoint:\n'
                  f'    endpoint_display_name: {ENDPOINT}\n', encoding='utf-8')
  return str(path)


def test_the_command_promotes_and_says_what_it_did(vertex, tmp_path, capsys):
  model, endpoint, [_, canary] = _canaries(vertex)

  assert promotion.main(['--config', _config(tmp_path)]) == 0

  out = capsys.readouterr().out
  assert out == (f'promoted {model}@2: it is the default version (was '
                 f'version 1) and deployed model {canary} serves all traffic '
                 f'of {endpoint}.\n')
  assert vertex.default_version(model) == '2'


def test_a_refusal_is_one_line_and_exit_code_1(vertex, tmp_path, capsys):
  _canaries(vertex)
  vertex.fail['update_endpoint'] = api_exceptions.PermissionDenied(
      'Permission aiplatform.endpoints.update denied')

  assert promotion.main(['--config', _config(tmp_path), '--version', '2']) == 1

  err = capsys.readouterr().err
  assert err.startswith('repairml: Vertex AI refused changing the traffic '
                        'split of ')
  assert 'roles/aiplatform.user' in err
  assert err.count('\n') == 1 and 'Traceback' not in err


def test_a_configuration_without_a_vertex_section_is_exit_code_2(capsys):
  local = str(PROJECT_ROOT / 'configs' / 'local.yaml')

  assert promotion.main(['--config', local]) == 2

  assert 'no vertex section' in capsys.readouterr().err


def test_a_version_that_is_no_number_is_a_usage_error(capsys):
  with pytest.raises(SystemExit) as exited:
    promotion.main(['--version', 'latest'])

  assert exited.value.code == 2
  assert "'latest' is not a version id" in capsys.readouterr().err
