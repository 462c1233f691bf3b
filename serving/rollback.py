"""`repairml model rollback | restore | list`: the version local servers serve.

  repairml model rollback [--config PATH] [--to VERSION]
  repairml model restore VERSION [--config PATH]
  repairml model list [--config PATH] [--json]

The versions live in the configuration's `paths.serving_dir`. A running
`repairml serve` serves the newest complete version there and looks again
every `serving.poll_seconds`, so `rollback`, which moves the newest version (or every
version newer than `--to`) aside into `retired/`, rolls it back, and
`restore` undoes that (models/retirement.py does the moving). A server
pinned to a version (`--version`, the pin route) stays on it.

Exit codes: 0 done, 1 the filesystem refused, 2 invalid arguments or
configuration, or a move that is not possible (one line on stderr, no
traceback). Nothing here imports TensorFlow.
"""

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional

from models import retirement, versions
from pipeline.config import (DEFAULT_CONFIG_PATH, Config, ConfigError,
                             load_config)

USAGE_ERROR = 2
FILESYSTEM_ERROR = 1


class _OneLineErrors(argparse.ArgumentParser):
  """Usage errors in one line, as every other error of these commands."""

  def error(self, message: str):
    self.exit(USAGE_ERROR, f'{self.prog}: {message} (see --help)\n')


def _parser() -> argparse.ArgumentParser:
  parser = _OneLineErrors(
      prog='repairml model',
      description='Roll the locally served model back, restore a version, '
                  'or list the versions.')
  commands = parser.add_subparsers(dest='command', required=True,
                                   metavar='{rollback,restore,list}')
  rollback = commands.add_parser(
      'rollback', help='retire the newest version (or all newer than --to)')
  rollback.add_argument('--to', type=int, metavar='VERSION',
                        help='retire every version newer than this one, '
                             'which is then served')
  restore = commands.add_parser('restore', help='bring a retired version back')
  restore.add_argument('version', type=int, metavar='VERSION')
  listing = commands.add_parser('list', help='the pushed and retired versions')
  listing.add_argument('--json', action='store_true',
                       help='print them as JSON')
  for command in (rollback, restore, listing):
    command.add_argument('--config', default=DEFAULT_CONFIG_PATH,
                         help='run configuration YAML, for paths.serving_dir '
                              'and serving.poll_seconds (default: '
                              '%(default)s)')
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  args = _parser().parse_args(argv)
  prog = f'repairml model {args.command}'
  try:
    config = load_config(args.config)
    serving_dir = config.paths.serving_dir
    if args.command == 'rollback':
      print(_rollback(serving_dir, args.to))
      print(_now_served(config))
    elif args.command == 'restore':
      print(_restore(serving_dir, args.version))
      print(_now_served(config))
    else:
      listing = version_listing(serving_dir)
      print(json.dumps(listing, indent=2) if args.json else
            _listing_text(listing))
  except (ConfigError, retirement.RetirementError) as e:
    print(f'{prog}: {e}', file=sys.stderr)
    return USAGE_ERROR
  except OSError as e:
    print(f'{prog}: {e}', file=sys.stderr)
    return FILESYSTEM_ERROR
  return 0


def _rollback(serving_dir: str, to_version: Optional[int]) -> str:
  retired = retirement.retire(serving_dir, to_version)
  if not retired:
    return (f'version {to_version} is the newest in {serving_dir} already; '
            'nothing retired.')
  moved = ', '.join(map(str, retired))
  return (f'retired version{"s" if len(retired) > 1 else ""} {moved} to '
          f'{os.path.join(serving_dir, versions.RETIRED_DIR)}/ '
          '(`repairml model restore VERSION` brings one back).')


def _restore(serving_dir: str, version: int) -> str:
  retirement.restore(serving_dir, version)
  return (f'restored version {version} to '
          f'{os.path.join(serving_dir, str(version))}.')


def _now_served(config: Config) -> str:
  newest = versions.latest_version(config.paths.serving_dir)
  poll_seconds = config.serving.poll_seconds
  if poll_seconds <= 0:
    return (f'The newest version is now {newest}; serving.poll_seconds is 0, '
            'so a running `repairml serve` does not look for it: restart it.')
  return (f'The newest version is now {newest}: a running `repairml serve` '
          f'follows within its poll interval ({poll_seconds:g} s, '
          'serving.poll_seconds), unless it is pinned to a version or was '
          'started with another --poll-seconds.')


def version_listing(serving_dir: str) -> Dict[str, Any]:
  """The pushed and retired versions, newest first, and the one served."""
  def described(version: int, state: str, folder: str) -> Dict[str, Any]:
    path = os.path.join(folder, str(version))
    provenance = versions.read_provenance(path)
    return {'version': version, 'state': state, 'path': path,
            'pushed_at': provenance.get('pushed_at'),
            'model_artifact_id': provenance.get('model_artifact_id'),
            'model_uri': provenance.get('model_uri')}

  pushed = [described(v, 'pushed', serving_dir)
            for v in versions.pushed_versions(serving_dir)]
  retired = [described(v, 'retired',
                       os.path.join(serving_dir, versions.RETIRED_DIR))
             for v in versions.retired_versions(serving_dir)]
  return {'serving_dir': serving_dir,
          'served': versions.latest_version(serving_dir),
          'versions': sorted(pushed + retired, key=lambda v: -v['version'])}


def _listing_text(listing: Dict[str, Any]) -> str:
  if not listing['versions']:
    return (f'no versions in {listing["serving_dir"]}: run the pipeline '
            '(`make run`) to push one.')
  lines = [f'versions in {listing["serving_dir"]}, newest first:']
  for v in listing['versions']:
    served = '  <- served' if v['version'] == listing['served'] else ''
    artifact = v['model_artifact_id']
    lines.append(
        f'  {v["version"]:<12} {v["state"]:<8} pushed at '
        f'{v["pushed_at"] or "?"}, model artifact '
        f'{artifact if artifact is not None else "?"}{served}')
  retired_dir = os.path.join(listing['serving_dir'], versions.RETIRED_DIR)
  lines.append('A running `repairml serve` serves the newest pushed version '
               f'(unless pinned); retired ones are in {retired_dir}/.')
  return '\n'.join(lines)
