"""`repairml data report`: the data-quality report of the collected table, one self-contained HTML file.

It reads what `repairml collect` wrote: the exploration table (a DuckDB file,
collection.exploration_table, table `collected_sessions`) and the span manifest
(SPANS/manifest.json). build_report computes the report's content
(CollectionReport): the collected table and its spans, TFDV statistics per
feature (collection/feature_stats.py), missing values and Tukey outliers, join
coverage and claim delays, label frequencies in the vocabulary's order
(collection/quality.py), and the manifest's rule counts. write_report renders
it with templates/report.html (Jinja2, autoescaped; charts are inline SVG from
collection/charts.py, no script, style sheet, font or image is fetched) and
writes statistics.pb, TFDV's proto, beside it. The production pipeline loads
the same values into BigQuery (collection/bigquery_stats.py).

  repairml data report [--config PATH] [--output PATH]

The default output is runs/collection/report.html: `collection/report.html`
beside the configuration's paths.metadata. TensorFlow's noise goes to
paths.log_file; the terminal gets progress lines.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import jinja2
import markupsafe
import pandas as pd
import pyarrow as pa

from collection import charts, quality
from collection.feature_stats import CategoricalFeature, NumericFeature
from collection.files import write_atomically
from collection.spans import MANIFEST_NAME

__all__ = ["ReportError", "CollectionReport", "SpanSummary", "RunSummary", "RULE_COUNTS", "TABLE_NAME",
           "build_report", "render_html", "write_report", "default_output", "input_paths",
           "read_collected_table", "read_manifest", "main"]

TABLE_NAME = "collected_sessions"
STATISTICS_NAME = "statistics.pb"
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
EXIT_USAGE = 2
EXIT_FAILED = 1

# The manifest's rule counts, in the order the job applies its rules (collection/rules.py), with what each counts.
RULE_COUNTS = {
    "uploads": "diagnostic uploads of the day read from the source",
    "duplicate_uploads": "uploads of one VIN within duplicate_upload_window_s of an earlier one, merged into it",
    "sessions": "sessions left after merging duplicate uploads",
    "dtc_readouts": "DTC readouts of those sessions",
    "normalised_codes": "DTC codes changed by normalisation (spaces stripped, upper-cased)",
    "converted_readings": "coolant temperatures converted to degrees Celsius from another unit",
    "unknown_units": "coolant temperatures in a unit not in coolant_temp_units, made missing",
    "claims": "warranty claims read from the source",
    "cancelled_claims": "claims dropped for a status in drop_claim_statuses",
    "duplicate_claims": "resubmitted claims (equal on claim_duplicate_key) dropped; the earliest is kept",
    "matched_claims": "claims matched to a session of their VIN within the claim delay window",
    "orphan_claims": "claims with no session of their VIN in the delay window, dropped",
    "sessions_with_claim": "sessions with at least one matched claim",
    "sessions_without_claim": "sessions with no matched claim (no repair labels)",
    "sessions_with_several_claims": "sessions with two or more matched claims",
    "superseded_part_lines": "claim part lines whose number was superseded, followed to the current number",
    "unmapped_part_lines": "claim part lines whose part number has no label, dropped",
    "unmapped_op_lines": "claim labour lines whose operation code has no label, dropped",
}
UNDOCUMENTED = "not a count this report knows (a newer collection job?)"

# The exploration table's columns besides the modeling table's (data/generator.py SESSION_SCHEMA).
JOIN_COLUMNS = ("vin", "workshop_id", "session_ts", "uploads", "claim_ids", "repair_date",
                "claim_delay_days", "claim_submitted_ts")
# Null exactly when the session has no claim.
CLAIM_COLUMNS = ("repair_date", "claim_delay_days", "claim_submitted_ts")
REQUIRED_JOIN_COLUMNS = ("claim_ids", "claim_delay_days")


class ReportError(Exception):
    """An input the report cannot use; the message is one line saying what, where and what to do."""


@dataclass(frozen=True)
class SpanSummary:
    span: int
    date: str
    rows: int                        # the manifest's
    table_rows: int                  # the exploration table's sessions of the span
    file: str
    uploads_max_ts: str
    claims_max_submitted_ts: str
    claims_complete: bool
    rule_counts: dict[str, int]


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    date_from: str
    date_to: str
    total: dict[str, int]


@dataclass(frozen=True)
class NumericColumn:
    """A numeric column's outliers and histogram."""

    outliers: quality.Outliers
    histogram: quality.Histogram


