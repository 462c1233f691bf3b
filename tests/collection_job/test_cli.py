"""The job as production starts it: a process, `python collection/job.py` or `python -m collection.job`.

Input problems are one line on stderr and exit code 2; Spark's output goes to
--log-file; a finished run prints its progress lines and writes the marker.
Also: the job's modules import no TFX, pydantic or data package, and their
idea of the raw tables and the modeling table agrees with data/.
"""
from __future__ import annotations

import datetime
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import types as T

from collection.job import SESSION_COLUMNS
from collection.job_selection import SELECTION_TABLES
from collection.rules import CollectionRules
from data.generator import SESSION_SCHEMA
from data.raw_sources import RAW_SCHEMAS
from conftest import REPO, run_cli, write_selection

UTC = datetime.timezone.utc
UPLOAD = {"session_id": "U-1", "vin": "V1", "workshop_id": "DE-W001", "country": "DE",
          "session_ts": datetime.datetime(2026, 1, 2, 9, tzinfo=UTC), "car_model": "Aurora",
          "engine_type": "petrol", "build_year": 2020, "mileage_km": 50_000, "battery_voltage": 12.4,
          "coolant_temp": 90.0, "coolant_temp_unit": "degC", "fuel_trim_pct": 1.5, "symptoms": ["no_start"]}


def _args(selection, output, log_file, **overrides):
    values = {"--selection": str(selection), "--output": str(output),
              "--rules-json": CollectionRules().to_json(), "--date-from": "2026-01-01",
              "--date-to": "2026-01-03", "--span-epoch": "2026-01-01", "--master": "local[2]",
              "--log-file": str(log_file), **overrides}
    return [item for pair in values.items() for item in pair]


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("collection job: error: "), lines[0]
    return lines[0]


def test_run_as_a_file_prints_progress_and_sends_spark_to_the_log(tmp_path):
    selection = write_selection(tmp_path / "selection", diagnostic_sessions=[UPLOAD])
    result = run_cli(_args(selection, tmp_path / "out", tmp_path / "spark.log"), module=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("selection: 1 uploads, 0 claims")
    assert any(line.startswith("wrote 1 spans, 1 sessions") for line in lines)
    assert (tmp_path / "spark.log").read_text().strip()  # Spark's start-up lines
    counts = json.loads((tmp_path / "out" / "rule_counts.json").read_text())
    assert counts["total"]["sessions"] == 1 and counts["days"]["2026-01-02"]["sessions"] == 1
    [span_file] = (tmp_path / "out" / "sessions" / "_span=1").glob("*.parquet")
    assert pq.read_table(span_file).column("session_id").to_pylist() == ["U-1"]


def test_missing_selection_table_is_one_line_and_exit_2(tmp_path):
    selection = write_selection(tmp_path / "selection", diagnostic_sessions=[UPLOAD])
    (selection / "warranty_claims.parquet").unlink()
    result = run_cli(_args(selection, tmp_path / "out", tmp_path / "spark.log"))
    assert result.returncode == 2, result.stderr
    line = _one_line(result.stderr)
    assert "warranty_claims" in line and str(selection / "warranty_claims.parquet") in line
    assert "run the selection step" in line
    assert not (tmp_path / "out" / "rule_counts.json").exists()


def test_wrong_column_type_is_one_line_and_exit_2(tmp_path):
    selection = write_selection(tmp_path / "selection", diagnostic_sessions=[UPLOAD])
    schema = RAW_SCHEMAS["diagnostic_sessions"]
    as_int32 = schema.set(schema.get_field_index("mileage_km"), pa.field("mileage_km", pa.int32()))
    pq.write_table(pa.Table.from_pylist([UPLOAD], schema=as_int32), selection / "diagnostic_sessions.parquet")
    result = run_cli(_args(selection, tmp_path / "out", tmp_path / "spark.log"), module=False)
    assert result.returncode == 2, result.stderr
    line = _one_line(result.stderr)
    assert "diagnostic_sessions" in line and "mileage_km is int, expected bigint" in line


@pytest.mark.parametrize("overrides, says", [
    ({"--date-from": "2026-13-01"}, "--date-from must be a date as YYYY-MM-DD"),
    ({"--date-from": "2025-12-31"}, "before --span-epoch 2026-01-01"),
    ({"--date-to": "2025-12-31", "--date-from": "2026-01-02"}, "is after --date-to"),
    ({"--rules-json": '{"max_claim_delay_days": 0}'}, "max_claim_delay_days"),
    ({"--rules-json": "{not json"}, "--rules-json is not JSON"),
])
def test_bad_arguments_are_one_line_and_exit_2_before_spark_starts(tmp_path, overrides, says):
    result = run_cli(_args(tmp_path, tmp_path / "out", tmp_path / "spark.log", **overrides))
    assert result.returncode == 2
    assert says in _one_line(result.stderr)
    assert not (tmp_path / "spark.log").exists()  # no JVM was started


def test_run_checks_the_dates_too(spark, tmp_path):
    from collection.job import JobError, run
    with pytest.raises(JobError, match="before --span-epoch 2026-01-01, the day of span 0"):
        run(spark, str(tmp_path), str(tmp_path / "out"), CollectionRules(), datetime.date(2025, 12, 31),
            datetime.date(2026, 1, 3), datetime.date(2026, 1, 1))


def test_the_job_imports_no_tfx_pydantic_or_data_package():
    code = ("import sys, collection.job\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'tfx', 'pydantic', 'data', 'pipeline', 'apache_beam'))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr


def _spark_type(arrow_type: pa.DataType) -> T.DataType:
    if pa.types.is_list(arrow_type):
        return T.ArrayType(_spark_type(arrow_type.value_type))
    return {pa.string(): T.StringType(), pa.int64(): T.LongType(), pa.float64(): T.DoubleType(),
            pa.date32(): T.DateType(), pa.timestamp("us", tz="UTC"): T.TimestampType()}[arrow_type]


def test_the_job_reads_the_raw_tables_columns_and_writes_the_modeling_columns():
    assert list(SELECTION_TABLES) == list(RAW_SCHEMAS)
    for table, schema in RAW_SCHEMAS.items():
        assert SELECTION_TABLES[table] == {f.name: _spark_type(f.type) for f in schema}, table
    assert list(SESSION_COLUMNS) == SESSION_SCHEMA.names
