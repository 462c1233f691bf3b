"""Behaviour of the raw diagnostics and warranty sources: their mess, their truth and their files.

The sessions are 4,000 generated sessions over 8 daily spans. Rates are checked
against their settings within 4 binomial standard errors plus 0.002, at the
default settings and at heavy ones, so a rate that ignores its setting fails.
"""
from __future__ import annotations

import json
import math
import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data import raw_sources as raw_module
from data.generator import generate_sessions, main
from data.raw_sources import (
    DUPLICATE_UPLOAD_WINDOW_S,
    RAW_SCHEMAS,
    TABLE_NAMES,
    MessSettings,
    control_unit_of,
    raw_sources,
    write_raw_sources,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT = MessSettings()
HEAVY = MessSettings(
    duplicate_upload_rate=0.2, messy_code_rate=0.35, fahrenheit_markets=("US", "GB"), fahrenheit_rate=0.5,
    return_visit_rate=0.1, resubmitted_duplicate_rate=0.2, cancelled_claim_rate=0.25,
    cancelled_resubmitted_share=0.3, orphan_claim_rate=0.1, superseded_part_rate=0.5,
)
CLEAN = MessSettings(
    duplicate_upload_rate=0.0, messy_code_rate=0.0, fahrenheit_rate=0.0, return_visit_rate=0.0,
    resubmitted_duplicate_rate=0.0, cancelled_claim_rate=0.0, orphan_claim_rate=0.0, superseded_part_rate=0.0,
)
CONTENT_COLUMNS = ["vin", "workshop_id", "country", "car_model", "engine_type", "build_year", "mileage_km",
                   "battery_voltage", "coolant_temp", "coolant_temp_unit", "fuel_trim_pct", "symptoms"]


@pytest.fixture(scope="module")
def sessions() -> pd.DataFrame:
    return generate_sessions(rows=4000, seed=7, spans=8)


@pytest.fixture(scope="module")
def raw_by_settings(sessions):
    return {"default": (DEFAULT, raw_sources(sessions, seed=7)),
            "heavy": (HEAVY, raw_sources(sessions, seed=7, settings=HEAVY))}


@pytest.fixture(scope="module")
def raw(raw_by_settings):
    return raw_by_settings["default"][1]


@pytest.fixture(params=["default", "heavy"])
def settings_and_raw(request, raw_by_settings):
    return raw_by_settings[request.param]


# --- Helpers: the references, the rates and the documented matching rule ------------------


def _assert_rate(hits: int, trials: int, rate: float, what: str) -> None:
    standard_error = math.sqrt(rate * (1 - rate) / trials)
    assert abs(hits / trials - rate) <= 4 * standard_error + 0.002, (
        f"{what}: {hits}/{trials} = {hits / trials:.4f}, configured {rate}")


def _label_of_part(part_reference: pd.DataFrame) -> dict[str, str]:
    """Every part number, current or superseded, to the label of its current number."""
    successor = dict(zip(part_reference["part_number"], part_reference["superseded_by"]))
    label = dict(zip(part_reference["part_number"], part_reference["label"]))
    resolved = {}
    for number in successor:
        head = number
        while successor[head] is not None:
            head = successor[head]
        resolved[number] = label[head]
    return resolved


def _claim_labels(claims: pd.DataFrame, raw) -> pd.Series:
    part_label = _label_of_part(raw.part_reference)
    op_label = dict(zip(raw.labour_reference["labour_op_code"], raw.labour_reference["label"]))
    return pd.Series([{part_label[p] for p in parts} | {op_label[o] for o in ops}
                      for parts, ops in zip(claims["part_numbers"], claims["labour_op_codes"])],
                     index=claims.index)


def _first_uploads(raw) -> pd.DataFrame:
    """Uploads less than the window after the previous upload of their VIN are dropped."""
    uploads = raw.diagnostic_sessions.sort_values(["vin", "session_ts"])
    since_previous = uploads.groupby("vin")["session_ts"].diff()
    return uploads[~(since_previous < pd.Timedelta(seconds=DUPLICATE_UPLOAD_WINDOW_S))]


def _nearest_preceding_session(claims: pd.DataFrame, first_uploads: pd.DataFrame,
                               window_days: int) -> pd.Series:
    """claim_id -> session_id: the latest session of its VIN on a day before repair_date, in the window."""
    sessions = first_uploads[["vin", "session_id", "session_ts"]].assign(
        session_day=lambda f: f["session_ts"].dt.tz_convert(None).dt.normalize())
    pairs = claims[["claim_id", "vin", "repair_date"]].assign(
        repair_day=lambda f: pd.to_datetime(f["repair_date"])).merge(sessions, on="vin")
    delay = (pairs["repair_day"] - pairs["session_day"]).dt.days
    pairs = pairs[(delay >= 1) & (delay <= window_days)]
    nearest = pairs.sort_values("session_ts").groupby("claim_id").tail(1)
    return nearest.set_index("claim_id")["session_id"]


def _labelled_ids(sessions: pd.DataFrame) -> set[str]:
    return set(sessions.loc[sessions["repair_labels"].map(len) > 0, "session_id"])


# --- Tables and labels ------------------------------------------------------------------


def test_tables_have_the_declared_columns_and_types(raw):
    for name, frame in raw.tables().items():
        assert list(frame.columns) == RAW_SCHEMAS[name].names, name
        table = pa.Table.from_pandas(frame, schema=RAW_SCHEMAS[name], preserve_index=False)
        for column in RAW_SCHEMAS[name]:
            if not column.nullable:
                assert table.column(column.name).null_count == 0, f"{name}.{column.name} has NULLs"
    assert set(raw.warranty_claims["status"]) == {"submitted", "cancelled"}
    assert raw.diagnostic_sessions["session_id"].is_unique and raw.warranty_claims["claim_id"].is_unique
    assert list(raw.truth.columns) == ["claim_id", "session_id"]
    assert "session_id" not in raw.warranty_claims.columns  # no ground truth on the claims


def test_every_session_with_labels_has_one_valid_claim_listing_exactly_its_labels(sessions, settings_and_raw):
    _, raw = settings_and_raw
    assert raw.truth["session_id"].is_unique
    assert set(raw.truth["session_id"]) == _labelled_ids(sessions)
    claims = raw.truth.merge(raw.warranty_claims, on="claim_id").merge(
        sessions[["session_id", "repair_labels"]], on="session_id")
    assert (claims["status"] == "submitted").all()
    assert (_claim_labels(claims, raw) == claims["repair_labels"].map(set)).all()
    vin_of_session = raw.diagnostic_sessions.set_index("session_id")["vin"]
    assert (claims["vin"].to_numpy() == vin_of_session[claims["session_id"]].to_numpy()).all()


def test_sessions_without_labels_have_no_claim_and_every_claim_on_a_known_car_finds_its_session(
        sessions, settings_and_raw):
    settings, raw = settings_and_raw
    claims = raw.warranty_claims
    known = claims[claims["vin"].isin(raw.diagnostic_sessions["vin"])]
    matched = _nearest_preceding_session(known, _first_uploads(raw), settings.max_claim_delay_days)
    assert set(matched.index) == set(known["claim_id"])  # no claim on a known car falls outside the window
    assert set(matched) <= _labelled_ids(sessions)
    assert (matched[raw.truth["claim_id"]].to_numpy() == raw.truth["session_id"].to_numpy()).all()


def test_every_other_claim_is_a_resubmission_a_cancellation_or_an_orphan(settings_and_raw):
    _, raw = settings_and_raw
    claims = raw.warranty_claims.assign(
        content=lambda f: [(v, d, tuple(p), tuple(o)) for v, d, p, o in
                           zip(f["vin"], f["repair_date"], f["part_numbers"], f["labour_op_codes"])])
    valid = claims[claims["claim_id"].isin(raw.truth["claim_id"])].set_index("content")["submitted_ts"]
    others = claims[~claims["claim_id"].isin(raw.truth["claim_id"])]
    orphan = ~others["vin"].isin(raw.diagnostic_sessions["vin"])
    cancelled = others["status"] == "cancelled"
    resubmitted = others["content"].map(lambda c: c in valid.index) & ~cancelled & ~orphan
    assert (orphan | cancelled | resubmitted).all()
    later = others[resubmitted]
    assert (later["submitted_ts"].to_numpy() > valid[later["content"]].to_numpy()).all()
    counts = raw.mess_counts
    assert (orphan.sum(), cancelled.sum(), resubmitted.sum()) == (
        counts["orphan_claims"], counts["cancelled_claims"], counts["resubmitted_duplicates"])


def test_references_map_every_label_once_through_supersession_chains(raw):
    reference = raw.part_reference
    current = reference[reference["superseded_by"].isna()]
    assert current["label"].notna().all() and current["label"].is_unique
    assert set(current["label"]) == set(raw_module.PARTS)
    superseded = reference[reference["superseded_by"].notna()]
    assert superseded["label"].isna().all()
    assert set(superseded["superseded_by"]) <= set(reference["part_number"])
    assert superseded["superseded_by"].isin(superseded["part_number"]).any()  # some chains have two steps
    assert raw.labour_reference["labour_op_code"].is_unique
    assert set(raw.labour_reference["label"]) == set(raw_module.OPERATIONS)


# --- The mess, at its rates -------------------------------------------------------------


def test_duplicated_uploads_repeat_a_session_seconds_later_at_the_configured_rate(sessions, settings_and_raw):
    settings, raw = settings_and_raw
    uploads = raw.diagnostic_sessions
    first = _first_uploads(raw)
    # The first upload carries the generated session's id.
    assert sorted(first["session_id"]) == sorted(sessions["session_id"])
    copies = uploads[~uploads["session_id"].isin(first["session_id"])]
    _assert_rate(len(copies), len(sessions), settings.duplicate_upload_rate, "duplicate uploads")
    # Each copy against the latest first upload of its VIN before it.
    pairs = pd.merge_asof(copies.sort_values("session_ts"),
                          first.assign(original_ts=first["session_ts"]).sort_values("session_ts"),
                          on="session_ts", by="vin", direction="backward", suffixes=("", "_original"))
    delay = (pairs["session_ts"] - pairs["original_ts"]).dt.total_seconds()
    assert delay.between(1, settings.duplicate_upload_max_delay_s).all()
    for column in CONTENT_COLUMNS[1:]:
        pd.testing.assert_series_equal(pairs[column], pairs[f"{column}_original"], check_names=False,
                                       obj=column)
    readouts = raw.diagnostic_dtcs.groupby("session_id")["code"].apply(list)
    for copy_id, original_id in zip(pairs["session_id"], pairs["session_id_original"]):
        assert readouts.get(copy_id, []) == readouts.get(original_id, [])
    assert raw.mess_counts["duplicate_uploads"] == len(copies)


def test_codes_are_misspelled_at_the_configured_rate_and_normalise_to_the_session_codes(
        sessions, settings_and_raw):
    settings, raw = settings_and_raw
    readouts = raw.diagnostic_dtcs[raw.diagnostic_dtcs["session_id"].isin(sessions["session_id"])]
    clean = readouts["code"].str.replace(" ", "").str.upper()
    messy = readouts["code"] != clean
    _assert_rate(int(messy.sum()), len(readouts), settings.messy_code_rate, "misspelled codes")
    assert readouts.loc[messy, "code"].str.contains(r"[a-z]|^ | $").all()
    assert (readouts["control_unit"] == clean.map(control_unit_of)).all()
    codes_by_session = clean.groupby(readouts["session_id"]).apply(set)
    expected = sessions.set_index("session_id")["dtcs"].map(set)
    assert (codes_by_session.reindex(expected.index).map(lambda c: c if isinstance(c, set) else set())
            == expected).all()
    assert {"ECM", "ABS", "BCM", "GW"} <= set(readouts["control_unit"])


def test_coolant_is_in_fahrenheit_only_in_its_markets_at_the_configured_rate(sessions, settings_and_raw):
    settings, raw = settings_and_raw
    uploads = _first_uploads(raw).set_index("session_id").loc[sessions["session_id"]]
    in_market = uploads["country"].isin(settings.fahrenheit_markets).to_numpy()
    fahrenheit = (uploads["coolant_temp_unit"] == "degF").to_numpy()
    assert set(uploads["coolant_temp_unit"]) <= {"degC", "degF"}
    assert not fahrenheit[~in_market].any()
    _assert_rate(int(fahrenheit[in_market].sum()), int(in_market.sum()), settings.fahrenheit_rate,
                 "degF uploads")
    celsius = np.where(fahrenheit, (uploads["coolant_temp"] - 32) * 5 / 9, uploads["coolant_temp"])
    np.testing.assert_allclose(celsius, sessions["coolant_temp_c"], rtol=1e-12)  # NaN stays NaN
    np.testing.assert_array_equal(uploads["fuel_trim_pct"], sessions["fuel_trim_pct"])


def test_return_visits_are_two_sessions_of_one_car_whose_claims_go_to_the_nearest_preceding_one(
        sessions, settings_and_raw):
    settings, raw = settings_and_raw
    first = _first_uploads(raw).sort_values("session_ts")
    visits = first[first["vin"].duplicated(keep=False)]
    assert visits.groupby("vin").size().max() == 2
    pairs = round(settings.return_visit_rate * len(sessions))
    assert len(visits) // 2 == pairs == raw.mess_counts["return_visits"]
    earlier = visits.groupby("vin").head(1).set_index("vin")
    later = visits.groupby("vin").tail(1).set_index("vin")
    later = later.loc[earlier.index]
    for column in ["workshop_id", "country", "car_model", "engine_type", "build_year"]:
        assert (earlier[column] == later[column]).all(), column
    assert (earlier["mileage_km"] <= later["mileage_km"]).all()
    gap_days = (later["session_ts"].dt.normalize() - earlier["session_ts"].dt.normalize()).dt.days
    assert gap_days.between(1, settings.return_visit_max_gap_days).all()

    claims = raw.truth.merge(raw.warranty_claims, on="claim_id")
    claims = claims[claims["vin"].isin(visits["vin"])]
    assert claims["session_id"].isin(earlier["session_id"]).any() and claims["session_id"].isin(
        later["session_id"]).any()
    nearest = _nearest_preceding_session(claims, first, settings.max_claim_delay_days)
    assert (nearest[claims["claim_id"]].to_numpy() == claims["session_id"].to_numpy()).all()
    # The earlier visit's repair is done by the time the car comes back.
    of_earlier = claims[claims["session_id"].isin(earlier["session_id"])]
    return_day = later.loc[of_earlier["vin"], "session_ts"].dt.tz_convert(None).dt.normalize()
    assert (pd.to_datetime(of_earlier["repair_date"]).to_numpy() <= return_day.to_numpy()).all()


def test_claims_come_one_to_max_days_after_their_session(sessions, raw):
    claims = raw.truth.merge(raw.warranty_claims, on="claim_id").merge(
        sessions[["session_id", "session_date"]], on="session_id")
    delay = (pd.to_datetime(claims["repair_date"]) - pd.to_datetime(claims["session_date"])).dt.days
    assert delay.between(1, DEFAULT.max_claim_delay_days).all()
    assert 2 <= delay.median() <= 6 and (delay > 14).mean() > 0.02  # days, with a tail of weeks
    submitted_day = raw.warranty_claims["submitted_ts"].dt.tz_convert(None).dt.normalize()
    assert (submitted_day >= pd.to_datetime(raw.warranty_claims["repair_date"])).all()


def test_cancelled_claims_are_corrected_first_filings_or_withdrawn_double_filings(sessions, settings_and_raw):
    settings, raw = settings_and_raw
    claims = raw.warranty_claims
    valid = raw.truth.merge(claims, on="claim_id").set_index(["vin", "repair_date"])
    cancelled = claims[claims["status"] == "cancelled"]
    labelled = len(_labelled_ids(sessions))
    _assert_rate(len(cancelled), labelled, settings.cancelled_claim_rate, "cancelled claims")
    its_valid = valid.loc[list(zip(cancelled["vin"], cancelled["repair_date"]))]
    extra = [set(c) - set(v) for c, v in zip(cancelled["part_numbers"], its_valid["part_numbers"])]
    first_filing = (cancelled["submitted_ts"].to_numpy() < its_valid["submitted_ts"].to_numpy())
    _assert_rate(int(first_filing.sum()), len(cancelled), settings.cancelled_resubmitted_share,
                 "cancelled and then resubmitted")
    for is_first, wrong, c_ops, v_ops, c_parts, v_parts in zip(
            first_filing, extra, cancelled["labour_op_codes"], its_valid["labour_op_codes"],
            cancelled["part_numbers"], its_valid["part_numbers"]):
        assert list(c_ops) == list(v_ops)
        if is_first:  # one wrong part, which the valid resubmission drops
            assert len(wrong) == 1 and set(c_parts) - wrong == set(v_parts)
        else:  # a copy of the valid claim, filed after it
            assert list(c_parts) == list(v_parts)


def test_resubmitted_duplicates_and_orphans_come_at_their_configured_rates(settings_and_raw):
    settings, raw = settings_and_raw
    valid_claims = len(raw.truth)
    assert raw.mess_counts["valid_claims"] == valid_claims
    _assert_rate(raw.mess_counts["resubmitted_duplicates"], valid_claims, settings.resubmitted_duplicate_rate,
                 "resubmitted duplicates")
    orphans = raw.warranty_claims[~raw.warranty_claims["vin"].isin(raw.diagnostic_sessions["vin"])]
    _assert_rate(len(orphans), valid_claims, settings.orphan_claim_rate, "orphan claims")
    assert (orphans["status"] == "submitted").all()
    assert (orphans["part_numbers"].map(len) + orphans["labour_op_codes"].map(len) > 0).all()


def test_claims_use_superseded_part_numbers_at_the_configured_rate(settings_and_raw):
    settings, raw = settings_and_raw
    reference = raw.part_reference
    label = _label_of_part(reference)
    has_older = {label[number] for number in reference.loc[reference["label"].isna(), "part_number"]}
    current_label = dict(zip(reference["part_number"], reference["label"]))
    lines = [number for parts in raw.warranty_claims["part_numbers"] for number in parts
             if label[number] in has_older]
    superseded = sum(current_label[number] is None for number in lines)
    _assert_rate(superseded, len(lines), settings.superseded_part_rate, "superseded part lines")


def test_vins_have_17_characters_a_valid_check_digit_and_the_build_year(raw):
    uploads = raw.diagnostic_sessions
    vins = pd.concat([uploads["vin"], raw.warranty_claims["vin"]]).unique()
    assert all(re.fullmatch(r"[A-HJ-NPR-Z0-9]{17}", vin) for vin in vins)
    assert all(raw_module._vin_check_digit(vin) == vin[8] for vin in vins)
    year_code = uploads["vin"].str[9]
    assert (year_code == uploads["build_year"].map(raw_module._MODEL_YEAR_CODES)).all()
    assert uploads.groupby("vin")["car_model"].nunique().max() == 1


def test_without_mess_every_claim_is_valid_and_every_upload_clean(sessions):
    clean = raw_sources(sessions, seed=7, settings=CLEAN)
    assert len(clean.diagnostic_sessions) == len(sessions)
    assert clean.diagnostic_sessions["vin"].is_unique
    assert (clean.diagnostic_sessions["coolant_temp_unit"] == "degC").all()
    assert (clean.diagnostic_dtcs["code"] == clean.diagnostic_dtcs["code"].str.strip().str.upper()).all()
    assert sorted(clean.truth["claim_id"]) == sorted(clean.warranty_claims["claim_id"])
    current = set(clean.part_reference.loc[clean.part_reference["label"].notna(), "part_number"])
    assert all(set(parts) <= current for parts in clean.warranty_claims["part_numbers"])


# --- The documented rules ---------------------------------------------------------------


def _collect(raw, settings: MessSettings) -> pd.DataFrame:
    """The join and clean rules of raw_sources' docstring, in pandas."""
    uploads = _first_uploads(raw)
    readouts = raw.diagnostic_dtcs[raw.diagnostic_dtcs["session_id"].isin(uploads["session_id"])]
    codes = readouts["code"].str.replace(" ", "").str.upper().groupby(readouts["session_id"]).apply(set)
    claims = raw.warranty_claims[raw.warranty_claims["status"] != "cancelled"].sort_values("submitted_ts")
    claims = claims[~claims.assign(parts=claims["part_numbers"].map(lambda p: tuple(sorted(p))),
                                   ops=claims["labour_op_codes"].map(lambda o: tuple(sorted(o))))
                    .duplicated(["vin", "repair_date", "parts", "ops"])]
    session_of_claim = _nearest_preceding_session(claims, uploads, settings.max_claim_delay_days)
    labels = _claim_labels(claims.set_index("claim_id"), raw)
    labels_by_session = pd.Series(labels[session_of_claim.index].to_numpy(),
                                  index=session_of_claim.to_numpy())
    assert labels_by_session.index.is_unique, "two claims matched one session"
    session_day = uploads["session_ts"].dt.tz_convert(None).dt.normalize()
    return pd.DataFrame({
        "session_id": uploads["session_id"],
        "session_date": session_day.dt.strftime("%Y-%m-%d"),
        "span": (session_day - session_day.min()).dt.days,
        **{column: uploads[column] for column in
           ["car_model", "engine_type", "country", "build_year", "mileage_km", "battery_voltage"]},
        "coolant_temp_c": np.where(uploads["coolant_temp_unit"] == "degF",
                                   (uploads["coolant_temp"] - 32) * 5 / 9, uploads["coolant_temp"]),
        "fuel_trim_pct": uploads["fuel_trim_pct"],
        "dtcs": [codes.get(session_id, set()) for session_id in uploads["session_id"]],
        "symptoms": uploads["symptoms"].map(set),
        "repair_labels": [labels_by_session.get(session_id, set()) for session_id in uploads["session_id"]],
    }).set_index("session_id")


def test_the_documented_rules_recover_the_generated_sessions_exactly(sessions, settings_and_raw):
    settings, raw = settings_and_raw
    collected = _collect(raw, settings).loc[sessions["session_id"]]
    expected = sessions.set_index("session_id")
    for column in ["dtcs", "symptoms", "repair_labels"]:
        assert (collected[column] == expected[column].map(set)).all(), column
    for column in ["session_date", "span", "car_model", "engine_type", "country", "build_year", "mileage_km"]:
        assert (collected[column] == expected[column]).all(), column
    for column in ["battery_voltage", "coolant_temp_c", "fuel_trim_pct"]:
        np.testing.assert_allclose(collected[column], expected[column], rtol=1e-12, err_msg=column)
    assert len(_collect(raw, settings)) == len(sessions)


# --- Determinism and arguments ----------------------------------------------------------


def test_same_seed_gives_the_same_tables_and_another_seed_other_tables(sessions, raw):
    again = raw_sources(sessions, seed=7)
    for name in TABLE_NAMES + ("truth",):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(raw, name), obj=name)
    other = raw_sources(sessions, seed=8)
    for name in ["diagnostic_sessions", "diagnostic_dtcs", "warranty_claims"]:
        assert not getattr(other, name).equals(getattr(raw, name)), name
    assert not other.diagnostic_sessions["vin"].isin(raw.diagnostic_sessions["vin"]).all()


