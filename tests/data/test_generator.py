"""Behaviour of the synthetic session generator, its exact posterior, the parquet spans and the CLI."""
from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from calibration import assert_calibrated as _assert_calibrated
from data import process
from data.generator import (
    CATEGORICAL_FEATURES,
    LABEL_COLUMN,
    LABELS,
    MULTIVALENT_FEATURES,
    NUMERIC_FEATURES,
    generate_sessions,
    main,
    posterior,
    write_spans,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SENSORS = ["battery_voltage", "coolant_temp_c", "fuel_trim_pct"]
EXPECTED_COLUMNS = (
    ["session_id", "session_date", "span", "car_model", "engine_type", "country", "build_year", "mileage_km"]
    + SENSORS + ["dtcs", "symptoms", "repair_labels"]
)


@pytest.fixture(scope="module")
def sessions() -> pd.DataFrame:
    return generate_sessions(rows=50_000, seed=11, spans=4)


@pytest.fixture(scope="module")
def label_matrix(sessions) -> np.ndarray:
    return _multi_hot(sessions[LABEL_COLUMN])


@pytest.fixture(scope="module")
def session_posterior(sessions) -> np.ndarray:
    return posterior(sessions)


def _multi_hot(label_lists) -> np.ndarray:
    position = {label: j for j, label in enumerate(LABELS)}
    matrix = np.zeros((len(label_lists), len(LABELS)), dtype=bool)
    for i, labels in enumerate(label_lists):
        matrix[i, [position[label] for label in labels]] = True
    return matrix


def _log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    probabilities = np.clip(probabilities, 1e-12, 1 - 1e-12)
    return float(-np.mean(np.where(labels, np.log(probabilities), np.log1p(-probabilities))))


# --- The generated frame -----------------------------------------------------------------


def test_same_seed_gives_identical_frames_and_another_seed_differs():
    first = generate_sessions(rows=2_000, seed=5, spans=2)
    pd.testing.assert_frame_equal(first, generate_sessions(rows=2_000, seed=5, spans=2))
    other = generate_sessions(rows=2_000, seed=6, spans=2)
    assert not first.drop(columns="session_id").equals(other.drop(columns="session_id"))


def test_public_feature_lists_name_the_frame_columns(sessions):
    assert CATEGORICAL_FEATURES == ["car_model", "engine_type", "country"]
    assert NUMERIC_FEATURES[:2] == ["build_year", "mileage_km"] and set(SENSORS) <= set(NUMERIC_FEATURES)
    assert MULTIVALENT_FEATURES == ["dtcs", "symptoms"] and LABEL_COLUMN == "repair_labels"
    features = CATEGORICAL_FEATURES + NUMERIC_FEATURES + MULTIVALENT_FEATURES
    assert set(features + [LABEL_COLUMN]) <= set(sessions)


def test_frame_has_the_session_schema(sessions):
    assert list(sessions.columns) == EXPECTED_COLUMNS
    for column in ["build_year", "mileage_km", "span"]:
        assert sessions[column].dtype == np.int64, column
    for column in SENSORS:
        assert sessions[column].dtype == np.float64, column
    for column in ["session_id", "session_date"] + CATEGORICAL_FEATURES:
        assert sessions[column].map(type).eq(str).all(), column
    for column in MULTIVALENT_FEATURES + [LABEL_COLUMN]:
        is_list_of_strings = sessions[column].map(
            lambda items: isinstance(items, list) and all(isinstance(item, str) for item in items))
        assert is_list_of_strings.all(), column
    assert sessions["session_id"].is_unique
    assert sessions["build_year"].between(2008, 2025).all() and (sessions["mileage_km"] >= 0).all()
    assert set(sessions["engine_type"]) == {"petrol", "diesel", "hybrid", "ev"}
    assert sessions["country"].nunique() >= 8 and sessions["car_model"].nunique() >= 8


def test_spans_are_consecutive_days_in_row_order(sessions):
    assert sessions["span"].is_monotonic_increasing
    assert sessions["span"].value_counts().sort_index().tolist() == [12_500] * 4
    dates_by_span = sessions.groupby("span")["session_date"].unique().map(list).to_dict()
    assert dates_by_span == {0: ["2026-01-01"], 1: ["2026-01-02"], 2: ["2026-01-03"], 3: ["2026-01-04"]}
    later = generate_sessions(rows=10, seed=1, spans=3, start_date=datetime.date(2027, 2, 27))
    assert later.groupby("span").size().tolist() == [4, 3, 3]
    assert later["session_date"].unique().tolist() == ["2027-02-27", "2027-02-28", "2027-03-01"]


def test_sensor_readings_go_missing_at_the_configured_rate(sessions):
    for column in ["battery_voltage", "coolant_temp_c"]:
        assert sessions[column].isna().mean() == pytest.approx(0.15, abs=0.01), column
    combustion = sessions["engine_type"] != "ev"
    assert sessions.loc[combustion, "fuel_trim_pct"].isna().mean() == pytest.approx(0.15, abs=0.01)
    assert sessions.loc[~combustion, "fuel_trim_pct"].isna().all()  # an EV has no fuel trim


def test_labels_are_parts_and_operations_with_a_long_tail(label_matrix):
    assert len(LABELS) >= 30 and len(set(LABELS)) == len(LABELS)
    assert all(label.startswith(("part:", "op:")) for label in LABELS)
    assert sum(label.startswith("part:") for label in LABELS) >= 15
    assert sum(label.startswith("op:") for label in LABELS) >= 12
    rates = label_matrix.mean(axis=0)
    assert rates.min() > 0, f"labels never seen in 50k sessions: {np.array(LABELS)[rates == 0]}"
    assert rates.max() > 10 * rates.min()


def test_sessions_carry_about_one_to_one_and_a_half_faults(sessions, label_matrix):
    labels_per_session = label_matrix.sum(axis=1)
    assert 0.2 < (labels_per_session == 0).mean() < 0.5  # sessions without a fault repair mostly nothing
    assert 1.5 < labels_per_session.mean() < 4.0
    assert 0.5 < sessions["dtcs"].map(len).mean() < 3.0 and 0.5 < sessions["symptoms"].map(len).mean() < 3.0


def test_an_operation_brings_its_parts(label_matrix):
    column = {label: j for j, label in enumerate(LABELS)}
    for operation, part in [("op:replace_ignition_coil", "part:ignition_coil"),
                            ("op:replace_water_pump", "part:water_pump"),
                            ("op:replace_wheel_bearing", "part:wheel_bearing")]:
        with_operation = label_matrix[:, column[operation]]
        assert label_matrix[with_operation, column[part]].mean() > 0.9, (operation, part)


@pytest.mark.parametrize("engine, forbidden_labels, forbidden_codes", [
    ("ev", {"part:spark_plug_set", "part:ignition_coil", "part:dpf", "op:dpf_forced_regeneration",
            "part:turbo_actuator", "part:egr_valve", "part:lambda_sensor", "part:alternator",
            "part:catalytic_converter", "part:water_pump", "part:thermostat"},
     {"P0300", "P0301", "P0351", "P2002", "P0401", "P0299", "P0420", "P0620", "P0128"}),
    ("petrol", {"part:dpf", "op:replace_dpf", "op:dpf_forced_regeneration", "part:hv_coolant_pump"},
     {"P2002", "P244A", "P0A7E", "P0A80"}),
    ("diesel",
     {"part:spark_plug_set", "part:ignition_coil", "op:replace_spark_plugs", "part:hv_coolant_pump"},
     {"P0351", "P0352", "P0A7E"}),
    ("hybrid", {"part:dpf", "part:alternator", "part:turbo_actuator"}, {"P2002", "P0620", "P0234"}),
])
def test_engine_types_never_show_faults_they_cannot_have(sessions, engine, forbidden_labels, forbidden_codes):
    of_engine = sessions[sessions["engine_type"] == engine]
    assert len(of_engine) > 1000
    seen_labels = set().union(*of_engine[LABEL_COLUMN].map(set))
    seen_codes = set().union(*of_engine["dtcs"].map(set))
    assert not seen_labels & forbidden_labels
    assert not seen_codes & forbidden_codes


def test_generate_sessions_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="rows"):
        generate_sessions(rows=0, seed=1)
    with pytest.raises(ValueError, match="spans"):
        generate_sessions(rows=3, seed=1, spans=4)
    with pytest.raises(ValueError, match="seed"):
        generate_sessions(rows=3, seed=-1)


