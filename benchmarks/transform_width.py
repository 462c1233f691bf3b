"""Width benchmark for BENCHMARKS.md: Transform's seconds against the number of
numeric features, the rows fixed.

For each width (10, 50, 100, 200 numeric features by default) it generates a
table of `--rows` rows (one in five features an always-present integer, the
others floats missing in `--missing` of the rows, and a label column), writes
a schema for it, and runs a small real pipeline with LocalDagRunner:
ImportExampleGen -> ImportSchemaGen -> Transform, the Transform node built by
pipeline/pipeline.py's own `transform_component`. Transform's seconds are its
execution's lifetime in ML Metadata (registered to published). The model's
training cost per step (build_model on the transformed examples, batches of
the configured size, after one warm-up epoch) is measured on the same output.

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
# Every fifth feature is an always-present integer (a dense input, like
# mileage_km); the others are float readings that may be missing (sparse
# inputs, like battery_voltage).
DENSE_EVERY = 5


def feature_names(width: int) -> List[str]:
  return [f'reading_{i:03d}' for i in range(width)]


def write_table(path: Path, width: int, rows: int, missing: float,
                labels: List[str], seed: int) -> None:
  """`rows` gzipped tf.Examples of `width` numeric features and labels."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  scales = rng.uniform(0.5, 100.0, width)
  values = rng.normal(rng.uniform(-50, 50, width), scales, (rows, width))
  absent = rng.random((rows, width)) < missing
  label_ids = rng.random((rows, len(labels))) < 2.0 / len(labels)
  names = feature_names(width)
  path.parent.mkdir(parents=True, exist_ok=True)
  with tf.io.TFRecordWriter(str(path), 'GZIP') as writer:
    for r in range(rows):
      feature = {}
      for i, name in enumerate(names):
        if i % DENSE_EVERY == 0:
          feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(
              value=[int(values[r, i])]))
        elif absent[r, i]:
          feature[name] = tf.train.Feature()
        else:
          feature[name] = tf.train.Feature(float_list=tf.train.FloatList(
              value=[values[r, i]]))
      feature[LABEL_COLUMN] = tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[l.encode() for l, on in zip(labels, label_ids[r]) if on]))
      writer.write(tf.train.Example(features=tf.train.Features(
          feature=feature)).SerializeToString())


def write_schema(path: Path, width: int) -> None:
  """The table's schema, curated the way schema/schema.pbtxt is."""
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  schema = schema_pb2.Schema()
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


def table_config(width: int):
  """configs/local.yaml with the table's numeric features and nothing else."""
  import yaml  # pylint: disable=g-import-not-at-top
  from pipeline.config import config_from_dict  # pylint: disable=g-import-not-at-top
  raw = yaml.safe_load((ROOT / 'configs' / 'local.yaml').read_text())
  raw['features'] = {'numeric': feature_names(width), 'categorical': [],
                     'multivalent': []}
  raw['slices'] = []
  return config_from_dict(raw, 'configs/local.yaml (width benchmark)')


def transform_seconds(metadata_path: Path) -> Dict[str, float]:
  """Seconds of each execution, registered to published, by node type."""
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
  from pipeline import pipeline  # pylint: disable=g-import-not-at-top

  config = table_config(width)
  shutil.rmtree(workdir, ignore_errors=True)
  write_table(workdir / 'data' / 'table.tfrecord.gz', width, rows, missing,
              list(config.label.vocabulary), seed=width)
  write_schema(workdir / 'schema' / 'schema.pbtxt', width)
  example_gen = tfx.components.ImportExampleGen(
      input_base=str(workdir / 'data'))
  schema_gen = tfx.components.ImportSchemaGen(
      schema_file=str(workdir / 'schema' / 'schema.pbtxt'))
  transform = pipeline.transform_component(
      example_gen.outputs['examples'], schema_gen.outputs['schema'], config)
  metadata_path = workdir / 'metadata.sqlite'
  started = time.monotonic()
  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name='transform-width',
      pipeline_root=str(workdir / 'pipeline'),
      components=[example_gen, schema_gen, transform],
      enable_cache=False,
      metadata_connection_config=(
          tfx.orchestration.metadata.sqlite_metadata_connection_config(
              str(metadata_path))),
      beam_pipeline_args=config.beam_args))
  run_seconds = time.monotonic() - started
  seconds = transform_seconds(metadata_path)
  outputs = workdir / 'pipeline' / 'Transform'
  graph_dir, = glob.glob(str(outputs / 'transform_graph' / '*'))
  train_files = glob.glob(str(outputs / 'transformed_examples' / '*' /
                              'Split-train' / '*'))
  return {
      'width': width, 'rows': rows,
      'code': os.path.dirname(os.path.dirname(preprocessing.__file__)),
      'transform_seconds': round(seconds['Transform'], 2),
      'example_gen_seconds': round(seconds['ImportExampleGen'], 2),
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