def test_another_duplicate_upload_rate_changes_only_the_copies(sessions, raw):
    more_copies = raw_sources(sessions, seed=7, settings=MessSettings(duplicate_upload_rate=0.2))
    assert len(more_copies.diagnostic_sessions) > len(raw.diagnostic_sessions)
    pd.testing.assert_frame_equal(more_copies.warranty_claims, raw.warranty_claims)
    pd.testing.assert_frame_equal(_first_uploads(more_copies).reset_index(drop=True),
                                  _first_uploads(raw).reset_index(drop=True))


@pytest.mark.parametrize("settings, message", [
    (dict(duplicate_upload_rate=1.5), "duplicate_upload_rate must be a probability"),
    (dict(cancelled_resubmitted_share=-0.1), "cancelled_resubmitted_share must be a probability"),
    (dict(max_claim_delay_days=0), "max_claim_delay_days must be a positive whole number"),
    (dict(duplicate_upload_max_delay_s=DUPLICATE_UPLOAD_WINDOW_S), "below the 60 s duplicate-upload window"),
    (dict(median_claim_delay_days=60), "median_claim_delay_days must be between"),
    (dict(fahrenheit_markets=("XX",)), r"unknown countries \['XX'\]"),
    (dict(fahrenheit_markets="US"), "a tuple of country codes"),
])
def test_impossible_mess_settings_are_rejected_naming_the_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        MessSettings(**settings)


