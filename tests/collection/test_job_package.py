"""The job's code as Dataproc Serverless runs it: the main file, and a zip of exactly what it imports."""
import os
import subprocess

from collection import job_package

SPARK_PYTHON = os.path.abspath(".venv-spark/bin/python")  # make spark-env (make test builds it); not resolved: a venv python is a symlink


def test_the_zip_holds_the_modules_the_job_imports_and_no_others(tmp_path):
    package = job_package.build(str(tmp_path))
    assert {"collection/job.py", "collection/rules.py", "collection/dates.py"} <= set(package.modules)
    # Publishing, selection and the report run in the component image, not on Dataproc.
    assert not {"collection/spans.py", "collection/selection.py", "collection/report.py"} & set(package.modules)


def test_the_same_code_gives_the_same_zip(tmp_path):
    assert job_package.build(str(tmp_path / "a")).sha256 == job_package.build(str(tmp_path / "b")).sha256


def test_the_main_file_runs_with_only_the_zip_on_the_path(tmp_path):
    package = job_package.build(str(tmp_path / "code"))
    # As on Dataproc: python job.py, the zip on PYTHONPATH, no checkout nearby.
    result = subprocess.run([SPARK_PYTHON, package.main_file, "--help"], cwd=tmp_path, capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=package.package_zip), check=False)
    assert result.returncode == 0, result.stderr
    assert "--selection" in result.stdout and "--rules-json" in result.stdout
