"""Speed benchmark for BENCHMARKS.md: repairml's local pipeline against TFX's penguin.

Measures, in one invocation so that the ratios share the machine's load:
1. TFX's penguin example, cold and cached (benchmarks/penguin_reference.py);
2. repairml on the default data (configs/local.yaml, 50,000 sessions), with a
   fresh pipeline root and metadata store:
   - cold: the first run;
   - rerun: the same run again; the Evaluator now has a baseline, the model
     the cold run blessed, and repeats that model's blessing;
   - cached: a third identical run, the same against the second's blessing.
Each repairml run is `repairml run` as a subprocess, timed from start to exit;
the per-component seconds come from its summary JSON.

    .venv/bin/python benchmarks/pipeline_speed.py --json benchmarks/out/speed.json
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / 'benchmarks' / 'out'


def repairml_config(workdir: Path) -> Path:
  """configs/local.yaml with every path under `workdir`."""
  raw = yaml.safe_load((ROOT / 'configs' / 'local.yaml').read_text())
  raw['data']['root'] = str(ROOT / raw['data']['root'])
  raw['schema'] = str(ROOT / raw['schema'])
  raw['paths'] = {'pipeline_root': str(workdir / 'pipeline'),
                  'metadata': str(workdir / 'metadata.sqlite'),
                  'serving_dir': str(workdir / 'serving'),
                  'log_file': str(workdir / 'repairml.log')}
  path = workdir / 'config.yaml'
  path.write_text(yaml.safe_dump(raw))
  return path


def timed_run(config: Path, summary: Path, label: str) -> dict:
  started = time.monotonic()
  result = subprocess.run(
      [str(ROOT / '.venv' / 'bin' / 'repairml'), 'run', '--config',
       str(config), '--summary', str(summary)],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
  seconds = round(time.monotonic() - started, 1)
  record = json.loads(summary.read_text())
  print(f'repairml {label:<7} {seconds:7.1f} s  status {record["status"]}',
        flush=True)
  if result.returncode != 0:
    sys.exit(f'repairml {label} run ended with {record["status"]}; '
             f'see {record.get("log_file")}')
  return {'seconds': seconds, 'component_seconds': record['component_seconds'],
          'cached_components': record['cached_components'],
          'macro_f1': record['metrics']['macro_f1']}


def report(result: dict, json_path) -> None:
  """Prints the result, and writes it to `json_path` if one is given."""
  print(json.dumps(result, indent=2))
  if json_path:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--json', type=Path, help='also write the result here')
  args = parser.parse_args()

  penguin_json = OUT / 'penguin.json'
  subprocess.run([sys.executable, str(ROOT / 'benchmarks' /
                                      'penguin_reference.py'),
                  '--json', str(penguin_json)], check=True)
  penguin = json.loads(penguin_json.read_text())

  workdir = OUT / 'repairml'
  shutil.rmtree(workdir, ignore_errors=True)
  workdir.mkdir(parents=True)
  config = repairml_config(workdir)
  runs = {label: timed_run(config, workdir / f'{label}.json', label)
          for label in ('cold', 'rerun', 'cached')}

  cold = runs['cold']['seconds']
  result = {
      'penguin_cold_seconds': penguin['penguin_cold_seconds'],
      'penguin_cached_seconds': penguin['penguin_cached_seconds'],
      'repairml': runs,
      'repairml_cold_over_penguin_cold': round(
          cold / penguin['penguin_cold_seconds'], 2),
      'repairml_rerun_over_cold': round(runs['rerun']['seconds'] / cold, 2),
      'repairml_cached_over_cold': round(runs['cached']['seconds'] / cold, 2),
  }
  report(result, args.json)


if __name__ == '__main__':
  main()
