"""Width benchmark for BENCHMARKS.md: Transform's seconds against the number of
numeric features, the rows fixed.

For each width (10, 50, 100, 200 numeric features by default) it generates a
parquet table of `--rows` sessions (one in five features an always-present
integer, the others floats missing in `--missing` of the rows, and a label
column), writes a curated schema for it, and runs the part of the real
pipeline that Transform needs: create_pipeline's own nodes upstream of
Transform (ExampleGen, CuratedSchema, StatisticsGen, ExampleValidator,
DataGate, Transform) with LocalDagRunner, fresh metadata and no cache.
Transform's seconds are its execution's lifetime in ML Metadata (registered
to published). The model's training cost per step (build_model on the
transformed examples, batches of the configured size, after one warm-up
epoch) is measured on the same output.

With `--baseline-ref REF`, the same widths also run with the `preprocessing`
and `models` packages of git commit REF, interleaved with the current code
width by width, so that both share the machine's load. Each (code, width) runs
in its own process, like a pipeline run; the figures compared are ratios
within one invocation.

    .venv/bin/python benchmarks/transform_width.py --baseline-ref main \\
        --json benchmarks/out/transform_width.json
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / 'benchmarks' / 'out'
LABEL_COLUMN = 'repair_labels'
ID_COLUMN = 'session_id'
# Every fifth feature is an always-present integer (a dense input, like
# mileage_km); the others are float readings that may be missing (sparse
# inputs, like battery_voltage).
DENSE_EVERY = 5


def feature_names(width: int) -> List[str]:
  return [f'reading_{i:03d}' for i in range(width)]


def write_table(path: Path, width: int, rows: int, missing: float,
                labels: List[str], seed: int) -> None:
  """A parquet file of `rows` sessions: an id, the readings and labels."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  values = rng.normal(rng.uniform(-50, 50, width),
                      rng.uniform(0.5, 100.0, width), (rows, width))
  absent = rng.random((rows, width)) < missing
  chosen = rng.random((rows, len(labels))) < 2.0 / len(labels)
  columns = {ID_COLUMN: pa.array([f'session-{r:06d}' for r in range(rows)])}
  for i, name in enumerate(feature_names(width)):
    if i % DENSE_EVERY == 0:
      columns[name] = pa.array(values[:, i].astype(np.int64))
    else:  # a null float is dropped from the example: a missing reading
      columns[name] = pa.array(values[:, i], mask=absent[:, i])
  columns[LABEL_COLUMN] = pa.array(
      [[l for l, on in zip(labels, row) if on] for row in chosen],
      pa.list_(pa.string()))
  path.parent.mkdir(parents=True, exist_ok=True)
  pq.write_table(pa.table(columns), path)


def write_schema(path: Path, width: int) -> None:
  """The table's schema, curated the way schema/schema.pbtxt is."""
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  schema = schema_pb2.Schema()
  session_id = schema.feature.add(name=ID_COLUMN, type=schema_pb2.BYTES)
  session_id.presence.min_fraction = 1.0
  session_id.shape.dim.add(size=1)
  for i, name in enumerate(feature_names(width)):
    feature = schema.feature.add(name=name)
    if i % DENSE_EVERY == 0:
      feature.type = schema_pb2.INT
      feature.presence.min_fraction = 1.0
      feature.shape.dim.add(size=1)
    else:
      feature.type = schema_pb2.FLOAT
      feature.value_count.min = feature.value_count.max = 1
      feature.presence.min_fraction = 0.5
    feature.presence.min_count = 1
  labels = schema.feature.add(name=LABEL_COLUMN, type=schema_pb2.BYTES)
  labels.presence.min_count = 1
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text_format.MessageToString(schema))


def table_config(width: int, workdir: Path):
  """configs/local.yaml on the table in `workdir`, its numeric features the
  only features."""
  import yaml  # pylint: disable=g-import-not-at-top
  from pipeline.config import config_from_dict  # pylint: disable=g-import-not-at-top
  raw = yaml.safe_load((ROOT / 'configs' / 'local.yaml').read_text())
  raw['data'].update(root=str(workdir / 'data'), id_column=ID_COLUMN,
                     format='parquet', pattern='span-*/*.parquet')
  raw['label']['column'] = LABEL_COLUMN
  raw['schema'] = str(workdir / 'schema' / 'schema.pbtxt')
  raw['features'] = {'numeric': feature_names(width), 'categorical': [],
                     'multivalent': []}
  raw['slices'] = []
  raw['paths'] = {'pipeline_root': str(workdir / 'pipeline'),
                  'metadata': str(workdir / 'metadata.sqlite'),
                  'serving_dir': str(workdir / 'serving'),
                  'log_file': str(workdir / 'run.log')}
  return config_from_dict(raw, 'configs/local.yaml (width benchmark)')


