"""Scaling benchmark for BENCHMARKS.md: a cold local run at growing data sizes.

For each size, generates that many sessions (4 daily spans, seed 42), runs
`repairml run` cold (fresh pipeline root and metadata store) with
configs/local.yaml pointed at them, and records the wall seconds and each
component's seconds. A least-squares line through (rows, seconds) splits the
cost into a fixed overhead and a cost per row, overall and per component. The
step counts of the Tuner and the Trainer do not depend on the rows, so the
per-row cost is the Beam components' (ExampleGen, StatisticsGen, Transform,
Evaluator) and the data reading of training.

    .venv/bin/python benchmarks/pipeline_scaling.py --rows 10000 50000 200000 \
        --json benchmarks/out/scaling.json

`--beam-arg` replaces the configuration's Beam arguments, e.g. to compare the
DirectRunner's in-memory mode with its multi-process mode:
`--beam-arg=--direct_running_mode=multi_processing --beam-arg=--direct_num_workers=2`.
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / 'benchmarks' / 'out'
sys.path.insert(0, str(ROOT / 'benchmarks'))
from pipeline_speed import repairml_config, report, timed_run  # pylint: disable=g-import-not-at-top,wrong-import-position


def generate(rows: int, out: Path) -> None:
  if any(out.glob('span-*/*.parquet')):
    return
  subprocess.run([str(ROOT / '.venv' / 'bin' / 'repairml'), 'data',
                  'generate', '--rows', str(rows), '--seed', '42', '--spans',
                  '4', '--out', str(out)],
                 check=True, stdout=subprocess.DEVNULL)


def fit_line(points: List[tuple]) -> Dict[str, float]:
  """Least squares seconds = fixed + per_row * rows."""
  n = len(points)
  mean_x = sum(x for x, _ in points) / n
  mean_y = sum(y for _, y in points) / n
  spread = sum((x - mean_x) ** 2 for x, _ in points)
  slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
  return {'fixed_seconds': round(mean_y - slope * mean_x, 1),
          'microseconds_per_row': round(slope * 1e6, 1)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rows', type=int, nargs='+',
                      default=[10_000, 50_000, 200_000])
  parser.add_argument('--beam-arg', action='append', default=None,
                      help='a Beam argument replacing the configured ones')
  parser.add_argument('--json', type=Path, help='also write the result here')
  args = parser.parse_args()

  runs = {}
  for rows in args.rows:
    data = OUT / 'scaling-data' / str(rows)
    generate(rows, data)
    workdir = OUT / 'scaling' / str(rows)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    config = repairml_config(workdir)
    raw = yaml.safe_load(config.read_text())
    raw['data']['root'] = str(data)
    if args.beam_arg is not None:
      raw['beam_args'] = args.beam_arg
    config.write_text(yaml.safe_dump(raw))
    runs[rows] = timed_run(config, workdir / 'cold.json', f'{rows} rows')

  result = {'beam_args': args.beam_arg,
            'runs': {str(rows): run for rows, run in runs.items()}}
  if len(runs) > 1:
    result['total'] = fit_line([(rows, run['seconds'])
                                for rows, run in runs.items()])
    components = sorted({c for run in runs.values()
                         for c in run['component_seconds']})
    result['per_component'] = {
        component: fit_line([(rows, run['component_seconds'].get(component, 0))
                             for rows, run in runs.items()])
        for component in components}
  report(result, args.json)


if __name__ == '__main__':
  main()
