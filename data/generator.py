"""Samples synthetic diagnostic sessions and writes them as parquet spans.

This is the data package's public entry point. generate_sessions draws sessions
from the process defined in process.py, write_spans publishes them as one
parquet file per span (one span per day), and posterior (from posterior.py)
gives the exact label probabilities the best possible model would predict.
main is `repairml data generate`. A row holds the vehicle, the observed DTCs,
symptoms and sensor readings, and the warranty outcome (repair_labels); the
latent faults are not written.

`repairml data generate ... --raw` writes, instead of the joined spans, the raw
diagnostics and warranty sources the data collection job joins back into them
(raw_sources.py): OUT/parquet/{table}.parquet and OUT/raw_sources.sqlite, with
the default MessSettings and the same seed.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data.posterior import posterior
from data.process import (
    ANNUAL_KM,
    ANNUAL_KM_SPREAD,
    BUILD_YEARS,
    CAR_MODELS_CATALOG,
    CATEGORICAL_FEATURES,
    COUNTRIES_CATALOG,
    DTC_GIVEN_FAULT,
    DTC_LEAK_BY_ENGINE,
    DTCS,
    ENGINE_TYPES,
    FAULT_CATALOG,
    FIRST_BUILD_YEAR,
    FLEET_AGE_SCALE_YEARS,
    FLEET_YEAR,
    LABEL_COLUMN,
    LABEL_LEAK_BY_ENGINE,
    LABELS,
    MAX_FAULTS,
    MAX_MILEAGE_KM,
    MULTIVALENT_FEATURES,
    NUMERIC_FEATURES,
    OPERATIONS,
    SENSOR_MISSING_RATE,
    SENSOR_NAMES,
    SENSOR_SDS,
    SYMPTOM_GIVEN_FAULT,
    SYMPTOM_LEAK_BY_ENGINE,
    SYMPTOMS,
    fault_logits,
    noisy_or,
    sensor_means,
)
from data.raw_sources import RawSources, raw_sources, write_raw_sources

__all__ = [
    "LABELS", "CATEGORICAL_FEATURES", "NUMERIC_FEATURES", "MULTIVALENT_FEATURES", "LABEL_COLUMN",
    "SESSION_SCHEMA", "generate_sessions", "posterior", "write_spans", "main",
]

SPAN_FILE_NAME = "sessions.parquet"

SESSION_SCHEMA = pa.schema(
    [("session_id", pa.string()), ("session_date", pa.string()), ("span", pa.int64())]
    + [(name, pa.string()) for name in CATEGORICAL_FEATURES]
    + [("build_year", pa.int64()), ("mileage_km", pa.int64())]
    + [(name, pa.float64()) for name in SENSOR_NAMES]
    + [(name, pa.list_(pa.string())) for name in MULTIVALENT_FEATURES + [LABEL_COLUMN]]
)


def generate_sessions(rows: int, seed: int, spans: int = 1,
                      start_date: datetime.date = datetime.date(2026, 1, 1)) -> pd.DataFrame:
    """Draws `rows` sessions over `spans` consecutive days from start_date, one span per day.

    The same seed gives the same frame. Rows are ordered by span; the spans
    hold equal shares of the rows (up to one row).
    """
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    if not 1 <= spans <= rows:
        raise ValueError(f"spans must be between 1 and rows ({rows}), got {spans}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    rng = np.random.default_rng(seed)

    car_model, engine_type, country, build_year, mileage_km = _sample_vehicles(rng, rows)
    faults = _sample_faults(rng, fault_logits(car_model, engine_type, country, build_year, mileage_km))
    dtcs = rng.random((rows, len(DTCS))) < noisy_or(faults, DTC_GIVEN_FAULT, DTC_LEAK_BY_ENGINE[engine_type])
    symptoms = rng.random((rows, len(SYMPTOMS))) < noisy_or(
        faults, SYMPTOM_GIVEN_FAULT, SYMPTOM_LEAK_BY_ENGINE[engine_type])
    readings = _sample_sensor_readings(rng, faults, engine_type)
    labels = _sample_repair_labels(rng, faults, engine_type)
    span = np.arange(rows, dtype=np.int64) * spans // rows  # contiguous blocks of equal size, up to one row

    return pd.DataFrame({
        "session_id": [f"S{seed}-{i:08d}" for i in range(rows)],
        "session_date": _span_dates(start_date, spans)[span],
        "span": span,
        "car_model": _names(CAR_MODELS_CATALOG, car_model, "name"),
        "engine_type": np.array(ENGINE_TYPES, dtype=object)[engine_type],
        "country": _names(COUNTRIES_CATALOG, country, "code"),
        "build_year": build_year.astype(np.int64),
        "mileage_km": mileage_km.astype(np.int64),
        **{name: readings[:, s] for s, name in enumerate(SENSOR_NAMES)},
        "dtcs": _present_names(dtcs, DTCS),
        "symptoms": _present_names(symptoms, SYMPTOMS),
        LABEL_COLUMN: _present_names(labels, LABELS),
    })


def write_spans(frame: pd.DataFrame, out_dir: str | os.PathLike) -> list[str]:
    """Writes out_dir/span-{k}/sessions.parquet for each span in the frame; returns the paths.

    Each file is written to a temporary name in its span folder and renamed into
    place, so a reader never sees a half-written file.
    """
    paths = []
    for span, span_frame in frame.groupby("span", sort=True):
        span_dir = Path(out_dir) / f"span-{span}"
        span_dir.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(span_frame, schema=SESSION_SCHEMA, preserve_index=False)
        # A unique hidden name in the same folder, so the rename is atomic and readers skip it.
        temporary = span_dir / f".{SPAN_FILE_NAME}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(table, temporary)
            os.replace(temporary, span_dir / SPAN_FILE_NAME)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        paths.append(str(span_dir / SPAN_FILE_NAME))
    return paths


# --- Sampling steps --------------------------------------------------------------------


def _sample_vehicles(rng: np.random.Generator, rows: int):
    """Country, car model, engine type, build year and mileage, as integer codes and numbers."""
    country_share = _normalised([c.popularity for c in COUNTRIES_CATALOG])
    model_share = _normalised([m.popularity for m in CAR_MODELS_CATALOG])
    country = rng.choice(len(COUNTRIES_CATALOG), size=rows, p=country_share)
    car_model = rng.choice(len(CAR_MODELS_CATALOG), size=rows, p=model_share)

    engine_mix = np.array([[m.engine_mix.get(e, 0.0) for e in ENGINE_TYPES] for m in CAR_MODELS_CATALOG])
    engine_tilt = np.array([[c.engine_tilt.get(e, 1.0) for e in ENGINE_TYPES] for c in COUNTRIES_CATALOG])
    engine_type = _sample_categorical(rng, engine_mix[car_model] * engine_tilt[country])

    years = np.array(BUILD_YEARS)
    year_weights = np.array([
        np.where(years >= FIRST_BUILD_YEAR[e], np.exp(-(FLEET_YEAR - years) / FLEET_AGE_SCALE_YEARS[e]), 0.0)
        for e in ENGINE_TYPES
    ])
    build_year = years[_sample_categorical(rng, year_weights[engine_type])]

    years_in_service = FLEET_YEAR - build_year - 1 + rng.random(rows)
    annual_km = (
        np.array([ANNUAL_KM[e] for e in ENGINE_TYPES])[engine_type]
        * np.array([m.annual_km_factor for m in CAR_MODELS_CATALOG])[car_model]
        * np.array([c.annual_km_factor for c in COUNTRIES_CATALOG])[country]
        * np.exp(ANNUAL_KM_SPREAD * rng.standard_normal(rows))
    )
    mileage_km = np.round(np.minimum(years_in_service * annual_km, MAX_MILEAGE_KM))
    return car_model, engine_type, country, build_year, mileage_km


def _sample_faults(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """0/1 fault sets [rows, faults]: independent Bernoulli draws truncated to MAX_FAULTS.

    Redrawing the rows with too many faults samples the truncated prior exactly.
    """
    probabilities = 0.5 * (1.0 + np.tanh(logits / 2.0))  # the logistic function, exact 0 at -inf
    faults = np.zeros(logits.shape)
    pending = np.arange(len(logits))
    while len(pending):
        draw = rng.random((len(pending), logits.shape[1])) < probabilities[pending]
        faults[pending] = draw
        pending = pending[draw.sum(axis=1) > MAX_FAULTS]
    return faults


def _sample_sensor_readings(rng: np.random.Generator, faults: np.ndarray, engine_type: np.ndarray):
    """Gaussian readings [rows, sensors]; NaN when missing at random or never recorded."""
    noise = SENSOR_SDS * rng.standard_normal((len(faults), len(SENSOR_SDS)))
    readings = sensor_means(faults, engine_type) + noise
    missing = rng.random(readings.shape) < SENSOR_MISSING_RATE
    readings[missing] = np.nan
    return readings  # sensors the engine never records have a NaN baseline, so stay NaN


def _sample_repair_labels(rng: np.random.Generator, faults: np.ndarray, engine_type: np.ndarray):
    """Multi-hot repair labels [rows, labels].

    Each present fault picks one of its repair plans (or none); each operation of
    the plan brings each of its parts with the operation's part probability. The
    faults draw independently of one another, then the leak adds goodwill labels.
    """
    column = {label: j for j, label in enumerate(LABELS)}
    labels = np.zeros((len(faults), len(LABELS)), dtype=bool)
    for k, fault in enumerate(FAULT_CATALOG):
        affected = np.flatnonzero(faults[:, k])
        plan_draw = rng.random(len(affected))
        upper = np.cumsum([plan.probability for plan in fault.repairs])
        lower = upper - [plan.probability for plan in fault.repairs]
        for plan, low, high in zip(fault.repairs, lower, upper):
            repaired = affected[(plan_draw >= low) & (plan_draw < high)]
            for operation in plan.operations:
                labels[repaired, column[operation]] = True
                for part, probability in OPERATIONS[operation].items():
                    labels[repaired[rng.random(len(repaired)) < probability], column[part]] = True
    labels |= rng.random(labels.shape) < LABEL_LEAK_BY_ENGINE[engine_type]
    return labels


def _span_dates(start_date: datetime.date, spans: int) -> np.ndarray:
    """'YYYY-MM-DD' of each span: span k is the day start_date + k."""
    days = [start_date + datetime.timedelta(days=k) for k in range(spans)]
    return np.array([day.isoformat() for day in days], dtype=object)


# --- Helpers ---------------------------------------------------------------------------


def _normalised(weights) -> np.ndarray:
    weights = np.asarray(weights, dtype=float)
    return weights / weights.sum()


def _sample_categorical(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One category index per row of a [rows, categories] matrix of unnormalised weights."""
    cumulative = np.cumsum(weights, axis=1)
    draw = rng.random(len(weights)) * cumulative[:, -1]
    return (draw[:, None] >= cumulative).sum(axis=1)


