"""The exploration table: a DuckDB table locally, BigQuery day partitions in production.

The job's output is built by hand with pyarrow in the shape collection/job.py
writes (JOB/exploration/_span=K/*.parquet). Production stops at the HTTP
boundary: the BigQuery and Cloud Storage clients are real, their session is a
recording fake that answers as the APIs would, and the tests read the
requests that would have been sent.
"""
from __future__ import annotations

import datetime
import json
import urllib.parse

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage

from collection import exploration
from collection.dates import DateRange
from collection.exploration import (EXPLORATION_SCHEMA, TABLE_NAME, ExplorationError, bigquery_load_requests,
                                    load_into_bigquery, replace_days)
from data.generator import SESSION_SCHEMA

D = datetime.date
UTC = datetime.timezone.utc
EPOCH = "2026-01-01"
TABLE = "my-gcp-project.repairml.sessions"
EXPLORATION_URI = "gs://my-gcp-project-repairml/collection/staging/job/exploration"


def _session(session_id: str, day: datetime.date, labels=("part:battery_12v",), **changes) -> dict:
    span = (day - D(2026, 1, 1)).days
    row = {
        "session_id": session_id, "session_date": day.isoformat(), "span": span, "car_model": "compact_suv",
        "engine_type": "petrol", "country": "DE", "build_year": 2020, "mileage_km": 61_000,
        "battery_voltage": 12.1, "coolant_temp_c": None, "fuel_trim_pct": -2.5, "dtcs": ["P0300"],
        "symptoms": [], "repair_labels": list(labels), "vin": "WVW00000000000001", "workshop_id": "DE-W001",
        "session_ts": datetime.datetime(day.year, day.month, day.day, 9, 30, 5, 123456, tzinfo=UTC),
        "uploads": 1, "claim_ids": ["WC1-00000001"] if labels else [],
        "repair_date": day + datetime.timedelta(days=3) if labels else None,
        "claim_delay_days": 3 if labels else None,
        "claim_submitted_ts": (datetime.datetime(day.year, day.month, day.day, 15, tzinfo=UTC)
                               + datetime.timedelta(days=4)) if labels else None,
    }
    row.update(changes)
    return row


def _write_job_output(job_dir, rows, schema=EXPLORATION_SCHEMA):
    """JOB/exploration/_span=K/part-00000.parquet per span, as the Spark job writes them."""
    by_span = {}
    for row in rows:
        by_span.setdefault(row["span"], []).append(row)
    for span, span_rows in by_span.items():
        folder = job_dir / "exploration" / f"_span={span}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(span_rows, schema=schema), folder / "part-00000.parquet")
    (job_dir / "exploration").mkdir(parents=True, exist_ok=True)
    return job_dir / "exploration"


def _table(db_path) -> list[dict]:
    connection = duckdb.connect(str(db_path), read_only=True)
    try:
        connection.execute("SET TimeZone = 'UTC'")
        return connection.execute(f"SELECT * FROM {TABLE_NAME} ORDER BY session_id").to_arrow_table().to_pylist()
    finally:
        connection.close()


# --- Locally ----------------------------------------------------------------------------------


def test_the_days_of_the_files_land_in_the_table_with_their_values(tmp_path):
    rows = [_session("S1", D(2026, 1, 5)), _session("S2", D(2026, 1, 6), labels=())]
    counts = replace_days(tmp_path / "collected.duckdb", _write_job_output(tmp_path / "job", rows))
    assert counts == 2
    assert _table(tmp_path / "collected.duckdb") == rows  # NULLs, lists, microseconds and zones kept


