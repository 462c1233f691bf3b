"""The collection job on hand-built selections: each case, its exact output rows and rule counts.

One selection holds every case, each on its own VIN so that they cannot
interact; the job runs on it once with the default rules and once with changed
ones. The range is 2026-01-01..2026-01-07 (spans 0..6, epoch 2026-01-01).
Expected values are written out by hand from the rules' text, not computed.
"""
from __future__ import annotations

import datetime

import pyarrow as pa
import pytest

from collection.job import EXPLORATION_COLUMNS, SESSION_COLUMNS
from collection.job_counts import COUNT_NAMES
from collection.rules import CollectionRules
from data.generator import SESSION_SCHEMA
from conftest import run_job, write_selection

UTC = datetime.timezone.utc


def ts(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def day(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text)


def upload(upload_id: str, vin: str, when: str, **values) -> dict:
    row = {"session_id": upload_id, "vin": vin, "workshop_id": "DE-W001", "country": "DE",
           "session_ts": ts(when), "car_model": "Aurora", "engine_type": "petrol", "build_year": 2020,
           "mileage_km": 50_000, "battery_voltage": 12.4, "coolant_temp": 90.0, "coolant_temp_unit": "degC",
           "fuel_trim_pct": 1.5, "symptoms": ["no_start"]}
    row.update(values)
    return row


def claim(claim_id: str, vin: str, repair: str, parts: list[str], ops: list[str], submitted: str,
          status: str = "submitted") -> dict:
    return {"claim_id": claim_id, "vin": vin, "workshop_id": "DE-W001", "repair_date": day(repair),
            "status": status, "part_numbers": parts, "labour_op_codes": ops, "submitted_ts": ts(submitted)}


def readout(upload_id: str, code: str) -> dict:
    return {"session_id": upload_id, "control_unit": "ECM", "code": code}


UPLOADS = [
    upload("U-A1", "VA", "2026-01-01T10:00:00"),                  # late claims: 40 days matched, 46 orphan
    upload("U-B1", "VB", "2026-01-01T09:00:00"),                  # uploaded twice, 30 s apart
    upload("U-B2", "VB", "2026-01-01T09:00:30"),
    upload("U-C1", "VC", "2026-01-02T08:00:00"),                  # two sessions 2 hours apart
    upload("U-C2", "VC", "2026-01-02T10:00:00"),
    upload("U-D1", "VD", "2026-01-01T11:00:00"),                  # a resubmitted duplicate claim
    upload("U-E1", "VE", "2026-01-02T11:00:00"),                  # a cancelled claim, then the corrected one
    upload("U-F1", "VF", "2026-01-01T10:00:00"),                  # two visits 5 days apart, a claim after each
    upload("U-F2", "VF", "2026-01-06T10:00:00"),
    upload("U-G1", "VG", "2026-01-02T09:00:00"),                  # a claim on the day of the later visit
    upload("U-G2", "VG", "2026-01-04T09:00:00"),
    upload("U-H1", "VH", "2026-01-07T12:00:00"),                  # a competitor after date_to takes the claim
    upload("U-H2", "VH", "2026-01-09T12:00:00"),
    upload("U-I1", "VI", "2026-01-03T10:00:00"),                  # superseded part; two claims
    upload("U-J1", "VJ", "2026-01-03T11:00:00"),                  # messy codes
    upload("U-K1", "VK", "2026-01-04T10:00:00", coolant_temp=212.0, coolant_temp_unit="degF"),
    upload("U-L1", "VL", "2026-01-04T11:00:00", coolant_temp=300.0, coolant_temp_unit="K"),
    upload("U-M1", "VM", "2026-01-05T10:00:00"),                  # unmapped part number and op code
    upload("U-N1", "VN", "2026-01-05T11:00:00", symptoms=["warning_light", "no_start", "no_start"],
           battery_voltage=None),                                 # no claim at all
]
READOUTS = [
    readout("U-A1", "P0562"),
    readout("U-B1", "P0300"), readout("U-B2", "P0300"), readout("U-B2", "P0420"),
    readout("U-J1", " p0a7e "), readout("U-J1", "P0300"),
]
CLAIMS = [
    claim("C-A40", "VA", "2026-02-10", ["P-BAT-C"], ["100001"], "2026-02-11T09:00:00"),
    claim("C-A46", "VA", "2026-02-16", ["P-STARTER"], ["100002"], "2026-02-17T09:00:00"),
    claim("C-D1", "VD", "2026-01-03", ["P-STARTER"], ["100002"], "2026-01-03T15:00:00"),
    claim("C-D2", "VD", "2026-01-03", ["P-STARTER"], ["100002"], "2026-01-05T15:00:00"),
    claim("C-E1", "VE", "2026-01-04", ["P-BAT-C", "P-STARTER"], ["100001"], "2026-01-04T16:00:00",
          status="cancelled"),
    claim("C-E2", "VE", "2026-01-04", ["P-BAT-C"], ["100001"], "2026-01-06T16:00:00"),
    claim("C-Z1", "VZ", "2026-01-05", ["P-BAT-C"], ["100001"], "2026-01-05T12:00:00"),
    claim("C-F1", "VF", "2026-01-03", ["P-BAT-C"], [], "2026-01-03T12:00:00"),
    claim("C-F2", "VF", "2026-01-08", ["P-STARTER"], [], "2026-01-08T12:00:00"),
    claim("C-G1", "VG", "2026-01-04", ["P-BAT-C"], ["100001"], "2026-01-04T17:00:00"),
    claim("C-H1", "VH", "2026-01-10", ["P-STARTER"], ["100002"], "2026-01-10T12:00:00"),
    claim("C-I1", "VI", "2026-01-05", ["P-BAT-A"], [], "2026-01-05T12:00:00"),
    claim("C-I2", "VI", "2026-01-06", ["P-STARTER"], ["100002"], "2026-01-06T12:00:00"),
    claim("C-M1", "VM", "2026-01-07", ["P-UNKNOWN", "P-STARTER"], ["999999", "100002"], "2026-01-07T12:00:00"),
]
PARTS = [
    {"part_number": "P-BAT-A", "label": None, "superseded_by": "P-BAT-B", "description": "battery (A)"},
    {"part_number": "P-BAT-B", "label": None, "superseded_by": "P-BAT-C", "description": "battery (B)"},
    {"part_number": "P-BAT-C", "label": "part:battery_12v", "superseded_by": None, "description": "battery"},
    {"part_number": "P-STARTER", "label": "part:starter_motor", "superseded_by": None, "description": "starter"},
]
LABOUR = [
    {"labour_op_code": "100001", "label": "op:replace_12v_battery", "description": "replace battery"},
    {"labour_op_code": "100002", "label": "op:replace_starter", "description": "replace starter"},
]
BATTERY = ["op:replace_12v_battery", "part:battery_12v"]
STARTER = ["op:replace_starter", "part:starter_motor"]


@pytest.fixture(scope="module")
def selection(tmp_path_factory):
    return write_selection(tmp_path_factory.mktemp("cases") / "selection", diagnostic_sessions=UPLOADS,
                           diagnostic_dtcs=READOUTS, warranty_claims=CLAIMS, part_reference=PARTS,
                           labour_reference=LABOUR)


@pytest.fixture(scope="module")
def default_run(spark, selection, tmp_path_factory):
    return run_job(spark, selection, tmp_path_factory.mktemp("cases") / "out")


@pytest.fixture(scope="module")
def changed_run(spark, selection, tmp_path_factory):
    rules = CollectionRules(max_claim_delay_days=10, min_claim_delay_days=0)
    return run_job(spark, selection, tmp_path_factory.mktemp("cases") / "changed", rules=rules)


def session(session_id: str, session_date: str, span: int, **values) -> dict:
    """An expected sessions row: the upload defaults, no codes, no labels."""
    row = {"session_id": session_id, "session_date": session_date, "span": span, "car_model": "Aurora",
           "engine_type": "petrol", "country": "DE", "build_year": 2020, "mileage_km": 50_000,
           "battery_voltage": 12.4, "coolant_temp_c": 90.0, "fuel_trim_pct": 1.5, "dtcs": [],
           "symptoms": ["no_start"], "repair_labels": []}
    row.update(values)
    return row


EXPECTED_SESSIONS = {
    "U-A1": session("U-A1", "2026-01-01", 0, dtcs=["P0562"], repair_labels=BATTERY),
    "U-B1": session("U-B1", "2026-01-01", 0, dtcs=["P0300"]),
    "U-C1": session("U-C1", "2026-01-02", 1),
    "U-C2": session("U-C2", "2026-01-02", 1),
    "U-D1": session("U-D1", "2026-01-01", 0, repair_labels=STARTER),
    "U-E1": session("U-E1", "2026-01-02", 1, repair_labels=BATTERY),
    "U-F1": session("U-F1", "2026-01-01", 0, repair_labels=["part:battery_12v"]),
    "U-F2": session("U-F2", "2026-01-06", 5, repair_labels=["part:starter_motor"]),
    "U-G1": session("U-G1", "2026-01-02", 1, repair_labels=BATTERY),
    "U-G2": session("U-G2", "2026-01-04", 3),
    "U-H1": session("U-H1", "2026-01-07", 6),
    "U-I1": session("U-I1", "2026-01-03", 2, repair_labels=["op:replace_starter", "part:battery_12v",
                                                             "part:starter_motor"]),
    "U-J1": session("U-J1", "2026-01-03", 2, dtcs=["P0300", "P0A7E"]),
    "U-K1": session("U-K1", "2026-01-04", 3, coolant_temp_c=100.0),
    "U-L1": session("U-L1", "2026-01-04", 3, coolant_temp_c=None),
    "U-M1": session("U-M1", "2026-01-05", 4, repair_labels=STARTER),
    "U-N1": session("U-N1", "2026-01-05", 4, battery_voltage=None, symptoms=["no_start", "warning_light"]),
}


def test_every_in_range_session_once_with_exactly_the_expected_row(default_run):
    rows = default_run.rows()
    assert sorted(rows) == sorted(EXPECTED_SESSIONS)  # no U-B2 (merged), no U-H2 (after date_to)
    for session_id, expected in EXPECTED_SESSIONS.items():
        got = dict(rows[session_id])
        if expected["coolant_temp_c"] is not None:
            assert got.pop("coolant_temp_c") == pytest.approx(expected["coolant_temp_c"], rel=1e-12)
            expected = {k: v for k, v in expected.items() if k != "coolant_temp_c"}
        assert got == expected, session_id


def test_span_files_have_the_modeling_schema_sorted_rows_and_one_file_per_span(default_run):
    assert sorted(default_run.sessions) == [0, 1, 2, 3, 4, 5, 6]
    for span, table in default_run.sessions.items():
        assert table.schema.names == list(SESSION_COLUMNS) == SESSION_SCHEMA.names
        assert table.schema.equals(SESSION_SCHEMA), (table.schema, SESSION_SCHEMA)
        ids = table.column("session_id").to_pylist()
        assert ids == sorted(ids)
        assert set(table.column("span").to_pylist()) == {span}


def test_exploration_columns_and_types(default_run):
    for table in default_run.exploration.values():
        assert table.schema.names == list(EXPLORATION_COLUMNS)
        types = dict(zip(table.schema.names, table.schema.types))
        assert types["session_ts"] == pa.timestamp("us", tz="UTC")
        assert types["claim_submitted_ts"] == pa.timestamp("us", tz="UTC")
        assert types["repair_date"] == pa.date32()
        assert types["uploads"] == types["claim_delay_days"] == pa.int64()
        assert types["claim_ids"] == pa.list_(pa.string())


def test_late_claim_40_days_matched_46_days_orphan(default_run):
    row = default_run.rows("exploration")["U-A1"]
    assert row["claim_ids"] == ["C-A40"]
    assert row["repair_date"] == day("2026-02-10")
    assert row["claim_delay_days"] == 40
    assert row["claim_submitted_ts"] == ts("2026-02-11T09:00:00")


def test_duplicate_upload_30_s_is_merged_2_hours_apart_are_two_sessions(default_run):
    rows = default_run.rows("exploration")
    assert rows["U-B1"]["uploads"] == 2 and "U-B2" not in rows
    assert rows["U-B1"]["dtcs"] == ["P0300"]  # U-B2's P0420 went with it
    assert rows["U-C1"]["uploads"] == rows["U-C2"]["uploads"] == 1
    assert rows["U-B1"]["session_ts"] == ts("2026-01-01T09:00:00")
    day_counts = default_run.counts["days"]["2026-01-01"]
    assert (day_counts["uploads"], day_counts["duplicate_uploads"], day_counts["sessions"]) == (5, 1, 4)
    assert day_counts["dtc_readouts"] == 4  # U-A1's one and U-B1/U-B2's three


def test_resubmitted_claim_keeps_the_earliest_and_labels_once(default_run):
    row = default_run.rows("exploration")["U-D1"]
    assert row["claim_ids"] == ["C-D1"]
    assert row["repair_labels"] == STARTER
    assert row["claim_submitted_ts"] == ts("2026-01-03T15:00:00")


def test_cancelled_claim_dropped_and_its_correction_kept(default_run):
    row = default_run.rows("exploration")["U-E1"]
    assert row["claim_ids"] == ["C-E2"]
    assert row["repair_labels"] == BATTERY  # not the cancelled filing's starter motor
    counts = default_run.counts["days"]["2026-01-02"]
    assert (counts["claims"], counts["cancelled_claims"], counts["matched_claims"]) == (3, 1, 2)


def test_return_visits_each_claim_to_the_nearest_earlier_session(default_run):
    rows = default_run.rows("exploration")
    assert rows["U-F1"]["claim_ids"] == ["C-F1"] and rows["U-F1"]["claim_delay_days"] == 2
    assert rows["U-F2"]["claim_ids"] == ["C-F2"] and rows["U-F2"]["claim_delay_days"] == 2


def test_same_day_claim_belongs_to_the_earlier_session(default_run):
    rows = default_run.rows("exploration")
    assert rows["U-G1"]["claim_ids"] == ["C-G1"] and rows["U-G1"]["claim_delay_days"] == 2
    assert rows["U-G2"]["claim_ids"] == [] and rows["U-G2"]["repair_date"] is None


def test_competitor_after_date_to_takes_the_claim_and_counts_nowhere(default_run):
    rows = default_run.rows("exploration")
    assert "U-H2" not in rows
    assert rows["U-H1"]["claim_ids"] == [] and rows["U-H1"]["repair_labels"] == []
    assert default_run.counts["days"]["2026-01-07"] == {**{name: 0 for name in COUNT_NAMES}, "uploads": 1,
                                                         "sessions": 1, "sessions_without_claim": 1}
    assert "2026-01-09" not in default_run.counts["days"]


def test_superseded_part_two_steps_to_the_current_label(default_run):
    row = default_run.rows("exploration")["U-I1"]
    assert row["claim_ids"] == ["C-I1", "C-I2"]
    assert row["repair_date"] == day("2026-01-05")            # the earliest claim's
    assert row["claim_submitted_ts"] == ts("2026-01-06T12:00:00")  # the latest claim's
    assert default_run.counts["days"]["2026-01-03"]["superseded_part_lines"] == 1
    assert default_run.counts["days"]["2026-01-03"]["sessions_with_several_claims"] == 1


def test_codes_units_and_unmapped_lines_counted_on_their_day(default_run):
    days = default_run.counts["days"]
    assert days["2026-01-03"]["normalised_codes"] == 1      # ' p0a7e ', not 'P0300'
    assert days["2026-01-04"]["converted_readings"] == 1    # 212 degF
    assert days["2026-01-04"]["unknown_units"] == 1         # 300 K
    assert days["2026-01-05"]["unmapped_part_lines"] == 1   # P-UNKNOWN
    assert days["2026-01-05"]["unmapped_op_lines"] == 1     # 999999


def test_total_counts(default_run):
    assert default_run.counts["total"] == {
        "uploads": 18, "duplicate_uploads": 1, "sessions": 17, "dtc_readouts": 6, "normalised_codes": 1,
        "converted_readings": 1, "unknown_units": 1,
        # C-A46 and C-Z1 are orphans; C-H1 matched U-H2, after date_to: in the total only.
        "claims": 14, "cancelled_claims": 1, "duplicate_claims": 1, "matched_claims": 10, "orphan_claims": 2,
        "sessions_with_claim": 8, "sessions_without_claim": 9, "sessions_with_several_claims": 1,
        "superseded_part_lines": 1, "unmapped_part_lines": 1, "unmapped_op_lines": 1,
    }
    assert list(default_run.counts["total"]) == list(COUNT_NAMES)


def test_days_sessions_sum_to_the_total_and_claims_only_where_they_belong(default_run):
    counts = default_run.counts
    assert sorted(counts["days"]) == [f"2026-01-0{k}" for k in range(1, 8)]
    assert sum(d["sessions"] for d in counts["days"].values()) == counts["total"]["sessions"]
    # C-A46, C-Z1 (orphans) and C-H1 (competitor) are on no day.
    assert sum(d["claims"] for d in counts["days"].values()) == counts["total"]["claims"] - 3
    assert all(d["orphan_claims"] == 0 for d in counts["days"].values())


def test_rule_counts_document(default_run):
    counts = default_run.counts
    assert counts["date_from"] == "2026-01-01" and counts["date_to"] == "2026-01-07"
    assert counts["rules"] == CollectionRules().to_dict()
    assert counts["watermarks"] == {"uploads_max_ts": "2026-01-09T12:00:00.000000Z",
                                    "claims_max_submitted_ts": "2026-02-17T09:00:00.000000Z"}


def test_changed_rules_change_the_outcome(changed_run):
    rows = changed_run.rows("exploration")
    # max_claim_delay_days 10: the 40-day claim is an orphan too.
    assert rows["U-A1"]["claim_ids"] == [] and rows["U-A1"]["repair_labels"] == []
    # min_claim_delay_days 0: a claim on the day of a session is that session's.
    assert rows["U-G1"]["claim_ids"] == [] and rows["U-G2"]["claim_ids"] == ["C-G1"]
    assert rows["U-G2"]["claim_delay_days"] == 0
    total = changed_run.counts["total"]
    assert (total["orphan_claims"], total["matched_claims"]) == (3, 9)
    assert changed_run.counts["rules"]["max_claim_delay_days"] == 10


def test_progress_lines(default_run):
    assert default_run.progress[0].startswith("selection: 19 uploads, 14 claims")
    assert any(line.startswith("wrote 7 spans, 17 sessions") for line in default_run.progress)
