"""The collection report's statistics as BigQuery rows, and the load jobs that write them.

In production the collected table's data-quality statistics go to BigQuery
tables as well as to the HTML report, so that they can be queried and charted
across runs. statistics_rows turns a CollectionReport (collection/report.py)
into rows of these tables, each row with the collection run id and date:

  collection_table_summary      one row: sessions, dates, spans, coverage, claim delays;
  collection_feature_stats      one row per column: TFDV statistics, missing values,
                                Tukey's fences and outliers;
  collection_label_frequencies  one row per label (vocabulary order, then unknown labels);
  collection_join_coverage      one row per session date;
  collection_rule_counts        one row per span and count name (scope 'span'), and
                                per count of the run's total (scope 'run', span null).

load_statistics writes them with google-cloud-bigquery load jobs (newline-
delimited JSON, an explicit schema). Every table is partitioned by
collection_date, and each load replaces its date's partition (TABLE$YYYYMMDD,
WRITE_TRUNCATE): a report written again for the same date replaces that date's
rows instead of adding a second copy.
"""
from __future__ import annotations

import datetime
import math
import re
from typing import Any, Optional

from google.cloud import bigquery

__all__ = ["TABLE_SCHEMAS", "statistics_rows", "load_job_config", "load_statistics", "StatisticsLoadError"]

_KEY = [bigquery.SchemaField("run_id", "STRING", mode="REQUIRED"),
        bigquery.SchemaField("collection_date", "DATE", mode="REQUIRED"),
        bigquery.SchemaField("reported_at", "TIMESTAMP", mode="REQUIRED")]


def _fields(*specs: tuple[str, str]) -> list[bigquery.SchemaField]:
    return _KEY + [bigquery.SchemaField(name, kind) for name, kind in specs]


TABLE_SCHEMAS: dict[str, list[bigquery.SchemaField]] = {
    "collection_table_summary": _fields(
        ("sessions", "INT64"), ("first_session_date", "DATE"), ("last_session_date", "DATE"),
        ("spans", "INT64"), ("sessions_with_claim", "INT64"), ("claim_coverage", "FLOAT64"),
        ("claim_delays", "INT64"), ("claim_delay_median_days", "FLOAT64"), ("claim_delay_p95_days", "FLOAT64"),
        ("labels_never_occurring", "INT64"), ("labels_not_in_vocabulary", "INT64")),
    "collection_feature_stats": _fields(
        ("feature", "STRING"), ("type", "STRING"), ("is_list", "BOOL"), ("count", "INT64"),
        ("missing", "INT64"), ("missing_share", "FLOAT64"), ("mean", "FLOAT64"), ("std_dev", "FLOAT64"),
        ("min", "FLOAT64"), ("median", "FLOAT64"), ("max", "FLOAT64"), ("zeros", "INT64"),
        ("unique", "INT64"), ("avg_list_length", "FLOAT64"), ("q1", "FLOAT64"), ("q3", "FLOAT64"),
        ("lower_fence", "FLOAT64"), ("upper_fence", "FLOAT64"), ("outliers", "INT64"))
    + [bigquery.SchemaField("top_values", "RECORD", mode="REPEATED", fields=[
        bigquery.SchemaField("value", "STRING"), bigquery.SchemaField("frequency", "INT64")])],
    "collection_label_frequencies": _fields(
        ("label", "STRING"), ("sessions", "INT64"), ("share", "FLOAT64"), ("in_vocabulary", "BOOL")),
    "collection_join_coverage": _fields(
        ("session_date", "DATE"), ("sessions", "INT64"), ("sessions_with_claim", "INT64"), ("share", "FLOAT64")),
    "collection_rule_counts": _fields(
        ("scope", "STRING"), ("span", "INT64"), ("span_date", "DATE"), ("count_name", "STRING"),
        ("value", "INT64")),
}

_DATASET = re.compile(r"^(?:(?:[A-Za-z0-9.-]+:)?[A-Za-z0-9-]+\.)?[A-Za-z0-9_]+$")


class StatisticsLoadError(RuntimeError):
    """A load job that BigQuery refused or that failed; the message names the table and the reason."""


def _finite(value: Any) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _key(run_id: str, collection_date: datetime.date, reported_at: datetime.datetime) -> dict[str, str]:
    return {"run_id": run_id, "collection_date": collection_date.isoformat(),
            "reported_at": reported_at.astimezone(datetime.timezone.utc).isoformat()}


