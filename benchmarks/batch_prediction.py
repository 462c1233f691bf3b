"""Batch-prediction speed: the Beam job against calling the SavedModel in-process.

    .venv/bin/python benchmarks/batch_prediction.py [--config configs/local.yaml]
        [--rows 20000] [--json benchmarks/out/batch.json]

Generates --rows fresh sessions (4 parquet spans, seed 1003) and predicts them
with the latest pushed model in `paths.serving_dir`, twice in one run so that
both figures share the machine's load:

- `beam_job`: serving/batch.py's job with the configuration's beam_args, timed
  from the call until the output directory is in place: pipeline start, model
  load (once per worker), parquet reading, conversion to tf.Examples,
  prediction and the JSON lines.
- `in_process`: the same parquet files read with pandas, converted with
  serving/instances.py and fed to the serving signature in batches of 256,
  timed from the model load to the last batch; nothing is written.
  `predict_only` is the signature calls alone.

Both include the model load; neither includes importing TensorFlow. TensorFlow,
Beam and absl write to the configuration's log file; the figures go to the
terminal and to the JSON file.
"""

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

DEFAULT_ROWS = 20000
SEED = 1003
SPANS = 4
BATCH_SIZE = 256
DEFAULT_JSON = Path(__file__).resolve().parent / 'out' / 'batch.json'


def _in_process(model_dir: str, pattern: str) -> dict:
  """The sessions/s of reading, converting and predicting without Beam."""
  import glob  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import pandas as pd  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from serving import instances, pushed  # pylint: disable=g-import-not-at-top

  def plain(value):  # as ReadFromParquet hands rows to the job
    if isinstance(value, np.ndarray):
      return list(value)
    if isinstance(value, float) and math.isnan(value):
      return None
    return value

  started = time.monotonic()
  model = tf.saved_model.load(model_dir)
  serve = model.signatures['serving_default']
  features = pushed.model_features(model_dir)
  frame = pd.concat([pd.read_parquet(path) for path in sorted(glob.glob(pattern))],
                    ignore_index=True)
  rows = [{k: plain(v) for k, v in row.items() if k in features}
          for row in frame.to_dict('records')]
  examples = instances.serialized_examples(rows, features)
  predict_seconds = 0.0
  predicted = 0
  for start in range(0, len(examples), BATCH_SIZE):
    batch_started = time.monotonic()
    outputs = serve(examples=tf.constant(examples[start:start + BATCH_SIZE]))
    predicted += outputs['probabilities'].shape[0]
    predict_seconds += time.monotonic() - batch_started
  seconds = time.monotonic() - started
  return {'sessions': predicted, 'seconds': round(seconds, 2),
          'sessions_per_second': round(predicted / seconds, 1),
          'predict_only_seconds': round(predict_seconds, 2),
          'predict_only_sessions_per_second': round(predicted / predict_seconds,
                                                    1)}


def _beam_job(model_dir: str, pattern: str, output_dir: str,
              beam_args: List[str], id_column: str) -> dict:
  from serving import batch  # pylint: disable=g-import-not-at-top
  result = batch.run_batch_prediction(model_dir, pattern, output_dir,
                                      beam_args=beam_args,
                                      batch_size=BATCH_SIZE,
                                      id_column=id_column)
  if result.errors:
    raise RuntimeError(f'{result.errors} sessions failed; see '
                       f'{output_dir}/errors-*.jsonl')
  return {'sessions': result.predicted, 'seconds': round(result.seconds, 2),
          'sessions_per_second': round(result.predicted / result.seconds, 1),
          'beam_args': beam_args}


def run(config_path: str, rows: int, json_path: Path, terminal) -> int:
  # pylint: disable=g-import-not-at-top
  import tensorflow  # noqa: F401  the imports happen before the clocks start
  from data.generator import generate_sessions, write_spans
  from models import export  # noqa: F401
  from serving import batch
  from pipeline.config import load_config
  # pylint: enable=g-import-not-at-top
  config = load_config(config_path)
  model_dir = batch.resolve_model_dir(config.paths.serving_dir)
  with tempfile.TemporaryDirectory(prefix='batch-bench-') as workdir:
    write_spans(generate_sessions(rows, seed=SEED, spans=SPANS),
                os.path.join(workdir, 'sessions'))
    pattern = os.path.join(workdir, 'sessions', 'span-*', '*.parquet')
    terminal.write(f'model {model_dir}, {rows} sessions in {SPANS} spans\n')
    beam = _beam_job(model_dir, pattern, os.path.join(workdir, 'out'),
                     list(config.beam_args), config.data.id_column)
    terminal.write(f'beam job    {beam["seconds"]:7.1f} s '
                   f'{beam["sessions_per_second"]:9.1f} sessions/s\n')
    in_process = _in_process(model_dir, pattern)
    terminal.write(f'in-process  {in_process["seconds"]:7.1f} s '
                   f'{in_process["sessions_per_second"]:9.1f} sessions/s '
                   f'(predict only {in_process["predict_only_sessions_per_second"]:.1f})\n')
  ratio = beam['sessions_per_second'] / in_process['sessions_per_second']
  terminal.write(f'beam / in-process: {ratio:.2f}\n')
  record = {
      'model_dir': model_dir, 'rows': rows, 'seed': SEED, 'spans': SPANS,
      'batch_size': BATCH_SIZE, 'beam_job': beam, 'in_process': in_process,
      'beam_over_in_process': round(ratio, 3),
      'cpus': os.cpu_count(), 'machine': platform.machine(),
      'command': 'benchmarks/batch_prediction.py --config '
                 f'{config_path} --rows {rows}',
  }
  json_path.parent.mkdir(parents=True, exist_ok=True)
  temporary = json_path.with_name(f'.{json_path.name}.tmp')
  temporary.write_text(json.dumps(record, indent=2) + '\n')
  os.replace(temporary, json_path)
  terminal.write(f'wrote {json_path}\n')
  return 0


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description='Sessions/s of the batch-prediction Beam job against the '
                  'SavedModel called in-process.')
  parser.add_argument('--config', default='configs/local.yaml')
  parser.add_argument('--rows', type=int, default=DEFAULT_ROWS)
  parser.add_argument('--json', type=Path, default=DEFAULT_JSON)
  args = parser.parse_args(argv)
  if args.rows <= 0:
    parser.error(f'--rows must be positive, got {args.rows}')
  # pylint: disable=g-import-not-at-top
  from pipeline import progress
  from pipeline.config import ConfigError, load_config
  from serving.batch import BatchPredictionError
  # pylint: enable=g-import-not-at-top
  try:
    log_file = load_config(args.config).paths.log_file
  except ConfigError as e:
    print(f'batch_prediction: {e}', file=sys.stderr)
    return 2
  failure = None
  with progress.output_to_log_file(log_file) as terminal:
    terminal.write(f'log: {log_file}\n')
    try:
      return run(args.config, args.rows, args.json, terminal)
    except BatchPredictionError as e:
      failure = str(e)
  print(f'batch_prediction: {failure}', file=sys.stderr)
  return 2


if __name__ == '__main__':
  sys.exit(main())