def test_raw_sources_rejects_frames_that_are_not_generated_sessions(sessions):
    with pytest.raises(ValueError, match=r"missing the columns \['dtcs'\]"):
        raw_sources(sessions.drop(columns="dtcs"), seed=1)
    with pytest.raises(ValueError, match="repeated session_id"):
        raw_sources(pd.concat([sessions.iloc[:3], sessions.iloc[:1]]), seed=1)
    with pytest.raises(ValueError, match="outside the label vocabulary"):
        raw_sources(sessions.iloc[:2].assign(repair_labels=[["part:flux_capacitor"], []]), seed=1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        raw_sources(sessions.iloc[:2], seed=-1)


# --- Files ------------------------------------------------------------------------------


def _read_sqlite(path, name: str) -> pd.DataFrame:
    with sqlite3.connect(path) as connection:
        return pd.read_sql(f'SELECT * FROM "{name}" ORDER BY rowid', connection)


def test_the_sqlite_file_holds_the_same_rows_as_the_parquet_files(raw, tmp_path):
    paths = write_raw_sources(raw, tmp_path)
    assert set(paths) == set(TABLE_NAMES) | {"sqlite"}
    assert paths["sqlite"] == str(tmp_path / "raw_sources.sqlite")
    assert not list(tmp_path.rglob("*.tmp"))
    for name, schema in RAW_SCHEMAS.items():
        from_parquet = pd.read_parquet(paths[name])
        assert paths[name] == str(tmp_path / "parquet" / f"{name}.parquet")
        assert len(from_parquet) == len(raw.tables()[name])
        from_sqlite = _read_sqlite(paths["sqlite"], name)
        for column in schema:
            if pa.types.is_list(column.type):
                from_sqlite[column.name] = from_sqlite[column.name].map(json.loads)
                from_parquet[column.name] = from_parquet[column.name].map(list)
            elif pa.types.is_timestamp(column.type):
                from_sqlite[column.name] = pd.to_datetime(from_sqlite[column.name], utc=True)
            elif pa.types.is_date(column.type):
                from_sqlite[column.name] = pd.to_datetime(from_sqlite[column.name]).dt.date
            elif pa.types.is_floating(column.type):
                from_sqlite[column.name] = from_sqlite[column.name].astype(float)
        from_sqlite = from_sqlite.replace({None: np.nan}) if name == "part_reference" else from_sqlite
        from_parquet = from_parquet.replace({None: np.nan}) if name == "part_reference" else from_parquet
        pd.testing.assert_frame_equal(from_sqlite, from_parquet, obj=name)
    lists = ["part_numbers", "labour_op_codes"]
    pd.testing.assert_frame_equal(pd.read_parquet(paths["warranty_claims"]).drop(columns=lists),
                                  raw.warranty_claims.drop(columns=lists))


def test_a_failed_write_leaves_the_previous_files_in_place(raw, sessions, tmp_path, monkeypatch):
    paths = write_raw_sources(raw, tmp_path)
    before = {name: Path(path).read_bytes() for name, path in paths.items()}

    def fail(tables, path):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(raw_module, "_write_sqlite", fail)
    with pytest.raises(OSError, match="disk full"):
        write_raw_sources(raw_sources(sessions.iloc[:500], seed=3), tmp_path)
    assert Path(paths["sqlite"]).read_bytes() == before["sqlite"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_parquet_columns_agree_with_the_bigquery_ddl(raw, tmp_path):
    """The DDL's column lines, "  name TYPE [NOT NULL] OPTIONS(...)", match the parquet schema of each table.

    A parquet list column is never NULL, yet its DDL has no NOT NULL: BigQuery
    stores arrays as REPEATED fields, which cannot be REQUIRED.
    """
    ddl = (PROJECT_ROOT / "data" / "raw_sources.sql").read_text()
    bigquery_type = {pa.string(): "STRING", pa.int64(): "INT64", pa.float64(): "FLOAT64",
                     pa.timestamp("us", tz="UTC"): "TIMESTAMP", pa.date32(): "DATE",
                     pa.list_(pa.string()): "ARRAY<STRING>"}
    declared = {}
    for table, body in re.findall(r"CREATE TABLE IF NOT EXISTS `[\w-]+\.(\w+)` \((.*?)\n\)", ddl, re.S):
        declared[table] = [(name, type_, bool(not_null)) for name, type_, not_null in re.findall(
            r"^  (\w+) ([A-Z0-9<>]+)( NOT NULL)? OPTIONS\(description = \"[^\"]+\"\),?$", body, re.M)]
        assert len(declared[table]) == body.count("\n  "), f"{table}: a column line the test cannot read"
    assert list(declared) == list(TABLE_NAMES)
    paths = write_raw_sources(raw, tmp_path)
    for name in TABLE_NAMES:
        schema = pq.read_schema(paths[name])
        expected = [(f.name, bigquery_type[f.type], not f.nullable and not pa.types.is_list(f.type))
                    for f in schema]
        assert declared[name] == expected, name


def test_cli_raw_writes_the_raw_sources_instead_of_the_spans(tmp_path, capsys):
    assert main(["--rows", "400", "--seed", "3", "--spans", "4", "--out", str(tmp_path), "--raw"]) == 0
    assert not list(tmp_path.glob("span-*"))
    assert sorted(path.name for path in (tmp_path / "parquet").iterdir()) == sorted(
        f"{name}.parquet" for name in TABLE_NAMES)
    expected = raw_sources(generate_sessions(rows=400, seed=3, spans=4), seed=3)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "parquet" / "part_reference.parquet"),
                                  expected.part_reference)
    claims = pd.read_parquet(tmp_path / "parquet" / "warranty_claims.parquet")
    assert len(claims) == len(expected.warranty_claims)
    assert len(_read_sqlite(tmp_path / "raw_sources.sqlite", "diagnostic_sessions")) == len(
        expected.diagnostic_sessions)
    output = capsys.readouterr().out
    assert f"wrote {len(expected.diagnostic_sessions)} rows of diagnostic_sessions" in output
    assert "raw sources of 400 sessions" in output
