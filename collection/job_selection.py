"""The collection job's input: the selection step's five tables, read and checked.

Step 1 (selection) writes SELECTION/TABLE.parquet for each raw table with the
raw tables' columns (data/raw_sources.py, RAW_SCHEMAS). This module names the
columns and the Spark types the job needs of each table (the same as
RAW_SCHEMAS; tests/collection_job checks that the two agree), reads the tables
and turns a missing table or a column of the wrong type into a JobError: one
line that says which table, where, and what to do. Extra columns are ignored.

Plain Python and pyspark only: the job runs on Dataproc Serverless without the
data package.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

__all__ = ["JobError", "SELECTION_TABLES", "table_path", "read_selection", "path_exists"]


class JobError(Exception):
    """A problem with the job's input or arguments that the user can fix: exit code 2."""


_STRINGS = T.ArrayType(T.StringType())

# The columns the job reads, with their Spark types, per selection table.
SELECTION_TABLES: dict[str, dict[str, T.DataType]] = {
    "diagnostic_sessions": {
        "session_id": T.StringType(), "vin": T.StringType(), "workshop_id": T.StringType(),
        "country": T.StringType(), "session_ts": T.TimestampType(), "car_model": T.StringType(),
        "engine_type": T.StringType(), "build_year": T.LongType(), "mileage_km": T.LongType(),
        "battery_voltage": T.DoubleType(), "coolant_temp": T.DoubleType(),
        "coolant_temp_unit": T.StringType(), "fuel_trim_pct": T.DoubleType(), "symptoms": _STRINGS,
    },
    "diagnostic_dtcs": {
        "session_id": T.StringType(), "control_unit": T.StringType(), "code": T.StringType(),
    },
    "warranty_claims": {
        "claim_id": T.StringType(), "vin": T.StringType(), "workshop_id": T.StringType(),
        "repair_date": T.DateType(), "status": T.StringType(), "part_numbers": _STRINGS,
        "labour_op_codes": _STRINGS, "submitted_ts": T.TimestampType(),
    },
    "part_reference": {
        "part_number": T.StringType(), "label": T.StringType(), "superseded_by": T.StringType(),
        "description": T.StringType(),
    },
    "labour_reference": {
        "labour_op_code": T.StringType(), "label": T.StringType(), "description": T.StringType(),
    },
}


def table_path(selection: str, table: str) -> str:
    """Where the selection step writes a table: SELECTION/TABLE.parquet (a file or a folder)."""
    return f"{selection.rstrip('/')}/{table}.parquet"


def path_exists(spark: SparkSession, path: str) -> bool:
    """Whether a local or gs:// path exists, through Hadoop's FileSystem (as Spark reads it)."""
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).exists(hadoop_path)


def _type_name(data_type: T.DataType) -> str:
    if isinstance(data_type, T.TimestampType):
        return "timestamp (UTC)"
    if isinstance(data_type, T.TimestampNTZType):
        return "timestamp without time zone"
    return data_type.simpleString()


def _same_type(found: T.DataType, expected: T.DataType) -> bool:
    """Equal types; a list's elements may or may not be nullable."""
    if isinstance(expected, T.ArrayType):
        return isinstance(found, T.ArrayType) and _same_type(found.elementType, expected.elementType)
    return found == expected


def read_selection(spark: SparkSession, selection: str) -> dict[str, DataFrame]:
    """The five selection tables as DataFrames of the job's columns, in SELECTION_TABLES order.

    Raises JobError for a missing table, a missing column or a column of another type.
    """
    missing = [table for table in SELECTION_TABLES if not path_exists(spark, table_path(selection, table))]
    if missing:
        raise JobError(f"the selection {selection} has no table {', '.join(missing)} "
                       f"(expected {table_path(selection, missing[0])}); run the selection step first, "
                       f"or point --selection at the folder it wrote")
    tables = {}
    for table, columns in SELECTION_TABLES.items():
        path = table_path(selection, table)
        frame = spark.read.parquet(path)
        found = {field.name: field.dataType for field in frame.schema.fields}
        for column, expected in columns.items():
            if column not in found:
                raise JobError(f"selection table {table} ({path}) has no column {column}; "
                               f"write it with the raw table's columns (data/raw_sources.py RAW_SCHEMAS)")
            if not _same_type(found[column], expected):
                raise JobError(f"selection table {table} ({path}): column {column} is "
                               f"{_type_name(found[column])}, expected {_type_name(expected)}; "
                               f"write it with the raw table's types (data/raw_sources.py RAW_SCHEMAS)")
        tables[table] = frame.select(*columns)
    return tables
