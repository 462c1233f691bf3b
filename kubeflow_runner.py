"""Compiles repairml's pipeline for Vertex AI Pipelines or Kubeflow; submits it.

  python kubeflow_runner.py --config configs/vertex.yaml --output pipeline.json
  python kubeflow_runner.py --config configs/vertex.yaml --submit \\
      [--car-model NAME] [--date-from YYYY-MM-DD] [--date-to YYYY-MM-DD] \\
      [--train-steps N] [--no-cache]
  python kubeflow_runner.py --config configs/vertex.yaml --schedule "0 3 * * 1"
      (again: updates that schedule)
  python kubeflow_runner.py --config configs/vertex.yaml --kfp-host URL

(the same as `repairml compile` and `repairml submit`). --pipeline collection
does the same for the data collection pipeline (collection/production.py;
default output runs/collection_pipeline.json, runtime parameters --date-from,
--date-to and --car-model, and --schedule without a cron takes
vertex.collection.schedule). Compiling is
`create_pipeline(config)`, the function the local runner runs, written out by
TFX's KubeflowV2DagRunner: it needs no Google Cloud access. The component
image is the configured one tagged with the git commit of this checkout (what
`make push-image` pushes), or --image-tag. Exit codes: 0 done, 1 the cloud
refused, 2 invalid configuration or arguments.
"""

import argparse
import datetime
import os
import subprocess
import sys
from typing import Dict, List, Optional

from pipeline.config import ConfigError, load_vertex_config

USAGE_ERROR = 2
CLOUD_ERROR = 1
DEFAULT_OUTPUT = 'runs/pipeline.json'
PIPELINES = ('modeling', 'collection')
COLLECTION_OUTPUT = 'runs/collection_pipeline.json'


def image_tag(repo_dir: str) -> str:
  """The tag `make image` gives the image built from this checkout."""
  try:
    return subprocess.run(
        ['git', 'rev-parse', '--short=12', 'HEAD'], cwd=repo_dir, check=True,
        capture_output=True, text=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    raise ConfigError(
        f'{repo_dir} is not a git checkout with a commit, so the component '
        'image has no tag to use: pass --image-tag.') from None


def compile_pipeline(config, output: str, tag: str) -> str:
  """Writes the pipeline job JSON for `config` to `output`; returns the image."""
  # pylint: disable=g-import-not-at-top
  from tfx import v1 as tfx
  from pipeline.pipeline import create_pipeline
  from pipeline.production import runtime_parameters
  # pylint: enable=g-import-not-at-top
  image = f'{config.vertex.image}:{tag}'
  output = os.path.abspath(output)
  os.makedirs(os.path.dirname(output), exist_ok=True)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image=image,
          # Schema 2.1 keeps the runtime parameters' defaults in the spec.
          use_pipeline_spec_2_1=True),
      output_dir=os.path.dirname(output),
      output_filename=os.path.basename(output))
  runner.run(create_pipeline(config, image=image,
                             enable_cache=config.vertex.enable_caching),
             # TFX declares runtime parameters without their defaults; the
             # job's runtime config carries them.
             parameter_values=runtime_parameters.defaults(config),
             write_out=True)
  return image


def _pipeline(args) -> str:
  """Which pipeline the command line is about (callers' args may predate
  --pipeline)."""
  return getattr(args, 'pipeline', 'modeling')


def parameter_values(config, args) -> Dict[str, object]:
  """The runtime parameters given on the command line, checked like the
  pipeline's RunParameters step will check them."""
  if _pipeline(args) == 'collection':
    from collection import production  # pylint: disable=g-import-not-at-top
    if args.train_steps is not None:
      raise ConfigError('--train-steps is a parameter of the modeling '
                        'pipeline, not of --pipeline collection.')
    return production.checked_values(car_model=args.car_model,
                                     date_from=args.date_from,
                                     date_to=args.date_to)
  from pipeline.production import runtime_parameters  # pylint: disable=g-import-not-at-top
  return runtime_parameters.checked_values(
      config, car_model=args.car_model, date_from=args.date_from,
      date_to=args.date_to, train_steps=args.train_steps)


def compile_collection_pipeline(config, output: str, tag: str) -> str:
  """Writes the collection pipeline job JSON; returns the image."""
  from collection import production  # pylint: disable=g-import-not-at-top
  return production.compile_pipeline(config, output, tag)


def check_schedule(cron: str) -> None:
  """ConfigError unless Vertex AI can run the cron string of --schedule."""
  from pipeline.production import submission  # pylint: disable=g-import-not-at-top
  try:
    submission.check_cron(cron)
  except ValueError as e:
    raise ConfigError(f'--schedule {e}') from None


def provenance_labels(config) -> dict:
  """The hashes of the configuration and of the lock, as job labels (a label
  holds 63 characters: the first 32 hex digits of each sha256), so that
  `repairml lineage --vertex` shows them as it does for local runs."""
  from pipeline import run_provenance  # pylint: disable=g-import-not-at-top
  values = run_provenance.provenance(config)
  return {'config-sha256': values['repairml_config_sha256'][:32],
          'lock-sha256': values['repairml_lock_sha256'][:32]}