@dataclass
class CollectionReport:
    """Everything the report shows; statistics_rows (bigquery_stats.py) reads the same object."""

    table_path: str
    manifest_path: str
    rows: int
    first_date: str
    last_date: str
    spans: list[SpanSummary]
    runs: list[RunSummary]
    numeric_features: list[NumericFeature]
    categorical_features: list[CategoricalFeature]
    missing: list[quality.ColumnMissing]
    missing_with_claim: dict[str, int]   # CLAIM_COLUMNS: missing among sessions that have a claim
    numeric_columns: list[NumericColumn]
    coverage: quality.JoinCoverage
    delays: quality.ClaimDelays
    labels: list[quality.LabelFrequency]
    vocabulary_size: int
    rule_count_names: list[str]
    statistics: Any = field(repr=False)  # the DatasetFeatureStatisticsList
    generated_at: str = ""

    @property
    def never_occurring_labels(self) -> list[str]:
        return [f.label for f in self.labels if f.in_vocabulary and f.never_occurs]

    @property
    def unknown_labels(self) -> list[str]:
        return [f.label for f in self.labels if not f.in_vocabulary]

    @property
    def rule_count_totals(self) -> dict[str, int]:
        return {name: sum(s.rule_counts.get(name, 0) for s in self.spans) for name in self.rule_count_names}

    @property
    def latest_run(self) -> Optional[RunSummary]:
        return self.runs[-1] if self.runs else None


# --- Inputs ----------------------------------------------------------------------------


def _session_schema() -> pa.Schema:
    from data.generator import SESSION_SCHEMA  # pylint: disable=g-import-not-at-top
    return SESSION_SCHEMA


def read_collected_table(path: str) -> pd.DataFrame:
    """The exploration table's rows, ordered by session date and id."""
    import duckdb  # pylint: disable=g-import-not-at-top

    if not os.path.isfile(path):
        raise ReportError(f"no exploration table at {path} (collection.exploration_table): "
                          f"run `repairml collect` first")
    try:
        with duckdb.connect(path, read_only=True) as connection:
            tables = {row[0] for row in connection.execute(
                "SELECT table_name FROM information_schema.tables").fetchall()}
            if TABLE_NAME not in tables:
                raise ReportError(f"{path} holds no table {TABLE_NAME} (collection.exploration_table): "
                                  f"run `repairml collect` first")
            frame = connection.execute(
                f"SELECT * FROM {TABLE_NAME} ORDER BY session_date, session_id").df()
    except duckdb.Error as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ReportError(f"cannot read the exploration table {path}: {message}; run `repairml collect` "
                          f"again, or close the program that holds it") from None
    expected = list(_session_schema().names) + list(REQUIRED_JOIN_COLUMNS)
    absent = [c for c in expected if c not in frame.columns]
    if absent:
        raise ReportError(f"table {TABLE_NAME} in {path} lacks the columns {', '.join(absent)}: it was not "
                          f"written by this version of `repairml collect`; run `repairml collect` again")
    if frame.empty:
        raise ReportError(f"table {TABLE_NAME} in {path} holds no sessions: run `repairml collect` for "
                          f"dates the raw sources have")
    return frame