def test_the_table_has_the_modeling_columns_first_then_the_join_columns(tmp_path):
    replace_days(tmp_path / "collected.duckdb", _write_job_output(tmp_path / "job", [_session("S1", D(2026, 1, 5))]))
    connection = duckdb.connect(str(tmp_path / "collected.duckdb"), read_only=True)
    columns = [row[0] for row in connection.execute(f"DESCRIBE {TABLE_NAME}").fetchall()]
    types = dict(connection.execute(f"SELECT column_name, data_type FROM information_schema.columns "
                                    f"WHERE table_name = '{TABLE_NAME}'").fetchall())
    connection.close()
    assert columns[:len(SESSION_SCHEMA)] == SESSION_SCHEMA.names
    assert columns[len(SESSION_SCHEMA):] == ["vin", "workshop_id", "session_ts", "uploads", "claim_ids",
                                             "repair_date", "claim_delay_days", "claim_submitted_ts"]
    assert (types["session_date"], types["session_ts"], types["repair_date"], types["claim_ids"]) == (
        "VARCHAR", "TIMESTAMP WITH TIME ZONE", "DATE", "VARCHAR[]")


def test_a_day_collected_again_replaces_its_rows_and_keeps_the_other_days(tmp_path):
    db = tmp_path / "collected.duckdb"
    replace_days(db, _write_job_output(tmp_path / "run1", [
        _session("S1", D(2026, 1, 5)), _session("S2", D(2026, 1, 6)), _session("S3", D(2026, 1, 6))]))
    # The claim of S2 arrived later: day 6 again, S3 gone (a duplicate upload merged), S4 new.
    rerun = [_session("S2", D(2026, 1, 6), labels=("part:starter",)), _session("S4", D(2026, 1, 6))]
    counts = replace_days(db, _write_job_output(tmp_path / "run2", rerun))
    assert counts == 2
    assert [(r["session_id"], r["repair_labels"]) for r in _table(db)] == [
        ("S1", ["part:battery_12v"]), ("S2", ["part:starter"]), ("S4", ["part:battery_12v"])]


def test_running_the_same_day_twice_gives_the_same_table(tmp_path):
    db = tmp_path / "collected.duckdb"
    job = _write_job_output(tmp_path / "job", [_session("S1", D(2026, 1, 5)), _session("S2", D(2026, 1, 5))])
    replace_days(db, job)
    first = _table(db)
    replace_days(db, job)
    assert _table(db) == first and len(first) == 2


def test_the_days_of_the_range_without_sessions_lose_their_old_rows(tmp_path):
    db = tmp_path / "collected.duckdb"
    replace_days(db, _write_job_output(tmp_path / "run1", [_session("S1", D(2026, 1, 5)),
                                                           _session("S2", D(2026, 1, 6))]))
    counts = replace_days(db, _write_job_output(tmp_path / "run2", [_session("S2", D(2026, 1, 6))]),
                          days=DateRange(D(2026, 1, 5), D(2026, 1, 6)).days())
    assert counts == 1
    assert [r["session_id"] for r in _table(db)] == ["S2"]


def test_a_failure_in_the_transaction_leaves_the_table_as_it_was(tmp_path):
    db = tmp_path / "collected.duckdb"
    replace_days(db, _write_job_output(tmp_path / "run1", [_session("S1", D(2026, 1, 5)),
                                                           _session("S2", D(2026, 1, 6))]))
    before = _table(db)
    # Day 6 again, but with a session id that day 5 holds: the insert fails after the delete ran.
    broken = [_session("S1", D(2026, 1, 6)), _session("S9", D(2026, 1, 6))]
    with pytest.raises(ExplorationError) as error:
        replace_days(db, _write_job_output(tmp_path / "run2", broken))
    assert "left as it was" in str(error.value) and "\n" not in str(error.value)
    assert _table(db) == before


def test_files_without_the_exploration_columns_are_refused_before_the_table_is_touched(tmp_path):
    db = tmp_path / "collected.duckdb"
    replace_days(db, _write_job_output(tmp_path / "run1", [_session("S1", D(2026, 1, 5))]))
    rows = [{k: v for k, v in _session("S2", D(2026, 1, 5)).items() if k != "uploads"}]
    schema = pa.schema([f for f in EXPLORATION_SCHEMA if f.name != "uploads"])
    job = _write_job_output(tmp_path / "run2", rows, schema=schema)
    with pytest.raises(ExplorationError, match=r"_span=4/part-00000.parquet.*missing \['uploads'\]"):
        replace_days(db, job)
    assert [r["session_id"] for r in _table(db)] == ["S1"]


