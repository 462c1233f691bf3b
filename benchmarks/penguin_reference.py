"""Speed reference for BENCHMARKS.md: TFX's own penguin example on this machine.

Runs the penguin pipeline that ships with TFX 1.16 (tfx/examples/penguin/) the
way /work/shared/PLATFORM.md describes: Keras model with Tuner, LocalDagRunner,
components ExampleGen, StatisticsGen, SchemaGen, Transform, Tuner, Trainer,
Evaluator, Pusher, on a synthetic 334-row penguin CSV. It runs the pipeline
twice, cold (fresh pipeline root and metadata) and again unchanged (cached),
and reports both wall times. repairml's local runs are compared with them.

No network is used and the real $HOME is left alone: the pipeline runs as a
subprocess with HOME=<workdir>/home, which this script wipes and rebuilds.

    .venv/bin/python benchmarks/penguin_reference.py --json benchmarks/out/penguin.json
"""

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

PENGUIN_SRC = Path(find_spec('tfx').origin).parent / 'examples' / 'penguin'
DEFAULT_WORKDIR = Path(__file__).resolve().parent / 'out' / 'penguin'
ROWS = 334
SEED = 42
# (species label, row count, mean and sd of culmen length, culmen depth,
# flipper length, body mass): roughly Adelie, Chinstrap, Gentoo.
SPECIES = [
    (0, 146, [(38.8, 2.7), (18.3, 1.2), (190.0, 6.5), (3700.0, 460.0)]),
    (1, 68, [(48.8, 3.3), (18.4, 1.1), (196.0, 7.1), (3733.0, 384.0)]),
    (2, 120, [(47.5, 3.1), (15.0, 1.0), (217.0, 6.5), (5076.0, 504.0)]),
]
FEATURES = ['culmen_length_mm', 'culmen_depth_mm', 'flipper_length_mm',
            'body_mass_g']


def write_csvs(data_dir: Path) -> None:
  """Writes the labelled CSV and the same rows without species (seeded)."""
  rng = random.Random(SEED)
  # '%.2f' keeps every feature a float, as in TFX's processed penguin CSV.
  rows = [[str(label)] + ['%.2f' % rng.gauss(mu, sd) for mu, sd in stats]
          for label, count, stats in SPECIES for _ in range(count)]
  rng.shuffle(rows)
  assert len(rows) == ROWS
  header = ['species'] + FEATURES
  for subdir, first_column in (('labelled', 0), ('unlabelled', 1)):
    (data_dir / subdir).mkdir(parents=True)
    with open(data_dir / subdir / 'penguins.csv', 'w', newline='') as f:
      writer = csv.writer(f)
      writer.writerow(header[first_column:])
      writer.writerows(row[first_column:] for row in rows)


def set_up(home: Path) -> Path:
  """Builds a fresh $HOME with ~/penguin as the example expects; returns the script."""
  shutil.rmtree(home, ignore_errors=True)
  penguin = home / 'penguin'
  penguin.mkdir(parents=True)
  for name in ('penguin_utils_keras.py', 'penguin_utils_base.py'):
    shutil.copy(PENGUIN_SRC / name, penguin / name)
  # The only patch: BulkInferrer is broken with Keras 3 (see PLATFORM.md).
  source = (PENGUIN_SRC / 'penguin_pipeline_local.py').read_text()
  assert source.count('enable_bulk_inferrer=True') == 1
  script = penguin / 'penguin_pipeline_local.py'
  script.write_text(source.replace('enable_bulk_inferrer=True',
                                   'enable_bulk_inferrer=False'))
  write_csvs(penguin / 'data')
  return script


def run_pipeline(script: Path, home: Path, log_path: Path, label: str) -> float:
  """Runs the pipeline once, appending its output to the log; returns seconds."""
  env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / '.cache'),
             XDG_CONFIG_HOME=str(home / '.config'))
  # The example's defaults are the reference run: DirectRunner, Keras, Tuner on.
  command = [sys.executable, str(script), '--runner=DirectRunner',
             '--model_framework=keras']
  with open(log_path, 'a') as log:
    log.write(f'\n===== {label} run: {" ".join(command)}\n')
    log.flush()
    start = time.monotonic()
    result = subprocess.run(command, cwd=home, env=env, stdout=log,
                            stderr=subprocess.STDOUT, check=False)
    seconds = time.monotonic() - start
  if result.returncode != 0:
    sys.exit(f'penguin {label} run failed (exit {result.returncode}) after '
             f'{seconds:.1f} s; see {log_path}')
  print(f'penguin {label} run: {seconds:.1f} s', flush=True)
  return seconds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', type=Path, default=DEFAULT_WORKDIR,
                      help='working directory (default: %(default)s)')
  parser.add_argument('--json', type=Path, help='also write the result here')
  args = parser.parse_args()

  workdir = args.workdir.resolve()
  workdir.mkdir(parents=True, exist_ok=True)
  home = workdir / 'home'
  log_path = workdir / 'penguin.log'
  log_path.unlink(missing_ok=True)
  script = set_up(home)

  result = {
      'penguin_cold_seconds': round(run_pipeline(script, home, log_path, 'cold'), 1),
      'penguin_cached_seconds': round(run_pipeline(script, home, log_path, 'cached'), 1),
      'rows': ROWS,
      'log': str(log_path),
  }
  text = json.dumps(result, indent=2)
  print(text)
  if args.json:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(text + '\n')


if __name__ == '__main__':
  main()