def read_manifest(path: str) -> dict[str, Any]:
    """The span manifest, checked for the keys the report reads."""
    if not os.path.isfile(path):
        raise ReportError(f"no span manifest at {path} (collection.spans): run `repairml collect` first")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as error:
        raise ReportError(f"cannot read the span manifest {path}: {error}; run `repairml collect` again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != 1 or not isinstance(
            manifest.get("spans"), dict):
        raise ReportError(f"{path} is not a span manifest of format 1 (with 'format' and 'spans'): "
                          f"run `repairml collect` again")
    for key, span in manifest["spans"].items():
        if not isinstance(span, dict) or not {"span", "date", "rows"} <= set(span):
            raise ReportError(f"{path}: span {key} lacks span, date or rows: run `repairml collect` again")
    return manifest


# --- The report's content ------------------------------------------------------------------


def _spans(manifest: dict[str, Any], frame: pd.DataFrame) -> list[SpanSummary]:
    table_rows = frame["span"].value_counts().to_dict()
    spans = []
    for span in sorted(manifest["spans"].values(), key=lambda s: int(s["span"])):
        watermarks = span.get("watermarks") or {}
        spans.append(SpanSummary(
            int(span["span"]), str(span["date"]), int(span["rows"]), int(table_rows.get(int(span["span"]), 0)),
            str(span.get("file", "")), str(watermarks.get("uploads_max_ts") or ""),
            str(watermarks.get("claims_max_submitted_ts") or ""), bool(span.get("claims_complete", False)),
            {str(k): int(v) for k, v in (span.get("rule_counts") or {}).items()}))
    return spans


def _runs(manifest: dict[str, Any]) -> list[RunSummary]:
    return [RunSummary(str(run.get("run_id", "")), str(run.get("date_from", "")), str(run.get("date_to", "")),
                       {str(k): int(v) for k, v in (run.get("total") or {}).items()})
            for run in manifest.get("runs") or []]


def _rule_count_names(spans: Sequence[SpanSummary], runs: Sequence[RunSummary]) -> list[str]:
    seen = {name for s in spans for name in s.rule_counts} | {name for r in runs for name in r.total}
    return [n for n in RULE_COUNTS if n in seen] + sorted(seen - set(RULE_COUNTS))


