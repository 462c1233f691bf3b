"""ExampleGen for session files: parquet or CSV, optionally sampled by session id.

Both formats run on TFX's own executors, with two changes:
- a deterministic sample: with `data.sample_fraction` below 1, a session is
  kept when a hash of its id falls below the fraction, so the same sessions
  are kept on every run and the train/eval/test split (a different hash, by
  TFX) is unaffected;
- parquet rows are converted by `row_to_example`, because TFX 1.16's
  `dict_to_example` tests values with `if not value` and so drops every 0 and
  0.0 (a span 0, a new car's mileage 0) as if it were missing.
"""

import hashlib
import math
import os

import apache_beam as beam
import tensorflow as tf
from google.protobuf import any_pb2, struct_pb2
from tfx.components import FileBasedExampleGen
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.components.example_gen.custom_executors import parquet_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

SAMPLE_FRACTION = 'sample_fraction'
ID_COLUMN = 'id_column'
CODE_VERSION = 'code_version'
_HASH_RESOLUTION = 10**6


def is_sampled_in(session_id: bytes, fraction: float) -> bool:
  """Whether the session with this id belongs to the sample."""
  digest = hashlib.sha256(b'repairml-sample:' + session_id).digest()
  return int.from_bytes(digest[:8], 'big') % _HASH_RESOLUTION < (
      fraction * _HASH_RESOLUTION)


def _session_id(example: tf.train.Example, id_column: str) -> bytes:
  feature = example.features.feature[id_column]
  if feature.bytes_list.value:
    return feature.bytes_list.value[0]
  return str(feature.int64_list.value[0]).encode()


def is_missing(value) -> bool:
  """None or NaN: a value parquet or pandas uses for "no reading"."""
  return value is None or (isinstance(value, float) and math.isnan(value))


def row_to_example(row) -> tf.train.Example:
  """A parquet row as a tf.Example; None, NaN and [] become empty features."""
  features = {}
  for name, value in row.items():
    values = value if isinstance(value, (list, tuple)) else [value]
    values = [v for v in values if not is_missing(v)]
    feature = tf.train.Feature()
    if values and isinstance(values[0], (str, bytes)):
      feature.bytes_list.value.extend(
          v.encode() if isinstance(v, str) else v for v in values)
    elif values and isinstance(values[0], (bool, int)):
      feature.int64_list.value.extend(int(v) for v in values)
    elif values:
      feature.float_list.value.extend(float(v) for v in values)
    features[name] = feature
  return tf.train.Example(features=tf.train.Features(feature=features))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _ParquetToExample(pipeline, exec_properties, split_pattern):  # pylint: disable=invalid-name
  pattern = os.path.join(
      exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
  return (pipeline
          | 'ReadFromParquet' >> beam.io.ReadFromParquet(pattern)
          | 'ToTFExample' >> beam.Map(row_to_example))


def _sampling_settings(exec_properties) -> dict:
  custom = example_gen_pb2.CustomConfig()
  proto_utils.json_to_proto(
      exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or '{}',
      custom)
  settings = struct_pb2.Struct()
  if custom.HasField('custom_config'):
    custom.custom_config.Unpack(settings)
  return dict(settings)


def _sampled(read_examples):
  """Wraps an ExampleGen read PTransform with the session-id sample."""

  @beam.ptransform_fn
  @beam.typehints.with_input_types(beam.Pipeline)
  @beam.typehints.with_output_types(tf.train.Example)
  def SampledExamples(pipeline, exec_properties, split_pattern):  # pylint: disable=invalid-name
    examples = pipeline | 'Read' >> read_examples(exec_properties,
                                                  split_pattern)
    settings = _sampling_settings(exec_properties)
    fraction = settings.get(SAMPLE_FRACTION, 1.0)
    if fraction >= 1.0:
      return examples
    id_column = settings[ID_COLUMN]
    return examples | 'SampleBySessionId' >> beam.Filter(
        lambda example: is_sampled_in(_session_id(example, id_column),
                                      fraction))

  return SampledExamples


class ParquetExecutor(parquet_executor.Executor):

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _sampled(_ParquetToExample)


class CsvExecutor(csv_executor.Executor):

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _sampled(super().GetInputSourceToExamplePTransform())


EXECUTORS = {'parquet': ParquetExecutor, 'csv': CsvExecutor}


def session_example_gen(config, code_version: str) -> FileBasedExampleGen:
  """ExampleGen over `config.data`, split by a hash of the session id.

  `code_version` is this module's (pipeline/code_version.py); it rides in the
  custom_config, so a change to the executors here re-runs ExampleGen.
  """
  data = config.data
  settings = struct_pb2.Struct()
  settings.update({SAMPLE_FRACTION: data.sample_fraction,
                   ID_COLUMN: data.id_column, CODE_VERSION: code_version})
  packed = any_pb2.Any()
  packed.Pack(settings)
  splits = config.splits
  return FileBasedExampleGen(
      input_base=data.root,
      input_config=example_gen_pb2.Input(splits=[
          example_gen_pb2.Input.Split(name='sessions', pattern=data.pattern)
      ]),
      output_config=example_gen_pb2.Output(
          split_config=example_gen_pb2.SplitConfig(
              splits=[
                  example_gen_pb2.SplitConfig.Split(name='train',
                                                    hash_buckets=splits.train),
                  example_gen_pb2.SplitConfig.Split(name='eval',
                                                    hash_buckets=splits.eval),
                  example_gen_pb2.SplitConfig.Split(name='test',
                                                    hash_buckets=splits.test),
              ],
              partition_feature_name=data.id_column)),
      custom_config=example_gen_pb2.CustomConfig(custom_config=packed),
      custom_executor_spec=executor_spec.BeamExecutorSpec(
          EXECUTORS[data.format]))
