"""TFDV statistics of the collected sessions, and the per-feature rows read from them.

compute_statistics runs tensorflow_data_validation.generate_statistics_from_dataframe
on the modeling table's columns (data/generator.py SESSION_SCHEMA; list columns
as lists), in memory. The report renders numeric_rows and categorical_rows from
the resulting DatasetFeatureStatisticsList as its own tables, and writes the
proto beside itself (write_statistics) for TFDV's own viewer; TFDV's
visualize_statistics is not used, as it loads Facets from a CDN.

Only compute_statistics imports TFDV (and so TensorFlow); reading a proto
needs tensorflow_metadata alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from tensorflow_metadata.proto.v0 import statistics_pb2

from collection.files import write_atomically
from collection.quality import is_missing

__all__ = ["NumericFeature", "CategoricalFeature", "compute_statistics", "numeric_rows",
           "categorical_rows", "write_statistics", "read_statistics", "TOP_VALUES"]

TOP_VALUES = 5


@dataclass(frozen=True)
class NumericFeature:
    name: str
    type: str            # INT or FLOAT
    count: int           # examples with a value
    missing: int
    mean: float
    std_dev: float
    min: float
    median: float        # TFDV's, from its quantiles sketch
    max: float
    zeros: int


@dataclass(frozen=True)
class CategoricalFeature:
    name: str
    type: str            # STRING (TFDV's type); is_list tells a list column from a scalar one
    is_list: bool
    count: int
    missing: int
    unique: int
    top_values: tuple[tuple[str, int], ...]
    avg_list_length: float


def _as_list(value: object) -> object:
    """A list cell as a Python list; a missing cell stays None."""
    if is_missing(value):
        return None
    return [str(v) for v in value]


def tfdv_frame(frame: pd.DataFrame, columns: list[str], list_columns: list[str]) -> pd.DataFrame:
    """The columns TFDV sees: list columns as Python lists, the others unchanged."""
    out = frame[columns].copy()
    for column in list_columns:
        out[column] = out[column].map(_as_list)
    return out


def compute_statistics(frame: pd.DataFrame, columns: list[str],
                       list_columns: list[str]) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV's statistics of `columns` of the frame (one dataset, all rows)."""
    import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top

    return tfdv.generate_statistics_from_dataframe(tfdv_frame(frame, columns, list_columns))


def _features(statistics: statistics_pb2.DatasetFeatureStatisticsList):
    if len(statistics.datasets) != 1:
        raise ValueError(f"expected statistics of one dataset, got {len(statistics.datasets)}")
    dataset = statistics.datasets[0]
    for feature in dataset.features:
        name = ".".join(feature.path.step) if feature.HasField("path") else feature.name
        yield name, feature


def numeric_rows(statistics: statistics_pb2.DatasetFeatureStatisticsList) -> list[NumericFeature]:
    """One row per INT or FLOAT feature, in the proto's order."""
    rows = []
    for name, feature in _features(statistics):
        if feature.WhichOneof("stats") != "num_stats":
            continue
        stats = feature.num_stats
        rows.append(NumericFeature(
            name, statistics_pb2.FeatureNameStatistics.Type.Name(feature.type),
            int(stats.common_stats.num_non_missing), int(stats.common_stats.num_missing),
            stats.mean, stats.std_dev, stats.min, stats.median, stats.max, int(stats.num_zeros)))
    return rows


def categorical_rows(statistics: statistics_pb2.DatasetFeatureStatisticsList,
                     list_columns: list[str]) -> list[CategoricalFeature]:
    """One row per STRING feature (scalar or list), in the proto's order, with its top values."""
    rows = []
    for name, feature in _features(statistics):
        if feature.WhichOneof("stats") != "string_stats":
            continue
        stats = feature.string_stats
        common = stats.common_stats
        top = tuple((v.value, int(round(v.frequency))) for v in stats.top_values[:TOP_VALUES])
        rows.append(CategoricalFeature(
            name, statistics_pb2.FeatureNameStatistics.Type.Name(feature.type), name in list_columns,
            int(common.num_non_missing), int(common.num_missing), int(stats.unique), top,
            float(common.avg_num_values)))
    return rows


def write_statistics(statistics: statistics_pb2.DatasetFeatureStatisticsList, path: str) -> str:
    """The proto, binary, written atomically; TFDV reads it with load_stats_binary."""
    return write_atomically(path, statistics.SerializeToString())


def read_statistics(path: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    statistics = statistics_pb2.DatasetFeatureStatisticsList()
    with open(path, "rb") as f:
        statistics.ParseFromString(f.read())
    return statistics

