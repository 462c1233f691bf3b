"""Step 1 of the collection: the raw rows of a date range and car model.

The selection is BigQuery Standard SQL, one SELECT per raw table in
collection/sql/, over the placeholder dataset `repairml_raw` of
data/raw_sources.sql. Both runs execute that same text:
  - production (bigquery_statements): each SELECT, its tables qualified with
    the configured raw dataset by rewriting the parsed SQL (sqlglot), wrapped
    in EXPORT DATA to STAGING/selection/TABLE.parquet/*.parquet; the pipeline's
    BigQuery job runs the script with bigquery_query_parameters;
  - locally (select_locally): each SELECT transpiled to DuckDB by sqlglot,
    over views `repairml_raw.TABLE` of RAW/parquet/TABLE.parquet, with the
    parameters bound as prepared parameters; it writes
    STAGING/selection/TABLE.parquet with exactly RAW_SCHEMAS' types.
The parameters are @date_from, @date_to (DATE), @car_model (STRING, '' = every
car model), @min_claim_delay_days and @max_claim_delay_days (INT64); the SQL
files' header comments say what each table's selection keeps.
"""
from __future__ import annotations

import datetime
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp

from collection.dates import DateRange
from collection.rules import CollectionRules
from data.raw_sources import RAW_SCHEMAS, TABLE_NAMES

__all__ = [
    "SelectionError", "SQL_DIR", "PLACEHOLDER_DATASET", "TABLE_NAMES", "select_sql", "query_parameters",
    "bigquery_query_parameters", "bigquery_statements", "export_uri", "check_raw_dataset", "bigquery_source_range_sql",
    "select_locally", "source_range",
]

SQL_DIR = Path(__file__).resolve().parent / "sql"
# The dataset the SQL names, as data/raw_sources.sql does; replaced by the configured one.
PLACEHOLDER_DATASET = "repairml_raw"
GENERATE_COMMAND = "repairml data generate --rows N --seed S --spans K --raw --out DIR"

# BigQuery's rules: a project id (optionally domain-scoped, example.com:my-project) and a dataset name.
_PROJECT = re.compile(r"(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
_DATASET = re.compile(r"[A-Za-z0-9_]{1,1024}")
# What a staging URI may hold: it becomes a string literal of the script, and
# the script travels inside a JSON string (BigqueryQueryJobOp pastes it between
# double quotes), so neither quotes nor backslashes.
_STAGING_URI = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,221}[a-z0-9](/[A-Za-z0-9._~=+-]+)*/?")

_PARAMETER_TYPES = {
    "date_from": "DATE", "date_to": "DATE", "car_model": "STRING",
    "min_claim_delay_days": "INT64", "max_claim_delay_days": "INT64",
}


class SelectionError(ValueError):
    """The selection cannot run as asked; the message says what, where and what to do."""


# --- The SQL ---------------------------------------------------------------------------


def select_sql(table: str) -> str:
    """The text of collection/sql/TABLE.sql, the selection of one raw table."""
    if table not in RAW_SCHEMAS:
        raise SelectionError(f"{table!r} is not a raw table; the raw tables are {list(TABLE_NAMES)}")
    return (SQL_DIR / f"{table}.sql").read_text(encoding="utf-8")


def _parsed(table: str) -> exp.Expression:
    return sqlglot.parse_one(select_sql(table), read="bigquery")


def _qualified(select: exp.Expression, raw_dataset: str) -> exp.Expression:
    """The SELECT with every `repairml_raw.TABLE` read from raw_dataset (project.dataset or dataset)."""
    check_raw_dataset(raw_dataset)
    project, _, dataset = raw_dataset.rpartition(".")
    select = select.copy()
    for table in select.find_all(exp.Table):
        if table.db != PLACEHOLDER_DATASET or table.catalog:
            raise SelectionError(f"collection/sql: {table.sql('bigquery')} is not in the dataset "
                                 f"{PLACEHOLDER_DATASET}; the selection reads the raw tables only")
        table.set("db", exp.to_identifier(dataset))
        table.set("catalog", exp.to_identifier(project) if project else None)
    return select


