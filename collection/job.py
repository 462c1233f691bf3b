"""The collection job (step 2): the selection's raw tables -> daily session files and rule counts.

A PySpark 3.5 job, free of TFX and pydantic, for its own Python 3.12
environment (make spark-env locally; Dataproc Serverless 2.2 in production,
where this file is the batch's main file and a zip of collection/ is on
sys.path). It runs both ways:

  python -m collection.job ARGS        (from the repository root)
  python collection/job.py ARGS        (as Dataproc runs a main file)

  ARGS: --selection DIR --output DIR --rules-json JSON --date-from YYYY-MM-DD
        --date-to YYYY-MM-DD --span-epoch YYYY-MM-DD [--master local[*]]
        [--driver-memory 2g] [--shuffle-partitions N] [--log-file PATH]

DIR may be local or gs://. The job reads SELECTION/TABLE.parquet of the five raw
tables (job_selection.py), applies the rules of collection/rules.py in their
order (job_rules.py) and writes:
  OUTPUT/sessions/_span=K/     one parquet file per span K (days since
                               span_epoch) of date_from..date_to: the modeling
                               table's columns (data/generator.py
                               SESSION_SCHEMA), rows sorted by session_id;
  OUTPUT/exploration/_span=K/  the same sessions with vin, workshop_id,
                               session_ts, uploads, claim_ids, repair_date,
                               claim_delay_days and claim_submitted_ts;
  OUTPUT/rule_counts.json      the rule counts (job_counts.py), written last and
                               atomically: it marks a complete output. A run
                               removes the previous one first.
A day without sessions has no folder, and zeros in rule_counts.json.

Exit codes: 0 done; 2 a problem the user can fix (a missing selection table, a
column of the wrong type, a bad date or rule, date_from before span_epoch),
said in one line on stderr ("collection job: error: ..."); 1 anything else
("collection job: failed: ..." on stderr, the traceback in the log).
Spark's own output goes to --log-file when given; stdout gets a few progress lines.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:
    # Run as a file: Python put collection/ itself first on sys.path. The package
    # comes from the path (Dataproc's zip) or, in a checkout, from the repository.
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == _here:
        sys.path.pop(0)
    try:
        import collection.rules  # noqa: F401
    except ImportError:
        sys.path.insert(0, os.path.dirname(_here))

import argparse
import contextlib
import datetime
import json
import time
import traceback
from typing import Any, Callable, Iterator, Optional, Sequence
from urllib.parse import urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from collection.dates import DateError, check_range, parse_date
from collection.files import write_atomically
from collection.job_counts import rule_counts, rule_counts_json, table_summary
from collection.job_rules import join_and_clean
from collection.job_selection import JobError, read_selection
from collection.rules import CollectionRules, RulesError

__all__ = ["run", "main", "spark_session", "JobError", "SESSION_COLUMNS", "EXPLORATION_COLUMNS",
           "RULE_COUNTS_FILE"]

# data/generator.py SESSION_SCHEMA's columns, in order (tests/collection_job checks they agree).
SESSION_COLUMNS = (
    "session_id", "session_date", "span", "car_model", "engine_type", "country", "build_year",
    "mileage_km", "battery_voltage", "coolant_temp_c", "fuel_trim_pct", "dtcs", "symptoms",
    "repair_labels",
)
EXPLORATION_COLUMNS = SESSION_COLUMNS + (
    "vin", "workshop_id", "session_ts", "uploads", "claim_ids", "repair_date", "claim_delay_days",
    "claim_submitted_ts",
)
RULE_COUNTS_FILE = "rule_counts.json"
SPAN_COLUMN = "_span"
DEFAULT_SHUFFLE_PARTITIONS = 4


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def _local_path(path: str) -> Optional[str]:
    """The file system path of a local path or file: URI; None for gs:// and other stores."""
    parsed = urlparse(path)
    if parsed.scheme == "":
        return path
    if parsed.scheme == "file":
        return parsed.path
    return None