def _names(catalog, codes: np.ndarray, attribute: str) -> np.ndarray:
    return np.array([getattr(entry, attribute) for entry in catalog], dtype=object)[codes]


def _present_names(present: np.ndarray, vocabulary: list[str]) -> list[list[str]]:
    """Turns a [rows, items] boolean matrix into one list of item names per row."""
    names = np.array(vocabulary, dtype=object)
    return [names[row].tolist() for row in present]


# --- Command line ----------------------------------------------------------------------

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    """`repairml data generate`: writes sessions as parquet spans, or with --raw the raw sources.

    Returns the exit code. Return visits (two sessions of one car) need sessions
    on different days, so a --raw data set with one span has none.

    Bad arguments or an unwritable output folder print a message on stderr and
    return 2.
    """
    parser = argparse.ArgumentParser(
        prog="repairml data generate",
        description="Write synthetic diagnostic sessions to OUT/span-K/sessions.parquet, "
                    "one folder per daily span; with --raw, the raw diagnostics and warranty "
                    "sources they are joined from.",
    )
    parser.add_argument("--rows", type=int, required=True, help="number of sessions (> 0)")
    parser.add_argument("--seed", type=int, required=True, help="random seed (>= 0); same seed, same data")
    parser.add_argument("--out", required=True, help="output folder, created if missing")
    parser.add_argument("--spans", type=int, default=1, help="number of daily spans, 1..rows (default 1)")
    parser.add_argument("--raw", action="store_true",
                        help="write the raw diagnostics and warranty sources (OUT/parquet/*.parquet and "
                             "OUT/raw_sources.sqlite) instead of the joined spans")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # argparse has printed the usage error or the help
        return int(exit_request.code or 0)

    if args.rows <= 0:
        return _usage_error(f"--rows must be positive, got {args.rows}")
    if not 1 <= args.spans <= args.rows:
        return _usage_error(f"--spans must be between 1 and --rows ({args.rows}), got {args.spans}")
    if args.seed < 0:
        return _usage_error(f"--seed must be non-negative, got {args.seed}")
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)  # fail before generating, not after
        frame = generate_sessions(rows=args.rows, seed=args.seed, spans=args.spans)
        if args.raw:
            raw = raw_sources(frame, seed=args.seed)
            _print_raw_summary(raw, write_raw_sources(raw, args.out))
        else:
            _print_spans_summary(frame, write_spans(frame, args.out))
    except OSError as error:
        return _usage_error(f"cannot write to --out {args.out!r}: {error.strerror or error}. "
                            f"Choose a folder you can write to.")
    return 0


