"""The collection job's rule counts: what each rule did, per session day and in total.

rule_counts.json, the job's completion marker, holds these counts for the run
(total) and for each day of date_from..date_to (days, every day, zeros included).
A session-level count goes to the session's day; a claim-level count to the day
of the in-range session the claim matches, or for a cancelled or duplicate claim
would match (rule 5 applied to it too). A claim that matches no in-range session
(an orphan, or the claim of a later competitor session) counts in total only.
Competitor sessions (dated after date_to) count nowhere. So a session count's
total is the sum of its days, and total claims = cancelled_claims +
duplicate_claims + matched_claims + orphan_claims.

Session-level counts (in-range sessions only):
  uploads                       uploads merged into the sessions (>= sessions)
  duplicate_uploads             uploads - sessions: re-uploads merged away (rule 1)
  sessions                      sessions after merging
  dtc_readouts                  DTC rows of the sessions' uploads, re-uploads' included
  normalised_codes              of the kept uploads' DTC rows, those whose code the
                                code rules changed (rule 2)
  converted_readings            sessions whose non-missing coolant reading was in a
                                unit with a conversion other than the identity (rule 3)
  unknown_units                 sessions whose coolant unit is not listed: reading
                                made missing (rule 3)
  sessions_with_claim           sessions with at least one matched claim
  sessions_without_claim        sessions with none: no repair labels
  sessions_with_several_claims  sessions with two or more matched claims
Claim-level counts:
  claims                        claims in the selection
  cancelled_claims              claims dropped for their status (rule 4)
  duplicate_claims              later filings equal on claim_duplicate_key (rule 4)
  matched_claims                kept claims matched to a session (rule 5); in total
                                also those matched to a later competitor session
  orphan_claims                 kept claims with no session (total only)
  superseded_part_lines         part lines of matched claims written with a superseded
                                number that led to a label (rule 6)
  unmapped_part_lines           part lines of matched claims without a label within
                                max_supersession_steps: dropped (rule 6)
  unmapped_op_lines             labour lines of matched claims without a label: dropped
"""
from __future__ import annotations

import datetime
import json
from typing import Any, Mapping, Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from collection.rules import CollectionRules

__all__ = ["COUNT_NAMES", "SESSION_COUNTS", "CLAIM_COUNTS", "rule_counts", "rule_counts_json",
           "table_summary", "ISO_TIMESTAMP"]

SESSION_COUNTS = ("uploads", "duplicate_uploads", "sessions", "dtc_readouts", "normalised_codes",
                  "converted_readings", "unknown_units", "sessions_with_claim", "sessions_without_claim",
                  "sessions_with_several_claims")
CLAIM_COUNTS = ("claims", "cancelled_claims", "duplicate_claims", "matched_claims", "orphan_claims",
                "superseded_part_lines", "unmapped_part_lines", "unmapped_op_lines")
# The order of the counts in rule_counts.json.
COUNT_NAMES = (
    "uploads", "duplicate_uploads", "sessions", "dtc_readouts", "normalised_codes", "converted_readings",
    "unknown_units", "claims", "cancelled_claims", "duplicate_claims", "matched_claims", "orphan_claims",
    "sessions_with_claim", "sessions_without_claim", "sessions_with_several_claims",
    "superseded_part_lines", "unmapped_part_lines", "unmapped_op_lines",
)
# Timestamps as rule_counts.json writes them (Spark's date_format pattern, in the session
# time zone, UTC): 2026-01-01T08:15:02.000000Z.
ISO_TIMESTAMP = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'"


def _session_day_counts(sessions: DataFrame) -> dict[str, dict[str, int]]:
    def count_if(condition):
        return F.sum(F.when(condition, 1).otherwise(0))
    rows = sessions.groupBy("session_date").agg(
        F.sum("uploads").alias("uploads"),
        F.sum(F.col("uploads") - 1).alias("duplicate_uploads"),
        F.count(F.lit(1)).alias("sessions"),
        F.sum("dtc_readouts").alias("dtc_readouts"),
        F.sum("normalised_codes").alias("normalised_codes"),
        F.sum("converted_reading").alias("converted_readings"),
        F.sum("unknown_unit").alias("unknown_units"),
        count_if(F.col("matched_claims") >= 1).alias("sessions_with_claim"),
        count_if(F.col("matched_claims") == 0).alias("sessions_without_claim"),
        count_if(F.col("matched_claims") >= 2).alias("sessions_with_several_claims"),
    ).collect()
    return {row["session_date"]: {k: int(v) for k, v in row.asDict().items() if k != "session_date"}
            for row in rows}


def _claim_day_counts(claims: DataFrame) -> dict[Optional[str], dict[str, int]]:
    """Claim counts by day; the key None holds the claims of no in-range session."""
    def count_fate(fate):
        return F.sum(F.when(F.col("fate") == fate, 1).otherwise(0))
    rows = claims.groupBy("day").agg(
        F.count(F.lit(1)).alias("claims"),
        count_fate("cancelled").alias("cancelled_claims"),
        count_fate("duplicate").alias("duplicate_claims"),
        count_fate("matched").alias("matched_claims"),
        count_fate("orphan").alias("orphan_claims"),
        F.sum("superseded_part_lines").alias("superseded_part_lines"),
        F.sum("unmapped_part_lines").alias("unmapped_part_lines"),
        F.sum("unmapped_op_lines").alias("unmapped_op_lines"),
    ).collect()
    return {row["day"]: {k: int(v) for k, v in row.asDict().items() if k != "day"} for row in rows}


def table_summary(frame: DataFrame, time_column: str) -> tuple[int, Optional[str]]:
    """(rows, the latest time_column as rule_counts.json writes it, or None), in one Spark job."""
    row = frame.agg(F.count(F.lit(1)).alias("rows"),
                    F.date_format(F.max(time_column), ISO_TIMESTAMP).alias("latest")).collect()[0]
    return int(row["rows"]), row["latest"]


def rule_counts(sessions: DataFrame, claims: DataFrame, rules: CollectionRules, date_from: datetime.date,
                date_to: datetime.date, uploads_max_ts: Optional[str],
                claims_max_submitted_ts: Optional[str]) -> dict[str, Any]:
    """The rule_counts.json document (see the module docstring).

    sessions and claims are JoinedSessions' frames; the watermarks are the
    latest session_ts and submitted_ts of the selection (table_summary).
    """
    session_days = _session_day_counts(sessions)
    claim_days = _claim_day_counts(claims)
    days_of_range = [(date_from + datetime.timedelta(days=k)).isoformat()
                     for k in range((date_to - date_from).days + 1)]
    days = {}
    for day in days_of_range:
        counts = {name: 0 for name in COUNT_NAMES}
        counts.update(session_days.get(day, {}))
        counts.update(claim_days.get(day, {}))
        days[day] = counts
    total = {name: sum(days[day][name] for day in days_of_range) for name in COUNT_NAMES}
    for name, value in claim_days.get(None, {}).items():
        total[name] += value
    return {
        "date_from": date_from.isoformat(),
        "date_to": date_to.isoformat(),
        "rules": rules.to_dict(),
        "watermarks": {"uploads_max_ts": uploads_max_ts, "claims_max_submitted_ts": claims_max_submitted_ts},
        "total": total,
        "days": days,
    }


def rule_counts_json(document: Mapping[str, Any]) -> str:
    """The document as rule_counts.json holds it: the same counts give the same bytes."""
    return json.dumps(document, indent=2, sort_keys=False) + "\n"
