"""`repairml schema diff`: what SchemaGen proposes, against the curated schema.

The pipeline loads the checked-in schema/schema.pbtxt and, beside it, lets
SchemaGen infer a schema from the latest statistics (node `ProposedSchema`).
This command prints a unified diff from the curated schema to the proposal of
the latest run, so a person can decide what to adopt. Lines only in the
curated file are often deliberate: environments, comparators, widened domains.
"""

import argparse
import difflib
import os
import sys
from typing import List, Optional

from pipeline.config import DEFAULT_CONFIG_PATH, ConfigError, load_config


def _normalized(schema) -> List[str]:
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  features = sorted(schema.feature, key=lambda f: f.name)
  del schema.feature[:]
  schema.feature.extend(features)
  return text_format.MessageToString(schema).splitlines(keepends=True)


def latest_proposed_schema_uri(config) -> str:
  from pipeline import metadata_store  # pylint: disable=g-import-not-at-top
  try:
    store = metadata_store.open_store(config, read_only=True)
  except metadata_store.StoreError as e:
    raise ConfigError(str(e)) from None
  node = store.get_context_by_type_and_name(
      'node', f'{config.pipeline_name}.ProposedSchema')
  artifacts = store.get_artifacts_by_context(node.id) if node else []
  if not artifacts:
    raise ConfigError('no proposed schema recorded yet: run the pipeline '
                      'first (`make run`).')
  return max(artifacts, key=lambda a: a.id).uri


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='repairml schema diff',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--config', default=DEFAULT_CONFIG_PATH)
  args = parser.parse_args(argv)
  try:
    config = load_config(args.config)
    uri = latest_proposed_schema_uri(config)
  except ConfigError as e:
    print(f'repairml: {e}', file=sys.stderr)
    return 2
  from tfx.utils import io_utils  # pylint: disable=g-import-not-at-top
  curated = io_utils.SchemaReader().read(config.schema)
  proposed = io_utils.SchemaReader().read(os.path.join(uri, 'schema.pbtxt'))
  diff = list(difflib.unified_diff(
      _normalized(curated), _normalized(proposed),
      fromfile=f'curated: {config.schema}',
      tofile=f'proposed by SchemaGen: {uri}/schema.pbtxt'))
  sys.stdout.writelines(diff or ['The proposed schema matches the curated '
                                 'one.\n'])
  return 0