def test_files_of_a_day_outside_the_days_to_replace_are_refused(tmp_path):
    job = _write_job_output(tmp_path / "job", [_session("S1", D(2026, 1, 5)), _session("S2", D(2026, 1, 9))])
    with pytest.raises(ExplorationError, match="2026-01-09"):
        replace_days(tmp_path / "collected.duckdb", job, days=[D(2026, 1, 5)])
    assert not (tmp_path / "collected.duckdb").exists()


def test_a_missing_job_output_says_to_run_the_job(tmp_path):
    with pytest.raises(ExplorationError, match="run the job first"):
        replace_days(tmp_path / "collected.duckdb", tmp_path / "nothing" / "exploration")


def test_the_job_may_write_other_arrow_spellings_of_the_same_types(tmp_path):
    # Spark writes list items as 'element' and may write timestamps in nanoseconds.
    spark_like = pa.schema([pa.field(f.name, pa.list_(pa.field("element", pa.string())))
                            if f.type == pa.list_(pa.string()) else
                            pa.field(f.name, pa.timestamp("ns", tz="UTC")) if pa.types.is_timestamp(f.type) else f
                            for f in EXPLORATION_SCHEMA])
    row = _session("S1", D(2026, 1, 5))
    replace_days(tmp_path / "collected.duckdb", _write_job_output(tmp_path / "job", [row], schema=spark_like))
    assert _table(tmp_path / "collected.duckdb") == [row]


# --- Production: the requests the BigQuery and Cloud Storage clients send ----------------


class RecordingHttp(requests.Session):
    """The clients' HTTP session: records each request and answers as BigQuery and Cloud Storage would."""

    def __init__(self, blobs=(), rows_per_load=7):
        super().__init__()
        self.sent = []
        self.blobs = list(blobs)
        self.rows_per_load = rows_per_load
        self.is_mtls = False  # google.cloud._http asks an AuthorizedSession this

    def request(self, method, url, data=None, headers=None, timeout=None, **unused):
        body = json.loads(data) if data else None
        self.sent.append((method, urllib.parse.unquote(url.split("?")[0]), body))
        path = urllib.parse.urlparse(url).path
        if path.startswith("/storage/v1/b/") and path.endswith("/o"):
            prefix = urllib.parse.parse_qs(urllib.parse.urlparse(url).query).get("prefix", [""])[0]
            return self._answer(200, {"kind": "storage#objects",
                                      "items": [{"name": n, "bucket": path.split("/")[4]}
                                                for n in self.blobs if n.startswith(prefix)]})
        if method == "POST" and path.endswith("/jobs"):
            job = dict(body, status={"state": "DONE"},
                       statistics={"load": {"outputRows": str(self.rows_per_load)}})
            return self._answer(200, job)
        if method == "DELETE":
            return self._answer(204, None)
        return self._answer(404, {"error": {"code": 404, "message": f"unexpected {method} {url}"}})

    @staticmethod
    def _answer(status, payload):
        response = requests.Response()
        response.status_code = status
        response._content = b"" if payload is None else json.dumps(payload).encode()
        response.headers["Content-Type"] = "application/json"
        return response


def _clients(http):
    return (bigquery.Client(project="my-gcp-project", credentials=AnonymousCredentials(), _http=http),
            storage.Client(project="my-gcp-project", credentials=AnonymousCredentials(), _http=http))