# --- The exact posterior -----------------------------------------------------------------


def test_posterior_is_a_probability_per_session_and_label(sessions, session_posterior):
    assert session_posterior.shape == (len(sessions), len(LABELS))
    assert np.isfinite(session_posterior).all()
    assert (session_posterior >= 0).all() and (session_posterior <= 1).all()


def test_posterior_is_calibrated_over_all_label_cells(session_posterior, label_matrix):
    deciles = np.quantile(session_posterior, np.linspace(0, 1, 11))
    deciles[0], deciles[-1] = 0.0, 1.0 + 1e-9
    _assert_calibrated(session_posterior, label_matrix, deciles, "pooled deciles")
    _assert_calibrated(session_posterior, label_matrix, np.linspace(0, 1 + 1e-9, 11), "pooled tenths")


@pytest.mark.parametrize("label", ["part:brake_pads", "part:battery_12v", "op:replace_spark_plugs",
                                   "part:coolant", "op:replace_lambda_sensor", "op:dpf_forced_regeneration"])
def test_posterior_is_calibrated_for_frequent_labels(session_posterior, label_matrix, label):
    j = LABELS.index(label)
    deciles = np.quantile(session_posterior[:, j], np.linspace(0, 1, 11))
    deciles[0], deciles[-1] = 0.0, 1.0 + 1e-9
    _assert_calibrated(session_posterior[:, [j]], label_matrix[:, [j]], deciles, label)


