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

The production pipeline's last step (collection/production.py) is

  python -m collection.bigquery_stats publish --table PROJECT.DATASET.TABLE --spans gs://...
      --dataset PROJECT.DATASET --date-from D --date-to D --vocabulary-json '[...]'
      [--label-column C] [--project P] [--location L]

It reads the collected days' rows of the exploration table (exploration_query:
one parameterised SELECT, whose partition filter keeps the scan to those days),
the span manifest (SPANS/manifest.json, local or gs://), builds the report's
content (collection/report.py build_report) and loads its rows with the run id
D..D (the manifest's run that the publish step recorded) and collection date
date_to. A value that cannot be used: one line, exit code 2; a failure of
BigQuery or Cloud Storage: one line, exit code 1.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import re
import sys
import warnings
from typing import Any, Callable, Optional, Sequence

# google.api_core warns on import that Python 3.10 is unsupported: harmless (PLATFORM.md), and the
# pipeline step's log is for its own lines.
warnings.filterwarnings("ignore", message="You are using a non-supported Python version", category=FutureWarning)

from google.cloud import bigquery  # noqa: E402  pylint: disable=wrong-import-position

__all__ = ["TABLE_SCHEMAS", "statistics_rows", "load_job_config", "load_statistics", "StatisticsLoadError",
           "StatisticsInputError", "exploration_query", "read_exploration_rows", "publish_statistics", "main"]

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


class StatisticsInputError(ValueError):
    """An input of the publish command that cannot be used; the message says what, where and what to do."""


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


# --- The production pipeline's step: the exploration table's days -> the statistics tables ------


def _checked_table(table: str) -> str:
    from pipeline import bigquery_values  # the modeling source's rule: project.dataset.table

    try:
        bigquery_values.check_table(table)
    except bigquery_values.QueryError as error:
        raise StatisticsInputError(f"--table (collection.exploration_table): {error.problem}") from None
    return table


def exploration_query(table: str, date_from: datetime.date,
                      date_to: datetime.date) -> tuple[str, list[bigquery.ScalarQueryParameter]]:
    """The SELECT of the exploration table's sessions of date_from..date_to, and its DATE parameters.

    session_date is the 'YYYY-MM-DD' STRING of the modeling table; the filter on
    session_ts, the partition column (collection/exploration.py), keeps the scan
    to the days' partitions.
    """
    _checked_table(table)
    sql = (f"SELECT * FROM `{table}`\n"
           "WHERE session_ts >= TIMESTAMP(@date_from)\n"
           "  AND session_ts < TIMESTAMP(DATE_ADD(@date_to, INTERVAL 1 DAY))\n"
           "  AND session_date BETWEEN CAST(@date_from AS STRING) AND CAST(@date_to AS STRING)\n"
           "ORDER BY session_date, session_id")
    return sql, [bigquery.ScalarQueryParameter("date_from", "DATE", date_from),
                 bigquery.ScalarQueryParameter("date_to", "DATE", date_to)]


def read_exploration_rows(client: bigquery.Client, table: str, date_from: datetime.date,
                          date_to: datetime.date, create_bqstorage_client: bool = True):
    """The exploration table's rows of the days as a pandas DataFrame, as the report reads them locally.

    Read through Arrow (QueryJob.to_arrow): to_dataframe would need db-dtypes for
    the DATE column. Large results come through the BigQuery Storage API.
    """
    from collection import report  # pylint: disable=g-import-not-at-top
    from data.generator import SESSION_SCHEMA  # pylint: disable=g-import-not-at-top

    sql, parameters = exploration_query(table, date_from, date_to)
    job = client.query(sql, job_config=bigquery.QueryJobConfig(
        query_parameters=parameters, labels={"repairml-step": "collection-statistics"}),
        job_id_prefix="repairml_collection_stats_read_")
    rows = job.to_arrow(create_bqstorage_client=create_bqstorage_client)
    absent = [c for c in list(SESSION_SCHEMA.names) + list(report.REQUIRED_JOIN_COLUMNS)
              if c not in rows.column_names]
    if absent:
        raise StatisticsInputError(f"the exploration table {table} lacks the columns {', '.join(absent)}: it was "
                                   "not loaded by this version of the collection pipeline; collect again")
    if rows.num_rows == 0:
        raise StatisticsInputError(f"the exploration table {table} holds no sessions of {date_from}..{date_to}: "
                                   "there are no statistics to write; collect days the raw sources have")
    return rows.to_pandas()


def _manifest(spans: str, run_id: str) -> dict[str, Any]:
    from collection import spans as spans_module  # pylint: disable=g-import-not-at-top

    try:
        manifest = spans_module.read_manifest(spans)
    except spans_module.PublishError as error:
        raise StatisticsInputError(str(error)) from None
    where = f"{spans.rstrip('/')}/{spans_module.MANIFEST_NAME}"
    if manifest is None:
        raise StatisticsInputError(f"no span manifest at {where} (--spans, collection.spans): the publish step "
                                   "writes it; run the collection pipeline's steps in order")
    if not isinstance(manifest, dict) or manifest.get("format") != 1 or not isinstance(manifest.get("spans"), dict):
        raise StatisticsInputError(f"{where} is not a span manifest of format 1: collect again")
    if run_id not in {run.get("run_id") for run in manifest.get("runs") or [] if isinstance(run, dict)}:
        raise StatisticsInputError(f"{where} records no collection run {run_id}: the publish step of this run "
                                   "records it; run the collection pipeline's steps in order")
    return manifest


def _checked_dataset(dataset: str) -> str:
    if not _DATASET.match(dataset):
        raise StatisticsInputError(f"--dataset (vertex.collection.statistics_dataset): {dataset!r} is not "
                                   "a BigQuery dataset as project.dataset")
    return dataset


def publish_statistics(client: bigquery.Client, table: str, spans: str, dataset: str,
                       date_from: datetime.date, date_to: datetime.date, vocabulary: Sequence[str],
                       label_column: str = "repair_labels", create_bqstorage_client: bool = True,
                       log: Callable[[str], None] = print) -> list[bigquery.LoadJob]:
    """Reads the days' exploration rows and the manifest, builds the report, loads its statistics
    into DATASET (the run D..D, collection date date_to); returns the load jobs."""
    from collection import report  # pylint: disable=g-import-not-at-top

    _checked_dataset(dataset)
    run_id = f"{date_from.isoformat()}..{date_to.isoformat()}"
    manifest = _manifest(spans, run_id)
    frame = read_exploration_rows(client, table, date_from, date_to, create_bqstorage_client)
    log(f"read {len(frame):,} sessions of {run_id} from {table}")
    try:
        collection_report = report.build_report(frame, manifest, vocabulary, table_path=table,
                                                manifest_path=f"{spans.rstrip('/')}/manifest.json",
                                                label_column=label_column)
    except report.ReportError as error:
        raise StatisticsInputError(str(error)) from None
    rows = statistics_rows(collection_report, run_id, date_to)
    jobs = load_statistics(client, dataset, rows, date_to)
    for job in jobs:
        log(f"loaded {len(rows[job.destination.table_id.split('$')[0]]):,} rows into "
            f"{dataset}.{job.destination.table_id}")
    return jobs


def _vocabulary(text: str) -> list[str]:
    try:
        vocabulary = json.loads(text)
    except ValueError:
        vocabulary = None
    if not (isinstance(vocabulary, list) and vocabulary and all(isinstance(v, str) for v in vocabulary)):
        raise StatisticsInputError(f"--vocabulary-json: {text[:60]!r} is not a JSON list of label names "
                                   "(label.vocabulary)")
    return vocabulary


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m collection.bigquery_stats publish ...`: 0; 2 with one line for an unusable input; 1 with
    one line when BigQuery or Cloud Storage failed."""
    from collection.dates import DateError, DateRange, parse_date  # pylint: disable=g-import-not-at-top

    parser = argparse.ArgumentParser(prog="python -m collection.bigquery_stats")
    commands = parser.add_subparsers(dest="command", required=True)
    publish = commands.add_parser("publish", help="load the collected days' data-quality statistics into BigQuery")
    publish.add_argument("--table", required=True, help="the exploration table, project.dataset.table")
    publish.add_argument("--spans", required=True, help="the spans folder with manifest.json (local or gs://)")
    publish.add_argument("--dataset", default="",
                         help="the statistics tables' dataset, project.dataset ('' = the table's dataset)")
    publish.add_argument("--date-from", required=True)
    publish.add_argument("--date-to", required=True)
    publish.add_argument("--vocabulary-json", required=True, help="label.vocabulary as a JSON list")
    publish.add_argument("--label-column", default="repair_labels")
    publish.add_argument("--project", default=None, help="the project the BigQuery jobs run in")
    publish.add_argument("--location", default=None, help="the BigQuery location of the datasets")
    args = parser.parse_args(argv)
    try:
        date_range = DateRange(parse_date("--date-from", args.date_from), parse_date("--date-to", args.date_to))
        if date_range.first > date_range.last:
            raise DateError(f"--date-from {date_range.first} is after --date-to {date_range.last}; give a range "
                            "whose first day comes first")
        dataset = _checked_dataset(args.dataset or _checked_table(args.table).rsplit(".", 1)[0])
        vocabulary = _vocabulary(args.vocabulary_json)
    except (DateError, StatisticsInputError) as error:
        print(f"repairml: {error}", file=sys.stderr)
        return 2
    from google.api_core import exceptions as api_exceptions  # pylint: disable=g-import-not-at-top
    from google.auth import exceptions as auth_exceptions  # pylint: disable=g-import-not-at-top

    try:
        client = bigquery.Client(project=args.project, location=args.location)
        publish_statistics(client, args.table, args.spans, dataset, date_range.first, date_range.last,
                           vocabulary, args.label_column)
    except StatisticsInputError as error:
        print(f"repairml: {error}", file=sys.stderr)
        return 2
    except StatisticsLoadError as error:
        print(f"repairml: {error}", file=sys.stderr)
        return 1
    except (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError, OSError) as error:
        print(f"repairml: writing the data-quality statistics of {args.table} to {dataset} failed: "
              f"{_one_line(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
