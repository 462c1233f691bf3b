"""Distributed-training benchmark for BENCHMARKS.md: steps per second of one
worker against two local workers, and the projected scaling on Vertex AI.

In one invocation, so that the ratio shares the machine's load, the latest
run's Trainer (ML Metadata of --config, e.g. after `make run`) is trained
again on local clusters (models/local_cluster.py), alternating, --repeats
times each:
- one worker: the chief alone, training.distribution multi_worker_mirrored
  (the same loop and collective ops as two workers, a group of one);
- two workers: a chief and a worker, multi_worker_mirrored, on loopback.
Each replica is its own process, on this machine's 2 cores. A run's speed is
its steady state: the steps of every epoch after the first (which also
traces the step function) over their time, from the chief's epoch lines.

The projection is arithmetic, not a measurement: from the one-worker step
time measured here and the bytes a step all-reduces (the model's dense
gradients, plus the embedding rows a step touches), for N workers of one
Vertex machine each, with the global batch fixed (training.batch_size):
    step(N) = compute(1) / N + ring all-reduce(N)
    ring all-reduce(N) = 2 (N-1)/N * dense bytes / bandwidth
                         + (N-1)/N * embedding bytes / bandwidth
                         + 2 (N-1) * latency
with the stated bandwidth and latency (Compute Engine's per-VM egress and a
same-zone round trip). It ignores that a Vertex machine computes faster than
this one, which favours more workers less.

    .venv/bin/python benchmarks/distributed_training.py --config configs/local.yaml \
        --train-steps 500 --json benchmarks/out/distributed_training.json
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from lineage.history import History  # noqa: E402
from models import local_cluster  # noqa: E402
from pipeline import metadata_store  # noqa: E402
from pipeline.config import load_config  # noqa: E402

EPOCH_LINE = re.compile(r'Epoch (\d+): (\d+) steps in ([0-9.]+) s')
# Compute Engine: an n1-standard-8's egress limit is 16 Gbit/s; a same-zone
# round trip is about 0.1 ms, so one ring hop about 50 us.
BANDWIDTH_BYTES_PER_S = 16e9 / 8
HOP_LATENCY_S = 50e-6


def steady_steps_per_second(chief_log: str) -> float:
  with open(chief_log, encoding='utf-8', errors='replace') as f:
    epochs = [(int(e), int(s), float(t))
              for e, s, t in EPOCH_LINE.findall(f.read())]
  steady = [(s, t) for e, s, t in epochs if e > 0] or [
      (s, t) for _, s, t in epochs]
  if not steady:
    raise RuntimeError(f'No epoch lines in {chief_log}.')
  return sum(s for s, _ in steady) / sum(t for _, t in steady)


def gradient_bytes(model_dir: str, batch_size: int):
  """(dense gradient bytes, embedding rows' bytes a step sends per
  replica): the trainable variables of the exported model; an embedding's
  gradient is the rows of its looked-up ids, at most one per id a batch
  holds (bounded here by the batch's sessions times the ids per session)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model = tf.saved_model.load(model_dir)
  dense = embedding = 0
  for variable in model.trainable_variables:
    size = variable.shape.num_elements() * variable.dtype.size
    if 'embedding' in variable.name:
      rows, width = variable.shape
      embedding += min(rows, batch_size * 8) * width * variable.dtype.size
    else:
      dense += size
  return dense, embedding


def projection(step_seconds: float, dense: int, embedding: int, workers):
  rows = []
  for n in workers:
    communication = 0.0
    if n > 1:
      communication = (2 * (n - 1) / n * dense / BANDWIDTH_BYTES_PER_S +
                       (n - 1) * embedding / n / BANDWIDTH_BYTES_PER_S +
                       2 * (n - 1) * HOP_LATENCY_S)
    step = step_seconds / n + communication
    rows.append({'workers': n, 'step_ms': 1000 * step,
                 'communication_ms': 1000 * communication,
                 'speedup': step_seconds / step})
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/local.yaml')
  parser.add_argument('--run', default='latest')
  parser.add_argument('--train-steps', type=int, default=500)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--json', default='')
  args = parser.parse_args(argv)

  config = load_config(args.config)
  history = History(metadata_store.open_store(config, read_only=True),
                    config.pipeline_name)
  trainer = local_cluster.recorded_trainer(history, history.run(args.run))
  properties = trainer.with_distribution('multi_worker_mirrored',
                                         args.train_steps)
  speeds = {1: [], 2: []}
  wall = {1: [], 2: []}
  with tempfile.TemporaryDirectory(prefix='repairml-bench-') as scratch:
    for repeat in range(args.repeats):
      for workers in (1, 2):
        folder = os.path.join(scratch, f'{workers}w-{repeat}')
        started = time.monotonic()
        replicas = local_cluster.run(
            trainer.inputs, local_cluster.outputs_in(folder), properties,
            os.path.join(folder, 'logs'), workers=workers - 1)
        wall[workers].append(time.monotonic() - started)
        chief = next(r for r in replicas if r.type == 'chief')
        speeds[workers].append(steady_steps_per_second(chief.log_path))
        print(f'{workers} worker(s), run {repeat + 1}: '
              f'{speeds[workers][-1]:.2f} steps/s, '
              f'{wall[workers][-1]:.0f} s in all', flush=True)
  one, two = (statistics.median(speeds[n]) for n in (1, 2))
  dense, embedding = gradient_bytes(trainer.model_dir,
                                    config.training.batch_size)
  result = {
      'train_steps': args.train_steps,
      'batch_size': config.training.batch_size,
      'steps_per_second': {'1': one, '2': two},
      'runs': {str(n): speeds[n] for n in speeds},
      'wall_seconds': {str(n): wall[n] for n in wall},
      'two_over_one': two / one,
      'dense_gradient_bytes': dense,
      'embedding_bytes_per_replica': embedding,
      'projection': projection(1 / one, dense, embedding, (1, 2, 4, 8)),
  }
  print(json.dumps(result, indent=2))
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(result, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