def check_raw_dataset(raw_dataset: str) -> None:
    """raw_dataset must be `project.dataset` or `dataset` by BigQuery's naming rules."""
    project, _, dataset = raw_dataset.rpartition(".") if isinstance(raw_dataset, str) else ("", "", "")
    if not _DATASET.fullmatch(dataset) or (project and not _PROJECT.fullmatch(project)):
        raise SelectionError(
            f"vertex.collection.raw_dataset: {raw_dataset!r} is not a BigQuery dataset; write it as "
            "project.dataset (a project id of 6 to 30 lower-case letters, digits and hyphens; a dataset "
            "name of letters, digits and underscores)")


def query_parameters(date_range: DateRange, car_model: str, rules: CollectionRules) -> dict[str, Any]:
    """The values of the selection's parameters, by name, as Python values."""
    if not isinstance(car_model, str):
        raise SelectionError(f"car model must be a string ('' for every car model), got {car_model!r}")
    return {"date_from": date_range.first, "date_to": date_range.last, "car_model": car_model,
            "min_claim_delay_days": rules.min_claim_delay_days,
            "max_claim_delay_days": rules.max_claim_delay_days}


def bigquery_query_parameters(date_from: str, date_to: str, car_model: str,
                              rules: CollectionRules) -> list[dict[str, Any]]:
    """The parameters as the BigQuery job receives them (JobConfigurationQuery.queryParameters).

    date_from and date_to are YYYY-MM-DD (the resolved range).
    """
    values = query_parameters(DateRange(datetime.date.fromisoformat(date_from),
                                        datetime.date.fromisoformat(date_to)), car_model, rules)
    return [{"name": name, "parameterType": {"type": _PARAMETER_TYPES[name]},
             "parameterValue": {"value": value.isoformat() if isinstance(value, datetime.date) else str(value)}}
            for name, value in values.items()]


def export_uri(staging_uri: str, table: str) -> str:
    """Where the production selection of `table` goes: STAGING/selection/TABLE.parquet/*.parquet.

    A folder named as the local file (STAGING/selection/TABLE.parquet), so the
    job reads SELECTION/TABLE.parquet in both runs: Spark reads a file or a
    folder of parquet files alike.
    """
    return f"{staging_uri.rstrip('/')}/selection/{table}.parquet/*.parquet"


def bigquery_statements(raw_dataset: str, staging_uri: str) -> str:
    """The BigQuery script of the pipeline's selection step: one EXPORT DATA per raw table.

    Each exports its SELECT (tables in raw_dataset, `project.dataset`) as parquet
    to export_uri(staging_uri, TABLE), replacing what a previous run left there.
    """
    if not isinstance(staging_uri, str) or not _STAGING_URI.fullmatch(staging_uri):
        raise SelectionError(
            f"vertex.collection.staging_uri: {staging_uri!r} is not a gs://BUCKET/PATH URI of plain "
            "letters, digits and . _ - ~ = + (no quotes, spaces or backslashes)")
    statements = []
    for table in TABLE_NAMES:
        options = exp.Properties(expressions=[
            exp.Property(this=exp.var("uri"), value=exp.Literal.string(export_uri(staging_uri, table))),
            exp.Property(this=exp.var("format"), value=exp.Literal.string("PARQUET")),
            exp.Property(this=exp.var("overwrite"), value=exp.true()),
        ])
        export = exp.Export(this=_qualified(_parsed(table), raw_dataset), options=options)
        text = export.sql("bigquery", pretty=True, comments=False)
        statements.append(f"-- {table}\n" + "\n".join(line.rstrip() for line in text.splitlines()) + ";")
    script = "\n\n".join(statements) + "\n"
    if '"' in script or "\\" in script:  # BigqueryQueryJobOp pastes the query into a JSON string
        raise SelectionError("collection/sql: the selection SQL must not contain double quotes or "
                             "backslashes; quote strings with ' and identifiers with `")
    return script