def test_each_day_is_one_load_job_that_truncates_its_partition(tmp_path):
    blobs = ["collection/staging/job/exploration/_span=4/part-00000.parquet",
             "collection/staging/job/exploration/_span=5/part-00000.parquet",
             "collection/staging/job/exploration/_span=5/part-00001.parquet"]
    http = RecordingHttp(blobs)
    client, storage_client = _clients(http)
    rows = load_into_bigquery(TABLE, EXPLORATION_URI, DateRange(D(2026, 1, 5), D(2026, 1, 6)), EPOCH,
                              client, storage_client, log=lambda line: None)
    assert rows == {"2026-01-05": 7, "2026-01-06": 7}
    jobs = [body for method, url, body in http.sent if method == "POST"]
    assert [job["configuration"]["load"]["destinationTable"] for job in jobs] == [
        {"projectId": "my-gcp-project", "datasetId": "repairml", "tableId": "sessions$20260105"},
        {"projectId": "my-gcp-project", "datasetId": "repairml", "tableId": "sessions$20260106"}]
    assert [job["configuration"]["load"]["sourceUris"] for job in jobs] == [
        [f"{EXPLORATION_URI}/_span=4/*.parquet"], [f"{EXPLORATION_URI}/_span=5/*.parquet"]]
    for job in jobs:
        load = job["configuration"]["load"]
        assert load["sourceFormat"] == "PARQUET"
        assert load["parquetOptions"] == {"enableListInference": True}
        assert load["writeDisposition"] == "WRITE_TRUNCATE"
        assert load["createDisposition"] == "CREATE_IF_NEEDED"
        assert load["timePartitioning"] == {"type": "DAY", "field": "session_ts"}
        assert job["jobReference"]["projectId"] == "my-gcp-project"


def test_a_day_without_files_has_its_partition_deleted_not_loaded(tmp_path):
    http = RecordingHttp(["collection/staging/job/exploration/_span=4/part-00000.parquet",
                          "collection/staging/job/exploration/_span=5/_SUCCESS"])
    client, storage_client = _clients(http)
    rows = load_into_bigquery(TABLE, EXPLORATION_URI, DateRange(D(2026, 1, 5), D(2026, 1, 6)), EPOCH,
                              client, storage_client, log=lambda line: None)
    assert rows == {"2026-01-05": 7, "2026-01-06": 0}
    deletes = [url for method, url, _ in http.sent if method == "DELETE"]
    assert deletes == ["https://bigquery.googleapis.com/bigquery/v2/projects/my-gcp-project/datasets/repairml/"
                       "tables/sessions$20260106"]
    assert [m for m, _, _ in http.sent].count("POST") == 1


def test_the_partition_column_is_the_timestamp_whose_utc_day_is_the_session_date():
    # The modeling pipeline reads session_date as a 'YYYY-MM-DD' STRING (pipeline/production/bigquery.py):
    # it stays one, and the day partitions follow session_ts, a TIMESTAMP of the same UTC day.
    assert EXPLORATION_SCHEMA.field("session_date").type == pa.string()
    assert EXPLORATION_SCHEMA.field(exploration.PARTITION_COLUMN).type == pa.timestamp("us", tz="UTC")
    [load] = bigquery_load_requests(TABLE, EXPLORATION_URI, [D(2026, 2, 1)], EPOCH)
    assert load.destination == "my-gcp-project.repairml.sessions$20260201"
    assert load.source_uris == [f"{EXPLORATION_URI}/_span=31/*.parquet"]


@pytest.mark.parametrize("table", ["sessions", "my-gcp-project.repairml.sessions$20260101",
                                   "my-gcp-project.repairml.sessions`; DROP"])
def test_a_table_that_is_not_project_dataset_table_is_refused(table):
    with pytest.raises(ExplorationError, match="exploration_table"):
        bigquery_load_requests(table, EXPLORATION_URI, [D(2026, 1, 5)], EPOCH)


def test_the_step_refuses_bad_arguments_in_one_line_with_exit_code_2(capsys):
    code = exploration.main(["load-bigquery", "--table", "sessions", "--exploration-uri", EXPLORATION_URI,
                             "--date-from", "2026-01-05", "--date-to", "2026-01-06", "--span-epoch", EPOCH])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "exploration_table" in err
    code = exploration.main(["load-bigquery", "--table", TABLE, "--exploration-uri", EXPLORATION_URI,
                             "--date-from", "5 Jan", "--date-to", "2026-01-06", "--span-epoch", EPOCH])
    err = capsys.readouterr().err
    assert code == 2 and "--date-from" in err and "YYYY-MM-DD" in err