def send(config, args, values, template: str, image: str, terminal) -> None:
  """Submits or schedules the compiled template; prints where to see it."""
  # pylint: disable=g-import-not-at-top
  from pipeline.production import submission
  from pipeline.production.labels import label_value
  # pylint: enable=g-import-not-at-top
  caching = config.vertex.enable_caching and not args.no_cache
  if args.kfp_host:
    created = submission.submit_to_kfp(template, args.kfp_host, values,
                                       enable_caching=caching)
    terminal.write(f'submitted to Kubeflow Pipelines: run {created.name}\n'
                   f'  {created.url}\n')
    return
  vertex = config.vertex
  target = submission.VertexTarget(
      project=vertex.project, region=vertex.region,
      service_account=vertex.service_account,
      pipeline_root=config.paths.pipeline_root)
  labels = {**submission.git_labels(), **provenance_labels(config),
            'image-tag': label_value(image.rsplit(':', 1)[-1])}
  name = (config.pipeline_name if _pipeline(args) == 'modeling' else
          f'{config.pipeline_name}-collection')
  job_id = '{}-{}'.format(name,
                          datetime.datetime.now().strftime('%Y%m%d-%H%M%S'))
  job = submission.pipeline_job(template, target, values, caching, labels,
                                job_id=job_id)
  submission.check_images(job)
  if args.schedule:
    # The display name is the schedule's identity: scheduling again updates it.
    name = (f'{config.pipeline_name} schedule' if _pipeline(args) == 'modeling'
            else f'{config.pipeline_name} collection schedule')
    created = submission.schedule(job, args.schedule, name,
                                  vertex.service_account)
    how = '' if created.created else f' (updated the schedule "{name}")'
    terminal.write(f'scheduled "{args.schedule}"{how}: {created.name}\n'
                   f'  {created.url}\n')
  else:
    created = submission.submit(job, vertex.service_account)
    terminal.write(f'submitted to Vertex AI Pipelines: {created.name}\n'
                   f'  {created.url}\n')


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='kubeflow_runner.py',
      description='Compile the pipeline for Vertex AI Pipelines or Kubeflow, '
                  'and optionally submit or schedule it.')
  parser.add_argument('--config', default='configs/vertex.yaml',
                      help='a configuration with a vertex section')
  parser.add_argument('--pipeline', choices=PIPELINES, default='modeling',
                      help='the modeling pipeline (default) or the data '
                           'collection pipeline')
  parser.add_argument('--output', default=None,
                      help='where to write the compiled pipeline JSON '
                           f'(default {DEFAULT_OUTPUT}, or '
                           f'{COLLECTION_OUTPUT})')
  parser.add_argument('--image-tag',
                      help='the component image tag (default: the git commit)')
  send_group = parser.add_mutually_exclusive_group()
  send_group.add_argument('--submit', action='store_true',
                          help='start a run on Vertex AI Pipelines')
  send_group.add_argument('--schedule', metavar='CRON', nargs='?', const='',
                          help='create a Vertex AI schedule, e.g. "0 3 * * 1" '
                               '(--pipeline collection: by default '
                               'vertex.collection.schedule)')
  send_group.add_argument('--kfp-host', metavar='URL',
                          help='start a run on this Kubeflow Pipelines host')
  runtime = parser.add_argument_group('runtime parameters of a submitted run')
  runtime.add_argument('--car-model')
  runtime.add_argument('--date-from', metavar='YYYY-MM-DD')
  runtime.add_argument('--date-to', metavar='YYYY-MM-DD')
  runtime.add_argument('--train-steps', type=int)
  runtime.add_argument('--no-cache', action='store_true',
                       help='run every step again')
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  args = _parser().parse_args(argv)
  collection = args.pipeline == 'collection'
  if args.output is None:
    args.output = COLLECTION_OUTPUT if collection else DEFAULT_OUTPUT
  try:
    config = load_vertex_config(args.config)
    if collection:
      from collection import production  # pylint: disable=g-import-not-at-top
      production.check_production_config(config)
      if args.schedule == '':
        args.schedule = config.vertex.collection.schedule
    elif args.schedule == '':
      raise ConfigError('--schedule needs a cron string, e.g. "0 3 * * 1".')
    tag = args.image_tag or image_tag(os.path.dirname(os.path.abspath(
        __file__)))
    sending = args.submit or args.schedule or args.kfp_host
    # Checked before compiling: a bad value fails in a second, not a minute.
    values = parameter_values(config, args) if sending else {}
    if args.schedule:
      check_schedule(args.schedule)
  except ConfigError as e:
    print(f'repairml: {e}', file=sys.stderr)
    return USAGE_ERROR

  from pipeline import progress  # pylint: disable=g-import-not-at-top
  with progress.output_to_log_file(config.paths.log_file) as terminal:
    terminal.write(f'log: {config.paths.log_file}\n')
    image = (compile_collection_pipeline if collection else
             compile_pipeline)(config, args.output, tag)
    terminal.write(f'compiled {os.path.abspath(args.output)}\n'
                   f'  image {image}\n')
    if not sending:
      return 0
    # pylint: disable=g-import-not-at-top
    from pipeline.production.submission import SubmissionError
    # pylint: enable=g-import-not-at-top
    try:
      send(config, args, values, args.output, image, terminal)
    except SubmissionError as e:
      terminal.write(f'repairml: {e}\n')
      return CLOUD_ERROR
  return 0


if __name__ == '__main__':
  sys.exit(main())
