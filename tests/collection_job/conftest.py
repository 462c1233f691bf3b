"""Fixtures of the collection job's tests (Python 3.12, .venv-spark).

`spark`: one local[2] SparkSession for the whole run, set up as the job's CLI
sets it up (collection.job.spark_session), its output in a log file.
write_selection writes a selection folder (TABLE.parquet per raw table, with
data/raw_sources.py RAW_SCHEMAS) from plain rows; run_job runs the job in
process (collection.job.run, which the CLI calls) and reads back what it wrote,
checking on the way that each span folder holds exactly one parquet file.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collection import job
from collection.rules import CollectionRules
from data.raw_sources import RAW_SCHEMAS

REPO = Path(__file__).resolve().parents[2]
EPOCH = datetime.date(2026, 1, 1)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    log_file = tmp_path_factory.mktemp("spark") / "spark.log"
    session = job.spark_session("local[2]", driver_memory="1g", log_file=str(log_file))
    yield session
    session.stop()


def write_selection(folder: Path, **tables: list[dict]) -> Path:
    """SELECTION/TABLE.parquet for each of the five raw tables; a table not given is empty."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in RAW_SCHEMAS.items():
        rows = tables.get(name, [])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / f"{name}.parquet")
    return folder


def spans_of(folder: Path) -> dict[int, pa.Table]:
    """span -> the table of OUTPUT/KIND/_span=K/, asserting exactly one parquet file per span."""
    spans = {}
    for span_dir in sorted(folder.glob("_span=*")):
        files = sorted(p for p in span_dir.iterdir() if p.name.endswith(".parquet"))
        assert len(files) == 1, f"{span_dir} holds {len(files)} parquet files: {files}"
        hidden = [p.name for p in span_dir.iterdir() if p not in files]
        assert hidden == [], f"{span_dir} holds other files: {hidden}"
        spans[int(span_dir.name.split("=", 1)[1])] = pq.read_table(files[0])
    return spans


@dataclass
class JobOutput:
    counts: dict
    sessions: dict[int, pa.Table]
    exploration: dict[int, pa.Table]
    progress: list[str] = field(default_factory=list)
    output: Path = Path()

    def rows(self, kind: str = "sessions") -> dict[str, dict]:
        """session_id -> row, over all spans."""
        tables = getattr(self, kind)
        return {row["session_id"]: row for span in sorted(tables) for row in tables[span].to_pylist()}


def run_job(spark, selection: Path, output: Path, rules: CollectionRules = CollectionRules(),
            date_from: str = "2026-01-01", date_to: str = "2026-01-07") -> JobOutput:
    progress: list[str] = []
    counts = job.run(spark, str(selection), str(output), rules, datetime.date.fromisoformat(date_from),
                     datetime.date.fromisoformat(date_to), EPOCH, progress=progress.append)
    written = json.loads((output / "rule_counts.json").read_text())
    assert written == counts
    return JobOutput(counts=counts, sessions=spans_of(output / "sessions"),
                     exploration=spans_of(output / "exploration"), progress=progress, output=output)


def run_cli(args: list[str], module: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    """The job as a process: `python -m collection.job` or `python collection/job.py`."""
    command = [sys.executable, "-m", "collection.job"] if module else [sys.executable, "collection/job.py"]
    env = {**os.environ, "PYTHONPATH": str(REPO)} if module else {
        k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(command + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