def cut_after_transform(pipeline):
  """The pipeline, cut down to Transform and every node it waits for."""
  nodes = {node.id: node for node in pipeline.components}
  kept, todo = {}, [nodes['Transform']]
  while todo:
    node = todo.pop()
    if node.id not in kept:
      kept[node.id] = node
      todo.extend(node.upstream_nodes)
  for node in kept.values():  # the compiler refuses edges to absent nodes
    for downstream in list(node.downstream_nodes):
      if downstream.id not in kept:
        node.remove_downstream_node(downstream)
  pipeline.components = list(kept.values())
  return pipeline


def execution_seconds(metadata_path: Path) -> Dict[str, float]:
  """Seconds of each execution, registered to published, by node type
  (the last part of its type name, e.g. Transform)."""
  import ml_metadata as mlmd  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import metadata  # pylint: disable=g-import-not-at-top
  store = mlmd.MetadataStore(
      metadata.sqlite_metadata_connection_config(str(metadata_path)))
  seconds = {}
  for execution in store.get_executions():
    type_name = store.get_execution_types_by_id([execution.type_id])[0].name
    seconds[type_name.rsplit('.', 1)[-1]] = (
        execution.last_update_time_since_epoch -
        execution.create_time_since_epoch) / 1000.0
  return seconds


class _Accessor:
  """The one part of the Trainer's DataAccessor that training.input_dataset
  uses: datasets from files of tf.Examples."""

  @staticmethod
  def tf_dataset_factory(file_pattern, options, schema):
    from tfx_bsl.public import tfxio  # pylint: disable=g-import-not-at-top
    return tfxio.TFExampleRecord(file_pattern,
                                 schema=schema).TensorFlowDataset(options)


