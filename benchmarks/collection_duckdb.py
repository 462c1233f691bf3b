"""The collection job's join and clean in DuckDB alone: the benchmark's comparison, not a second product path.

benchmarks/collection_speed.py times the Spark job (collection/job.py) against
this: the same rules (collection/rules.py, in their docstring's order) over the
same selection (STAGING/selection/TABLE.parquet), as DuckDB SQL in one process.
The benchmark only counts a figure when both give the same content fingerprint
for every span (collection.spans.content_fingerprint), so the two do the same
work. The sessions table only: no exploration rows and no rule counts.
"""
from __future__ import annotations

import datetime
import os

import duckdb
import pyarrow as pa

from collection.dates import DateRange
from collection.rules import CollectionRules
from data.generator import SESSION_SCHEMA

_SQL = """
WITH RECURSIVE uploads AS (
  SELECT *, session_ts - lag(session_ts) OVER (PARTITION BY vin ORDER BY session_ts, session_id) AS gap
  FROM read_parquet($sessions)
), kept AS (  -- 1. an upload less than the window after the VIN's previous one is a re-upload
  SELECT * FROM uploads WHERE gap IS NULL OR gap >= to_seconds($window_s)
), codes AS (  -- 2. normalised codes, as a set per session
  SELECT d.session_id, list_sort(list_distinct(list({code}))) AS dtcs
  FROM read_parquet($dtcs) d JOIN kept USING (session_id) GROUP BY d.session_id
), units AS (SELECT * FROM (VALUES {units}) AS u(unit, "offset", scale)
), sessions AS (  -- 3. units
  SELECT k.session_id, CAST(k.session_ts AS DATE) AS day, k.vin, k.session_ts, k.car_model, k.engine_type,
         k.country, k.build_year, k.mileage_km, k.battery_voltage,
         (k.coolant_temp + u."offset") * u.scale AS coolant_temp_c, k.fuel_trim_pct,
         coalesce(c.dtcs, []) AS dtcs, list_sort(list_distinct(coalesce(k.symptoms, []))) AS symptoms
  FROM kept k LEFT JOIN units u ON u.unit = k.coolant_temp_unit LEFT JOIN codes c USING (session_id)
), claims AS (  -- 4. cancelled claims out, then the earliest of each resubmitted claim
  SELECT * FROM read_parquet($claims) WHERE NOT list_contains($drop_statuses, status)
  QUALIFY row_number() OVER (PARTITION BY {duplicate_key} ORDER BY submitted_ts, claim_id) = 1
), matched AS (  -- 5. the VIN's latest session in the claim window
  SELECT cl.claim_id, s.session_id, cl.part_numbers, cl.labour_op_codes
  FROM claims cl JOIN sessions s ON s.vin = cl.vin
   AND cl.repair_date - s.day BETWEEN $min_delay AND $max_delay
  QUALIFY row_number() OVER (PARTITION BY cl.claim_id ORDER BY s.session_ts DESC, s.session_id DESC) = 1
), parts AS (  -- 6. supersession, followed step by step
  SELECT part_number AS number, part_number AS current, 0 AS steps FROM read_parquet($part_reference)
  UNION ALL
  SELECT p.number, r.superseded_by, p.steps + 1 FROM parts p JOIN read_parquet($part_reference) r
    ON r.part_number = p.current AND r.superseded_by IS NOT NULL WHERE p.steps < $max_steps
), part_labels AS (
  SELECT p.number, r.label FROM parts p JOIN read_parquet($part_reference) r ON r.part_number = p.current
  WHERE r.label IS NOT NULL
), labels AS (
  SELECT m.session_id, pl.label FROM matched m, unnest(m.part_numbers) AS t(number)
    JOIN part_labels pl ON pl.number = t.number
  UNION
  SELECT m.session_id, lr.label FROM matched m, unnest(m.labour_op_codes) AS t(code)
    JOIN read_parquet($labour_reference) lr ON lr.labour_op_code = t.code
)
SELECT s.session_id, strftime(s.day, '%Y-%m-%d') AS session_date, CAST(s.day - $epoch AS BIGINT) AS span,
       s.car_model, s.engine_type, s.country, s.build_year, s.mileage_km, s.battery_voltage, s.coolant_temp_c,
       s.fuel_trim_pct, s.dtcs, s.symptoms,
       list_sort(coalesce((SELECT list(l.label) FROM labels l WHERE l.session_id = s.session_id), [])) AS repair_labels
FROM sessions s WHERE s.day BETWEEN $first AND $last ORDER BY s.session_id
"""


def join_with_duckdb(selection_dir: str, rules: CollectionRules, date_range: DateRange, span_epoch: str,
                     threads: int = 2) -> pa.Table:
    """The collected sessions of date_range, in SESSION_SCHEMA, from a selection folder."""
    units = ", ".join(f"('{unit}', {c.offset!r}, {c.scale!r})" for unit, c in rules.coolant_temp_units.items())
    code = "replace(d.code, ' ', '')" if rules.strip_code_spaces else "d.code"
    sql = _SQL.format(units=units, code=f"upper({code})" if rules.upper_case_codes else code,
                      duplicate_key=", ".join(_key_expression(c) for c in rules.claim_duplicate_key))
    parameters = {
        **{name: os.path.join(selection_dir, f"{table}.parquet") for name, table in [
            ("sessions", "diagnostic_sessions"), ("dtcs", "diagnostic_dtcs"), ("claims", "warranty_claims"),
            ("part_reference", "part_reference"), ("labour_reference", "labour_reference")]},
        "window_s": rules.duplicate_upload_window_s, "drop_statuses": list(rules.drop_claim_statuses),
        "min_delay": rules.min_claim_delay_days, "max_delay": rules.max_claim_delay_days,
        "max_steps": rules.max_supersession_steps, "epoch": datetime.date.fromisoformat(span_epoch),
        "first": date_range.first, "last": date_range.last,
    }
    with duckdb.connect(config={"threads": threads}) as db:
        db.execute("SET TimeZone = 'UTC'")
        result = db.execute(sql, parameters).fetch_arrow_table()
    return result.cast(SESSION_SCHEMA)


def _key_expression(column: str) -> str:
    """A claim column as a duplicate-key part: lists compare as sets."""
    return f"list_sort({column})" if column in ("part_numbers", "labour_op_codes") else column