def test_mean_posterior_matches_every_label_rate_in_labels_order(session_posterior, label_matrix):
    rates, predicted = label_matrix.mean(axis=0), session_posterior.mean(axis=0)
    tolerance = 4 * np.sqrt(predicted * (1 - predicted) / len(label_matrix)) + 0.002
    mismatched = [(label, rate, p) for label, rate, p, tol in zip(LABELS, rates, predicted, tolerance)
                  if abs(rate - p) > tol]
    assert not mismatched


@pytest.mark.parametrize("slice_by", ["country", "engine_type", "car_model", "build_year", "mileage_km"])
def test_posterior_is_calibrated_within_vehicle_slices(sessions, session_posterior, label_matrix, slice_by):
    groups = sessions[slice_by]
    if slice_by in ("build_year", "mileage_km"):
        groups = pd.qcut(groups, 4, duplicates="drop")
    for group, rows in groups.groupby(groups).indices.items():
        predicted, observed = session_posterior[rows].mean(axis=0), label_matrix[rows].mean(axis=0)
        variance = (session_posterior[rows] * (1 - session_posterior[rows])).sum(axis=0)
        standard_error = np.sqrt(variance) / len(rows)
        off = np.abs(observed - predicted) > 4 * standard_error + 0.003
        assert not off.any(), (f"{slice_by}={group}: {np.array(LABELS)[off]} observed "
                               f"{observed[off].round(4)} vs mean posterior {predicted[off].round(4)}")


def test_posterior_beats_the_per_label_base_rate(session_posterior, label_matrix):
    base_rates = np.broadcast_to(label_matrix.mean(axis=0), label_matrix.shape)
    assert _log_loss(label_matrix, session_posterior) < 0.7 * _log_loss(label_matrix, base_rates)


