"""The data-quality measures of the collected sessions, computed from the exploration table.

Plain pandas and numpy, no TensorFlow: the report (collection/report.py) renders
these, and the production statistics tables (collection/bigquery_stats.py) load
the same values, so both say the same thing about one collected table.

  missing_values      missing count and share per column (null, NaN; an empty
                      list is a value, not a missing one);
  tukey_outliers      values outside Tukey's fences, Q1 - 1.5 IQR and
                      Q3 + 1.5 IQR (quartiles by linear interpolation);
  value_histogram     equal-width bins of a numeric column;
  join_coverage       share of sessions with at least one warranty claim, per
                      session date and overall;
  claim_delays        days from session to repair of the matched claims, with
                      median and 95th percentile;
  label_frequencies   sessions per repair label, in the vocabulary's order,
                      with labels that never occur and labels outside the
                      vocabulary flagged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "ColumnMissing", "Outliers", "Histogram", "DayCoverage", "JoinCoverage", "ClaimDelays",
    "LabelFrequency", "missing_values", "tukey_outliers", "value_histogram", "join_coverage",
    "claim_delays", "label_frequencies", "is_missing",
]

TUKEY_K = 1.5
HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class ColumnMissing:
    column: str
    rows: int
    missing: int

    @property
    def share(self) -> float:
        return self.missing / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class Outliers:
    """Tukey's fences of one numeric column and the values outside them."""

    column: str
    values: int          # non-missing values the fences are computed from
    q1: float
    q3: float
    lower_fence: float
    upper_fence: float
    below: int
    above: int

    @property
    def count(self) -> int:
        return self.below + self.above

    @property
    def share(self) -> float:
        return self.count / self.values if self.values else 0.0


@dataclass(frozen=True)
class Histogram:
    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class DayCoverage:
    date: str
    sessions: int
    with_claim: int

    @property
    def share(self) -> float:
        return self.with_claim / self.sessions if self.sessions else 0.0


@dataclass(frozen=True)
class JoinCoverage:
    days: tuple[DayCoverage, ...]

    @property
    def sessions(self) -> int:
        return sum(d.sessions for d in self.days)

    @property
    def with_claim(self) -> int:
        return sum(d.with_claim for d in self.days)

    @property
    def share(self) -> float:
        return self.with_claim / self.sessions if self.sessions else 0.0


@dataclass(frozen=True)
class ClaimDelays:
    """claim_delay_days of the sessions that have one; median and p95 are None without any."""

    count: int
    median: float | None
    p95: float | None
    minimum: float | None
    maximum: float | None
    histogram: Histogram


@dataclass(frozen=True)
class LabelFrequency:
    label: str
    sessions: int        # sessions whose repair_labels hold the label (once per session)
    share: float         # of all sessions
    in_vocabulary: bool

    @property
    def never_occurs(self) -> bool:
        return self.sessions == 0


def is_missing(value: object) -> bool:
    """Null, NaN or NaT; a list (even an empty one) is a value."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return False
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def missing_values(frame: pd.DataFrame, columns: Iterable[str]) -> list[ColumnMissing]:
    """Missing count per column, in the order given."""
    return [ColumnMissing(column, len(frame), int(frame[column].map(is_missing).sum())) for column in columns]


def _values(series: pd.Series) -> np.ndarray:
    """The non-missing values of a numeric column, as float64."""
    return np.array([float(v) for v in series if not is_missing(v)], dtype=np.float64)


def tukey_outliers(series: pd.Series, column: str | None = None, k: float = TUKEY_K) -> Outliers:
    """Values below Q1 - k IQR or above Q3 + k IQR; no values gives NaN fences and no outliers."""
    values = _values(series)
    name = column or str(series.name)
    if not len(values):
        nan = float("nan")
        return Outliers(name, 0, nan, nan, nan, nan, 0, 0)
    q1, q3 = (float(q) for q in np.percentile(values, [25, 75]))
    low, high = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
    return Outliers(name, len(values), q1, q3, low, high, int((values < low).sum()), int((values > high).sum()))


def value_histogram(series: pd.Series, bins: int = HISTOGRAM_BINS, integer: bool = False) -> Histogram:
    """Equal-width bins from the column's minimum to its maximum; integer columns get whole-number
    bins (at most `bins` of them), so that a count of days is not split across bins."""
    values = _values(series)
    if not len(values):
        return Histogram((), ())
    low, high = float(values.min()), float(values.max())
    if integer:
        width = max(1, math.ceil((high - low + 1) / bins))
        edges = np.arange(low, high + width + 1e-9, width)
        if edges[-1] <= high:
            edges = np.append(edges, edges[-1] + width)
    else:
        edges = np.linspace(low, high if high > low else low + 1, bins + 1)
    counts, edges = np.histogram(values, bins=edges)
    return Histogram(tuple(float(e) for e in edges), tuple(int(c) for c in counts))


def _list_length(value: object) -> int:
    return 0 if is_missing(value) else len(value)


def join_coverage(frame: pd.DataFrame, date_column: str = "session_date",
                  claims_column: str = "claim_ids") -> JoinCoverage:
    """Sessions with at least one claim id, per date (ascending) and overall."""
    with_claim = frame[claims_column].map(_list_length) > 0
    grouped = pd.DataFrame({"date": frame[date_column].astype(str), "with_claim": with_claim}).groupby("date")
    return JoinCoverage(tuple(DayCoverage(str(date), int(len(group)), int(group["with_claim"].sum()))
                              for date, group in grouped))


def claim_delays(series: pd.Series) -> ClaimDelays:
    """The distribution of claim_delay_days; nulls (sessions without a claim) are left out."""
    values = _values(series)
    histogram = value_histogram(series, bins=30, integer=True)
    if not len(values):
        return ClaimDelays(0, None, None, None, None, histogram)
    median, p95 = (float(q) for q in np.percentile(values, [50, 95]))
    return ClaimDelays(len(values), median, p95, float(values.min()), float(values.max()), histogram)


def label_frequencies(labels: pd.Series, vocabulary: Sequence[str]) -> list[LabelFrequency]:
    """One row per vocabulary label in its order, then labels outside the vocabulary, most frequent first."""
    sessions = len(labels)
    counts: dict[str, int] = {}
    for row in labels:
        if is_missing(row):
            continue
        for label in set(str(v) for v in row):
            counts[label] = counts.get(label, 0) + 1

    def row(label: str, in_vocabulary: bool) -> LabelFrequency:
        count = counts.get(label, 0)
        return LabelFrequency(label, count, count / sessions if sessions else 0.0, in_vocabulary)

    known = set(vocabulary)
    unknown = sorted((label for label in counts if label not in known), key=lambda lab: (-counts[lab], lab))
    return [row(label, True) for label in vocabulary] + [row(label, False) for label in unknown]
