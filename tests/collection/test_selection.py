"""The collection's selection: the SQL of collection/sql/ on DuckDB and as the production BigQuery script.

Hand-built raw tables pin each bound (the upload window with its competitor
days, the claim window, the car model and its VIN semi-join); a small data set
from `repairml data generate --raw` is checked against pandas filters of its
own frames. The production script is parsed back with sqlglot, and its SELECTs
run on DuckDB too, so the text BigQuery would run is the text tested.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from collection import selection
from collection.dates import DateRange
from collection.rules import CollectionRules
from collection.selection import SelectionError, bigquery_statements, select_locally, source_range
from data.generator import generate_sessions
from data.raw_sources import RAW_SCHEMAS, TABLE_NAMES, raw_sources, write_raw_sources

PROJECT_ROOT = Path(__file__).resolve().parents[2]
D = datetime.date
UTC = datetime.timezone.utc
RULES = CollectionRules(min_claim_delay_days=2, max_claim_delay_days=5)
RANGE = DateRange(D(2026, 3, 10), D(2026, 3, 12))  # uploads 03-10..03-17, claims 03-12..03-17
DATASET = "my-gcp-project.repairml_raw_eu"
STAGING = "gs://my-gcp-project-repairml/collection/staging"


def _at(day: datetime.date, hour: int = 10, minute: int = 0, second: int = 0) -> datetime.datetime:
    return datetime.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def _upload(session_id: str, ts: datetime.datetime, vin: str = "VIN0000000000001", car_model: str = "Astra"):
    return {"session_id": session_id, "vin": vin, "workshop_id": "DE-W001", "country": "DE", "session_ts": ts,
            "car_model": car_model, "engine_type": "petrol", "build_year": 2020, "mileage_km": 50_000,
            "battery_voltage": 12.4, "coolant_temp": None, "coolant_temp_unit": "degC", "fuel_trim_pct": 1.5,
            "symptoms": ["stalls"]}


def _claim(claim_id: str, repair_date: datetime.date, vin: str = "VIN0000000000001", status: str = "submitted"):
    return {"claim_id": claim_id, "vin": vin, "workshop_id": "DE-W001", "repair_date": repair_date,
            "status": status, "part_numbers": ["P-1"], "labour_op_codes": [],
            "submitted_ts": _at(repair_date, 16)}


PARTS = [{"part_number": "P-0", "label": None, "superseded_by": "P-1", "description": "old battery"},
         {"part_number": "P-1", "label": "part:battery_12v", "superseded_by": None, "description": "battery"}]
OPS = [{"labour_op_code": "OP-1", "label": "op:replace_12v_battery", "description": "replace battery"}]


def _write_raw(raw_dir, uploads=(), dtcs=(), claims=(), parts=PARTS, ops=OPS):
    rows = {"diagnostic_sessions": uploads, "diagnostic_dtcs": dtcs, "warranty_claims": claims,
            "part_reference": parts, "labour_reference": ops}
    (raw_dir / "parquet").mkdir(parents=True, exist_ok=True)
    for table, table_rows in rows.items():
        pq.write_table(pa.Table.from_pylist(list(table_rows), schema=RAW_SCHEMAS[table]),
                       raw_dir / "parquet" / f"{table}.parquet")
    return raw_dir


def _selected(staging_dir, table: str, column: str) -> list:
    return sorted(pq.read_table(staging_dir / "selection" / f"{table}.parquet").column(column).to_pylist())


def _select(tmp_path, car_model: str = "", date_range: DateRange = RANGE, rules: CollectionRules = RULES):
    return select_locally(tmp_path / "raw", tmp_path / "staging", date_range, car_model, rules)


# --- Uploads, readouts and claims --------------------------------------------------------


def test_uploads_from_the_first_day_to_max_delay_after_the_last_both_inclusive(tmp_path):
    _write_raw(tmp_path / "raw", uploads=[
        _upload("before", _at(D(2026, 3, 9), 23, 59, 59)),
        _upload("first-day", _at(D(2026, 3, 10), 0, 0, 0)),
        _upload("last-day", _at(D(2026, 3, 12), 23, 59, 59)),
        _upload("competitor", _at(D(2026, 3, 15))),
        _upload("last-competitor-day", _at(D(2026, 3, 17), 23, 59, 59)),
        _upload("after", _at(D(2026, 3, 18), 0, 0, 0)),
    ])
    counts = _select(tmp_path)
    assert _selected(tmp_path / "staging", "diagnostic_sessions", "session_id") == sorted(
        ["first-day", "last-day", "competitor", "last-competitor-day"])
    assert counts["diagnostic_sessions"] == 4


def test_a_session_date_is_the_utc_date_whatever_the_machines_time_zone(tmp_path):
    # 23:30 UTC on the day before the range is already the range's first day at UTC+14. DuckDB takes
    # the zone of the process when it loads, so the selection runs in a process of its own.
    _write_raw(tmp_path / "raw", uploads=[_upload("utc-day-before", _at(D(2026, 3, 9), 23, 30)),
                                          _upload("utc-first-day", _at(D(2026, 3, 10), 0, 30))])
    program = (
        "import datetime, sys\n"
        "from collection.dates import DateRange\n"
        "from collection.rules import CollectionRules\n"
        "from collection.selection import select_locally, source_range\n"
        "select_locally(sys.argv[1] + '/raw', sys.argv[1] + '/staging', DateRange(datetime.date(2026, 3, 10), "
        "datetime.date(2026, 3, 12)), '', CollectionRules(min_claim_delay_days=2, max_claim_delay_days=5))\n"
        "print(source_range(sys.argv[1] + '/raw'))\n")
    result = subprocess.run([sys.executable, "-c", program, str(tmp_path)], cwd=PROJECT_ROOT, text=True,
                            capture_output=True, env={**os.environ, "TZ": "Pacific/Kiritimati"}, check=True)
    assert result.stdout.strip() == "2026-03-09..2026-03-10"
    assert _selected(tmp_path / "staging", "diagnostic_sessions", "session_id") == ["utc-first-day"]


def test_readouts_are_those_of_the_selected_uploads(tmp_path):
    _write_raw(tmp_path / "raw",
               uploads=[_upload("in", _at(D(2026, 3, 11))), _upload("out", _at(D(2026, 3, 1))),
                        _upload("other-model", _at(D(2026, 3, 11)), car_model="Corsa")],
               dtcs=[{"session_id": "in", "control_unit": "ECM", "code": "p0300 "},
                     {"session_id": "in", "control_unit": "ECM", "code": "P0171"},
                     {"session_id": "out", "control_unit": "ECM", "code": "P0300"},
                     {"session_id": "other-model", "control_unit": "ABS", "code": "C0035"},
                     {"session_id": "never-uploaded", "control_unit": "ECM", "code": "P0300"}])
    _select(tmp_path)
    assert _selected(tmp_path / "staging", "diagnostic_dtcs", "code") == sorted(["p0300 ", "P0171", "C0035"])
    _select(tmp_path, car_model="Astra")
    assert _selected(tmp_path / "staging", "diagnostic_dtcs", "code") == sorted(["p0300 ", "P0171"])


def test_claims_from_min_delay_after_the_first_day_to_max_delay_after_the_last(tmp_path):
    _write_raw(tmp_path / "raw", uploads=[_upload("s", _at(D(2026, 3, 10)))], claims=[
        _claim("too-early", D(2026, 3, 11)),
        _claim("first", D(2026, 3, 12)),
        _claim("cancelled", D(2026, 3, 14), status="cancelled"),
        _claim("last", D(2026, 3, 17)),
        _claim("too-late", D(2026, 3, 18)),
        _claim("orphan", D(2026, 3, 13), vin="VIN9999999999999"),
    ])
    _select(tmp_path)
    # Every status and every VIN without a car model: the job drops and counts them.
    assert _selected(tmp_path / "staging", "warranty_claims", "claim_id") == sorted(
        ["first", "cancelled", "last", "orphan"])


def test_a_car_model_selects_its_uploads_and_the_claims_on_their_vins(tmp_path):
    astra, corsa, gone = "VINASTRA00000001", "VINCORSA00000001", "VINASTRA00000002"
    _write_raw(tmp_path / "raw",
               uploads=[_upload("astra", _at(D(2026, 3, 11)), vin=astra),
                        _upload("corsa", _at(D(2026, 3, 11)), vin=corsa, car_model="Corsa"),
                        # an Astra seen only before the window: its claims are not the range's
                        _upload("astra-earlier", _at(D(2026, 2, 1)), vin=gone)],
               claims=[_claim("on-astra", D(2026, 3, 13), vin=astra),
                       _claim("on-corsa", D(2026, 3, 13), vin=corsa),
                       _claim("on-earlier-astra", D(2026, 3, 13), vin=gone),
                       _claim("orphan", D(2026, 3, 13), vin="VIN9999999999999")])
    _select(tmp_path, car_model="Astra")
    assert _selected(tmp_path / "staging", "diagnostic_sessions", "session_id") == ["astra"]
    assert _selected(tmp_path / "staging", "warranty_claims", "claim_id") == ["on-astra"]
    _select(tmp_path, car_model="")
    assert _selected(tmp_path / "staging", "diagnostic_sessions", "session_id") == ["astra", "corsa"]
    assert _selected(tmp_path / "staging", "warranty_claims", "claim_id") == sorted(
        ["on-astra", "on-corsa", "on-earlier-astra", "orphan"])


def test_a_car_model_that_no_upload_has_selects_no_uploads_or_claims(tmp_path):
    _write_raw(tmp_path / "raw", uploads=[_upload("astra", _at(D(2026, 3, 11)))],
               claims=[_claim("c", D(2026, 3, 13))])
    counts = _select(tmp_path, car_model="astra")  # case matters, as in BigQuery
    assert counts == {"diagnostic_sessions": 0, "diagnostic_dtcs": 0, "warranty_claims": 0,
                      "part_reference": 2, "labour_reference": 1}
    assert pq.read_schema(tmp_path / "staging" / "selection" / "warranty_claims.parquet") == (
        RAW_SCHEMAS["warranty_claims"])


def test_the_reference_tables_are_selected_whole(tmp_path):
    _write_raw(tmp_path / "raw")
    _select(tmp_path, car_model="Astra")
    assert pq.read_table(tmp_path / "staging" / "selection" / "part_reference.parquet").to_pylist() == PARTS
    assert pq.read_table(tmp_path / "staging" / "selection" / "labour_reference.parquet").to_pylist() == OPS


def test_the_files_have_exactly_the_raw_schemas_and_values(tmp_path):
    upload = _upload("s", _at(D(2026, 3, 11), 8, 15, 2))
    claim = _claim("c", D(2026, 3, 13))
    _write_raw(tmp_path / "raw", uploads=[upload], claims=[claim],
               dtcs=[{"session_id": "s", "control_unit": "ECM", "code": "P0300"}])
    _select(tmp_path)
    for table in TABLE_NAMES:
        written = pq.read_table(tmp_path / "staging" / "selection" / f"{table}.parquet")
        assert written.schema.equals(RAW_SCHEMAS[table], check_metadata=True), table
    sessions = pq.read_table(tmp_path / "staging" / "selection" / "diagnostic_sessions.parquet").to_pylist()
    assert sessions == [upload]  # a NULL reading stays NULL, the timestamp keeps its microseconds and zone
    assert pq.read_table(tmp_path / "staging" / "selection" / "warranty_claims.parquet").to_pylist() == [claim]


def test_a_rerun_replaces_the_files_and_leaves_no_temporary_ones(tmp_path):
    _write_raw(tmp_path / "raw", uploads=[_upload("a", _at(D(2026, 3, 10))), _upload("b", _at(D(2026, 3, 20)))])
    _select(tmp_path)
    _select(tmp_path, date_range=DateRange(D(2026, 3, 20), D(2026, 3, 20)))
    assert _selected(tmp_path / "staging", "diagnostic_sessions", "session_id") == ["b"]
    assert sorted(p.name for p in (tmp_path / "staging" / "selection").iterdir()) == sorted(
        f"{table}.parquet" for table in TABLE_NAMES)


def test_a_missing_raw_file_names_the_file_and_the_command_that_writes_it(tmp_path):
    _write_raw(tmp_path / "raw")
    (tmp_path / "raw" / "parquet" / "warranty_claims.parquet").unlink()
    with pytest.raises(SelectionError) as error:
        _select(tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / "raw" / "parquet" / "warranty_claims.parquet") in message
    assert "repairml data generate" in message and "--raw" in message
    assert not (tmp_path / "staging" / "selection").exists()


def test_source_range_is_the_first_and_last_upload_date(tmp_path):
    _write_raw(tmp_path / "raw", uploads=[_upload("a", _at(D(2026, 1, 5), 23, 59)),
                                          _upload("b", _at(D(2026, 2, 1), 0, 1))])
    assert source_range(tmp_path / "raw") == DateRange(D(2026, 1, 5), D(2026, 2, 1))
    _write_raw(tmp_path / "empty")
    assert source_range(tmp_path / "empty") is None


# --- A generated raw data set --------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    raw_dir = tmp_path_factory.mktemp("raw")
    raw = raw_sources(generate_sessions(600, seed=11, spans=12), seed=11)
    write_raw_sources(raw, raw_dir)
    return raw_dir, raw


@pytest.mark.parametrize("car_model", ["", "compact_suv"])
def test_on_generated_raw_sources_the_selection_is_the_windows_of_the_frames(generated, tmp_path, car_model):
    raw_dir, raw = generated
    rules = CollectionRules(min_claim_delay_days=1, max_claim_delay_days=3)
    date_range = DateRange(D(2026, 1, 4), D(2026, 1, 7))
    select_locally(raw_dir, tmp_path, date_range, car_model, rules)

    uploads = raw.diagnostic_sessions
    day = uploads["session_ts"].dt.tz_convert("UTC").dt.date
    keep = (day >= D(2026, 1, 4)) & (day <= D(2026, 1, 10))
    if car_model:
        keep &= uploads["car_model"] == car_model
    expected_uploads = uploads[keep]
    claims = raw.warranty_claims
    claim_keep = (claims["repair_date"] >= D(2026, 1, 5)) & (claims["repair_date"] <= D(2026, 1, 10))
    if car_model:
        claim_keep &= claims["vin"].isin(expected_uploads["vin"])
    dtcs = raw.diagnostic_dtcs
    expected_dtcs = dtcs[dtcs["session_id"].isin(expected_uploads["session_id"])]

    assert len(expected_uploads) > 20 and claim_keep.sum() > 5  # the data set exercises the windows
    assert _selected(tmp_path, "diagnostic_sessions", "session_id") == sorted(expected_uploads["session_id"])
    assert _selected(tmp_path, "warranty_claims", "claim_id") == sorted(claims.loc[claim_keep, "claim_id"])
    written_dtcs = pq.read_table(tmp_path / "selection" / "diagnostic_dtcs.parquet").to_pandas()
    assert sorted(map(tuple, written_dtcs.to_numpy().tolist())) == sorted(
        map(tuple, expected_dtcs.to_numpy().tolist()))
    assert pq.read_table(tmp_path / "selection" / "part_reference.parquet").num_rows == len(raw.part_reference)
    for table in TABLE_NAMES:
        assert pq.read_schema(tmp_path / "selection" / f"{table}.parquet").equals(
            RAW_SCHEMAS[table], check_metadata=True)


def test_source_range_of_generated_raw_sources(generated):
    raw_dir, _ = generated
    assert source_range(raw_dir) == DateRange(D(2026, 1, 1), D(2026, 1, 12))


# --- The production script ---------------------------------------------------------------


def test_the_script_exports_each_table_to_its_staging_folder_as_parquet():
    statements = sqlglot.parse(bigquery_statements(DATASET, STAGING), read="bigquery")
    assert [type(s) for s in statements] == [exp.Export] * len(TABLE_NAMES)
    for table, statement in zip(TABLE_NAMES, statements):
        options = {("format" if isinstance(p, exp.FileFormatProperty) else p.name.lower()):
                   p.this if isinstance(p, exp.FileFormatProperty) else p.args["value"]
                   for p in statement.args["options"].expressions}
        # A folder named as the local file: the job reads SELECTION/TABLE.parquet in both runs.
        assert options["uri"].this == f"{STAGING}/selection/{table}.parquet/*.parquet"
        assert options["format"].this == "PARQUET"
        assert options["overwrite"] == exp.true()
        assert statement.this.named_selects == RAW_SCHEMAS[table].names


def test_the_script_reads_the_configured_dataset_only():
    script = bigquery_statements(DATASET, STAGING)
    tables = {(t.catalog, t.db, t.name) for s in sqlglot.parse(script, read="bigquery")
              for t in s.find_all(exp.Table)}
    assert tables == {("my-gcp-project", "repairml_raw_eu", name) for name in TABLE_NAMES}
    assert "repairml_raw." not in script and "`repairml_raw" not in script
    assert "`my-gcp-project.repairml_raw_eu.warranty_claims`" in script


def test_the_script_keeps_the_named_parameters_for_the_job_to_bind():
    script = bigquery_statements(DATASET, STAGING)
    names = {p.name for s in sqlglot.parse(script, read="bigquery") for p in s.find_all(exp.Parameter)}
    assert names == {"date_from", "date_to", "car_model", "min_claim_delay_days", "max_claim_delay_days"}
    assert "2026" not in script  # no value is pasted in


def test_the_script_survives_the_json_string_the_bigquery_component_pastes_it_into():
    # BigqueryQueryJobOp's launcher reads '{"query": "' + query + '", ...}' with json.loads(strict=False).
    script = bigquery_statements(DATASET, STAGING)
    assert json.loads('{"query": "' + script + '"}', strict=False)["query"] == script


def test_the_selects_of_the_script_run_on_duckdb_as_the_local_selection(generated, tmp_path):
    raw_dir, _ = generated
    date_range = DateRange(D(2026, 1, 3), D(2026, 1, 5))
    select_locally(raw_dir, tmp_path, date_range, "compact_suv", RULES)
    values = selection.query_parameters(date_range, "compact_suv", RULES)
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute("CREATE SCHEMA repairml_raw")
    for table in TABLE_NAMES:
        connection.execute(f"CREATE VIEW repairml_raw.{table} AS SELECT * FROM "
                           f"read_parquet('{raw_dir / 'parquet' / (table + '.parquet')}')")
    statements = sqlglot.parse(bigquery_statements("repairml_raw", STAGING), read="bigquery")
    for table, statement in zip(TABLE_NAMES, statements):
        select = statement.this
        names = sorted({p.name for p in select.find_all(exp.Parameter)})
        rows = connection.execute(select.sql("duckdb"), {n: values[n] for n in names}).fetchall()
        local = pq.read_table(tmp_path / "selection" / f"{table}.parquet").to_pandas()
        assert len(rows) == len(local), table
        assert sorted(str(r[0]) for r in rows) == sorted(map(str, local.iloc[:, 0])), table


def test_the_job_receives_typed_query_parameters():
    parameters = selection.bigquery_query_parameters("2026-03-10", "2026-03-12", "Astra", RULES)
    assert parameters == [
        {"name": "date_from", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "2026-03-10"}},
        {"name": "date_to", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "2026-03-12"}},
        {"name": "car_model", "parameterType": {"type": "STRING"}, "parameterValue": {"value": "Astra"}},
        {"name": "min_claim_delay_days", "parameterType": {"type": "INT64"}, "parameterValue": {"value": "2"}},
        {"name": "max_claim_delay_days", "parameterType": {"type": "INT64"}, "parameterValue": {"value": "5"}},
    ]


@pytest.mark.parametrize("dataset", [
    "my-gcp-project.raw`; DROP TABLE x; --", "my-gcp-project.raw;", "raw`", "my-gcp-project.", "",
    "My_Project.raw", "a.b.c",
])
def test_a_dataset_that_could_change_the_script_is_refused(dataset):
    with pytest.raises(SelectionError, match="raw_dataset") as error:
        bigquery_statements(dataset, STAGING)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("staging", ["gs://bucket/x'; DROP", "s3://bucket/x", 'gs://bucket/a"b', "gs://bucket/a b",
                                     "gs://bucket/a\\b"])
def test_a_staging_uri_that_could_change_the_script_is_refused(staging):
    with pytest.raises(SelectionError, match="staging_uri"):
        bigquery_statements(DATASET, staging)


def test_a_dataset_without_a_project_is_read_from_the_jobs_project():
    script = bigquery_statements("repairml_raw_eu", STAGING)
    assert "`repairml_raw_eu.diagnostic_sessions`" in script


def test_the_production_source_range_query_reads_the_configured_uploads(generated):
    raw_dir, _ = generated
    query = selection.bigquery_source_range_sql(DATASET)
    assert "`my-gcp-project.repairml_raw_eu.diagnostic_sessions`" in query
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute("CREATE SCHEMA repairml_raw")
    connection.execute(f"CREATE VIEW repairml_raw.diagnostic_sessions AS SELECT * FROM "
                       f"read_parquet('{raw_dir / 'parquet' / 'diagnostic_sessions.parquet'}')")
    local = sqlglot.transpile(selection.bigquery_source_range_sql("repairml_raw"), read="bigquery", write="duckdb")[0]
    assert connection.execute(local).fetchone() == (D(2026, 1, 1), D(2026, 1, 12))
