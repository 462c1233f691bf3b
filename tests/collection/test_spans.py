"""Publishing a collection job's output: spans in the modeling schema, an idempotent manifest, nothing lost."""
import hashlib
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collection import spans
from collection.rules import CollectionRules
from data.generator import SESSION_SCHEMA

# The job writes Spark's list shape (list<element: string>), not pyarrow's.
_SPARK_LIST = pa.list_(pa.field("element", pa.string()))


def _session(session_id, day="2026-01-02", span=1, labels=("part:battery_12v",)):
    return {
        "session_id": session_id, "session_date": day, "span": span, "car_model": "Astra", "engine_type": "diesel",
        "country": "DE", "build_year": 2019, "mileage_km": 81000, "battery_voltage": 12.1,
        "coolant_temp_c": 90.5, "fuel_trim_pct": None, "dtcs": ["P0300"], "symptoms": [],
        "repair_labels": list(labels),
    }


def _job_output(job_dir, sessions_by_span, *, date_from="2026-01-02", date_to="2026-01-03", claims_ts=None,
                finished=True):
    """A finished job's folder, as collection/job.py writes it (column order and list types of Spark)."""
    for span, rows in sessions_by_span.items():
        folder = job_dir / "sessions" / f"_span={span}"
        folder.mkdir(parents=True)
        fields = [pa.field(f.name, _SPARK_LIST if pa.types.is_list(f.type) else f.type) for f in SESSION_SCHEMA]
        table = pa.Table.from_pylist(rows, schema=pa.schema(fields))
        pq.write_table(table.select(list(reversed(table.column_names))), folder / "part-00000-x.c000.snappy.parquet")
    if finished:
        counts = {
            "date_from": date_from, "date_to": date_to, "rules": CollectionRules().to_dict(),
            "watermarks": {"uploads_max_ts": "2026-01-03T17:00:00Z",
                           "claims_max_submitted_ts": claims_ts or "2026-01-20T09:00:00Z"},
            "total": {"sessions": sum(len(r) for r in sessions_by_span.values()), "orphan_claims": 1},
            "days": {rows[0]["session_date"]: {"sessions": len(rows), "duplicate_uploads": 2}
                     for rows in sessions_by_span.values()},
        }
        (job_dir / "rule_counts.json").write_text(json.dumps(counts))
    return job_dir


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_span_is_published_in_the_modeling_schema_sorted_by_session(tmp_path):
    job = _job_output(tmp_path / "job", {1: [_session("S1-0002"), _session("S1-0001")]})
    published = spans.publish(str(job), str(tmp_path / "spans"))

    table = pq.read_table(tmp_path / "spans" / "span-1" / "sessions.parquet")
    assert table.schema.equals(SESSION_SCHEMA)
    assert table.column("session_id").to_pylist() == ["S1-0001", "S1-0002"]
    assert published.written == (1,) and published.unchanged == ()


def test_the_manifest_records_rows_fingerprint_watermarks_and_rule_counts(tmp_path):
    job = _job_output(tmp_path / "job", {1: [_session("S1-0001")], 2: [_session("S2-0001", "2026-01-03", 2)]})
    spans.publish(str(job), str(tmp_path / "spans"))

    manifest = json.loads((tmp_path / "spans" / "manifest.json").read_text())
    entry = manifest["spans"]["2"]
    assert entry["date"] == "2026-01-03" and entry["rows"] == 1 and entry["file"] == "span-2/sessions.parquet"
    assert entry["file_sha256"] == _sha256(tmp_path / "spans" / "span-2" / "sessions.parquet")
    assert entry["rule_counts"] == {"sessions": 1, "duplicate_uploads": 2}
    assert entry["watermarks"]["claims_max_submitted_ts"] == "2026-01-20T09:00:00Z"
    assert entry["claims_complete"] is False  # claims of 2026-01-03 may come until 2026-02-17
    assert manifest["runs"] == [{"run_id": "2026-01-02..2026-01-03", "date_from": "2026-01-02",
                                 "date_to": "2026-01-03", "total": {"sessions": 2, "orphan_claims": 1},
                                 "watermarks": entry["watermarks"]}]


def test_claims_are_complete_once_the_claim_window_has_passed(tmp_path):
    job = _job_output(tmp_path / "job", {1: [_session("S1-0001")]}, claims_ts="2026-02-16T08:00:00Z")
    manifest = spans.publish(str(job), str(tmp_path / "spans")).manifest
    assert manifest["spans"]["1"]["claims_complete"] is True  # 2026-01-02 + 45 days = 2026-02-16


