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
time measured here, the bytes a step sends (the model's dense gradients, plus
the embedding rows a batch touches) and the collectives it launches (one pack
of dense gradients, two all-gathers per embedding, the loss), for N workers
of one Vertex machine each, with the global batch fixed
(training.batch_size):
    step(N) = compute(1) / N
              + 2 (N-1)/N * dense bytes / bandwidth
              + (N-1)/N * embedding bytes / bandwidth
              + launches * 2 (N-1) * cost of one collective hop
with Compute Engine's per-VM egress as the bandwidth and two costs of a hop:
a same-zone network hop (50 us), and what a hop cost here between two local
processes (the two-worker step beyond half a one-worker step, over its
hops), which includes TensorFlow's gRPC collective overhead and the shared
cores. It ignores that a Vertex machine computes faster than this one,
which favours more workers less.

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

import numpy as np

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


def gradient_bytes(trainer: local_cluster.RecordedTrainer, batch_size: int):
  """(dense gradient bytes, embedding rows' bytes of a whole batch, number of
  embedding variables): the
  trainable variables of the run's model, rebuilt with its hyperparameters
  and vocabularies. An embedding's gradient is the rows of the ids it looked
  up: at most its rows, and at most the batch's sessions times the ids a
  session can hold (features.max_values_per_row)."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from models import hyperparameters, training  # pylint: disable=g-import-not-at-top
  from models.model import build_model  # pylint: disable=g-import-not-at-top
  settings = json.loads(trainer.exec_properties['custom_config'])
  transform = tft.TFTransformOutput(trainer.inputs['transform_graph'][0].uri)
  tuned = None
  if trainer.inputs.get('hyperparameters'):
    path = os.path.join(trainer.inputs['hyperparameters'][0].uri,
                        'best_hyperparameters.txt')
    with open(path, encoding='utf-8') as f:
      tuned = json.load(f)
  model = build_model(settings, training.vocabulary_sizes(settings, transform),
                      hyperparameters.resolve(settings, tuned))
  ids_per_session = settings['features']['max_values_per_row']
  dense = embedding = embeddings = 0
  for layer in model.layers:
    for variable in layer.trainable_weights:
      shape = [int(dim) for dim in variable.shape]
      if isinstance(layer, keras.layers.Embedding):
        rows = min(shape[0], batch_size * ids_per_session)
        embedding += rows * shape[1] * 4
        embeddings += 1
      else:
        dense += int(np.prod(shape)) * 4
  return dense, embedding, embeddings


def collectives_per_step(embeddings: int) -> int:
  """Collective launches of one multi_worker_mirrored step: the dense
  gradients in one pack, an all-gather of ids and one of rows per embedding
  (tf.distribute's IndexedSlices all-reduce), and the loss."""
  return 1 + 2 * embeddings + 1


def projection(step_seconds: float, dense: int, embedding: int,
               launches: int, launch_seconds: float, workers):
  """Projected step time for N workers: compute split N ways, the ring's
  bytes over BANDWIDTH, and `launches` collectives per step, each costing
  launch_seconds per ring hop (2 (N-1) hops for an all-reduce, N-1 for an
  all-gather; launches counted at 2 (N-1) to stay on the safe side)."""
  rows = []
  for n in workers:
    communication = 0.0
    if n > 1:
      communication = (2 * (n - 1) / n * dense / BANDWIDTH_BYTES_PER_S +
                       (n - 1) / n * embedding / BANDWIDTH_BYTES_PER_S +
                       launches * 2 * (n - 1) * launch_seconds)
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
  dense, embedding, embeddings = gradient_bytes(trainer,
                                                config.training.batch_size)
  launches = collectives_per_step(embeddings)
  # What one collective launch cost here, per ring hop: the two-worker step
  # beyond half a one-worker step, over its launches (2 hops each).
  local_launch = max(0.0, 1 / two - 1 / one / 2) / (launches * 2)
  result = {
      'train_steps': args.train_steps,
      'batch_size': config.training.batch_size,
      'steps_per_second': {'1': one, '2': two},
      'runs': {str(n): speeds[n] for n in speeds},
      'wall_seconds': {str(n): wall[n] for n in wall},
      'two_over_one': two / one,
      'dense_gradient_bytes': dense,
      'embedding_bytes_per_step': embedding,
      'collectives_per_step': launches,
      'local_seconds_per_collective_hop': local_launch,
      'projection_network': projection(1 / one, dense, embedding, launches,
                                        HOP_LATENCY_S, (1, 2, 4, 8)),
      'projection_local_overhead': projection(
          1 / one, dense, embedding, launches, local_launch, (1, 2, 4, 8)),
  }
  print(json.dumps(result, indent=2))
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(result, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
