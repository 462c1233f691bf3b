"""Test inputs for the collection report: an exploration table and a span manifest, built by hand.

The collection job writes both (collection/__init__.py); these helpers write
the same shapes without it: `collected_sessions` in a DuckDB file (the modeling
table's columns, data/generator.py SESSION_SCHEMA, plus the join columns) and
SPANS/manifest.json in format 1.
"""

import datetime
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from data.generator import generate_sessions

COLUMNS_DDL = """
  session_id VARCHAR, session_date VARCHAR, span BIGINT, car_model VARCHAR, engine_type VARCHAR,
  country VARCHAR, build_year BIGINT, mileage_km BIGINT, battery_voltage DOUBLE, coolant_temp_c DOUBLE,
  fuel_trim_pct DOUBLE, dtcs VARCHAR[], symptoms VARCHAR[], repair_labels VARCHAR[],
  vin VARCHAR, workshop_id VARCHAR, session_ts TIMESTAMP WITH TIME ZONE, uploads BIGINT,
  claim_ids VARCHAR[], repair_date DATE, claim_delay_days BIGINT, claim_submitted_ts TIMESTAMP WITH TIME ZONE
"""
COUNT_NAMES = ('uploads', 'duplicate_uploads', 'sessions', 'dtc_readouts', 'normalised_codes',
               'converted_readings', 'unknown_units', 'claims', 'cancelled_claims', 'duplicate_claims',
               'matched_claims', 'orphan_claims', 'sessions_with_claim', 'sessions_without_claim',
               'sessions_with_several_claims', 'superseded_part_lines', 'unmapped_part_lines',
               'unmapped_op_lines')


