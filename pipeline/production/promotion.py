"""`repairml promote`: a canary becomes the production model.

  repairml promote [--config configs/vertex.yaml] [--version ID]

A push deploys each new version of the Vertex AI Model as a canary, with
`vertex.endpoint.traffic_percentage` of the endpoint's traffic, and leaves it
a non-default version (vertex_pusher.py). Promoting a version, by default the
newest canary (the deployed version with the highest version id that is not
the default), does two things, in this order:

1. the endpoint sends all of its traffic to that version's deployed model
   (Endpoint.update(traffic_split={deployed model id: 100})); the others stay
   deployed with none, so going back is another promote, and the next push
   undeploys them beyond vertex.endpoint.keep_deployed;
2. the version gets the Model's `default` alias
   (ModelRegistry.add_version_aliases(['default'], version)), which Vertex AI
   takes away from the version that had it.

Both steps are idempotent: promoting again, e.g. after a failure between
them, finishes the job. Exit codes: 0 done, 1 Vertex AI refused or there is
nothing to promote, 2 invalid configuration or arguments.
"""

import argparse
import dataclasses
import sys
from typing import List, Optional

from pipeline.config import ConfigError, load_vertex_config
from pipeline.production.model_registry import (DEFAULT_ALIAS, EndpointState,
                                                ModelVersion, VertexError,
                                                VertexModelRegistry)

USAGE_ERROR = 2
CLOUD_ERROR = 1


class PromotionError(Exception):
  """There is nothing, or not that, to promote; the message says why."""


@dataclasses.dataclass(frozen=True)
class Promotion:
  """What a promotion changed."""
  version: ModelVersion      # now the default, serving all traffic
  endpoint: str
  deployed_model_id: str
  previous_default: str      # the version id that was the default before
  changed: bool              # False: it was promoted already


def promote(registry: VertexModelRegistry, model_display_name: str,
            endpoint_display_name: str,
            version_id: Optional[str] = None) -> Promotion:
  """Makes `version_id` (default: the newest canary) the Model's default
  version and sends it all of the endpoint's traffic."""
  model = registry.find_model(model_display_name)
  if model is None:
    raise PromotionError(
        f'no Vertex AI Model is called "{model_display_name}" in '
        f'{registry.where}: push a model first (run the pipeline), or check '
        'vertex.endpoint.model_display_name')
  endpoint = registry.find_endpoint(endpoint_display_name)
  if endpoint is None:
    raise PromotionError(
        f'no Vertex AI endpoint is called "{endpoint_display_name}" in '
        f'{registry.where}: push a model first (run the pipeline), or check '
        'vertex.endpoint.endpoint_display_name')
  default = registry.version(model, DEFAULT_ALIAS)
  deployment = _deployment_to_promote(endpoint, model, default, version_id)
  version = (default if deployment.version_id == default.version_id else
             registry.version(model, deployment.version_id))

  serving_all = {deployment.id: 100}
  # A deployed model absent from the split gets no traffic, as one at 0.
  current = {k: v for k, v in endpoint.traffic_split.items() if v}
  changed = False
  if current != serving_all:
    endpoint = registry.set_traffic(endpoint, serving_all)
    changed = True
  if not version.is_default:
    version = registry.make_default(version)
    changed = True
  return Promotion(version, endpoint.resource_name, deployment.id,
                   default.version_id, changed)


def _deployment_to_promote(endpoint: EndpointState, model: str,
                           default: ModelVersion, version_id: Optional[str]):
  deployments = endpoint.deployments_of(model)
  deployed = ', '.join(sorted({d.version_id for d in deployments}, key=int))
  if version_id is None:
    canaries = [d for d in deployments if d.version_id != default.version_id]
    if not canaries:
      raise PromotionError(
          f'no canary to promote on {endpoint.resource_name}: the versions of '
          f'{model} deployed there are {deployed or "none"}, and version '
          f'{default.version_id} is the default already; pass --version ID '
          'to promote another deployed version')
    return max(canaries, key=lambda d: (int(d.version_id), d.create_time))
  chosen = [d for d in deployments if d.version_id == version_id]
  if not chosen:
    raise PromotionError(
        f'version {version_id} of {model} is not deployed on '
        f'{endpoint.resource_name} (deployed: {deployed or "none"}): promote '
        'one of those, or push the model first')
  return chosen[-1]


def _version_id(text: str) -> str:
  """--version: Vertex AI numbers a Model's versions 1, 2, 3, ..."""
  if not text.isdigit():
    raise argparse.ArgumentTypeError(
        f'{text!r} is not a version id: pass the number of the version, '
        'e.g. --version 3')
  return text


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='repairml promote',
      description='Make a canary the Model\'s default version and send it '
                  'all of the endpoint\'s traffic.')
  parser.add_argument('--config', default='configs/vertex.yaml',
                      help='a configuration with a vertex section')
  parser.add_argument('--version', type=_version_id, metavar='ID',
                      help='the version to promote (default: the newest '
                           'deployed version that is not the default)')
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  args = _parser().parse_args(argv)
  try:
    config = load_vertex_config(args.config)
  except ConfigError as e:
    print(f'repairml: {e}', file=sys.stderr)
    return USAGE_ERROR
  vertex = config.vertex
  registry = VertexModelRegistry(vertex.project, vertex.region)
  try:
    done = promote(registry, vertex.endpoint.model_display_name,
                   vertex.endpoint.endpoint_display_name, args.version)
  except (PromotionError, VertexError) as e:
    print(f'repairml: {e}', file=sys.stderr)
    return CLOUD_ERROR
  if not done.changed:
    print(f'{done.version.versioned_name} is the default version and serves '
          f'all traffic of {done.endpoint} already.')
  else:
    print(f'promoted {done.version.versioned_name}: it is the default version '
          f'(was version {done.previous_default}) and deployed model '
          f'{done.deployed_model_id} serves all traffic of {done.endpoint}.')
  return 0
