"""The data gate: stops the pipeline before Transform when the data has anomalies.

ExampleValidator only records anomalies; it never fails a run. The gate reads
what it recorded for every split and fails with a readable report when there
is any, so no model is trained, evaluated or pushed on bad data. The pipeline
makes Transform run after the gate.
"""

import dataclasses
import os
from typing import List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact, artifact_utils, standard_artifacts

ANOMALIES_FILE = 'SchemaDiff.pb'
DATASET_LEVEL = '<dataset>'


class DataAnomaliesError(RuntimeError):
  """The data does not match the curated schema."""


@dataclasses.dataclass(frozen=True)
class DataAnomaly:
  """One problem found in one split of the data."""
  split: str
  feature: str
  description: str
  # TFDV's anomaly type, such as SCHEMA_MISSING_COLUMN.
  kind: str = ''

  def __str__(self):
    return f'[{self.split}] {self.feature}: {self.description}'


def find_anomalies(anomalies: artifact.Artifact) -> List[DataAnomaly]:
  """The anomalies ExampleValidator recorded, over all splits, sorted."""
  found = []
  for split in artifact_utils.decode_split_names(anomalies.split_names):
    path = os.path.join(artifact_utils.get_split_uri([anomalies], split),
                        ANOMALIES_FILE)
    report = anomalies_pb2.Anomalies()
    with tf.io.gfile.GFile(path, 'rb') as f:
      report.ParseFromString(f.read())
    for feature, info in report.anomaly_info.items():
      found.append(DataAnomaly(split, feature, _describe(info), _kind(info)))
    if report.HasField('dataset_anomaly_info'):
      info = report.dataset_anomaly_info
      found.append(DataAnomaly(split, DATASET_LEVEL, _describe(info),
                               _kind(info)))
  return sorted(found, key=lambda a: (a.feature, a.split))


def _describe(info: anomalies_pb2.AnomalyInfo) -> str:
  return info.description or info.short_description


def _kind(info: anomalies_pb2.AnomalyInfo) -> str:
  return (anomalies_pb2.AnomalyInfo.Type.Name(info.reason[0].type)
          if info.reason else '')


def anomaly_report(found: List[DataAnomaly]) -> str:
  lines = [f'The data has {len(found)} anomal{"y" if len(found) == 1 else "ies"}'
           ' against the curated schema; the run stops before Transform:']
  lines += [f'  {anomaly}' for anomaly in found]
  lines.append('Fix the data, or, if the change is intended, update '
               'schema/schema.pbtxt (`make schema-diff` shows what SchemaGen '
               'proposes).')
  return '\n'.join(lines)


@component
def DataGate(
    anomalies: InputArtifact[
        standard_artifacts.ExampleAnomalies],
    code_version: Parameter[str]) -> None:
  """Fails the run when ExampleValidator found anomalies in any split.

  `code_version` is this module's (pipeline/code_version.py): a fix to the
  gate re-runs it instead of keeping a cached verdict.
  """
  del code_version  # only part of the cache key
  found = find_anomalies(anomalies)
  if found:
    raise DataAnomaliesError(anomaly_report(found))