def bigquery_source_range_sql(raw_dataset: str) -> str:
    """The query of the first and last upload dates (UTC), for collection.dates.resolve_range in production."""
    select = sqlglot.parse_one(
        f"SELECT MIN(DATE(s.session_ts)) AS first_day, MAX(DATE(s.session_ts)) AS last_day "
        f"FROM `{PLACEHOLDER_DATASET}.diagnostic_sessions` AS s", read="bigquery")
    return _qualified(select, raw_dataset).sql("bigquery")


# --- Locally, on DuckDB ----------------------------------------------------------------


def _raw_file(raw_dir: str | os.PathLike, table: str) -> Path:
    path = Path(raw_dir) / "parquet" / f"{table}.parquet"
    if not path.is_file():
        raise SelectionError(f"{path}: no such raw table file; write the raw sources with "
                             f"`{GENERATE_COMMAND}` and point collection.raw at DIR")
    return path


def _connection(raw_dir: str | os.PathLike, tables):
    import duckdb  # only the local path needs it

    connection = duckdb.connect(":memory:")
    # DATE(session_ts) is the UTC date, as in BigQuery; DuckDB would take the machine's zone.
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute(f"CREATE SCHEMA {PLACEHOLDER_DATASET}")
    for table in tables:
        literal = exp.Literal.string(str(_raw_file(raw_dir, table).resolve())).sql("duckdb")
        connection.execute(f"CREATE VIEW {PLACEHOLDER_DATASET}.{table} AS SELECT * FROM read_parquet({literal})")
    return connection


def _duckdb_query(table: str) -> tuple[str, list[str]]:
    """The table's selection as DuckDB SQL, and the names of the parameters it takes."""
    select = _parsed(table)
    names = sorted({parameter.name for parameter in select.find_all(exp.Parameter)})
    return select.sql("duckdb"), names


def _as_raw_schema(table: str, result: pa.Table) -> pa.Table:
    schema = RAW_SCHEMAS[table]
    if result.column_names != schema.names:
        raise SelectionError(f"collection/sql/{table}.sql selects {result.column_names}; it must select "
                             f"exactly the raw columns {schema.names}, in that order")
    # DuckDB names list items 'l' and drops the field metadata; the files carry RAW_SCHEMAS' own.
    return pa.Table.from_arrays([column.cast(field.type) for column, field in zip(result.columns, schema)],
                                schema=schema)


def _write_atomically(table: pa.Table, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def select_locally(raw_dir: str | os.PathLike, staging_dir: str | os.PathLike, date_range: DateRange,
                   car_model: str, rules: CollectionRules) -> dict[str, int]:
    """Runs the selection on DuckDB; writes STAGING/selection/TABLE.parquet; returns the rows per table.

    raw_dir is the folder `repairml data generate --raw` wrote (its parquet/
    holds one file per raw table). Each output file is replaced atomically.
    """
    values = query_parameters(date_range, car_model, rules)
    out_dir = Path(staging_dir) / "selection"
    connection = _connection(raw_dir, TABLE_NAMES)
    try:
        results = {}
        for table in TABLE_NAMES:
            sql, names = _duckdb_query(table)
            result = connection.execute(sql, {name: values[name] for name in names}).to_arrow_table()
            results[table] = _as_raw_schema(table, result)
    finally:
        connection.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    for table, result in results.items():
        _write_atomically(result, out_dir / f"{table}.parquet")
    return {table: result.num_rows for table, result in results.items()}


def source_range(raw_dir: str | os.PathLike) -> DateRange | None:
    """The first and last session dates (UTC) of the raw uploads; None when there are none."""
    connection = _connection(raw_dir, ["diagnostic_sessions"])
    try:
        first, last = connection.execute(
            f"SELECT MIN(CAST(session_ts AS DATE)), MAX(CAST(session_ts AS DATE)) "
            f"FROM {PLACEHOLDER_DATASET}.diagnostic_sessions").fetchone()
    finally:
        connection.close()
    return None if first is None else DateRange(first, last)