def training_step_ms(config, graph_dir: str, train_files: List[str],
                     steps: int) -> float:
  """Milliseconds per training step of build_model, after a warm-up epoch."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from models import hyperparameters, training  # pylint: disable=g-import-not-at-top
  from models.model import build_model  # pylint: disable=g-import-not-at-top
  from pipeline.settings import model_settings  # pylint: disable=g-import-not-at-top

  settings = model_settings(config)
  training.seed_everything(settings['training']['seed'])
  transform_output = tft.TFTransformOutput(graph_dir)
  data = training.input_dataset(train_files, _Accessor(), transform_output,
                                LABEL_COLUMN,
                                settings['training']['batch_size'], seed=0)
  model = build_model(settings, training.vocabulary_sizes(settings,
                                                          transform_output),
                      hyperparameters.defaults(settings))
  epoch_seconds = []

  class _Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      epoch_seconds.append(time.perf_counter() - self.started)

  model.fit(data, steps_per_epoch=steps, epochs=2, verbose=0,
            callbacks=[_Timer()])
  return round(1000.0 * epoch_seconds[-1] / steps, 3)


def measure(width: int, rows: int, missing: float, steps: int,
            workdir: Path) -> Dict[str, Any]:
  """One pipeline run at one width, with the code this process imports."""
  import glob  # pylint: disable=g-import-not-at-top
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  import preprocessing  # pylint: disable=g-import-not-at-top
  from pipeline.pipeline import create_pipeline  # pylint: disable=g-import-not-at-top

  shutil.rmtree(workdir, ignore_errors=True)
  config = table_config(width, workdir)
  write_table(workdir / 'data' / 'span-0' / 'sessions.parquet', width, rows,
              missing, list(config.label.vocabulary), seed=width)
  write_schema(workdir / 'schema' / 'schema.pbtxt', width)
  metadata_path = workdir / 'metadata.sqlite'
  pipeline = cut_after_transform(create_pipeline(
      config, tfx.orchestration.metadata.sqlite_metadata_connection_config(
          str(metadata_path)), enable_cache=False))
  started = time.monotonic()
  tfx.orchestration.LocalDagRunner().run(pipeline)
  run_seconds = time.monotonic() - started
  seconds = execution_seconds(metadata_path)
  outputs = Path(pipeline.pipeline_info.pipeline_root) / 'Transform'
  graph_dir, = glob.glob(str(outputs / 'transform_graph' / '*'))
  train_files = glob.glob(str(outputs / 'transformed_examples' / '*' /
                              'Split-train' / '*'))
  return {
      'width': width, 'rows': rows,
      'code': os.path.dirname(os.path.dirname(preprocessing.__file__)),
      'transform_seconds': round(seconds['Transform'], 2),
      'component_seconds': {k: round(v, 2) for k, v in seconds.items()},
      'run_seconds': round(run_seconds, 2),
      'train_step_ms': training_step_ms(config, graph_dir, train_files,
                                        steps) if steps else None,
  }


def checkout(ref: str, into: Path) -> Path:
  """The `preprocessing` and `models` packages of commit `ref`, in `into`."""
  shutil.rmtree(into, ignore_errors=True)
  into.mkdir(parents=True)
  archive = subprocess.run(
      ['git', '-C', str(ROOT), 'archive', ref, 'preprocessing', 'models'],
      check=True, capture_output=True).stdout
  subprocess.run(['tar', '-x', '-C', str(into)], input=archive, check=True)
  return into


def run_one(code_dir: Optional[Path], width: int, args,
            workdir: Path) -> Dict[str, Any]:
  """`measure` in a fresh process whose imports find `code_dir` first."""
  env = dict(os.environ)
  if code_dir is not None:
    # Ahead of the editable install, whose finder Python consults last.
    env['PYTHONPATH'] = os.pathsep.join(
        [str(code_dir), str(ROOT)] + env.get('PYTHONPATH', '').split(
            os.pathsep)).rstrip(os.pathsep)
  result_path = workdir / 'result.json'
  log_path = workdir.with_suffix('.log')
  workdir.parent.mkdir(parents=True, exist_ok=True)
  with open(log_path, 'w', encoding='utf-8') as log:
    process = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), '--measure-width',
         str(width), '--rows', str(args.rows), '--missing', str(args.missing),
         '--train-steps', str(args.train_steps), '--workdir', str(workdir),
         '--result', str(result_path)],
        env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
  if process.returncode != 0:
    sys.exit(f'width {width} ({code_dir or "current code"}) failed with exit '
             f'code {process.returncode}; see {log_path}')
  return json.loads(result_path.read_text())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--widths', type=int, nargs='+',
                      default=[10, 50, 100, 200])
  parser.add_argument('--rows', type=int, default=1500)
  parser.add_argument('--missing', type=float, default=0.1,
                      help='share of absent float readings')
  parser.add_argument('--train-steps', type=int, default=100,
                      help='timed training steps per width; 0 skips training')
  parser.add_argument('--baseline-ref', help='also time this commit\'s '
                      'preprocessing and models packages, e.g. main')
  parser.add_argument('--json', type=Path, help='also write the result here')
  # Internal: one measurement, in the process run_one starts.
  parser.add_argument('--measure-width', type=int, help=argparse.SUPPRESS)
  parser.add_argument('--workdir', type=Path, default=OUT / 'transform_width')
  parser.add_argument('--result', type=Path, help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.measure_width:
    result = measure(args.measure_width, args.rows, args.missing,
                     args.train_steps, args.workdir)
    args.result.write_text(json.dumps(result))
    return

  variants = {'current': None}
  if args.baseline_ref:
    commit = subprocess.run(
        ['git', '-C', str(ROOT), 'rev-parse', '--short=12', args.baseline_ref],
        check=True, capture_output=True, text=True).stdout.strip()
    variants = {f'baseline {commit}': checkout(
        commit, args.workdir / 'baseline-code'), **variants}
  results: Dict[str, List[Dict[str, Any]]] = {name: [] for name in variants}
  for width in args.widths:
    for name, code_dir in variants.items():
      result = run_one(code_dir, width, args,
                       args.workdir / f'{name.split()[0]}-{width}')
      results[name].append(result)
      print(f'{name:<22} {width:4d} features  Transform '
            f'{result["transform_seconds"]:7.1f} s  train step '
            f'{result["train_step_ms"]} ms', flush=True)

  summary = {'rows': args.rows, 'missing': args.missing, 'runs': results}
  for name, runs in results.items():
    first, last = runs[0], runs[-1]
    summary[f'{name}: transform {last["width"]}/{first["width"]}'] = round(
        last['transform_seconds'] / first['transform_seconds'], 2)
    if first['train_step_ms']:
      summary[f'{name}: train step {last["width"]}/{first["width"]}'] = round(
          last['train_step_ms'] / first['train_step_ms'], 2)
  print(json.dumps(summary, indent=2))
  if args.json:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2))


if __name__ == '__main__':
  main()
