"""The collection job's rules as Spark SQL: the selection's raw tables -> sessions and claim fates.

collection/rules.py holds the rules as values and states them; this module
applies them, in that order, with Spark SQL functions only (no Python UDF), so
that the work stays in the JVM:
  1. uploads (merge_uploads): per VIN in time order, an upload less than
     duplicate_upload_window_s after the VIN's previous upload belongs to the
     same session (a chain of re-uploads is one session); the earliest upload
     (ties: the smaller upload id) is the session, with its values and id; the
     others' DTC rows are dropped;
  2. codes (session_codes): spaces (any whitespace) removed, upper-cased; a code
     that normalises to '' is dropped; dtcs is the sorted set;
  3. units (coolant_celsius): (value + offset) * scale for a listed unit (the
     identity conversion leaves the value untouched), missing otherwise;
  4. claims (claim_fates): statuses in drop_claim_statuses are 'cancelled'; of
     the other claims equal on claim_duplicate_key (list columns compared as
     sets), all but the earliest submitted (ties: the smaller claim id) are
     'duplicate';
  5. matching (claim_fates): every claim, dropped or not, is matched to the
     session of its VIN with the latest session_ts on a date min..max days
     before its repair date (so a dropped claim still has the day it would
     count on); a kept claim without one is an 'orphan', with one 'matched';
  6. labels (claim_labels): part numbers through superseded_by, at most
     max_supersession_steps steps, to a number with a label; op codes to their
     labels; a line without a label is dropped and counted.
Sessions of every selected date are matching candidates; only those dated
date_from..date_to are written (in_range), the later ones compete for claims.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from collection.rules import CollectionRules

__all__ = ["JoinedSessions", "join_and_clean", "merge_uploads", "normalised_code", "coolant_celsius",
           "claim_fates", "resolve_part_labels", "empty_strings"]
_LIST_COLUMNS = ("part_numbers", "labour_op_codes")


def empty_strings() -> Column:
    """An empty array<string>, for sessions without codes, symptoms, labels or claims."""
    return F.array().cast(T.ArrayType(T.StringType()))


@dataclass(frozen=True)
class JoinedSessions:
    """What the rules make of a selection.

    sessions: one row per in-range session, the exploration columns (in order)
    and the per-session counts (dtc_readouts, normalised_codes,
    converted_reading, unknown_unit, matched_claims).
    claims: one row per selected claim: claim_id, fate ('cancelled',
    'duplicate', 'orphan' or 'matched'), day (the date of the in-range
    session it matches or would match, else null) and its line counts
    (superseded_part_lines, unmapped_part_lines, unmapped_op_lines; 0 unless
    matched).
    """

    sessions: DataFrame
    claims: DataFrame
    # The intermediate frames that several outputs read, computed once (release() frees them).
    persisted: tuple[DataFrame, ...] = ()

    def release(self) -> None:
        for frame in self.persisted:
            frame.unpersist()


def _nullable(value: Column) -> Column:
    """The value, as a nullable column: the files' columns are all optional, as in
    data/generator.py SESSION_SCHEMA (Spark would write a coalesce as required).
    session_id is never null, so the value is unchanged."""
    return F.when(F.col("session_id").isNotNull(), value)


def merge_uploads(uploads: DataFrame, rules: CollectionRules) -> DataFrame:
    """Every upload with kept_id (the session it belongs to) and uploads (the session's upload count).

    One shuffle by VIN: the gap to the previous upload, the running id of the
    latest session start, and the count per session all use that order.
    """
    by_time = Window.partitionBy("vin").orderBy("session_ts", "session_id")
    so_far = by_time.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    micros = F.expr("unix_micros(session_ts)")
    gap = micros - F.lag(micros).over(by_time)
    starts = gap.isNull() | (gap >= F.lit(rules.duplicate_upload_window_s * 1_000_000))
    marked = uploads.select("*", F.when(starts, F.col("session_id")).alias("_start_id"))
    kept = marked.select("*", F.last("_start_id", ignorenulls=True).over(so_far).alias("kept_id"))
    return (kept.select("*", F.count(F.lit(1)).over(Window.partitionBy("vin", "kept_id")).alias("uploads"))
            .drop("_start_id"))


def normalised_code(code: Column, rules: CollectionRules) -> Column:
    if rules.strip_code_spaces:
        code = F.regexp_replace(code, r"\s+", "")
    if rules.upper_case_codes:
        code = F.upper(code)
    return code


def coolant_celsius(rules: CollectionRules) -> tuple[Column, Column, Column]:
    """(coolant_temp_c, unknown unit 0/1, converted reading 0/1) of a diagnostic_sessions row."""
    value, unit = F.col("coolant_temp"), F.col("coolant_temp_unit")
    celsius = None
    converting = []
    for name in sorted(rules.coolant_temp_units):
        conversion = rules.coolant_temp_units[name]
        if conversion.offset == 0 and conversion.scale == 1:
            converted = value  # bit for bit the reading
        else:
            converting.append(name)
            converted = (value + F.lit(float(conversion.offset))) * F.lit(float(conversion.scale))
        celsius = F.when(unit == name, converted) if celsius is None else celsius.when(unit == name, converted)
    known = F.coalesce(unit.isin(sorted(rules.coolant_temp_units)), F.lit(False))
    unknown = F.when(known, 0).otherwise(1)
    is_converted = (F.coalesce(unit.isin(converting), F.lit(False)) & value.isNotNull()) if converting \
        else F.lit(False)
    return celsius, unknown, F.when(is_converted, 1).otherwise(0)


def _duplicate_key(rules: CollectionRules) -> list[Column]:
    return [F.array_sort(F.array_distinct(F.col(name))) if name in _LIST_COLUMNS else F.col(name)
            for name in rules.claim_duplicate_key]


def claim_fates(claims: DataFrame, sessions: DataFrame, rules: CollectionRules) -> DataFrame:
    """Every claim with fate, match_id, match_date and match_in_range (rules 4 and 5)."""
    cancelled = F.coalesce(F.col("status").isin(list(rules.drop_claim_statuses)), F.lit(False))
    first_filed = Window.partitionBy("_cancelled", *_duplicate_key(rules)).orderBy("submitted_ts", "claim_id")
    flagged = claims.select("*", cancelled.alias("_cancelled"))
    flagged = flagged.select("*", (~F.col("_cancelled") & (F.row_number().over(first_filed) > 1))
                             .alias("_duplicate"))
    candidates = sessions.select(F.col("vin").alias("_vin"), F.col("session_id").alias("match_id"),
                                 F.col("session_ts").alias("_match_ts"),
                                 F.col("session_date").alias("match_date"),
                                 F.col("in_range").alias("match_in_range"))
    delay = F.datediff("repair_date", "match_date")
    paired = flagged.join(candidates, (F.col("vin") == F.col("_vin"))
                          & delay.between(rules.min_claim_delay_days, rules.max_claim_delay_days), "left")
    nearest = Window.partitionBy("claim_id").orderBy(F.col("_match_ts").desc_nulls_last(),
                                                     F.col("match_id").desc_nulls_last())
    fate = (F.when(F.col("_cancelled"), "cancelled").when(F.col("_duplicate"), "duplicate")
            .when(F.col("match_id").isNull(), "orphan").otherwise("matched"))
    return (paired.select("*", F.row_number().over(nearest).alias("_rank")).where("_rank = 1")
            .select(*claims.columns, "match_id", "match_date",
                    F.coalesce("match_in_range", F.lit(False)).alias("match_in_range"), fate.alias("fate")))


def resolve_part_labels(part_reference: DataFrame, max_steps: int) -> DataFrame:
    """part_number -> label (null when none within max_steps) and steps (superseded_by links followed).

    The catalogue becomes two maps (number -> label, number -> successor), and
    each number walks its chain with one SQL aggregate over 1..max_steps: a loop
    in the JVM, without a join per step.
    """
    catalogue = (part_reference.where(F.col("part_number").isNotNull()).groupBy("part_number")
                 .agg(F.min("label").alias("label"), F.min("superseded_by").alias("superseded_by")))
    maps = catalogue.agg(
        F.map_from_entries(F.collect_list(F.struct("part_number", "label"))).alias("_label_of"),
        F.map_from_entries(F.collect_list(F.struct("part_number", "superseded_by"))).alias("_successor_of"))
    walk = F.expr(
        f"aggregate(sequence(1, {int(max_steps)}), named_struct('number', part_number, 'steps', 0), "
        "(walked, step) -> IF(_label_of[walked.number] IS NULL AND _successor_of[walked.number] IS NOT NULL, "
        "named_struct('number', _successor_of[walked.number], 'steps', walked.steps + 1), walked))")
    return (catalogue.select("part_number").crossJoin(F.broadcast(maps))
            .select("part_number", "_label_of", walk.alias("_end"))
            .select("part_number", F.expr("_label_of[_end.number]").alias("label"),
                    F.col("_end.steps").alias("steps")))


def claim_labels(matched: DataFrame, part_reference: DataFrame, labour_reference: DataFrame,
                 rules: CollectionRules) -> DataFrame:
    """Per matched claim (rule 6): claim_id, labels (array), superseded_part_lines,
    unmapped_part_lines, unmapped_op_lines."""
    parts = resolve_part_labels(part_reference, rules.max_supersession_steps)
    labour = F.broadcast(labour_reference.groupBy("labour_op_code").agg(F.min("label").alias("label")))
    part_lines = (matched.select("claim_id", F.explode("part_numbers").alias("part_number"))
                  .join(parts, "part_number", "left")
                  .select("claim_id", "label", F.lit(True).alias("_part"), (F.col("steps") > 0).alias("_older")))
    op_lines = (matched.select("claim_id", F.explode("labour_op_codes").alias("labour_op_code"))
                .join(labour, "labour_op_code", "left")
                .select("claim_id", "label", F.lit(False).alias("_part"), F.lit(False).alias("_older")))
    mapped = F.col("label").isNotNull()

    def count_if(condition: Column, name: str) -> Column:
        return F.sum(F.when(condition, 1).otherwise(0)).alias(name)
    return part_lines.unionByName(op_lines).groupBy("claim_id").agg(
        F.collect_set("label").alias("labels"),
        count_if(mapped & F.col("_part") & F.col("_older"), "superseded_part_lines"),
        count_if(~mapped & F.col("_part"), "unmapped_part_lines"),
        count_if(~mapped & ~F.col("_part"), "unmapped_op_lines"))


def join_and_clean(tables: dict[str, DataFrame], rules: CollectionRules, date_from: datetime.date,
                   date_to: datetime.date, span_epoch: datetime.date) -> JoinedSessions:
    """The rules applied to the selection's tables (read_selection's frames)."""
    uploads = merge_uploads(tables["diagnostic_sessions"], rules)
    celsius, unknown_unit, converted_reading = coolant_celsius(rules)
    session_date = F.to_date("session_ts")  # the session time zone is UTC
    sessions = (uploads.where(F.col("session_id") == F.col("kept_id"))
                .select(*(name for name in uploads.columns if name != "kept_id"),
                        session_date.alias("session_date"),
                        session_date.between(F.lit(date_from), F.lit(date_to)).alias("in_range"),
                        celsius.alias("coolant_temp_c"), unknown_unit.alias("unknown_unit"),
                        converted_reading.alias("converted_reading"))
                .persist())

    code = normalised_code(F.col("code"), rules)
    kept = F.col("session_id") == F.col("kept_id")
    codes = (tables["diagnostic_dtcs"]
             .join(uploads.select("session_id", "kept_id"), "session_id")
             .groupBy(F.col("kept_id").alias("session_id")).agg(
                 F.count(F.lit(1)).alias("dtc_readouts"),
                 F.sum(F.when(kept & (code != F.col("code")), 1).otherwise(0)).alias("normalised_codes"),
                 F.array_sort(F.collect_set(F.when(kept & (code != ""), code))).alias("dtcs")))

    fates = claim_fates(tables["warranty_claims"], sessions, rules)
    labels = claim_labels(fates.where(F.col("fate") == "matched"), tables["part_reference"],
                          tables["labour_reference"], rules)
    line_counts = ("superseded_part_lines", "unmapped_part_lines", "unmapped_op_lines")
    claims = (fates.join(labels, "claim_id", "left")
              .select("claim_id", "fate", "match_id", "repair_date", "submitted_ts", "labels",
                      F.when(F.col("match_in_range"), F.date_format("match_date", "yyyy-MM-dd")).alias("day"),
                      *(F.coalesce(name, F.lit(0)).alias(name) for name in line_counts))
              .persist())
    session_claims = claims.where(F.col("fate") == "matched").groupBy(F.col("match_id").alias("session_id")).agg(
        F.array_sort(F.collect_set("claim_id")).alias("claim_ids"),
        F.count(F.lit(1)).alias("matched_claims"),
        F.min("repair_date").alias("repair_date"),
        F.max("submitted_ts").alias("claim_submitted_ts"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_list("labels")))).alias("repair_labels"))

    in_range = (sessions.where("in_range")
                .join(codes, "session_id", "left")
                .join(session_claims, "session_id", "left"))
    joined = in_range.select(
        "session_id",
        F.date_format("session_date", "yyyy-MM-dd").alias("session_date"),
        F.datediff("session_date", F.lit(span_epoch)).cast("long").alias("span"),
        "car_model", "engine_type", "country", "build_year", "mileage_km",
        "battery_voltage", "coolant_temp_c", "fuel_trim_pct",
        _nullable(F.coalesce("dtcs", empty_strings())).alias("dtcs"),
        _nullable(F.array_sort(F.array_distinct(F.coalesce("symptoms", empty_strings())))).alias("symptoms"),
        _nullable(F.coalesce("repair_labels", empty_strings())).alias("repair_labels"),
        "vin", "workshop_id", "session_ts",
        _nullable(F.col("uploads").cast("long")).alias("uploads"),
        _nullable(F.coalesce("claim_ids", empty_strings())).alias("claim_ids"),
        "repair_date",
        F.datediff("repair_date", "session_date").cast("long").alias("claim_delay_days"),
        "claim_submitted_ts",
        F.coalesce("dtc_readouts", F.lit(0)).alias("dtc_readouts"),
        F.coalesce("normalised_codes", F.lit(0)).alias("normalised_codes"),
        "converted_reading", "unknown_unit",
        F.coalesce("matched_claims", F.lit(0)).alias("matched_claims"))
    return JoinedSessions(sessions=joined, claims=claims.select("claim_id", "fate", "day", *line_counts),
                          persisted=(sessions, claims))
