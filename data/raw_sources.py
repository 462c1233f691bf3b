"""The raw diagnostics and warranty sources, taken apart from the generated sessions.

generate_sessions (generator.py) draws clean, already joined sessions. In the real
system that table does not exist until the data collection job (collection/)
builds it from two sources: the diagnostics database (workshop uploads and their
DTC readouts) and the warranty database (claims filed days to weeks later, in
part numbers and labour operation codes). raw_sources derives those sources, with
the mess real ones have, from the generated sessions, so that a correct join
recovers exactly the sessions and their labels, and the exact posterior
(posterior.py) still holds for them. write_raw_sources writes them as parquet
and SQLite files, the local stand-in for the BigQuery tables that
raw_sources.sql declares. `repairml data generate --raw` calls both.

The tables (RAW_SCHEMAS gives the exact columns and types):
  diagnostic_sessions  one row per upload: session_id (the upload id), vin,
                       workshop_id, country, session_ts (UTC, within the
                       session's date), the vehicle, battery_voltage,
                       coolant_temp with coolant_temp_unit ('degC' | 'degF'),
                       fuel_trim_pct, symptoms;
  diagnostic_dtcs      one row per DTC readout: session_id, control_unit, code;
  warranty_claims      claim_id, vin, workshop_id, repair_date, status
                       ('submitted' | 'cancelled'), part_numbers,
                       labour_op_codes, submitted_ts (UTC);
  part_reference       part_number -> label for current numbers; a superseded
                       number has no label and names its successor in
                       superseded_by (chains are at most two steps long);
  labour_reference     labour_op_code -> label.
The first upload of a session carries the generated session_id; a re-upload
continues the numbering (S7-00004000 after S7-00003999). Labels are the
warranty outcome: a session with no claim had no warranty repair, so a session
whose generated repair_labels are empty gets no claim at all, and every session
with labels gets exactly one valid claim listing exactly those labels.

The mess, each at a rate set in MessSettings:
  - duplicated uploads: the same content under a new upload id, 1 to 30 s later;
  - DTC codes in lower or mixed case and with leading or trailing spaces;
  - coolant temperature in degrees Fahrenheit from some markets (the US);
  - return visits: two sessions of one car 1 to 10 days apart (the earlier
    visit's repair is done by the day the car comes back);
  - resubmitted claims: the same content under a new claim id, submitted later;
  - cancelled claims: a first filing with a wrong part, cancelled and followed
    by the corrected valid claim, or a cancelled double filing of the valid one;
  - orphan claims, on VINs never seen in the diagnostics;
  - superseded part numbers on claims.

The rules that recover the generated sessions, in this order:
  1. uploads: uploads of one VIN less than DUPLICATE_UPLOAD_WINDOW_S apart are
     one session; keep the earliest (its session_id is the generated one), and
     drop the others' DTC rows;
  2. codes: remove spaces and upper-case; a session's dtcs are its codes as a set
     (a session without DTC rows has none);
  3. units: coolant_temp_c = coolant_temp where the unit is 'degC', else
     (coolant_temp - 32) * 5 / 9 (equal to the generated value within 1e-12
     relative); session_date = DATE(session_ts), span = days since the first
     session date;
  4. claims: drop cancelled claims; then among claims with the same vin,
     repair_date, part numbers and op codes keep the earliest submitted_ts;
  5. matching: a claim belongs to the session of its VIN with the latest
     session_ts on a date before its repair_date, if repair_date is at most
     max_claim_delay_days after that date; a claim with no such session is an
     orphan and is dropped;
  6. labels: map each part number through superseded_by to its current number
     and then to its label, each op code to its label; repair_labels is the
     set of both; a session without a claim has no labels.
List columns are sets: their order carries no meaning. RawSources.truth maps
each valid claim to its session, so tests can check a join without repeating it.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from statistics import NormalDist
from typing import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data.process import CAR_MODELS, COUNTRIES, DTCS, ENGINE_TYPES, LABEL_COLUMN, LABELS, OPERATIONS, PARTS

__all__ = [
    "MessSettings", "RawSources", "RAW_SCHEMAS", "TABLE_NAMES", "CONTROL_UNIT_BY_PREFIX",
    "DUPLICATE_UPLOAD_WINDOW_S", "raw_sources", "write_raw_sources", "control_unit_of",
]

# Two uploads of one VIN closer than this are one session uploaded twice: a car's
# genuine sessions are at least a day apart, a tester's re-upload seconds apart.
DUPLICATE_UPLOAD_WINDOW_S = 60
# The workshops of each country, as "{country}-W{k:03d}".
WORKSHOPS_PER_COUNTRY = 40
# Workshop hours in UTC: session_ts falls in them, so a re-upload stays on its day.
WORKSHOP_OPENS_S, WORKSHOP_CLOSES_S = 7 * 3600, 18 * 3600
# The control unit that reports a DTC, by the code's first characters (first match wins).
CONTROL_UNIT_BY_PREFIX = (("P0A", "HCU"), ("P", "ECM"), ("C", "ABS"), ("B", "BCM"), ("U", "GW"))
# Master data does not change with the sample: the reference tables use a fixed seed.
_REFERENCE_SEED = 20260101

_SESSION_COLUMNS = [
    "session_id", "session_date", "car_model", "engine_type", "country", "build_year", "mileage_km",
    "battery_voltage", "coolant_temp_c", "fuel_trim_pct", "dtcs", "symptoms", LABEL_COLUMN,
]
_US = 1_000_000  # microseconds per second
_DAY_US = 86_400 * _US


@dataclass(frozen=True)
class MessSettings:
    """How messy the raw sources are; every rate is a probability in [0, 1]."""

    # Share of sessions uploaded twice: the copy has the same content, a new upload id
    # and a session_ts 1..duplicate_upload_max_delay_s seconds later.
    duplicate_upload_rate: float = 0.03
    duplicate_upload_max_delay_s: int = 30
    # Share of DTC readout rows spelled in lower or mixed case and/or with leading or
    # trailing spaces ("p0300", " P0300", "P0a7E  ").
    messy_code_rate: float = 0.1
    # Markets whose testers may report coolant temperature in degrees Fahrenheit, and the
    # share of those markets' sessions that do (coolant_temp_unit 'degF').
    fahrenheit_markets: tuple[str, ...] = ("US",)
    fahrenheit_rate: float = 0.8
    # Share of sessions that are a car's return visit: the same VIN as another generated
    # session 1..return_visit_max_gap_days earlier with the same car model, engine, country
    # and build year and no higher mileage. Fewer when the data has too few candidates
    # (none with a single span); mess_counts['return_visits'] says how many.
    return_visit_rate: float = 0.04
    return_visit_max_gap_days: int = 10
    # A claim's repair_date is 1..max_claim_delay_days after its session (a discretised
    # log-normal delay with this median); the join window is the same N days.
    max_claim_delay_days: int = 45
    median_claim_delay_days: float = 4.0
    # Share of valid claims submitted once more: same content, a new claim id, 1 hour to
    # 10 days later.
    resubmitted_duplicate_rate: float = 0.04
    # Share of sessions with labels that also have a cancelled claim.
    cancelled_claim_rate: float = 0.05
    # Of those, the share where the cancelled claim was the first filing (with one wrong
    # part) and the valid claim its corrected resubmission 1..7 days later; in the others
    # the cancelled claim is a double filing of the valid one, withdrawn.
    cancelled_resubmitted_share: float = 0.6
    # Orphan claims (on a VIN never seen in the diagnostics) per valid claim.
    orphan_claim_rate: float = 0.02
    # Share of part lines, of parts that have older numbers, written with an older number.
    superseded_part_rate: float = 0.2

    def __post_init__(self):
        for setting in fields(self):
            value = getattr(self, setting.name)
            if setting.name.endswith(("_rate", "_share")) and not (
                    isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"MessSettings.{setting.name} must be a probability between 0 and 1, "
                                 f"got {value!r}")
        for name in ("duplicate_upload_max_delay_s", "return_visit_max_gap_days", "max_claim_delay_days"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MessSettings.{name} must be a positive whole number, got {value!r}")
        if self.duplicate_upload_max_delay_s >= DUPLICATE_UPLOAD_WINDOW_S:
            raise ValueError(f"MessSettings.duplicate_upload_max_delay_s must stay below the "
                             f"{DUPLICATE_UPLOAD_WINDOW_S} s duplicate-upload window, "
                             f"got {self.duplicate_upload_max_delay_s}")
        if not 0 < self.median_claim_delay_days < self.max_claim_delay_days:
            raise ValueError(f"MessSettings.median_claim_delay_days must be between 0 and "
                             f"max_claim_delay_days ({self.max_claim_delay_days}), "
                             f"got {self.median_claim_delay_days!r}")
        if isinstance(self.fahrenheit_markets, str) or not all(
                isinstance(market, str) for market in self.fahrenheit_markets):
            raise ValueError(f"MessSettings.fahrenheit_markets must be a tuple of country codes such as "
                             f"('US',), got {self.fahrenheit_markets!r}")
        unknown = sorted(set(self.fahrenheit_markets) - set(COUNTRIES))
        if unknown:
            raise ValueError(f"MessSettings.fahrenheit_markets names unknown countries {unknown}; "
                             f"the countries are {COUNTRIES}")


def _field(name: str, type_: pa.DataType, description: str, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


_TIMESTAMP = pa.timestamp("us", tz="UTC")
_STRINGS = pa.list_(pa.string())

# The raw tables' columns, in order; raw_sources.sql declares the same for BigQuery.
RAW_SCHEMAS: dict[str, pa.Schema] = {
    "diagnostic_sessions": pa.schema([
        _field("session_id", pa.string(), "upload id; a re-upload of a session gets a new one"),
        _field("vin", pa.string(), "vehicle identification number, 17 characters"),
        _field("workshop_id", pa.string(), "the workshop that ran the session"),
        _field("country", pa.string(), "the workshop's country, ISO 3166 alpha-2"),
        _field("session_ts", _TIMESTAMP, "when the session was uploaded, UTC"),
        _field("car_model", pa.string(), "car model"),
        _field("engine_type", pa.string(), "petrol, diesel, hybrid or ev"),
        _field("build_year", pa.int64(), "model year"),
        _field("mileage_km", pa.int64(), "odometer, km"),
        _field("battery_voltage", pa.float64(), "12 V net voltage, V; NULL when not recorded", True),
        _field("coolant_temp", pa.float64(),
               "coolant temperature in coolant_temp_unit; NULL when not recorded", True),
        _field("coolant_temp_unit", pa.string(), "'degC' or 'degF' (some US testers)"),
        _field("fuel_trim_pct", pa.float64(), "long-term fuel trim, %; NULL when not recorded", True),
        _field("symptoms", _STRINGS, "symptoms the customer reported"),
    ]),
    "diagnostic_dtcs": pa.schema([
        _field("session_id", pa.string(), "the upload the readout belongs to"),
        _field("control_unit", pa.string(), "the control unit that reported the code"),
        _field("code", pa.string(), "the code as the tester spelled it: case and spaces vary"),
    ]),
    "warranty_claims": pa.schema([
        _field("claim_id", pa.string(), "claim id; a resubmission gets a new one"),
        _field("vin", pa.string(), "vehicle identification number"),
        _field("workshop_id", pa.string(), "the workshop that filed the claim"),
        _field("repair_date", pa.date32(), "the day of the repair"),
        _field("status", pa.string(), "'submitted' or 'cancelled'"),
        _field("part_numbers", _STRINGS, "part numbers replaced, possibly superseded ones"),
        _field("labour_op_codes", _STRINGS, "labour operation codes performed"),
        _field("submitted_ts", _TIMESTAMP, "when the claim was submitted, UTC"),
    ]),
    "part_reference": pa.schema([
        _field("part_number", pa.string(), "part number"),
        _field("label", pa.string(), "repair label, e.g. part:battery_12v; NULL for a superseded number",
               True),
        _field("superseded_by", pa.string(), "the number that replaced this one; NULL for a current number",
               True),
        _field("description", pa.string(), "part description"),
    ]),
    "labour_reference": pa.schema([
        _field("labour_op_code", pa.string(), "labour operation code"),
        _field("label", pa.string(), "repair label, e.g. op:replace_12v_battery"),
        _field("description", pa.string(), "operation description"),
    ]),
}
TABLE_NAMES = tuple(RAW_SCHEMAS)


@dataclass(frozen=True, eq=False)
class RawSources:
    """The five raw tables, and the ground truth a correct join must reproduce.

    truth and mess_counts are not raw tables and are never written: truth has one
    row per valid claim (claim_id, session_id); mess_counts says how many of each
    kind of mess were injected (the collection job's rule counts should match).
    """

    diagnostic_sessions: pd.DataFrame
    diagnostic_dtcs: pd.DataFrame
    warranty_claims: pd.DataFrame
    part_reference: pd.DataFrame
    labour_reference: pd.DataFrame
    truth: pd.DataFrame
    mess_counts: Mapping[str, int] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The raw tables by name, in TABLE_NAMES order."""
        return {name: getattr(self, name) for name in TABLE_NAMES}


def control_unit_of(code: str) -> str:
    """The control unit that reports a (clean) DTC, from CONTROL_UNIT_BY_PREFIX."""
    for prefix, unit in CONTROL_UNIT_BY_PREFIX:
        if code.startswith(prefix):
            return unit
    raise ValueError(f"no control unit reports DTC {code!r}: add its prefix to CONTROL_UNIT_BY_PREFIX")


def raw_sources(sessions: pd.DataFrame, seed: int, settings: MessSettings = MessSettings()) -> RawSources:
    """Derives the raw diagnostics and warranty tables from generated sessions.

    sessions is a frame as generate_sessions returns it; the same sessions, seed
    and settings give the same tables. Cars, uploads, codes, units, claims and
    orphan claims draw from separate random streams, so that, for example, another
    duplicate-upload rate leaves the VINs, the codes and the claims as they were.
    """
    _check_sessions(sessions)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(settings, MessSettings):
        raise ValueError(f"settings must be a MessSettings, got {type(settings).__name__}")
    streams = dict(zip(
        ["cars", "uploads", "codes", "units", "claims", "orphans"],
        (np.random.default_rng(child) for child in np.random.SeedSequence(int(seed)).spawn(6))))

    sessions = sessions.reset_index(drop=True)
    day = _days_since_epoch(sessions["session_date"])
    part_reference, labour_reference = _part_reference(), _labour_reference()

    earlier_visit = _pair_return_visits(sessions, day, streams["cars"], settings)
    vin, workshop_id, orphan_cars = _assign_cars(sessions, earlier_visit, streams["cars"], settings)
    session_ts = day * _DAY_US + _workshop_time_us(streams["uploads"], len(sessions))
    uploads, duplicate_of = _uploads(sessions, vin, workshop_id, session_ts, streams["uploads"],
                                     streams["units"], settings)
    readouts = _dtc_readouts(sessions, uploads, duplicate_of, streams["codes"], settings)

    catalogue = _Catalogue(part_reference, labour_reference)
    longest_delay = _longest_repair_delay(day, earlier_visit, settings)
    claims, claim_counts = _claims(sessions, vin, workshop_id, day, longest_delay, catalogue,
                                   streams["claims"], settings)
    orphans = _orphan_claims(sessions, orphan_cars, day, catalogue, streams["orphans"], settings)
    claims, truth = _number_claims(claims + orphans, seed)

    mess_counts = {
        "sessions": len(sessions),
        "uploads": len(uploads),
        "duplicate_uploads": int((duplicate_of >= 0).sum()),
        "dtc_readouts": len(readouts),
        "messy_codes": int((readouts["code"] != readouts["code"].str.strip().str.upper()).sum()),
        "fahrenheit_uploads": int((uploads["coolant_temp_unit"] == "degF").sum()),
        "return_visits": int((earlier_visit >= 0).sum()),
        **claim_counts,
        "orphan_claims": len(orphans),
        "claims": len(claims),
    }
    return RawSources(
        diagnostic_sessions=uploads, diagnostic_dtcs=readouts, warranty_claims=claims,
        part_reference=part_reference, labour_reference=labour_reference,
        truth=truth, mess_counts=mess_counts,
    )


def write_raw_sources(raw: RawSources, out_dir: str | os.PathLike) -> dict[str, str]:
    """Writes out_dir/parquet/{table}.parquet and out_dir/raw_sources.sqlite; returns the paths.

    The keys are the table names (their parquet files) and 'sqlite'. Lists are
    parquet list columns; in SQLite they are JSON arrays as TEXT, timestamps are
    ISO 8601 TEXT in UTC ('2026-01-01T08:15:02.000000Z'), dates 'YYYY-MM-DD' and
    missing readings NULL. Each file is written under a temporary name beside its
    final one and renamed into place, so a reader never sees a half-written file;
    the files are replaced one after another, the SQLite file last.
    """
    if not isinstance(raw, RawSources):
        raise ValueError(f"raw must be the RawSources that raw_sources returns, got {type(raw).__name__}")
    out_dir = Path(out_dir)
    parquet_dir = out_dir / "parquet"
    parquet_dir.mkdir(parents=True, exist_ok=True)
    arrow_tables = {name: pa.Table.from_pandas(frame, schema=RAW_SCHEMAS[name], preserve_index=False)
                    for name, frame in raw.tables().items()}
    paths = {}
    for name, table in arrow_tables.items():
        paths[name] = str(_write_atomically(parquet_dir / f"{name}.parquet",
                                            lambda temporary, table=table: pq.write_table(table, temporary)))
    paths["sqlite"] = str(_write_atomically(out_dir / "raw_sources.sqlite",
                                            lambda temporary: _write_sqlite(arrow_tables, temporary)))
    return paths


# --- Cars, uploads and readouts ---------------------------------------------------------


def _check_sessions(sessions: pd.DataFrame) -> None:
    if not isinstance(sessions, pd.DataFrame):
        raise ValueError(f"sessions must be a pandas DataFrame as generate_sessions returns, "
                         f"got {type(sessions).__name__}")
    missing = [column for column in _SESSION_COLUMNS if column not in sessions.columns]
    if missing:
        raise ValueError(f"sessions is missing the columns {missing}: "
                         f"pass the frame generate_sessions returns")
    if sessions.empty:
        raise ValueError("sessions is empty: there is nothing to take apart")
    repeated = sessions["session_id"][sessions["session_id"].duplicated()]
    if len(repeated):
        raise ValueError(f"sessions has repeated session_id values, e.g. {repeated.iloc[0]!r}: "
                         f"each generated session must have its own id")
    unknown = sorted({label for labels in sessions[LABEL_COLUMN] for label in labels} - set(LABELS))
    if unknown:
        raise ValueError(f"sessions has repair labels outside the label vocabulary: {unknown[:5]}")
    unknown = sorted({code for codes in sessions["dtcs"] for code in codes} - set(DTCS))
    if unknown:
        raise ValueError(f"sessions has DTCs outside the code list: {unknown[:5]}")


def _days_since_epoch(session_date: pd.Series) -> np.ndarray:
    try:
        dates = pd.to_datetime(session_date, format="%Y-%m-%d")
    except (ValueError, TypeError) as error:
        raise ValueError(f"sessions.session_date must hold 'YYYY-MM-DD' dates: {error}") from error
    return (dates.values.astype("datetime64[D]").astype(np.int64)).astype(np.int64)


def _workshop_time_us(rng: np.random.Generator, count: int) -> np.ndarray:
    """Times of day in workshop hours, whole seconds, in microseconds."""
    return rng.integers(WORKSHOP_OPENS_S, WORKSHOP_CLOSES_S, size=count).astype(np.int64) * _US


def _pair_return_visits(sessions: pd.DataFrame, day: np.ndarray, rng: np.random.Generator,
                        settings: MessSettings) -> np.ndarray:
    """For each session, the index of the same car's earlier session, or -1.

    A return visit is a generated session that has an unpaired partner with the same
    car model, engine type, country and build year, 1..max gap days earlier and with
    no higher mileage; of those it takes the closest odometer reading. Each car has
    at most two sessions.
    """
    earlier_visit = np.full(len(sessions), -1, dtype=np.int64)
    target = int(round(settings.return_visit_rate * len(sessions)))
    if target == 0 or len(np.unique(day)) < 2:
        return earlier_visit
    car_kind = sessions.groupby(["car_model", "engine_type", "country", "build_year"]).ngroup().to_numpy()
    by_kind = np.argsort(car_kind, kind="stable")
    kind_starts = np.flatnonzero(np.diff(car_kind[by_kind])) + 1
    members = dict(zip(np.unique(car_kind), np.split(by_kind, kind_starts)))
    mileage = sessions["mileage_km"].to_numpy()
    paired = np.zeros(len(sessions), dtype=bool)
    made = 0
    for later in rng.permutation(len(sessions)):
        if made == target:
            break
        if paired[later]:
            continue
        candidates = members[car_kind[later]]
        gap = day[later] - day[candidates]
        possible = ((~paired[candidates]) & (gap >= 1) & (gap <= settings.return_visit_max_gap_days)
                    & (mileage[candidates] <= mileage[later]))
        if not possible.any():
            continue
        earlier = candidates[possible][np.argmax(mileage[candidates[possible]])]
        earlier_visit[later] = earlier
        paired[[later, earlier]] = True
        made += 1
    return earlier_visit


def _assign_cars(sessions: pd.DataFrame, earlier_visit: np.ndarray, rng: np.random.Generator,
                 settings: MessSettings):
    """VIN and workshop per session (a return visit inherits both), and one car per orphan claim.

    Orphan cars are drawn with the session cars, so their VINs never occur in the
    diagnostics; there are orphan_claim_rate per valid claim (binomial). Returns
    (vin, workshop_id, orphan_cars), orphan_cars a frame of vin and workshop_id.
    """
    sessions_count = len(sessions)
    first_visit = earlier_visit < 0
    car_of_session = np.cumsum(first_visit) - 1  # a car per first visit, in session order
    later = np.flatnonzero(~first_visit)
    car_of_session[later] = car_of_session[earlier_visit[later]]
    cars = int(first_visit.sum())
    labelled = int((sessions[LABEL_COLUMN].map(len) > 0).sum())
    orphan_count = int(rng.binomial(labelled, settings.orphan_claim_rate))

    # Orphan cars look like the fleet: each copies a random session's vehicle.
    template = np.concatenate([np.flatnonzero(first_visit), rng.integers(0, sessions_count, orphan_count)])
    vins = _vins(sessions.iloc[template], rng)
    workshops = _workshops(sessions["country"].to_numpy()[template], rng)
    return (vins[car_of_session], workshops[car_of_session],
            pd.DataFrame({"vin": vins[cars:], "workshop_id": workshops[cars:]}))


def _workshops(country: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    number = rng.integers(1, WORKSHOPS_PER_COUNTRY + 1, size=len(country))
    return np.array([f"{c}-W{k:03d}" for c, k in zip(country, number)], dtype=object)


_VIN_CHARACTERS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # I, O and Q are never used
_VIN_VALUES = {**{str(d): d for d in range(10)},
               **dict(zip("ABCDEFGH", range(1, 9))), **dict(zip("JKLMN", range(1, 6))), "P": 7, "R": 9,
               **dict(zip("STUVWXYZ", range(2, 10)))}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_MODEL_YEAR_CODES = dict(zip(range(2001, 2031), "123456789ABCDEFGHJKLMNPRSTVWXY"))
_WMI = "WRM"  # the (fictional) manufacturer
_PLANTS = "ABCDEFGH"
_MODEL_CODES = dict(zip(CAR_MODELS, "ABCDEFGHJK"))
_ENGINE_CODES = dict(zip(ENGINE_TYPES, "PDHE"))


def _vins(vehicles: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """One unique, check-digit-valid VIN (ISO 3779) per row of vehicles.

    Positions: 1-3 maker, 4 car model, 5 engine type, 6-8 variant, 9 check digit,
    10 model year (the build year), 11 plant, 12-17 serial number.
    """
    count = len(vehicles)
    if count > len(_PLANTS) * 1_000_000:
        raise ValueError(f"{count} cars need more VINs than the {len(_PLANTS)} plants' serial numbers allow")
    plant_serial = rng.choice(len(_PLANTS) * 1_000_000, size=count, replace=False)
    variant = rng.integers(0, len(_VIN_CHARACTERS), size=(count, 3))
    vins = []
    vehicle_rows = vehicles[["car_model", "engine_type", "build_year"]].itertuples(index=False)
    for (model, engine, year), (v1, v2, v3), number in zip(vehicle_rows, variant, plant_serial):
        if year not in _MODEL_YEAR_CODES:
            raise ValueError(f"build_year {year} has no VIN model-year code (2001-2030)")
        body = (f"{_WMI}{_MODEL_CODES[model]}{_ENGINE_CODES[engine]}"
                f"{_VIN_CHARACTERS[v1]}{_VIN_CHARACTERS[v2]}{_VIN_CHARACTERS[v3]}")
        tail = f"{_MODEL_YEAR_CODES[year]}{_PLANTS[number // 1_000_000]}{number % 1_000_000:06d}"
        vins.append(body + _vin_check_digit(body + "0" + tail) + tail)
    return np.array(vins, dtype=object)


def _vin_check_digit(vin: str) -> str:
    remainder = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS)) % 11
    return "X" if remainder == 10 else str(remainder)


def _uploads(sessions: pd.DataFrame, vin: np.ndarray, workshop_id: np.ndarray, session_ts: np.ndarray,
             rng: np.random.Generator, unit_rng: np.random.Generator, settings: MessSettings):
    """diagnostic_sessions, and for each upload the session index it duplicates (-1 for originals)."""
    fahrenheit = (sessions["country"].isin(settings.fahrenheit_markets).to_numpy()
                  & (unit_rng.random(len(sessions)) < settings.fahrenheit_rate))
    coolant_c = sessions["coolant_temp_c"].to_numpy(dtype=float)
    originals = pd.DataFrame({
        "session_id": sessions["session_id"].astype(str).to_numpy(),
        "vin": vin,
        "workshop_id": workshop_id,
        "country": sessions["country"].to_numpy(),
        "session_ts": session_ts,
        "car_model": sessions["car_model"].to_numpy(),
        "engine_type": sessions["engine_type"].to_numpy(),
        "build_year": sessions["build_year"].to_numpy(dtype=np.int64),
        "mileage_km": sessions["mileage_km"].to_numpy(dtype=np.int64),
        "battery_voltage": sessions["battery_voltage"].to_numpy(dtype=float),
        "coolant_temp": np.where(fahrenheit, coolant_c * 9.0 / 5.0 + 32.0, coolant_c),
        "coolant_temp_unit": np.where(fahrenheit, "degF", "degC").astype(object),
        "fuel_trim_pct": sessions["fuel_trim_pct"].to_numpy(dtype=float),
        "symptoms": [list(symptoms) for symptoms in sessions["symptoms"]],
    })
    duplicated = np.flatnonzero(rng.random(len(sessions)) < settings.duplicate_upload_rate)
    copies = originals.iloc[duplicated].copy()
    copies["session_id"] = _new_upload_ids(originals["session_id"], len(copies))
    copies["session_ts"] += rng.integers(1, settings.duplicate_upload_max_delay_s + 1, size=len(copies)) * _US
    copies["symptoms"] = [list(symptoms) for symptoms in copies["symptoms"]]
    uploads = pd.concat([originals, copies], ignore_index=True)
    duplicate_of = np.concatenate([np.full(len(originals), -1), duplicated])
    order = np.lexsort((uploads["session_id"].to_numpy(), uploads["session_ts"].to_numpy()))
    uploads = uploads.iloc[order].reset_index(drop=True)
    uploads["session_ts"] = pd.to_datetime(uploads["session_ts"], unit="us", utc=True)
    return uploads, duplicate_of[order]


def _new_upload_ids(existing: pd.Series, count: int) -> list[str]:
    """Upload ids that continue the sessions' own numbering ("S11-00004000" after "S11-00003999")."""
    parts = existing.str.extract(r"^(.*?)(\d+)$")
    if parts.notna().all(axis=None) and parts[0].nunique() == 1:
        stem, width = parts[0].iloc[0], parts[1].str.len().max()
        start = int(parts[1].astype(np.int64).max()) + 1
    else:
        stem, width, start = "upload-", 8, 0
    ids = [f"{stem}{number:0{width}d}" for number in range(start, start + count)]
    clashes = set(ids) & set(existing)
    if clashes:
        raise ValueError(f"cannot number duplicate uploads: {sorted(clashes)[:3]} are session ids already; "
                         f"give the sessions ids of one form, such as generate_sessions' 'S<seed>-<number>'")
    return ids


def _dtc_readouts(sessions: pd.DataFrame, uploads: pd.DataFrame, duplicate_of: np.ndarray,
                  rng: np.random.Generator, settings: MessSettings) -> pd.DataFrame:
    """diagnostic_dtcs: each session's codes, some misspelled; a re-upload repeats its original's rows."""
    session_ids = sessions["session_id"].astype(str).to_numpy()
    spelled = []  # per session, its readout rows as (control_unit, code)
    for codes in sessions["dtcs"]:
        messy = rng.random(len(codes)) < settings.messy_code_rate
        spelled.append([(control_unit_of(code), _misspell(code, rng) if is_messy else code)
                        for code, is_messy in zip(codes, messy)])
    upload_session = np.where(duplicate_of >= 0, duplicate_of,
                              pd.Index(session_ids).get_indexer(uploads["session_id"]))
    rows = [(upload_id, unit, code)
            for upload_id, session in zip(uploads["session_id"], upload_session)
            for unit, code in spelled[session]]
    return pd.DataFrame(rows, columns=["session_id", "control_unit", "code"]).astype(object)


def _misspell(code: str, rng: np.random.Generator) -> str:
    """The code in lower or mixed case, and/or with spaces around it: never the clean spelling."""
    kind = rng.integers(0, 4)  # 0 lower, 1 mixed, 2 spaces, 3 lower with spaces
    if kind in (0, 3):
        code = code.lower()
    elif kind == 1:
        flips = rng.random(len(code)) < 0.5
        flips[0] = True  # the first character is always a letter: flipping it guarantees a change
        code = "".join(c.lower() if flip else c for c, flip in zip(code, flips))
    if kind in (2, 3):
        leading, trailing = rng.integers(0, 3, size=2)
        if leading + trailing == 0:
            trailing = 1
        code = " " * leading + code + " " * trailing
    return code


# --- Reference tables -------------------------------------------------------------------


def _part_reference() -> pd.DataFrame:
    """One current number per part label, "RM-483920-C"; some parts have 1 or 2 older revisions.

    An older revision ("-A", "-B") has no label and is superseded by the next one.
    """
    rng = np.random.default_rng(_REFERENCE_SEED)
    bases = rng.choice(900_000, size=len(PARTS), replace=False) + 100_000
    older_revisions = rng.choice(3, size=len(PARTS), p=[0.3, 0.5, 0.2])
    rows = []
    for part, base, older in zip(PARTS, bases, older_revisions):
        description = part.removeprefix("part:").replace("_", " ")
        numbers = [f"RM-{base}-{chr(ord('A') + revision)}" for revision in range(older + 1)]
        for number, successor in zip(numbers[:-1], numbers[1:]):
            rows.append((number, None, successor, f"{description} (superseded)"))
        rows.append((numbers[-1], part, None, description))
    return pd.DataFrame(rows, columns=["part_number", "label", "superseded_by", "description"]).astype(object)


def _labour_reference() -> pd.DataFrame:
    """One six-digit labour operation code per operation label."""
    rng = np.random.default_rng(_REFERENCE_SEED + 1)
    codes = rng.choice(900_000, size=len(OPERATIONS), replace=False) + 100_000
    return pd.DataFrame({
        "labour_op_code": [str(code) for code in codes],
        "label": list(OPERATIONS),
        "description": [operation.removeprefix("op:").replace("_", " ") for operation in OPERATIONS],
    }).astype(object)


class _Catalogue:
    """The numbers a claim can use for each label: the current part number, older ones, the op code."""

    def __init__(self, part_reference: pd.DataFrame, labour_reference: pd.DataFrame):
        successor = dict(zip(part_reference["part_number"], part_reference["superseded_by"]))
        label_of = dict(zip(part_reference["part_number"], part_reference["label"]))
        self.current_number: dict[str, str] = {}
        self.older_numbers: dict[str, list[str]] = {}
        for number in part_reference["part_number"]:
            head = number
            while successor[head] is not None:
                head = successor[head]
            if head == number:
                self.current_number[label_of[number]] = number
            else:
                self.older_numbers.setdefault(label_of[head], []).append(number)
        self.op_code: dict[str, str] = dict(zip(labour_reference["label"],
                                                labour_reference["labour_op_code"]))

    def claim_lines(self, labels, rng: np.random.Generator, settings: MessSettings):
        """(part_numbers, labour_op_codes, superseded lines) for a set of labels."""
        part_numbers, superseded = [], 0
        for label in labels:
            if label not in self.current_number:
                continue
            older = self.older_numbers.get(label, [])
            if older and rng.random() < settings.superseded_part_rate:
                part_numbers.append(older[rng.integers(0, len(older))])
                superseded += 1
            else:
                part_numbers.append(self.current_number[label])
        op_codes = [self.op_code[label] for label in labels if label in self.op_code]
        return part_numbers, op_codes, superseded


# --- Claims -----------------------------------------------------------------------------


def _longest_repair_delay(day: np.ndarray, earlier_visit: np.ndarray, settings: MessSettings) -> np.ndarray:
    """Per session, the most days its repair may come after it: the claim window, or the
    days until the car's return visit, so that the nearest preceding session stays its own."""
    longest = np.full(len(day), settings.max_claim_delay_days)
    later = np.flatnonzero(earlier_visit >= 0)
    days_to_return = day[later] - day[earlier_visit[later]]
    longest[earlier_visit[later]] = np.minimum(days_to_return, settings.max_claim_delay_days)
    return longest


def _claim_delay_cdf(settings: MessSettings) -> np.ndarray:
    """cdf[d - 1] = P(delay <= d) for d = 1..max: 1 + floor of a log-normal, truncated at max."""
    sigma = 0.9
    normal = NormalDist(mu=math.log(settings.median_claim_delay_days - 0.5), sigma=sigma)
    cdf = np.array([normal.cdf(math.log(d)) for d in range(1, settings.max_claim_delay_days + 1)])
    return cdf / cdf[-1]


def _claims(sessions: pd.DataFrame, vin: np.ndarray, workshop_id: np.ndarray, day: np.ndarray,
            longest_delay: np.ndarray, catalogue: _Catalogue, rng: np.random.Generator,
            settings: MessSettings):
    """Claims for the sessions with labels: one valid claim each, plus duplicates and cancellations.

    A session followed by a return visit has its repair on or before the return
    visit's date (longest_delay), so the nearest preceding session is still its own.
    Returns (claim rows without ids, counts); a row's "session_id" is its truth,
    set only on valid claims.
    """
    labelled = np.flatnonzero(sessions[LABEL_COLUMN].map(len).to_numpy() > 0)
    cdf = _claim_delay_cdf(settings)
    limit = longest_delay[labelled]
    delay = np.searchsorted(cdf, rng.random(len(labelled)) * cdf[limit - 1], side="left") + 1
    repair_day = day[labelled] + np.minimum(delay, limit)
    submitted_us = ((repair_day + rng.choice(4, size=len(labelled), p=[0.4, 0.3, 0.2, 0.1])) * _DAY_US
                    + _workshop_time_us(rng, len(labelled)))
    resubmitted = rng.random(len(labelled)) < settings.resubmitted_duplicate_rate
    cancelled = rng.random(len(labelled)) < settings.cancelled_claim_rate
    cancelled_first = cancelled & (rng.random(len(labelled)) < settings.cancelled_resubmitted_share)

    rows, superseded_lines, part_lines = [], 0, 0
    session_ids = sessions["session_id"].astype(str).to_numpy()
    session_labels = sessions[LABEL_COLUMN].to_list()
    for k, session in enumerate(labelled):
        labels = list(session_labels[session])
        part_numbers, op_codes, superseded = catalogue.claim_lines(labels, rng, settings)
        superseded_lines += superseded
        part_lines += sum(label in catalogue.older_numbers for label in labels)
        claim = {"vin": vin[session], "workshop_id": workshop_id[session],
                 "repair_date": _date_of(repair_day[k]), "status": "submitted",
                 "part_numbers": part_numbers, "labour_op_codes": op_codes,
                 "submitted_us": int(submitted_us[k])}
        if cancelled_first[k]:
            wrong_part = _wrong_part(labels, catalogue, rng)
            rows.append({**claim, "status": "cancelled", "part_numbers": part_numbers + [wrong_part]})
            claim["submitted_us"] += int(rng.integers(1 * 86_400, 7 * 86_400 + 1)) * _US
        elif cancelled[k]:
            withdrawn_after_s = int(rng.integers(3600, 3 * 86_400 + 1))
            rows.append({**claim, "status": "cancelled",
                         "submitted_us": claim["submitted_us"] + withdrawn_after_s * _US})
        rows.append({**claim, "session_id": session_ids[session]})
        if resubmitted[k]:
            rows.append({**claim, "submitted_us": claim["submitted_us"]
                         + int(rng.integers(3600, 10 * 86_400 + 1)) * _US})
    counts = {
        "valid_claims": len(labelled),
        "resubmitted_duplicates": int(resubmitted.sum()),
        "cancelled_claims": int(cancelled.sum()),
        "cancelled_then_resubmitted": int(cancelled_first.sum()),
        "part_lines_with_older_numbers": part_lines,
        "superseded_part_lines": superseded_lines,
    }
    return rows, counts


def _wrong_part(labels, catalogue: _Catalogue, rng: np.random.Generator) -> str:
    """The current number of a part the session did not need: the filing error a cancellation fixes."""
    others = [part for part in PARTS if part not in labels]
    return catalogue.current_number[others[rng.integers(0, len(others))]]


def _orphan_claims(sessions: pd.DataFrame, orphan_cars: pd.DataFrame, day: np.ndarray,
                   catalogue: _Catalogue, rng: np.random.Generator, settings: MessSettings) -> list[dict]:
    """One claim per orphan car, with labels copied from a random session with labels.

    Its repair date falls anywhere from the day after the first session to
    max_claim_delay_days after the last.
    """
    count = len(orphan_cars)
    labelled = np.flatnonzero(sessions[LABEL_COLUMN].map(len).to_numpy() > 0)
    if count == 0 or len(labelled) == 0:
        return []
    label_source = labelled[rng.integers(0, len(labelled), size=count)]
    repair_day = rng.integers(day.min() + 1, day.max() + settings.max_claim_delay_days + 1, size=count)
    submitted_us = (repair_day + rng.integers(0, 4, size=count)) * _DAY_US + _workshop_time_us(rng, count)
    rows, session_labels = [], sessions[LABEL_COLUMN].to_list()
    for k in range(count):
        labels = list(session_labels[label_source[k]])
        part_numbers, op_codes, _ = catalogue.claim_lines(labels, rng, settings)
        rows.append({"vin": orphan_cars["vin"].iat[k], "workshop_id": orphan_cars["workshop_id"].iat[k],
                     "repair_date": _date_of(repair_day[k]), "status": "submitted",
                     "part_numbers": part_numbers, "labour_op_codes": op_codes,
                     "submitted_us": int(submitted_us[k])})
    return rows


def _number_claims(rows: list[dict], seed: int):
    """warranty_claims in submission order with claim ids "WC<seed>-<n>", and the truth frame."""
    frame = pd.DataFrame(rows, columns=["vin", "workshop_id", "repair_date", "status", "part_numbers",
                                        "labour_op_codes", "submitted_us", "session_id"])
    frame = frame.sort_values("submitted_us", kind="stable").reset_index(drop=True)
    frame.insert(0, "claim_id", [f"WC{seed}-{n:08d}" for n in range(len(frame))])
    frame["submitted_ts"] = pd.to_datetime(frame["submitted_us"], unit="us", utc=True)
    truth = frame.loc[frame["session_id"].notna(), ["claim_id", "session_id"]].reset_index(drop=True)
    claims = frame[[f.name for f in RAW_SCHEMAS["warranty_claims"]]].copy()
    return claims, truth


def _date_of(day: int):
    return (np.datetime64(int(day), "D")).astype(object)


# --- Writing ------------------------------------------------------------------------------


def _write_atomically(path: Path, write) -> Path:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


_SQLITE_TYPES = {pa.string(): "TEXT", pa.int64(): "INTEGER", pa.float64(): "REAL"}


def _sqlite_type(type_: pa.DataType) -> str:
    return _SQLITE_TYPES.get(type_, "TEXT")  # timestamps, dates and lists are TEXT


def _sqlite_values(column: pa.ChunkedArray) -> list:
    """A column as the Python values SQLite stores: JSON for lists, ISO 8601 text for times."""
    if pa.types.is_list(column.type):
        return [json.dumps(items) for items in column.to_pylist()]
    if pa.types.is_timestamp(column.type):  # Arrow prints the seconds with their 6 decimals
        return pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ").to_pylist()
    if pa.types.is_date(column.type):
        return column.cast(pa.string()).to_pylist()
    if pa.types.is_floating(column.type):
        return [None if value is None or math.isnan(value) else value for value in column.to_pylist()]
    return column.to_pylist()


def _write_sqlite(tables: dict[str, pa.Table], path: Path) -> None:
    connection = sqlite3.connect(path)
    try:
        with connection:
            for name, table in tables.items():
                columns = ", ".join(f'"{f.name}" {_sqlite_type(f.type)}{"" if f.nullable else " NOT NULL"}'
                                    for f in table.schema)
                connection.execute(f'CREATE TABLE "{name}" ({columns})')
                values = list(zip(*(_sqlite_values(table.column(f.name)) for f in table.schema)))
                placeholders = ", ".join("?" * table.num_columns)
                connection.executemany(f'INSERT INTO "{name}" VALUES ({placeholders})', values)
    finally:
        connection.close()
