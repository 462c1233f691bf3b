"""End to end: generated raw sources -> `repairml collect` (DuckDB selection, the Spark job, the exploration
table, publishing) -> the spans the modeling pipeline trains on (the workspace of conftest.py).

The reference answer is the generator's own joined table: the raw sources are taken apart from it
(data/raw_sources.py), so a correct collection gives it back.
"""
import os
import signal
import subprocess
import sys
import time

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from calibration import assert_calibrated
from pipeline_runs import GENERATED, collection_config

from collection import cli as collection_cli
from data.generator import LABELS, SESSION_SCHEMA, generate_sessions, posterior
from data.raw_sources import raw_sources

pytestmark = pytest.mark.slow

_LISTS = ("dtcs", "symptoms", "repair_labels")


def _collected(workspace) -> pd.DataFrame:
    frames = [pq.read_table(path).to_pandas() for path in sorted((workspace / "sessions").glob("span-*/*.parquet"))]
    return pd.concat(frames).sort_values("session_id").reset_index(drop=True)


def _generated() -> pd.DataFrame:
    return generate_sessions(**GENERATED).sort_values("session_id").reset_index(drop=True)


def _files(folder):
    return {path: (path.read_bytes(), os.stat(path).st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_the_collected_spans_are_the_generated_sessions(workspace):
    collected, generated = _collected(workspace), _generated()

    assert pq.read_schema(next((workspace / "sessions").glob("span-0/*.parquet"))).equals(SESSION_SCHEMA)
    assert collected["session_id"].tolist() == generated["session_id"].tolist()
    for column in SESSION_SCHEMA.names:
        if column in _LISTS:
            assert [set(v) for v in collected[column]] == [set(v) for v in generated[column]], column
        elif column == "coolant_temp_c":  # converted back from degF for US testers
            np.testing.assert_allclose(collected[column], generated[column], rtol=1e-9, equal_nan=True)
        else:
            pd.testing.assert_series_equal(collected[column], generated[column], check_dtype=False, obj=column)


def test_every_session_with_labels_got_its_claim(workspace):
    with duckdb.connect(str(workspace / "collected.duckdb"), read_only=True) as db:
        claimed, labelled = db.execute(
            "SELECT count(*) FILTER (WHERE len(claim_ids) > 0), count(*) FILTER (WHERE len(repair_labels) > 0) "
            "FROM collected_sessions").fetchone()
        delays = db.execute("SELECT min(claim_delay_days), max(claim_delay_days) FROM collected_sessions").fetchone()
    generated = _generated()
    assert claimed == labelled == int((generated["repair_labels"].map(len) > 0).sum())
    assert 1 <= delays[0] and delays[1] <= 45


def test_the_rule_counts_are_the_injected_mess(workspace):
    manifest = collection_cli.spans.read_manifest(str(workspace / "sessions"))
    (run,) = manifest["runs"]
    mess = raw_sources(generate_sessions(**GENERATED), seed=GENERATED["seed"]).mess_counts
    total = run["total"]
    assert total["sessions"] == mess["sessions"] == GENERATED["rows"]
    assert total["duplicate_uploads"] == mess["duplicate_uploads"]
    assert total["orphan_claims"] == mess["orphan_claims"]
    assert total["cancelled_claims"] == mess["cancelled_claims"]
    assert total["duplicate_claims"] == mess["resubmitted_duplicates"]
    assert total["matched_claims"] == mess["valid_claims"]
    assert sum(span["rule_counts"]["sessions"] for span in manifest["spans"].values()) == GENERATED["rows"]


def test_on_the_collected_table_the_posterior_is_still_calibrated(workspace):
    collected = _collected(workspace)
    probabilities = posterior(collected)
    position = {label: j for j, label in enumerate(LABELS)}
    labels = np.zeros(probabilities.shape, dtype=bool)
    for i, names in enumerate(collected["repair_labels"]):
        labels[i, [position[name] for name in names]] = True
    assert_calibrated(probabilities, labels, np.linspace(0, 1 + 1e-9, 11), "collected sessions, tenths")
    tolerance = 4 * np.sqrt(probabilities.mean(axis=0) * (1 - probabilities.mean(axis=0)) / len(labels)) + 0.003
    assert (np.abs(labels.mean(axis=0) - probabilities.mean(axis=0)) <= tolerance).all()


def test_collecting_the_same_days_again_changes_no_file(workspace, capfd):
    spans_dir = workspace / "sessions"
    before = _files(spans_dir)
    with duckdb.connect(str(workspace / "collected.duckdb"), read_only=True) as db:
        table_before = db.execute("SELECT * FROM collected_sessions ORDER BY session_id").fetchall()

    assert collection_cli.main(["--config", collection_config(workspace, "collect_again")]) == 0

    assert _files(spans_dir) == before
    assert "0 written, 2 unchanged" in capfd.readouterr().out
    with duckdb.connect(str(workspace / "collected.duckdb"), read_only=True) as db:
        assert db.execute("SELECT * FROM collected_sessions ORDER BY session_id").fetchall() == table_before


def test_a_collection_killed_during_the_spark_job_leaves_every_span_as_it_was(workspace, tmp_path):
    spans_dir = workspace / "sessions"
    before = _files(spans_dir)
    # Other rules, so that a finished run would rewrite the spans.
    config = collection_config(workspace, "collect_killed", rules={"max_claim_delay_days": 5})
    run = subprocess.Popen([sys.executable, "-c", "import sys, cli; sys.exit(cli.main(sys.argv[1:]))",
                            "collect", "--config", config], start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = workspace / "collection"
    deadline = time.monotonic() + 240
    # The selection's last file is written just before the Spark job starts.
    while not any(work.glob("*/selection/labour_reference.parquet")) and run.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    assert run.poll() is None, "the collection finished before it could be killed"
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()

    assert _files(spans_dir) == before
    assert collection_cli.spans.check_spans(str(spans_dir)) == []


def test_the_first_run_trained_on_the_collected_spans_and_pushed(first_run, workspace):
    config, summary, _ = first_run
    assert config.data.root == str(workspace / "sessions")
    assert (workspace / "sessions" / "manifest.json").is_file()
    assert summary.status == "pushed" and summary.pushed_model_dir
    assert summary.metrics["macro_f1"] >= config.evaluation.macro_f1_lower_bound > 0