def statistics_rows(report, run_id: Optional[str] = None, collection_date: Optional[datetime.date] = None,
                    reported_at: Optional[datetime.datetime] = None) -> dict[str, list[dict[str, Any]]]:
    """The rows of each statistics table (TABLE_SCHEMAS' names) for one CollectionReport.

    run_id and collection_date identify the collection run; by default the
    manifest's latest run and its date_to. reported_at defaults to now (UTC).
    """
    latest = report.latest_run
    run_id = run_id or (latest.run_id if latest else "")
    if not run_id:
        raise ValueError("statistics rows need the collection run's id: the manifest lists no run, so pass run_id")
    if collection_date is None:
        if not (latest and latest.date_to):
            raise ValueError("statistics rows need the collection date: the manifest's latest run has no "
                             "date_to, so pass collection_date")
        collection_date = datetime.date.fromisoformat(latest.date_to)
    key = _key(run_id, collection_date, reported_at or datetime.datetime.now(datetime.timezone.utc))
    numeric = {f.name: f for f in report.numeric_features}
    categorical = {f.name: f for f in report.categorical_features}
    outliers = {c.outliers.column: c.outliers for c in report.numeric_columns}
    features = []
    for missing in report.missing:
        name = missing.column
        row: dict[str, Any] = {**key, "feature": name, "missing": missing.missing,
                               "missing_share": missing.share, "count": missing.rows - missing.missing,
                               "top_values": []}
        if name in numeric:
            n = numeric[name]
            row.update(type=n.type, is_list=False, count=n.count, mean=_finite(n.mean),
                       std_dev=_finite(n.std_dev), min=_finite(n.min), median=_finite(n.median),
                       max=_finite(n.max), zeros=n.zeros)
        if name in categorical:
            c = categorical[name]
            row.update(type=c.type, is_list=c.is_list, count=c.count, unique=c.unique,
                       avg_list_length=_finite(c.avg_list_length),
                       top_values=[{"value": v, "frequency": f} for v, f in c.top_values])
        if name in outliers:
            o = outliers[name]
            row.update(q1=_finite(o.q1), q3=_finite(o.q3), lower_fence=_finite(o.lower_fence),
                       upper_fence=_finite(o.upper_fence), outliers=o.count)
        features.append(row)
    delays = report.delays
    rule_counts = [{**key, "scope": "span", "span": s.span, "span_date": s.date, "count_name": name,
                    "value": s.rule_counts[name]}
                   for s in report.spans for name in report.rule_count_names if name in s.rule_counts]
    for run in report.runs:
        if run.run_id == run_id:
            rule_counts += [{**key, "scope": "run", "span": None, "span_date": None, "count_name": name,
                             "value": value} for name, value in run.total.items()]
    return {
        "collection_table_summary": [{
            **key, "sessions": report.rows, "first_session_date": report.first_date,
            "last_session_date": report.last_date, "spans": len(report.spans),
            "sessions_with_claim": report.coverage.with_claim, "claim_coverage": report.coverage.share,
            "claim_delays": delays.count, "claim_delay_median_days": _finite(delays.median),
            "claim_delay_p95_days": _finite(delays.p95),
            "labels_never_occurring": len(report.never_occurring_labels),
            "labels_not_in_vocabulary": len(report.unknown_labels)}],
        "collection_feature_stats": features,
        "collection_label_frequencies": [
            {**key, "label": f.label, "sessions": f.sessions, "share": f.share, "in_vocabulary": f.in_vocabulary}
            for f in report.labels],
        "collection_join_coverage": [
            {**key, "session_date": d.date, "sessions": d.sessions, "sessions_with_claim": d.with_claim,
             "share": d.share} for d in report.coverage.days],
        "collection_rule_counts": rule_counts,
    }


def load_job_config(table: str) -> bigquery.LoadJobConfig:
    """Newline-delimited JSON into TABLE_SCHEMAS[table], partitioned by collection_date; the load
    replaces the partition it targets."""
    return bigquery.LoadJobConfig(
        schema=TABLE_SCHEMAS[table],
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        # A newer report with more columns widens the table instead of failing.
        schema_update_options=[bigquery.SchemaUpdateOption.ALLOW_FIELD_ADDITION],
        time_partitioning=bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY,
                                                    field="collection_date"),
    )


def load_statistics(client: bigquery.Client, dataset: str, rows: dict[str, list[dict[str, Any]]],
                    collection_date: datetime.date, timeout: float = 300.0) -> list[bigquery.LoadJob]:
    """Loads each table's rows into DATASET.TABLE$YYYYMMDD (collection_date's partition) and waits for
    the jobs; dataset is 'project.dataset' or a dataset of the client's project."""
    if not _DATASET.match(dataset):
        raise ValueError(f"dataset must be 'project.dataset' or 'dataset', got {dataset!r}")
    unknown = sorted(set(rows) - set(TABLE_SCHEMAS))
    if unknown:
        raise ValueError(f"no schema for the tables {unknown}; known: {sorted(TABLE_SCHEMAS)}")
    jobs = []
    for table, table_rows in rows.items():
        if not table_rows:
            continue  # an empty load would still truncate the partition
        dates = {row["collection_date"] for row in table_rows}
        if dates != {collection_date.isoformat()}:
            raise ValueError(f"{table}: every row must be of collection_date {collection_date}, got {sorted(dates)}")
        destination = f"{dataset}.{table}${collection_date:%Y%m%d}"
        jobs.append(client.load_table_from_json(
            table_rows, destination, job_id_prefix=f"repairml_collection_stats_{table}_",
            job_config=load_job_config(table)))
    for job in jobs:
        try:
            job.result(timeout=timeout)
        except Exception as error:  # google.api_core errors and BigQuery's job errors alike
            raise StatisticsLoadError(f"loading {job.destination.table_id} into {dataset} failed: "
                                      f"{str(error).strip().splitlines()[0] if str(error).strip() else error!r}"
                                      ) from error
    return jobs
