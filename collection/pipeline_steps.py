"""The production collection pipeline's first step, in the component image: which days a run collects.

`python -m collection.pipeline_steps resolve-dates ...` resolves the run's
date_from, date_to and car model with collection.dates.resolve_range (explicit
dates win; without them the collection.window_days days up to yesterday, UTC)
and writes, as KFP output parameters, what the later steps need of them: the
two dates, the BigQuery job's query parameters (selection.py) and the
collection job's arguments (collection/job.py). KFP cannot put an upstream
output into a list argument, so the lists are built here. An open bound with
window_days 0 asks BigQuery for the raw uploads' first or last date.
A value the user gave that cannot be used: one line, exit code 2.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import warnings
from typing import Any, Optional, Sequence

from collection import selection
from collection.dates import DateError, DateRange, resolve_range
from collection.rules import CollectionRules, RulesError

__all__ = ["resolved_outputs", "job_args", "bigquery_source_range", "main"]


def job_args(selection_uri: str, job_dir: str, rules: CollectionRules, date_range: DateRange,
             span_epoch: str) -> list[str]:
    """The arguments of collection/job.py for a run: the same flags locally and on Dataproc."""
    return ["--selection", selection_uri, "--output", job_dir, "--rules-json", rules.to_json(),
            "--date-from", date_range.first.isoformat(), "--date-to", date_range.last.isoformat(),
            "--span-epoch", span_epoch]


def _check_car_model(car_model: str) -> None:
    from pipeline import bigquery_values  # the modeling source's rule for a car model

    try:
        bigquery_values.checked_filter(bigquery_values.SessionFilter(car_model=car_model))
    except bigquery_values.QueryError as error:
        raise DateError(f"car_model: {error.problem}") from None


def resolved_outputs(date_from: str, date_to: str, car_model: str, window_days: int, span_epoch: str,
                     rules: CollectionRules, selection_uri: str, job_dir: str, today: datetime.date,
                     source_range=None) -> dict[str, Any]:
    """The step's outputs: date_from, date_to, query_parameters, job_args."""
    _check_car_model(car_model)
    date_range = resolve_range(date_from, date_to, window_days, today, source_range, span_epoch)
    if date_range is None:
        raise DateError("the raw uploads table holds no sessions: there is nothing to collect")
    return {
        "date_from": date_range.first.isoformat(),
        "date_to": date_range.last.isoformat(),
        "query_parameters": selection.bigquery_query_parameters(
            date_range.first.isoformat(), date_range.last.isoformat(), car_model, rules),
        "job_args": job_args(selection_uri, job_dir, rules, date_range, span_epoch),
    }


def bigquery_source_range(raw_dataset: str, client: Any) -> Optional[DateRange]:
    """The first and last upload dates of the raw dataset's diagnostic_sessions; None when it is empty."""
    [row] = list(client.query(selection.bigquery_source_range_sql(raw_dataset)).result())
    return None if row["first_day"] is None else DateRange(row["first_day"], row["last_day"])


def _lazy_bigquery_source_range(raw_dataset: str, project: str, location: str):
    """bigquery_source_range with a client of the step's credentials, made only if resolve_range asks."""
    def source_range() -> Optional[DateRange]:
        from google.cloud import bigquery

        return bigquery_source_range(raw_dataset, bigquery.Client(project=project or None,
                                                                  location=location or None))
    return source_range


def _write_output(path: str, value: Any) -> None:
    """A KFP output parameter file: the string itself, or JSON for a list."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(value if isinstance(value, str) else json.dumps(value))
    os.replace(temporary, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collection.pipeline_steps")
    commands = parser.add_subparsers(dest="command", required=True)
    resolve = commands.add_parser("resolve-dates", help="the days and settings of one collection run")
    for name in ("--date-from", "--date-to", "--car-model"):
        resolve.add_argument(name, default="")
    resolve.add_argument("--window-days", type=int, required=True)
    resolve.add_argument("--span-epoch", required=True)
    resolve.add_argument("--rules-json", required=True)
    resolve.add_argument("--raw-dataset", required=True)
    resolve.add_argument("--selection-uri", required=True)
    resolve.add_argument("--job-dir", required=True)
    resolve.add_argument("--project", default="")
    resolve.add_argument("--location", default="")
    for name in ("date-from", "date-to", "query-parameters", "job-args"):
        resolve.add_argument(f"--out-{name}", required=True, metavar="PATH")
    args = parser.parse_args(argv)
    # google.api_core warns on import that Python 3.10 is unsupported: harmless (PLATFORM.md), and
    # the step's log is for its own lines.
    warnings.filterwarnings("ignore", message="You are using a non-supported Python version",
                            category=FutureWarning)
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    try:
        rules = CollectionRules.from_json(args.rules_json)
        outputs = resolved_outputs(
            args.date_from, args.date_to, args.car_model, args.window_days, args.span_epoch, rules,
            args.selection_uri, args.job_dir, datetime.datetime.now(datetime.timezone.utc).date(),
            _lazy_bigquery_source_range(args.raw_dataset, args.project, args.location))
    except (DateError, RulesError, selection.SelectionError) as error:
        print(f"repairml: {error}", file=sys.stderr)
        return 2
    except (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError) as error:
        print(f"repairml: reading the first and last upload dates of {args.raw_dataset} failed: "
              f"{' '.join(str(error).split())}", file=sys.stderr)
        return 1
    for name, value in outputs.items():
        _write_output(getattr(args, f"out_{name}"), value)
    print(f"collecting {outputs['date_from']}..{outputs['date_to']}"
          + (f", car model {args.car_model}" if args.car_model else ", every car model"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
