"""The collection job on a generated data set recovers the generated sessions.

data/raw_sources.py takes 3,000 generated sessions (4 spans, seed 7) apart into
the raw tables with their mess; the range covers every day, so the raw parquet
files are the selection as is. The job must give back every generated session
once, with its id, values, codes, symptoms and labels, match each valid claim
to the session RawSources.truth names, and count what raw_sources injected.
"""
from __future__ import annotations

import math

import pytest

from collection.job import SESSION_COLUMNS
from data.generator import generate_sessions
from data.raw_sources import raw_sources, write_raw_sources
from conftest import run_job

ROWS, SEED, SPANS = 3000, 7, 4
DATE_FROM, DATE_TO = "2026-01-01", "2026-01-04"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    sessions = generate_sessions(ROWS, SEED, spans=SPANS)
    raw = raw_sources(sessions, SEED)
    folder = tmp_path_factory.mktemp("generated")
    write_raw_sources(raw, folder)
    return sessions, raw, folder / "parquet"


@pytest.fixture(scope="module")
def job_run(spark, generated, tmp_path_factory):
    return run_job(spark, generated[2], tmp_path_factory.mktemp("generated") / "out",
                   date_from=DATE_FROM, date_to=DATE_TO)


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            return (a is None or math.isnan(a)) and (b is None or math.isnan(b))
    return a == b


def test_every_generated_session_once_with_its_values(generated, job_run):
    sessions, _, _ = generated
    rows = job_run.rows()
    assert sum(table.num_rows for table in job_run.sessions.values()) == ROWS  # once each
    assert sorted(rows) == sorted(sessions["session_id"])
    assert sorted(job_run.sessions) == list(range(SPANS))
    for expected in sessions.to_dict("records"):
        got = rows[expected["session_id"]]
        for column in SESSION_COLUMNS:
            want, have = expected[column], got[column]
            if column in ("dtcs", "symptoms", "repair_labels"):
                assert set(have) == set(want) and len(have) == len(set(want)), (expected["session_id"], column)
                assert have == sorted(have)
            elif column == "coolant_temp_c" and want is not None and not math.isnan(want):
                assert have == pytest.approx(want, rel=1e-9), expected["session_id"]
            else:
                assert _same(have, want), (expected["session_id"], column, have, want)


def test_each_valid_claim_goes_to_its_true_session(generated, job_run):
    _, raw, _ = generated
    truth: dict[str, list[str]] = {}
    for claim_id, session_id in zip(raw.truth["claim_id"], raw.truth["session_id"]):
        truth.setdefault(session_id, []).append(claim_id)
    for session_id, row in job_run.rows("exploration").items():
        assert row["claim_ids"] == sorted(truth.get(session_id, [])), session_id


def test_rule_counts_agree_with_the_injected_mess(generated, job_run):
    sessions, raw, _ = generated
    mess, total = raw.mess_counts, job_run.counts["total"]
    # Counted the same way on both sides.
    for rule_count, mess_count in [
            ("uploads", "uploads"), ("sessions", "sessions"), ("duplicate_uploads", "duplicate_uploads"),
            ("dtc_readouts", "dtc_readouts"),  # both count the re-uploads' copies too
            ("claims", "claims"), ("cancelled_claims", "cancelled_claims"),
            ("duplicate_claims", "resubmitted_duplicates"), ("orphan_claims", "orphan_claims"),
            ("matched_claims", "valid_claims"), ("superseded_part_lines", "superseded_part_lines")]:
        assert total[rule_count] == mess[mess_count], (rule_count, mess_count)
    # Every labelled session has exactly one valid claim, the others none.
    labelled = int((sessions["repair_labels"].map(len) > 0).sum())
    assert (total["sessions_with_claim"], total["sessions_without_claim"]) == (labelled, ROWS - labelled)
    assert total["sessions_with_several_claims"] == 0
    assert total["unknown_units"] == total["unmapped_part_lines"] == total["unmapped_op_lines"] == 0


def test_counts_that_mean_another_thing_than_the_mess_counts(generated, job_run):
    """messy_codes and fahrenheit_uploads count every upload, re-uploads included, and
    fahrenheit_uploads counts missing readings too; the job counts the kept upload's
    codes (re-uploads' rows are dropped first, rule 1) and the readings it converts."""
    sessions, raw, _ = generated
    generated_ids = set(sessions["session_id"])
    readouts = raw.diagnostic_dtcs[raw.diagnostic_dtcs["session_id"].isin(generated_ids)]
    messy = int((readouts["code"] != readouts["code"].str.strip().str.upper()).sum())
    uploads = raw.diagnostic_sessions[raw.diagnostic_sessions["session_id"].isin(generated_ids)]
    fahrenheit = int(((uploads["coolant_temp_unit"] == "degF") & uploads["coolant_temp"].notna()).sum())
    total = job_run.counts["total"]
    assert total["normalised_codes"] == messy
    assert total["converted_readings"] == fahrenheit
    assert raw.mess_counts["messy_codes"] >= messy and raw.mess_counts["fahrenheit_uploads"] >= fahrenheit


def test_days_hold_their_sessions(generated, job_run):
    sessions, _, _ = generated
    per_day = sessions.groupby("session_date").size().to_dict()
    assert {day: counts["sessions"] for day, counts in job_run.counts["days"].items()} == per_day


def test_a_second_run_gives_the_same_bytes_and_rows(spark, generated, job_run, tmp_path):
    again = run_job(spark, generated[2], tmp_path / "again", date_from=DATE_FROM, date_to=DATE_TO)
    assert ((tmp_path / "again" / "rule_counts.json").read_bytes()
            == (job_run.output / "rule_counts.json").read_bytes())
    for kind in ("sessions", "exploration"):
        first, second = getattr(job_run, kind), getattr(again, kind)
        assert sorted(first) == sorted(second)
        for span in first:
            assert first[span].equals(second[span]), (kind, span)
