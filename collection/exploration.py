"""Step 3 of the collection: the exploration table, the collected sessions with their join columns.

The Spark job (job.py) writes JOB/exploration/_span=K/*.parquet: the modeling
table's columns (data/generator.py, SESSION_SCHEMA) and, for looking into the
join, the session's car and workshop, its upload time and number of uploads,
its claims, repair date, claim delay and claim submission time
(EXPLORATION_SCHEMA). Each run replaces the rows of the days it collected, so
that running a day again gives the same table:
  - locally (replace_days): a DuckDB file, table `collected_sessions`; one
    transaction deletes those days' rows and inserts the new ones, so a failure
    leaves the table as it was;
  - in production (load_into_bigquery): one BigQuery load job per day into the
    day's partition, `project.dataset.table$YYYYMMDD`, with WRITE_TRUNCATE. The
    table is the modeling pipeline's source (configs/vertex.yaml data.table).
    It is partitioned by day on session_ts (TIMESTAMP, UTC), whose day is the
    session_date, because session_date stays the 'YYYY-MM-DD' STRING the
    modeling table has and pipeline/production/bigquery.py reads (CAST to
    STRING and to DATE both hold). A day without sessions has its partition
    deleted.
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from collection.dates import DateError, DateRange, parse_date, span_of
from data.generator import SESSION_SCHEMA

__all__ = [
    "ExplorationError", "EXPLORATION_SCHEMA", "TABLE_NAME", "PARTITION_COLUMN", "read_exploration",
    "replace_days", "PartitionLoad", "load_job_config", "bigquery_load_requests", "spans_present",
    "load_into_bigquery", "main",
]

TABLE_NAME = "collected_sessions"
# The BigQuery table's day partitions are the UTC days of this column (a TIMESTAMP).
PARTITION_COLUMN = "session_ts"
_TIMESTAMP = pa.timestamp("us", tz="UTC")
_STRINGS = pa.list_(pa.string())

EXPLORATION_SCHEMA = pa.schema(list(SESSION_SCHEMA) + [
    pa.field("vin", pa.string()),
    pa.field("workshop_id", pa.string()),
    pa.field("session_ts", _TIMESTAMP),
    pa.field("uploads", pa.int64()),
    pa.field("claim_ids", _STRINGS),
    pa.field("repair_date", pa.date32()),
    pa.field("claim_delay_days", pa.int64()),
    pa.field("claim_submitted_ts", _TIMESTAMP),
])
_SPAN_FOLDER = re.compile(r"_span=(\d+)")
_DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", _STRINGS: "VARCHAR[]",
                 _TIMESTAMP: "TIMESTAMPTZ", pa.date32(): "DATE"}


class ExplorationError(ValueError):
    """The exploration table cannot be updated as asked; the message says what, where and what to do."""


# --- Locally: a DuckDB table -----------------------------------------------------------


def read_exploration(exploration_dir: str | os.PathLike) -> pa.Table:
    """Every DIR/_span=K/*.parquet file as one table of EXPLORATION_SCHEMA."""
    exploration_dir = Path(exploration_dir)
    if not exploration_dir.is_dir():
        raise ExplorationError(f"{exploration_dir}: no such folder; the collection job writes it "
                               "(JOB/exploration/_span=K/*.parquet): run the job first")
    parts = []
    for path in sorted(exploration_dir.glob("_span=*/*.parquet")):
        table = pq.read_table(path)
        if "_span" in table.column_names:  # a folder's key, when a writer repeats it in the file
            table = table.drop(["_span"])
        missing = [name for name in EXPLORATION_SCHEMA.names if name not in table.column_names]
        unknown = [name for name in table.column_names if name not in EXPLORATION_SCHEMA.names]
        if missing or unknown:
            raise ExplorationError(f"{path}: the exploration files need exactly the columns "
                                   f"{EXPLORATION_SCHEMA.names}; missing {missing}, unknown {unknown}")
        try:
            parts.append(table.select(EXPLORATION_SCHEMA.names).cast(EXPLORATION_SCHEMA))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise ExplorationError(f"{path}: a column does not have its exploration type "
                                   f"({_one_line(error)}); see collection/exploration.py EXPLORATION_SCHEMA") from None
    return pa.concat_tables(parts) if parts else EXPLORATION_SCHEMA.empty_table()