def _print_spans_summary(frame: pd.DataFrame, paths: list[str]) -> None:
    for path, rows in zip(paths, frame.groupby("span").size()):
        print(f"wrote {rows} sessions to {path}")
    print(f"generated {len(frame)} sessions in {len(paths)} span(s): {len(LABELS)} labels, "
          f"{frame[LABEL_COLUMN].map(len).mean():.2f} labels per session on average")


def _print_raw_summary(raw: RawSources, paths: dict[str, str]) -> None:
    for name, frame in raw.tables().items():
        print(f"wrote {len(frame)} rows of {name} to {paths[name]}")
    print(f"wrote all {len(raw.tables())} tables to {paths['sqlite']}")
    counts = raw.mess_counts
    print(f"raw sources of {counts['sessions']} sessions: {counts['duplicate_uploads']} duplicate uploads, "
          f"{counts['messy_codes']} misspelled codes, {counts['fahrenheit_uploads']} uploads in degF, "
          f"{counts['return_visits']} return visits; {counts['valid_claims']} valid claims, "
          f"{counts['resubmitted_duplicates']} resubmitted, {counts['cancelled_claims']} cancelled, "
          f"{counts['orphan_claims']} orphans, {counts['superseded_part_lines']} superseded part lines")


def _usage_error(message: str) -> int:
    print(f"repairml data generate: error: {message}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
