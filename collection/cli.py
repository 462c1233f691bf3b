"""`repairml collect`: one local collection run, its four steps in turn.

  repairml collect [--config PATH] [--date-from YYYY-MM-DD] [--date-to YYYY-MM-DD] [--car-model M]

Locally the steps of collection/__init__.py run on this machine: the selection
SQL on DuckDB over collection.raw, the Spark job in its own Python 3.12
environment (collection.spark.python, `make spark-env`) on `local[*]`, the
exploration table in a DuckDB file and the spans in collection.spans (by
default data.root, where `repairml run` reads them). The production pipeline
runs the same steps with the same rules (`repairml compile --pipeline
collection`). Spark's output goes to the log file; the terminal gets one line
per step.

The run's working files live in runs/collection/RUN_ID/ (next to the pipeline
root) and are removed when the run succeeds; a failed run keeps them for a
look, and changes no published span.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import time
import uuid
from typing import TextIO

from collection import dates, exploration, selection, spans

EXIT_USAGE = 2
EXIT_FAILED = 1
_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CollectionError(Exception):
    """A run that cannot go on; the message says what, where and what to do."""


class JobFailed(CollectionError):
    """The Spark job crashed (not a problem with its input): exit code 1."""


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import DEFAULT_CONFIG_PATH, ConfigError, load_config  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(
        prog="repairml collect",
        description="Collect the raw diagnostics and warranty sources into daily parquet spans, "
                    "their manifest and the exploration table.")
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help=f"configuration (default {DEFAULT_CONFIG_PATH})")
    parser.add_argument("--date-from", default=None, help="first session date, YYYY-MM-DD (default: collection.date_from)")
    parser.add_argument("--date-to", default=None, help="last session date, YYYY-MM-DD (default: collection.date_to)")
    parser.add_argument("--car-model", default=None, help="only this car model (default: collection.car_model)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        return _error(str(error))
    settings = config.collection
    date_from = settings.date_from if args.date_from is None else args.date_from
    date_to = settings.date_to if args.date_to is None else args.date_to
    car_model = settings.car_model if args.car_model is None else args.car_model
    try:
        return collect(config, date_from, date_to, car_model, sys.stdout)
    except JobFailed as error:
        print(f"repairml collect: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (CollectionError, dates.DateError, selection.SelectionError, exploration.ExplorationError,
            spans.PublishError) as error:
        return _error(str(error))


def collect(config, date_from: str, date_to: str, car_model: str, terminal: TextIO) -> int:
    """Runs the four steps; returns 0 when the spans are published."""
    settings = config.collection
    if car_model:
        # A span and an exploration day hold every car model: publishing one model's sessions
        # would replace the others' (spans are replaced whole, day by day).
        raise CollectionError(f"--car-model {car_model!r}: a run collects whole days, and a span holds every car "
                              f"model, so one model's sessions would replace the others'; collect without "
                              f"--car-model (and set collection.car_model to '')")
    rules = settings.collection_rules
    today = datetime.datetime.now(datetime.timezone.utc).date()
    date_range = dates.resolve_range(date_from, date_to, settings.window_days, today,
                                     lambda: selection.source_range(settings.raw), settings.span_epoch)
    if date_range is None:
        raise CollectionError(f"{settings.raw} holds no diagnostic sessions; generate raw sources with "
                              f"`repairml data generate --rows 50000 --seed 42 --spans 4 --raw --out {settings.raw}`")
    _check_spark_environment(settings.spark.python)
    run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    work = os.path.join(os.path.dirname(config.paths.pipeline_root), "collection", run_id)
    log_file = config.paths.log_file
    os.makedirs(os.path.dirname(log_file), exist_ok=True)
    scope = f"{date_range}" + (f", car model {car_model}" if car_model else "")
    terminal.write(f"collecting {scope} from {settings.raw}\nlog: {log_file}\n")

    started = time.monotonic()
    rows = selection.select_locally(settings.raw, work, date_range, car_model, rules)
    terminal.write(f"[1/4] selection: {rows.get('diagnostic_sessions', 0)} uploads, "
                   f"{rows.get('warranty_claims', 0)} claims ({time.monotonic() - started:.1f} s)\n")

    started = time.monotonic()
    job_dir = os.path.join(work, "job")
    _run_spark_job(settings, rules, date_range, os.path.join(work, "selection"), job_dir, log_file, terminal)
    terminal.write(f"[2/4] join and clean on Spark ({settings.spark.master}): done "
                   f"({time.monotonic() - started:.1f} s)\n")

    started = time.monotonic()
    loaded = exploration.replace_days(settings.exploration_table, os.path.join(job_dir, "exploration"),
                                      days=date_range.days())
    terminal.write(f"[3/4] exploration table {settings.exploration_table}: {loaded} rows replaced "
                   f"({time.monotonic() - started:.1f} s)\n")

    started = time.monotonic()
    published = spans.publish(job_dir, settings.spans)
    total_rows = sum(published.manifest["spans"][str(span)]["rows"] for span in published.spans)
    terminal.write(f"[4/4] spans in {settings.spans}: {len(published.written)} written, "
                   f"{len(published.unchanged)} unchanged, {total_rows} sessions "
                   f"({time.monotonic() - started:.1f} s)\n")
    shutil.rmtree(work, ignore_errors=True)
    terminal.write(f"collected {scope}: manifest {os.path.join(settings.spans, spans.MANIFEST_NAME)}\n")
    return 0


def _check_spark_environment(python: str) -> None:
    if not os.path.isfile(python):
        raise CollectionError(f"collection.spark.python {python} does not exist: the Spark job runs in its own "
                              f"Python 3.12 environment (as on Dataproc Serverless); create it with `make spark-env`")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise CollectionError("Spark needs Java (17), and neither `java` nor JAVA_HOME is found; install a JDK, "
                              "e.g. apt-get install openjdk-17-jre-headless")


def _run_spark_job(settings, rules, date_range: dates.DateRange, selection_dir: str, job_dir: str,
                   log_file: str, terminal: TextIO) -> None:
    command = [
        settings.spark.python, "-m", "collection.job",
        "--selection", selection_dir, "--output", job_dir, "--rules-json", rules.to_json(),
        "--date-from", date_range.first.isoformat(), "--date-to", date_range.last.isoformat(),
        "--span-epoch", settings.span_epoch, "--master", settings.spark.master,
        "--driver-memory", settings.spark.driver_memory, "--log-file", log_file,
    ]
    environment = dict(os.environ, PYTHONPATH=_REPOSITORY, PYSPARK_PYTHON=settings.spark.python)
    job = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    with open(log_file, "a", encoding="utf-8") as log:
        log.write(job.stdout + job.stderr)
    # The job's progress lines name its working folders; the terminal gets its join summary.
    for line in job.stdout.splitlines():
        if line.startswith("sessions:"):
            terminal.write(f"      {line}\n")
    if job.returncode == EXIT_USAGE:
        reason = next((line for line in reversed(job.stderr.splitlines()) if "error:" in line),
                      f"see {log_file}")
        raise CollectionError(f"the Spark job refused its input: {reason.strip()}. No span was changed.")
    if job.returncode != 0:
        raise JobFailed(f"the Spark job failed with exit code {job.returncode}; its log is in {log_file}, "
                        f"its input in {os.path.dirname(job_dir)}. No span was changed.")


def _error(message: str) -> int:
    print(f"repairml collect: error: {message}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