def _create_table_sql() -> str:
    columns = ", ".join(f'"{field.name}" {_DUCKDB_TYPES[field.type]}' for field in EXPLORATION_SCHEMA)
    return f'CREATE TABLE IF NOT EXISTS {TABLE_NAME} ({columns}, PRIMARY KEY ("session_id"))'


def replace_days(db_path: str | os.PathLike, exploration_dir: str | os.PathLike,
                 days: Optional[Iterable[datetime.date]] = None) -> int:
    """Replaces the rows of the collected days in the DuckDB table; returns the number of rows inserted.

    The days replaced are `days` (the range a run collected: a day without a
    session loses its old rows) or, without them, the session dates the files
    hold. It is one transaction: on any failure the table stays as it was.
    """
    import duckdb  # only the local path needs it

    incoming = read_exploration(exploration_dir)
    present = sorted(set(incoming.column("session_date").to_pylist()))
    replaced = sorted({day.isoformat() for day in days}) if days is not None else present
    outside = sorted(set(present) - set(replaced))
    if outside:
        raise ExplorationError(f"{exploration_dir}: holds sessions of {outside}, outside the days to replace "
                               f"({replaced[0] if replaced else '-'}..{replaced[-1] if replaced else '-'}); "
                               "clear the job's output folder and run the job again")
    if not replaced:
        return 0
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = duckdb.connect(str(db_path))
    except duckdb.Error as error:
        raise ExplorationError(f"{db_path}: cannot open the exploration table ({_one_line(error)}); is another "
                               "process using it? Close it, or set collection.exploration_table") from None
    try:
        # DuckDB scans Arrow memory only from pyarrow 14 on (the C stream interface); TFX pins
        # pyarrow 10, so the checked rows reach it as one parquet file of their own.
        with tempfile.TemporaryDirectory(prefix=".exploration-", dir=db_path.parent) as scratch:
            rows_file = Path(scratch) / "incoming.parquet"
            pq.write_table(incoming, rows_file)
            connection.execute("SET TimeZone = 'UTC'")
            connection.execute("BEGIN TRANSACTION")
            try:
                connection.execute(_create_table_sql())
                connection.execute(f"DELETE FROM {TABLE_NAME} WHERE session_date IN (SELECT UNNEST($days))",
                                   {"days": replaced})
                connection.execute(f"INSERT INTO {TABLE_NAME} BY NAME SELECT * FROM read_parquet($rows)",
                                   {"rows": str(rows_file)})
                connection.execute("COMMIT")
            except duckdb.Error as error:
                connection.execute("ROLLBACK")
                raise ExplorationError(f"{db_path}: table {TABLE_NAME} was left as it was: "
                                       f"{_one_line(error)}") from None
    finally:
        connection.close()
    return incoming.num_rows


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


# --- Production: BigQuery day partitions --------------------------------------------------


@dataclass(frozen=True)
class PartitionLoad:
    """What one day does to the BigQuery table: a load of its files, or, without files, a delete."""

    day: datetime.date
    destination: str              # project.dataset.table$YYYYMMDD
    source_uris: list[str]        # empty: the day has no sessions, its partition is deleted
    job_config: Any               # google.cloud.bigquery.LoadJobConfig; None with no source_uris


def _check_table(table: str) -> None:
    from pipeline import bigquery_values  # the modeling source's rule: project.dataset.table

    try:
        bigquery_values.check_table(table)
    except bigquery_values.QueryError as error:
        raise ExplorationError(f"collection.exploration_table: {error.problem}") from None


def _check_uri(uri: str) -> str:
    if not isinstance(uri, str) or not re.fullmatch(r"gs://[a-z0-9][a-z0-9._-]{1,221}[a-z0-9](/[^\s*?]+)*/?", uri):
        raise ExplorationError(f"exploration files: {uri!r} is not a gs://BUCKET/PATH folder")
    return uri.rstrip("/")


def load_job_config() -> Any:
    """The load job's configuration: parquet with list inference, WRITE_TRUNCATE of the day's partition."""
    from google.cloud import bigquery

    parquet = bigquery.ParquetOptions()
    parquet.enable_list_inference = True  # list<string> becomes ARRAY<STRING>, not a nested record
    return bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        parquet_options=parquet,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        time_partitioning=bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY,
                                                    field=PARTITION_COLUMN))


