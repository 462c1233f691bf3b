"""`repairml collect`: what a user gets wrong is one line and exit 2, before anything is written."""
import yaml

import cli
from data.generator import generate_sessions
from data.raw_sources import raw_sources, write_raw_sources


def _config(tmp_path, **collection):
    raw = yaml.safe_load(open("configs/local.yaml", encoding="utf-8"))
    raw["data"]["root"] = str(tmp_path / "sessions")
    raw["paths"] = {"pipeline_root": str(tmp_path / "runs" / "pipeline"),
                    "metadata": str(tmp_path / "runs" / "metadata.sqlite"),
                    "serving_dir": str(tmp_path / "runs" / "serving"),
                    "log_file": str(tmp_path / "runs" / "logs" / "repairml.log")}
    raw["collection"] = {"raw": str(tmp_path / "raw"), "exploration_table": str(tmp_path / "collected.duckdb"),
                         **collection}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _collect(capfd, *args):
    capfd.readouterr()
    code = cli.main(["collect", *args])
    return code, capfd.readouterr().err


def _one_line(err):
    assert err.startswith("repairml collect: error: ") and err.count("\n") == 1, err
    return err


def test_missing_raw_sources_say_how_to_generate_them(tmp_path, capfd):
    code, err = _collect(capfd, "--config", _config(tmp_path))
    assert code == 2
    assert "repairml data generate" in _one_line(err) and "--raw" in err


def test_a_missing_spark_environment_says_make_spark_env(tmp_path, capfd):
    write_raw_sources(raw_sources(generate_sessions(200, seed=1, spans=2), seed=1), tmp_path / "raw")
    config = _config(tmp_path, spark={"python": str(tmp_path / "no-such-venv" / "bin" / "python")})
    code, err = _collect(capfd, "--config", config)
    assert code == 2 and "make spark-env" in _one_line(err)
    assert not (tmp_path / "sessions").exists()


def test_dates_are_checked_before_anything_runs(tmp_path, capfd):
    write_raw_sources(raw_sources(generate_sessions(200, seed=1, spans=2), seed=1), tmp_path / "raw")
    code, err = _collect(capfd, "--config", _config(tmp_path), "--date-from", "2026-01-02", "--date-to", "2026-01-01")
    assert code == 2 and "is after --date-to" in _one_line(err)
    code, err = _collect(capfd, "--config", _config(tmp_path), "--date-from", "yesterday")
    assert code == 2 and "YYYY-MM-DD" in _one_line(err)


def test_an_invalid_rule_names_its_key(tmp_path, capfd):
    config = _config(tmp_path, rules={"max_claim_delay_days": -3})
    code, err = _collect(capfd, "--config", config)
    assert code == 2 and "collection.rules.max_claim_delay_days" in _one_line(err)


def test_a_car_model_is_refused_so_that_no_other_model_s_sessions_are_replaced(tmp_path, capfd):
    write_raw_sources(raw_sources(generate_sessions(200, seed=1, spans=2), seed=1), tmp_path / "raw")
    code, err = _collect(capfd, "--config", _config(tmp_path), "--car-model", "compact_suv")
    assert code == 2 and "one model's sessions would replace the others'" in _one_line(err)
    assert not (tmp_path / "sessions").exists() and not (tmp_path / "collected.duckdb").exists()