def test_publishing_the_same_output_twice_changes_no_file(tmp_path):
    rows = {1: [_session("S1-0001"), _session("S1-0002")]}
    spans.publish(str(_job_output(tmp_path / "first", rows)), str(tmp_path / "spans"))
    span_file = tmp_path / "spans" / "span-1" / "sessions.parquet"
    manifest_file = tmp_path / "spans" / "manifest.json"
    before = (span_file.read_bytes(), os.stat(span_file).st_mtime_ns, manifest_file.read_bytes())

    again = spans.publish(str(_job_output(tmp_path / "second", rows)), str(tmp_path / "spans"))

    assert again.written == () and again.unchanged == (1,)
    assert (span_file.read_bytes(), os.stat(span_file).st_mtime_ns, manifest_file.read_bytes()) == before


def test_new_claims_rewrite_exactly_the_span_they_change(tmp_path):
    spans_dir = tmp_path / "spans"
    first = {1: [_session("S1-0001", labels=())], 2: [_session("S2-0001", "2026-01-03", 2)]}
    spans.publish(str(_job_output(tmp_path / "first", first)), str(spans_dir))
    other_span = (spans_dir / "span-2" / "sessions.parquet").read_bytes()

    later = {1: [_session("S1-0001", labels=("part:alternator",))], 2: first[2]}
    published = spans.publish(str(_job_output(tmp_path / "later", later)), str(spans_dir))

    assert published.written == (1,) and published.unchanged == (2,)
    labels = pq.read_table(spans_dir / "span-1" / "sessions.parquet").column("repair_labels").to_pylist()
    assert labels == [["part:alternator"]]
    assert (spans_dir / "span-2" / "sessions.parquet").read_bytes() == other_span
    assert spans.check_spans(str(spans_dir)) == []


def test_an_unfinished_job_publishes_nothing(tmp_path):
    spans_dir = tmp_path / "spans"
    spans.publish(str(_job_output(tmp_path / "good", {1: [_session("S1-0001")]})), str(spans_dir))
    before = {p: p.read_bytes() for p in spans_dir.rglob("*") if p.is_file()}

    crashed = _job_output(tmp_path / "crashed", {1: [_session("S1-9999")]}, finished=False)
    with pytest.raises(spans.PublishError, match="rule_counts.json is missing"):
        spans.publish(str(crashed), str(spans_dir))

    assert {p: p.read_bytes() for p in spans_dir.rglob("*") if p.is_file()} == before


def test_a_span_of_the_wrong_shape_is_refused_before_anything_is_written(tmp_path):
    job = _job_output(tmp_path / "job", {1: [_session("S1-0001"), _session("S1-0002", day="2026-01-03")]})
    with pytest.raises(spans.PublishError, match="one day"):
        spans.publish(str(job), str(tmp_path / "spans"))
    assert not (tmp_path / "spans" / "span-1").exists()


def test_the_fingerprint_is_of_the_rows_not_of_the_file(tmp_path):
    rows = [_session("S1-0002"), _session("S1-0001")]
    table = pa.Table.from_pylist(rows, schema=SESSION_SCHEMA)
    shuffled = pa.Table.from_pylist(list(reversed(rows)), schema=SESSION_SCHEMA)
    changed = pa.Table.from_pylist([rows[0], dict(rows[1], mileage_km=81001)], schema=SESSION_SCHEMA)
    assert spans.content_fingerprint(table) == spans.content_fingerprint(shuffled)
    assert spans.content_fingerprint(table) != spans.content_fingerprint(changed)


def test_check_spans_reports_a_file_the_manifest_does_not_describe(tmp_path):
    spans_dir = tmp_path / "spans"
    spans.publish(str(_job_output(tmp_path / "job", {1: [_session("S1-0001")]})), str(spans_dir))
    pq.write_table(pa.Table.from_pylist([_session("S1-0003")], schema=SESSION_SCHEMA),
                   spans_dir / "span-1" / "sessions.parquet")
    assert spans.check_spans(str(spans_dir)) == [
        "span 1 (2026-01-02): span-1/sessions.parquet is not the file the manifest records (its sha256 "
        "differs); collect 2026-01-02 again"]


def test_the_publish_command_reports_an_unfinished_job_in_one_line(tmp_path, capfd):
    crashed = _job_output(tmp_path / "crashed", {1: [_session("S1-0001")]}, finished=False)
    assert spans.main(["publish", "--job-dir", str(crashed), "--spans", str(tmp_path / "spans")]) == 2
    err = capfd.readouterr().err
    assert err.startswith("collection publish: error: ") and err.count("\n") == 1