def bigquery_load_requests(table: str, exploration_uri: str, days: Iterable[datetime.date], span_epoch: str,
                           spans_with_files: Optional[set[int]] = None) -> list[PartitionLoad]:
    """One PartitionLoad per day: gs://.../exploration/_span=K/*.parquet into table$YYYYMMDD.

    spans_with_files are the spans whose folder holds files (spans_present);
    None: every day has files.
    """
    _check_table(table)
    exploration_uri = _check_uri(exploration_uri)
    loads = []
    for day in sorted(set(days)):
        span = span_of(day, span_epoch)
        destination = f"{table}${day.strftime('%Y%m%d')}"
        if spans_with_files is not None and span not in spans_with_files:
            loads.append(PartitionLoad(day, destination, [], None))
        else:
            loads.append(PartitionLoad(day, destination, [f"{exploration_uri}/_span={span}/*.parquet"],
                                       load_job_config()))
    return loads


def spans_present(exploration_uri: str, storage_client: Any) -> set[int]:
    """The spans K whose gs://.../_span=K/ folder holds a parquet file."""
    bucket, _, prefix = _check_uri(exploration_uri)[len("gs://"):].partition("/")
    spans = set()
    for blob in storage_client.list_blobs(bucket, prefix=f"{prefix}/_span=" if prefix else "_span="):
        folder, _, name = blob.name[len(prefix) + 1 if prefix else 0:].partition("/")
        match = _SPAN_FOLDER.fullmatch(folder)
        if match and name.endswith(".parquet") and not name.startswith((".", "_")):
            spans.add(int(match.group(1)))
    return spans


def load_into_bigquery(table: str, exploration_uri: str, date_range: DateRange, span_epoch: str,
                       client: Any, storage_client: Any,
                       log: Callable[[str], None] = print) -> dict[str, int]:
    """Replaces each day's partition of `table` with the day's files; returns the rows loaded per day."""
    loads = bigquery_load_requests(table, exploration_uri, date_range.days(), span_epoch,
                                   spans_present(exploration_uri, storage_client))
    rows = {}
    for load in loads:
        if not load.source_uris:
            client.delete_table(load.destination, not_found_ok=True)
            rows[load.day.isoformat()] = 0
            log(f"{load.day}: no sessions, partition {load.destination} deleted")
            continue
        job = client.load_table_from_uri(load.source_uris, load.destination, job_config=load.job_config)
        job.result()
        rows[load.day.isoformat()] = int(job.output_rows or 0)
        log(f"{load.day}: {rows[load.day.isoformat()]} sessions loaded into {load.destination}")
    return rows


# --- The production pipeline's step ------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m collection.exploration load-bigquery ...`: the pipeline's exploration-table step."""
    parser = argparse.ArgumentParser(prog="python -m collection.exploration")
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load-bigquery", help="load the job's exploration files into the BigQuery table")
    load.add_argument("--table", required=True, help="project.dataset.table")
    load.add_argument("--exploration-uri", required=True, help="gs://.../job/exploration")
    load.add_argument("--date-from", required=True)
    load.add_argument("--date-to", required=True)
    load.add_argument("--span-epoch", required=True)
    load.add_argument("--project", default=None, help="the project the load jobs run in")
    load.add_argument("--location", default=None, help="the BigQuery location of the table")
    args = parser.parse_args(argv)
    try:
        date_range = DateRange(parse_date("--date-from", args.date_from), parse_date("--date-to", args.date_to))
        bigquery_load_requests(args.table, args.exploration_uri, [], args.span_epoch)  # checks before connecting
    except (DateError, ExplorationError) as error:
        print(f"repairml: {error}", file=sys.stderr)
        return 2
    # google.api_core warns on import that Python 3.10 is unsupported: harmless (PLATFORM.md), and
    # the step's log is for its own lines.
    warnings.filterwarnings("ignore", message="You are using a non-supported Python version",
                            category=FutureWarning)
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud import bigquery, storage

    try:
        client = bigquery.Client(project=args.project, location=args.location)
        storage_client = storage.Client(project=args.project)
        load_into_bigquery(args.table, args.exploration_uri, date_range, args.span_epoch, client, storage_client)
    except (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError) as error:
        print(f"repairml: loading the exploration table {args.table} failed: {_one_line(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