def with_join_columns(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
  """The generated sessions with made-up join columns: a session has a claim iff it has labels."""
  rng = np.random.default_rng(seed)
  out = frame.copy()
  n = len(out)
  out['dtcs'] = out['dtcs'].map(list)
  out['symptoms'] = out['symptoms'].map(list)
  out['repair_labels'] = out['repair_labels'].map(list)
  out['vin'] = [f'VIN{i:06d}' for i in range(n)]
  out['workshop_id'] = [f'W{i % 7}' for i in range(n)]
  day = pd.to_datetime(out['session_date']).dt.tz_localize('UTC')
  out['session_ts'] = day + pd.to_timedelta(rng.integers(0, 86400, n), unit='s')
  out['uploads'] = np.where(rng.random(n) < 0.05, 2, 1)
  has_claim = out['repair_labels'].map(len) > 0
  delay = rng.integers(1, 30, n)
  out['claim_ids'] = [[f'C{i:06d}'] if c else [] for i, c in enumerate(has_claim)]
  out['claim_delay_days'] = pd.array([int(d) if c else None for d, c in zip(delay, has_claim)],
                                     dtype='Int64')
  out['repair_date'] = [(datetime.date.fromisoformat(s) + datetime.timedelta(days=int(d))) if c else None
                        for s, d, c in zip(out['session_date'], delay, has_claim)]
  out['claim_submitted_ts'] = [pd.Timestamp(r, tz='UTC') + pd.Timedelta(hours=3) if r else pd.NaT
                               for r in out['repair_date']]
  return out


def generated_table(rows: int, seed: int, spans: int) -> pd.DataFrame:
  return with_join_columns(generate_sessions(rows, seed, spans), seed)


def write_table(path: Path, frame: pd.DataFrame) -> Path:
  """frame (every column of COLUMNS_DDL) as collected_sessions in the DuckDB file at path."""
  with duckdb.connect(str(path)) as connection:
    connection.execute(f'CREATE OR REPLACE TABLE collected_sessions ({COLUMNS_DDL})')
    connection.register('frame', frame)
    names = [line.strip().split()[0] for line in COLUMNS_DDL.replace('\n', ' ').split(',')]
    connection.execute(f'INSERT INTO collected_sessions SELECT {", ".join(names)} FROM frame')
  return path


def rule_counts(offset: int) -> dict:
  """Distinct made-up counts: count k of the list is 100 * (offset + 1) + k."""
  return {name: 100 * (offset + 1) + k for k, name in enumerate(COUNT_NAMES)}


def write_manifest(spans_dir: Path, frame: pd.DataFrame, counts=rule_counts, runs=None) -> Path:
  """SPANS/manifest.json of manifest_text(frame, counts, runs)."""
  spans_dir.mkdir(parents=True, exist_ok=True)
  path = spans_dir / 'manifest.json'
  path.write_text(write_manifest_text(frame, counts, runs))
  return path


def write_manifest_text(frame: pd.DataFrame, counts=rule_counts, runs=None) -> str:
  """A format-1 manifest of the frame's spans, with counts(span) as each span's rule counts; the
  one run's total is the spans' sum plus 5 orphan claims of no in-range session."""
  spans = {}
  for span, group in frame.groupby('span'):
    date = str(group['session_date'].iloc[0])
    spans[str(span)] = {
        'span': int(span), 'date': date, 'rows': int(len(group)),
        'file': f'span-{span}/sessions.parquet', 'file_sha256': 'ab' * 32, 'content_fingerprint': 'cd' * 32,
        'watermarks': {'uploads_max_ts': f'{date}T23:59:58Z', 'claims_max_submitted_ts': '2026-02-10T08:00:00Z'},
        'claims_complete': int(span) == 0, 'rules_sha256': 'ef' * 32, 'rule_counts': counts(int(span))}
  if runs is None:
    total = {name: sum(s['rule_counts'][name] for s in spans.values()) for name in COUNT_NAMES}
    total['orphan_claims'] += 5
    runs = [{'run_id': 'collect-20260210-080000', 'date_from': min(s['date'] for s in spans.values()),
             'date_to': max(s['date'] for s in spans.values()), 'total': total}]
  return json.dumps({'format': 1, 'spans': spans, 'runs': runs}, indent=2)


# The hand-built table of test_report.py: 10 sessions over 2 days, 3 with a claim.
VOCABULARY = ['part:battery_12v', 'part:coolant', 'part:dpf', 'op:replace_12v_battery']
ODD_LABEL = '<b>odd&label</b>'  # outside the vocabulary, and markup if not escaped
MILEAGES = [10000, 11000, 12000, 13000, 14000, 15000, 16000, 17000, 18000, 900000]
CLAIMS = {0: (['part:battery_12v', 'op:replace_12v_battery'], 2),
          3: (['part:battery_12v'], 10),
          7: (['part:coolant', ODD_LABEL], 30)}  # session -> (labels, claim delay days)
MISSING_BATTERY_VOLTAGE = (4, 5)


def hand_built_table() -> pd.DataFrame:
  frame = with_join_columns(generate_sessions(10, 7, spans=2), seed=7)
  frame['mileage_km'] = MILEAGES
  frame['battery_voltage'] = [np.nan if i in MISSING_BATTERY_VOLTAGE else 12.0 + i / 10 for i in range(10)]
  labels, claim_ids, delays, repair_dates, submitted = [], [], [], [], []
  for i, session_date in enumerate(frame['session_date']):
    session_labels, delay = CLAIMS.get(i, ([], None))
    labels.append(session_labels)
    claim_ids.append([f'C{i}'] if delay else [])
    delays.append(delay)
    repair = datetime.date.fromisoformat(session_date) + datetime.timedelta(days=delay) if delay else None
    repair_dates.append(repair)
    submitted.append(pd.Timestamp(repair, tz='UTC') if repair else pd.NaT)
  frame['repair_labels'] = labels
  frame['claim_ids'] = claim_ids
  frame['claim_delay_days'] = pd.array(delays, dtype='Int64')
  frame['repair_date'] = repair_dates
  frame['claim_submitted_ts'] = submitted
  return frame