def _hadoop_fs(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hadoop_path


def write_text_atomically(spark: SparkSession, path: str, text: str) -> None:
    """Writes a small text file whole: locally a temporary name and os.replace; on an object
    store (gs://) one object, which the store publishes only once it is complete."""
    local = _local_path(path)
    data = text.encode("utf-8")
    if local is not None:
        write_atomically(local, data)
        return
    fs, hadoop_path = _hadoop_fs(spark, path)
    stream = fs.create(hadoop_path, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def _remove(spark: SparkSession, path: str) -> None:
    fs, hadoop_path = _hadoop_fs(spark, path)
    if fs.exists(hadoop_path):
        fs.delete(hadoop_path, False)


def _write_spans(frame: DataFrame, path: str) -> None:
    """One parquet file per span: all of a span's rows go to one task, sorted by session_id."""
    (frame.withColumn(SPAN_COLUMN, F.col("span"))
     .repartition(SPAN_COLUMN)
     .sortWithinPartitions(SPAN_COLUMN, "session_id")
     .write.mode("overwrite").partitionBy(SPAN_COLUMN).parquet(path))


def check_dates(date_from: datetime.date, date_to: datetime.date, span_epoch: datetime.date) -> None:
    """A JobError unless date_from..date_to is a range on or after span_epoch (span 0)."""
    try:
        check_range(date_from, date_to, span_epoch, epoch_name="--span-epoch")
    except DateError as error:
        raise JobError(str(error)) from None


def run(spark: SparkSession, selection: str, output: str, rules: CollectionRules,
        date_from: datetime.date, date_to: datetime.date, span_epoch: datetime.date,
        progress: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole job on a running SparkSession; returns the rule_counts.json document.

    Raises JobError for the input problems a user can fix.
    """
    check_dates(date_from, date_to, span_epoch)
    marker = _join(output, RULE_COUNTS_FILE)
    tables = read_selection(spark, selection)
    uploads, uploads_max_ts = table_summary(tables["diagnostic_sessions"], "session_ts")
    claims, claims_max_submitted_ts = table_summary(tables["warranty_claims"], "submitted_ts")
    progress(f"selection: {uploads} uploads, {claims} claims ({selection})")
    # The marker of an earlier run must not outlive the outputs this run replaces.
    _remove(spark, marker)

    joined = join_and_clean(tables, rules, date_from, date_to, span_epoch)
    sessions = joined.sessions.persist()
    try:
        _write_spans(sessions.select(*SESSION_COLUMNS), _join(output, "sessions"))
        _write_spans(sessions.select(*EXPLORATION_COLUMNS), _join(output, "exploration"))
        document = rule_counts(sessions, joined.claims, rules, date_from, date_to,
                               uploads_max_ts, claims_max_submitted_ts)
    finally:
        sessions.unpersist()
        joined.release()
    total = document["total"]
    spans = sum(1 for counts in document["days"].values() if counts["sessions"])
    progress(f"sessions: {total['sessions']} from {total['uploads']} uploads, {date_from}..{date_to}; "
             f"claims: {total['matched_claims']} matched, {total['orphan_claims']} orphans, "
             f"{total['cancelled_claims']} cancelled, {total['duplicate_claims']} duplicates")
    progress(f"wrote {spans} spans, {total['sessions']} sessions ({_join(output, 'sessions')}, "
             f"{_join(output, 'exploration')})")
    write_text_atomically(spark, marker, rule_counts_json(document))
    progress(f"rule counts: {marker}")
    return document


@contextlib.contextmanager
def _output_to(log_file: Optional[str]) -> Iterator[None]:
    """While Spark's JVM starts, file descriptors 1 and 2 point at the log: the JVM
    inherits them, so its output goes there for good; Python's are put back."""
    if log_file is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(log_file, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def spark_session(master: Optional[str] = None, driver_memory: Optional[str] = None,
                  shuffle_partitions: Optional[int] = None,
                  log_file: Optional[str] = None, app_name: str = "repairml-collection") -> SparkSession:
    """A SparkSession set up for the job: UTC, UI off, few shuffle partitions, WARN logging.

    master and driver_memory are left to spark-submit (Dataproc) when None;
    run as plain Python, Spark's default master is local[*]. A local master
    (local[2]) also means few shuffle partitions (4, unless shuffle_partitions
    says otherwise) and no whole-stage code generation; elsewhere Spark's
    defaults hold (200 partitions, which adaptive execution coalesces).
    """
    builder = (SparkSession.builder.appName(app_name)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
               .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
               # Parquet timestamps as Arrow and BigQuery read them (not Spark's legacy INT96).
               .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
               # Local files without Hadoop's .crc companions beside every parquet file.
               .config("spark.hadoop.fs.file.impl", "org.apache.hadoop.fs.RawLocalFileSystem"))
    # Spark's Python workers (none in the hot path) use this interpreter unless set.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if master:
        builder = builder.master(master)
    local = bool(master) and master.startswith("local")
    if shuffle_partitions is None and local:
        shuffle_partitions = DEFAULT_SHUFFLE_PARTITIONS
    if shuffle_partitions is not None:
        builder = (builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
                   .config("spark.default.parallelism", str(shuffle_partitions)))
    if local:
        # On one machine's data, compiling each stage's code costs more than it saves
        # (measured: 50,000 sessions on local[2], 43 s instead of 83 s from a cold JVM).
        builder = builder.config("spark.sql.codegen.wholeStage", "false")
    if driver_memory:
        builder = builder.config("spark.driver.memory", driver_memory)
    with _output_to(log_file):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise JobError(f"{message} (see python -m collection.job --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="collection.job", description=(
        "The collection job: joins and cleans the selection's raw tables into daily session files."))
    parser.add_argument("--selection", required=True, help="the selection step's folder (TABLE.parquet)")
    parser.add_argument("--output", required=True, help="where sessions/, exploration/ and rule_counts.json go")
    parser.add_argument("--rules-json", required=True, help="the rules, as CollectionRules.to_json writes them")
    parser.add_argument("--date-from", required=True, help="first session date, YYYY-MM-DD")
    parser.add_argument("--date-to", required=True, help="last session date, YYYY-MM-DD")
    parser.add_argument("--span-epoch", required=True, help="the date of span 0, YYYY-MM-DD")
    parser.add_argument("--master", default=None, help="Spark master, e.g. local[2]; default: spark-submit's")
    parser.add_argument("--driver-memory", default=None, help="e.g. 2g; default: spark-submit's")
    parser.add_argument("--shuffle-partitions", type=int, default=None,
                        help=f"spark.sql.shuffle.partitions (default: {DEFAULT_SHUFFLE_PARTITIONS} with a local "
                             f"master, for 2 cores; else Spark's)")
    parser.add_argument("--log-file", default=None, help="Spark's output (default: this process's stderr)")
    return parser


def _arguments(argv: Optional[Sequence[str]]):
    args = _parser().parse_args(argv)
    try:
        dates = {name: parse_date(f"--{name.replace('_', '-')}", getattr(args, name))
                 for name in ("date_from", "date_to", "span_epoch")}
    except DateError as error:
        raise JobError(str(error)) from None
    check_dates(**dates)
    try:
        rules = CollectionRules.from_json(args.rules_json)
    except json.JSONDecodeError as error:
        raise JobError(f"--rules-json is not JSON ({error}); pass CollectionRules.to_json()'s text") from None
    except (RulesError, TypeError) as error:
        raise JobError(f"--rules-json: {error}") from None
    if args.shuffle_partitions is not None and args.shuffle_partitions < 1:
        raise JobError(f"--shuffle-partitions must be 1 or more, got {args.shuffle_partitions}")
    if args.log_file is not None:
        folder = os.path.dirname(os.path.abspath(args.log_file))
        if not os.path.isdir(folder):
            raise JobError(f"--log-file {args.log_file}: the folder {folder} does not exist; create it first")
    return args, rules, dates


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line: 0 done, 2 a user error (one line on stderr), 1 a failure."""
    started = time.monotonic()
    try:
        args, rules, dates = _arguments(argv)
    except JobError as error:
        print(f"collection job: error: {error}", file=sys.stderr)
        return 2
    spark = None
    try:
        spark = spark_session(args.master, args.driver_memory, args.shuffle_partitions, args.log_file)
        run(spark, args.selection, args.output, rules, **dates)
    except JobError as error:
        print(f"collection job: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - reported in one line, the traceback goes to the log
        where = args.log_file or "stderr"
        if args.log_file:
            with open(args.log_file, "a", encoding="utf-8") as log:
                traceback.print_exc(file=log)
        else:
            traceback.print_exc()
        first_line = (str(error).strip().splitlines() or [""])[0]
        print(f"collection job: failed: {type(error).__name__}: {first_line} (traceback: {where})",
              file=sys.stderr)
        return 1
    finally:
        if spark is not None:
            with _output_to(args.log_file):
                spark.stop()
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
