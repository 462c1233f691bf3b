"""Collection benchmark for BENCHMARKS.md: the Spark job against DuckDB alone, and what collection adds to make run.

In one invocation, so that the ratios share the machine's load, for each size
(50,000 and 500,000 sessions over 4 days, seed 42):
1. the raw sources are generated and selected (the selection SQL on DuckDB,
   collection/selection.py), once; not timed;
2. Spark's fixed start-up: a SparkSession on local[*] created and stopped in the
   job's own environment, as a whole process;
3. the Spark job (collection/job.py) on that selection, as a whole process;
4. the same join and clean in DuckDB alone (benchmarks/collection_duckdb.py), in
   process; its spans must have the Spark job's content fingerprints, or the
   benchmark stops;
and at 50,000 sessions, `repairml collect` and a cold `repairml run` on the
spans it wrote, each as a whole process: the goal is that collection adds at
most 30% to make run.

    .venv/bin/python benchmarks/collection_speed.py --json benchmarks/out/collection.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.collection_duckdb import join_with_duckdb  # noqa: E402
from collection import selection  # noqa: E402
from collection.dates import DateRange  # noqa: E402
from collection.rules import CollectionRules  # noqa: E402
from collection.spans import content_fingerprint  # noqa: E402
from pipeline.config import load_config  # noqa: E402

SPARK_PYTHON = ROOT / ".venv-spark" / "bin" / "python"
EPOCH = "2026-01-01"
_START_SPARK = ("from pyspark.sql import SparkSession; "
                "SparkSession.builder.master('local[*]').config('spark.ui.enabled', 'false')"
                ".getOrCreate().stop()")


def _timed(command: list[str], env: dict | None = None) -> float:
    started = time.monotonic()
    result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            check=False)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} ... failed ({result.returncode}): {result.stderr[-2000:]}")
    return seconds


def _spark_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), PYSPARK_PYTHON=str(SPARK_PYTHON))


def _fingerprints_of_job(job_dir: Path) -> dict[int, str]:
    fingerprints = {}
    for folder in sorted((job_dir / "sessions").glob("_span=*")):
        tables = [pq.read_table(path) for path in sorted(folder.glob("*.parquet"))]
        fingerprints[int(folder.name.split("=")[1])] = content_fingerprint(pa.concat_tables(tables))
    return fingerprints


def _fingerprints_of_table(table) -> dict[int, str]:
    return {span: content_fingerprint(table.filter(pc.equal(table.column("span"), span)))
            for span in sorted(set(table.column("span").to_pylist()))}


def measure_size(rows: int, workdir: Path, repeats: int) -> dict:
    raw = workdir / f"raw-{rows}"
    subprocess.run([str(ROOT / ".venv" / "bin" / "repairml"), "data", "generate", "--rows", str(rows), "--seed",
                    "42", "--spans", "4", "--raw", "--out", str(raw)], check=True, stdout=subprocess.DEVNULL)
    rules = CollectionRules()
    days = selection.source_range(str(raw))
    date_range = DateRange(days.first, days.last)
    staging = workdir / f"staging-{rows}"
    selection.select_locally(str(raw), str(staging), date_range, "", rules)
    startup, spark, duck = [], [], []
    for attempt in range(repeats):
        startup.append(_timed([str(SPARK_PYTHON), "-c", _START_SPARK], _spark_env()))
        job_dir = workdir / f"job-{rows}-{attempt}"
        spark.append(_timed([
            str(SPARK_PYTHON), "-m", "collection.job", "--selection", str(staging / "selection"),
            "--output", str(job_dir), "--rules-json", rules.to_json(), "--date-from", date_range.first.isoformat(),
            "--date-to", date_range.last.isoformat(), "--span-epoch", EPOCH, "--master", "local[*]",
            "--log-file", str(workdir / "spark.log")], _spark_env()))
        started = time.monotonic()
        table = join_with_duckdb(str(staging / "selection"), rules, date_range, EPOCH)
        duck.append(time.monotonic() - started)
        if _fingerprints_of_job(job_dir) != _fingerprints_of_table(table):
            sys.exit(f"at {rows} sessions the Spark job and DuckDB collected different spans: no figure")
        shutil.rmtree(job_dir)
    record = {"rows": rows, "spark_startup_s": statistics.median(startup), "spark_job_s": statistics.median(spark),
              "duckdb_s": statistics.median(duck)}
    record["spark_over_duckdb"] = record["spark_job_s"] / record["duckdb_s"]
    record["spark_job_without_startup_s"] = record["spark_job_s"] - record["spark_startup_s"]
    print(f"{rows:>8} sessions: Spark job {record['spark_job_s']:6.1f} s (start-up {record['spark_startup_s']:.1f} s), "
          f"DuckDB {record['duckdb_s']:6.1f} s, ratio {record['spark_over_duckdb']:.1f}", flush=True)
    return record


def measure_make_run_share(workdir: Path) -> dict:
    """`repairml collect` and a cold `repairml run` of the default configuration, in workdir."""
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    raw.update(schema=str(ROOT / raw["schema"]))
    raw["data"]["root"] = str(workdir / "sessions")
    raw["paths"] = {"pipeline_root": str(workdir / "pipeline"), "metadata": str(workdir / "metadata.sqlite"),
                    "serving_dir": str(workdir / "serving"), "log_file": str(workdir / "repairml.log")}
    raw["collection"] = {"raw": str(workdir / "raw-50000"), "exploration_table": str(workdir / "collected.duckdb")}
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    load_config(str(config))  # fails here, not after minutes, if the configuration is wrong
    repairml = str(ROOT / ".venv" / "bin" / "repairml")
    collect = _timed([repairml, "collect", "--config", str(config)])
    run = _timed([repairml, "run", "--config", str(config)])
    record = {"collect_s": collect, "run_s": run, "collect_share_of_make_run": collect / run}
    print(f"repairml collect {collect:.1f} s, repairml run (cold) {run:.1f} s: collection adds "
          f"{100 * collect / run:.0f}% (goal <= 30%)", flush=True)
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="50000,500000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-make-run", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not SPARK_PYTHON.is_file():
        sys.exit(f"{SPARK_PYTHON} is missing: make spark-env")
    with tempfile.TemporaryDirectory(prefix="collection-bench-") as tmp:
        workdir = Path(tmp)
        results = {"sizes": [measure_size(int(rows), workdir, args.repeats) for rows in args.sizes.split(",")]}
        if not args.skip_make_run and any(r["rows"] == 50000 for r in results["sizes"]):
            results["make_run"] = measure_make_run_share(workdir)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