def _label_prior(frame: pd.DataFrame) -> np.ndarray:
    """P(label | vehicle) by enumerating the truncated fault prior, straight from the process tables."""
    engine = pd.Categorical(frame["engine_type"], categories=process.ENGINE_TYPES).codes
    logits = process.fault_logits(
        pd.Categorical(frame["car_model"], categories=process.CAR_MODELS).codes, engine,
        pd.Categorical(frame["country"], categories=process.COUNTRIES).codes,
        frame["build_year"].to_numpy(), frame["mileage_km"].to_numpy())
    configurations = process.FAULT_CONFIGURATIONS
    possible = np.isfinite(logits)
    log_prior = np.where(possible, logits, 0.0) @ configurations.T
    log_prior[(~possible).astype(float) @ configurations.T > 0] = -np.inf
    weights = np.exp(log_prior - log_prior.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    label_absent = np.exp(configurations @ np.log1p(-process.LABEL_GIVEN_FAULT))
    return 1 - (1 - process.LABEL_LEAK_BY_ENGINE[engine]) * (weights @ label_absent)


def test_posterior_without_any_evidence_follows_the_vehicle_prior(sessions, label_matrix):
    silent = (sessions["dtcs"].map(len) == 0) & (sessions["symptoms"].map(len) == 0)
    # Unread sensors carry no evidence (missing completely at random).
    frame = sessions[silent].assign(**{sensor: np.nan for sensor in SENSORS})
    without_evidence, prior = posterior(frame), _label_prior(frame)
    assert len(frame) > 3000
    frequent = np.argsort(-label_matrix.mean(axis=0))[:8]
    for j in frequent:
        assert np.corrcoef(without_evidence[:, j], prior[:, j])[0, 1] > 0.9, LABELS[j]
        # No code and no symptom is evidence against faults, so less is repaired than the prior expects.
        assert without_evidence[:, j].mean() < prior[:, j].mean(), LABELS[j]
    # Masking the sensors keeps the posterior exact: it is still calibrated on these sessions.
    _assert_calibrated(without_evidence, label_matrix[silent.to_numpy()], np.linspace(0, 1 + 1e-9, 6),
                       "sessions without codes or symptoms")


def test_posterior_responds_to_vehicle_and_sensor_evidence(sessions):
    base = sessions.iloc[[0]].assign(
        car_model="compact_hatch", engine_type="petrol", country="DE", build_year=2020, mileage_km=60_000,
        battery_voltage=np.nan, coolant_temp_c=np.nan, fuel_trim_pct=np.nan,
        dtcs=[["P0562"]], symptoms=[["no_start"]],
    )
    battery, alternator = LABELS.index("part:battery_12v"), LABELS.index("part:alternator")
    low_voltage = posterior(base.assign(battery_voltage=12.2))[0]
    slightly_low = posterior(base.assign(battery_voltage=13.3))[0]
    assert low_voltage[alternator] > slightly_low[alternator]
    assert slightly_low[battery] > slightly_low[alternator]

    old_in_sweden = posterior(base.assign(country="SE", build_year=2010, mileage_km=250_000))[0]
    new_in_spain = posterior(base.assign(country="ES", build_year=2024, mileage_km=10_000))[0]
    assert old_in_sweden[battery] > new_in_spain[battery]
    assert posterior(base.assign(engine_type="diesel"))[0][LABELS.index("part:spark_plug_set")] < 0.01


def test_posterior_is_the_same_after_a_parquet_round_trip(sessions, session_posterior, tmp_path):
    sample = sessions.iloc[:3000]
    paths = write_spans(sample, tmp_path)
    read_back = pd.concat([pq.read_table(path).to_pandas() for path in paths], ignore_index=True)
    assert isinstance(read_back["dtcs"].iloc[0], np.ndarray)  # the shape parquet readers hand back
    np.testing.assert_allclose(posterior(read_back), session_posterior[:3000], rtol=1e-12, atol=1e-15)

    with_none = sample.astype({sensor: object for sensor in SENSORS})
    for sensor in SENSORS:
        with_none[sensor] = with_none[sensor].where(with_none[sensor].notna(), None)
    np.testing.assert_allclose(posterior(with_none), session_posterior[:3000], rtol=1e-12, atol=1e-15)


def test_posterior_ignores_the_label_column(sessions, session_posterior):
    np.testing.assert_allclose(posterior(sessions.iloc[:500].drop(columns=LABEL_COLUMN)),
                               session_posterior[:500], rtol=1e-12, atol=1e-15)


def test_posterior_rejects_sessions_the_process_cannot_produce(sessions):
    row = sessions.iloc[[0]]
    with pytest.raises(ValueError, match="country"):
        posterior(row.assign(country="XX"))
    with pytest.raises(ValueError, match="P9999"):
        posterior(row.assign(dtcs=[["P9999"]]))
    with pytest.raises(ValueError, match="P0300.*ev"):
        posterior(row.assign(engine_type="ev", fuel_trim_pct=np.nan, dtcs=[["P0300"]]))


# --- Parquet spans and the CLI -----------------------------------------------------------


def test_write_spans_writes_one_typed_parquet_file_per_span(tmp_path):
    frame = generate_sessions(rows=400, seed=3, spans=3)
    paths = write_spans(frame, tmp_path / "sessions")
    assert paths == [str(tmp_path / "sessions" / f"span-{k}" / "sessions.parquet") for k in range(3)]
    tables = [pq.read_table(path) for path in paths]
    assert [table.num_rows for table in tables] == frame.groupby("span").size().tolist()
    schema = tables[0].schema
    assert schema.field("build_year").type == pa.int64() and schema.field("mileage_km").type == pa.int64()
    assert schema.field("battery_voltage").type == pa.float64()
    assert schema.field("car_model").type == pa.string()
    for column in MULTIVALENT_FEATURES + [LABEL_COLUMN]:
        assert schema.field(column).type == pa.list_(pa.string()), column
    assert pa.concat_tables(tables).column("battery_voltage").null_count > 0
    assert sorted(p.name for p in (tmp_path / "sessions").rglob("*")) == ["sessions.parquet"] * 3 + [
        "span-0", "span-1", "span-2"]


def test_write_spans_leaves_the_previous_file_intact_when_a_write_fails(tmp_path, monkeypatch):
    frame = generate_sessions(rows=50, seed=3)
    [path] = write_spans(frame, tmp_path)
    before = Path(path).read_bytes()

    def failing_write(table, where, **kwargs):
        Path(where).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_spans(generate_sessions(rows=50, seed=4), tmp_path)
    assert Path(path).read_bytes() == before
    assert [p.name for p in Path(path).parent.iterdir()] == ["sessions.parquet"]


def test_cli_generate_writes_the_spans_and_a_summary(tmp_path, capsys):
    assert main(["--rows", "300", "--seed", "2", "--out", str(tmp_path), "--spans", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert all(f"span-{k}" in line and "100 sessions" in line for k, line in enumerate(lines[:3]))
    assert "300 sessions" in lines[3] and f"{len(LABELS)} labels" in lines[3] and "per session" in lines[3]
    frame = pd.concat([pd.read_parquet(tmp_path / f"span-{k}" / "sessions.parquet") for k in range(3)],
                      ignore_index=True)
    pd.testing.assert_frame_equal(frame.drop(columns=MULTIVALENT_FEATURES + [LABEL_COLUMN]),
                                  generate_sessions(rows=300, seed=2, spans=3)
                                  .drop(columns=MULTIVALENT_FEATURES + [LABEL_COLUMN]))


@pytest.mark.parametrize("arguments, message", [
    (["--rows", "0", "--seed", "1"], "--rows must be positive"),
    (["--rows", "5", "--seed", "1", "--spans", "0"], "--spans must be between 1 and --rows"),
    (["--rows", "5", "--seed", "1", "--spans", "6"], "--spans must be between 1 and --rows"),
    (["--rows", "5", "--seed", "-3"], "--seed must be non-negative"),
    (["--rows", "many", "--seed", "1"], "invalid int value"),
])
def test_cli_rejects_invalid_arguments_with_exit_code_2(tmp_path, capsys, arguments, message):
    assert main(["--out", str(tmp_path / "out"), *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_reports_an_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["--rows", "5", "--seed", "1", "--out", str(blocker / "out")]) == 2
    error = capsys.readouterr().err
    assert "cannot write to --out" in error and "Traceback" not in error


def test_cli_as_a_process_exits_2_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "data.generator", "--rows", "3", "--seed", "1", "--spans", "9",
         "--out", str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "--spans must be between 1 and --rows" in result.stderr and "Traceback" not in result.stderr