def _numeric_columns(frame: pd.DataFrame) -> list[str]:
    schema = _session_schema()
    session = [f.name for f in schema if (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
               and f.name != "span"]  # span is the day's number, not a measurement
    return session + [c for c in ("uploads", "claim_delay_days") if c in frame.columns]


def _is_integer_column(frame: pd.DataFrame, column: str) -> bool:
    return pd.api.types.is_integer_dtype(frame[column].dtype)


def build_report(frame: pd.DataFrame, manifest: dict[str, Any], vocabulary: Sequence[str], *,
                 table_path: str = "", manifest_path: str = "",
                 label_column: str = "repair_labels",
                 statistics: Any = None) -> CollectionReport:
    """The report's content from the exploration table's rows and the manifest.

    statistics: TFDV's DatasetFeatureStatisticsList of the frame; computed here
    (importing TensorFlow) when not given.
    """
    from collection import feature_stats  # pylint: disable=g-import-not-at-top

    try:
        spans, runs = _spans(manifest, frame), _runs(manifest)
    except (TypeError, ValueError, AttributeError) as error:
        raise ReportError(f"{manifest_path or 'the span manifest'}: a span or run has a malformed value "
                          f"({error}): run `repairml collect` again") from None
    schema = _session_schema()
    list_columns = [f.name for f in schema if pa.types.is_list(f.type)]
    if statistics is None:
        statistics = feature_stats.compute_statistics(frame, list(schema.names), list_columns)
    columns = list(schema.names) + [c for c in JOIN_COLUMNS if c in frame.columns]
    has_claim = frame["claim_ids"].map(lambda ids: not quality.is_missing(ids) and len(ids) > 0)
    numeric = [NumericColumn(quality.tukey_outliers(frame[column], column),
                             quality.value_histogram(frame[column], integer=_is_integer_column(frame, column)))
               for column in _numeric_columns(frame)]
    dates = frame["session_date"].astype(str)
    return CollectionReport(
        table_path=table_path, manifest_path=manifest_path, rows=len(frame),
        first_date=str(dates.min()), last_date=str(dates.max()), spans=spans, runs=runs,
        numeric_features=feature_stats.numeric_rows(statistics),
        categorical_features=feature_stats.categorical_rows(statistics, list_columns),
        missing=quality.missing_values(frame, columns),
        missing_with_claim={c: int(frame.loc[has_claim, c].map(quality.is_missing).sum())
                            for c in CLAIM_COLUMNS if c in frame.columns},
        numeric_columns=numeric,
        coverage=quality.join_coverage(frame),
        delays=quality.claim_delays(frame["claim_delay_days"]),
        labels=quality.label_frequencies(frame[label_column], vocabulary),
        vocabulary_size=len(vocabulary),
        rule_count_names=_rule_count_names(spans, runs),
        statistics=statistics,
        generated_at=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


# --- Rendering ---------------------------------------------------------------------------


def _count(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    value = float(value)
    if abs(value) >= 1e4:
        return f"{value:,.0f}" if abs(value) < 1e12 else f"{value:.4g}"
    if value.is_integer():
        return f"{int(value)}"
    return f"{value:.4g}"


def _charts(report: CollectionReport) -> dict[str, str]:
    coverage = report.coverage
    delays = report.delays
    delay_markers = {} if delays.median is None else {"median": delays.median, "95th percentile": delays.p95}
    bars = [charts.Bar(f.label, f.sessions, "" if f.in_vocabulary and not f.never_occurs
                       else ("never occurs" if f.in_vocabulary else "not in the vocabulary"))
            for f in report.labels]
    return {
        "coverage": charts.column_chart(
            [d.date for d in coverage.days], [d.share for d in coverage.days],
            title="Share of sessions with a claim, per day", x_label="session date",
            y_label="sessions with a claim", y_max=1.0, value_format=_percent),
        "delays": charts.histogram(
            delays.histogram.edges, delays.histogram.counts, title="Claim delay (days from session to repair)",
            x_label="claim_delay_days", markers=delay_markers) if delays.count else "",
        "labels": charts.bar_chart(bars, title="Sessions per repair label", value_label="sessions"),
    }


def _histogram_chart(column: NumericColumn) -> str:
    """The column's histogram with its Tukey fences marked."""
    outliers, histogram = column.outliers, column.histogram
    markers = {"lower fence": outliers.lower_fence, "upper fence": outliers.upper_fence} if outliers.values else {}
    return charts.histogram(histogram.edges, histogram.counts, title=outliers.column, x_label=outliers.column,
                            markers=markers)


def render_html(report: CollectionReport) -> str:
    """The report as one self-contained HTML page."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    environment.filters.update(count=_count, percent=_percent, number=_number)
    return environment.get_template("report.html").render(
        report=report, charts={k: markupsafe.Markup(v) for k, v in _charts(report).items()},
        histograms=[markupsafe.Markup(_histogram_chart(c)) for c in report.numeric_columns],
        rule_counts=RULE_COUNTS, undocumented=UNDOCUMENTED, claim_columns=CLAIM_COLUMNS)


# --- Writing and the command line -----------------------------------------------------------------


def default_output(config) -> str:
    """runs/collection/report.html: beside the configuration's paths.metadata (runs/metadata.sqlite)."""
    return os.path.join(os.path.dirname(config.paths.metadata), "collection", "report.html")


def _shown(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def input_paths(config) -> tuple[str, str]:
    """The exploration table's and the manifest's paths; ReportError if either file is missing."""
    table = config.collection.exploration_table
    if not (table.endswith(".duckdb") or os.sep in table):
        raise ReportError(f"collection.exploration_table is the BigQuery table {table!r}; `repairml data "
                          f"report` reads the local DuckDB file: set it to a .duckdb path (as in "
                          f"configs/local.yaml)")
    manifest = os.path.join(config.collection.spans, MANIFEST_NAME)
    if not os.path.isfile(table):
        raise ReportError(f"no exploration table at {table} (collection.exploration_table): "
                          f"run `repairml collect` first")
    if not os.path.isfile(manifest):
        raise ReportError(f"no span manifest at {manifest} (collection.spans): run `repairml collect` first")
    return table, manifest


def write_report(config, output_path: Optional[str] = None,
                 progress: Optional[Callable[[str], None]] = None) -> str:
    """Writes the report (and statistics.pb beside it) for the configuration's collected table; returns
    the report's path. Raises ReportError, before any TensorFlow import, when an input is missing."""
    from collection.feature_stats import write_statistics  # pylint: disable=g-import-not-at-top

    say = progress or (lambda line: None)
    output_path = os.path.abspath(output_path or default_output(config))
    table_path, manifest_path = input_paths(config)
    frame = read_collected_table(table_path)
    manifest = read_manifest(manifest_path)
    say(f"read {len(frame):,} sessions from {_shown(table_path)} and {len(manifest['spans'])} spans "
        f"from {_shown(manifest_path)}")
    report = build_report(frame, manifest, config.label.vocabulary, table_path=table_path,
                          manifest_path=manifest_path, label_column=config.label.column)
    statistics_path = os.path.join(os.path.dirname(output_path), STATISTICS_NAME)
    write_statistics(report.statistics, statistics_path)
    say(f"wrote {_shown(statistics_path)}")
    write_atomically(output_path, render_html(report).encode("utf-8"))
    say(f"wrote {_shown(output_path)}")
    return output_path


def main(argv: Optional[list[str]] = None) -> int:
    """`repairml data report`: 0; 2 with one line on stderr when an input is missing or unusable; 1
    with one line when the report itself failed (the traceback is in the log)."""
    from pipeline import progress  # pylint: disable=g-import-not-at-top
    from pipeline.config import DEFAULT_CONFIG_PATH, ConfigError, load_config  # pylint: disable=g-import-not-at-top

    parser = argparse.ArgumentParser(prog="repairml data report", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="the configuration (default %(default)s)")
    parser.add_argument("--output", default=None,
                        help="the HTML file to write (default: runs/collection/report.html under the "
                             "configuration's paths)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # argparse printed the usage error or the help
        return int(exit_request.code or 0)
    try:
        config = load_config(args.config)
        # The inputs are checked before TensorFlow is imported: a missing file costs no start-up.
        input_paths(config)
    except (ConfigError, ReportError) as error:
        print(f"repairml data report: {error}", file=sys.stderr)
        return EXIT_USAGE
    failure = None
    log_file = config.paths.log_file
    with progress.output_to_log_file(log_file) as terminal:
        terminal.write(f"log: {_shown(log_file)}\n")
        try:
            write_report(config, args.output, progress=lambda line: terminal.write(line + "\n"))
        except ReportError as error:
            failure = (EXIT_USAGE, str(error))
        except OSError as error:
            failure = (EXIT_USAGE, f"cannot write the report to {args.output or default_output(config)}: "
                                   f"{error.strerror or error}; choose a folder you can write to with --output")
        except Exception as error:  # pylint: disable=broad-except
            with open(log_file, "a", encoding="utf-8") as log:
                traceback.print_exc(file=log)
            first = (str(error).strip().splitlines() or [""])[0]
            failure = (EXIT_FAILED, f"failed, and wrote no report: {type(error).__name__}: {first} "
                                    f"(full log: {log_file})")
    if failure:
        print(f"repairml data report: {failure[1]}", file=sys.stderr)
        return failure[0]
    return 0


if __name__ == "__main__":
    sys.exit(main())
