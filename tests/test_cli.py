"""The repairml command: which module each command runs, with which arguments."""

import subprocess
import sys
from pathlib import Path

import kubeflow_runner

import cli


def test_help_lists_every_command(capsys):
  assert cli.main(['--help']) == 0
  out = capsys.readouterr().out
  for words in cli.COMMANDS:
    assert ' '.join(words) in out


def test_an_unknown_command_is_a_usage_error(capsys):
  assert cli.main(['deploy']) == 2
  assert "unknown command 'deploy'" in capsys.readouterr().err


def test_submit_compiles_and_submits_unless_told_to_schedule(monkeypatch):
  calls = []
  monkeypatch.setattr(kubeflow_runner, 'main',
                      lambda argv: calls.append(argv) or 0)

  cli.main(['submit', '--config', 'c.yaml'])
  cli.main(['submit', '--schedule', '0 3 * * 1'])
  cli.main(['submit', '--kfp-host=http://kfp'])
  cli.main(['compile', '--output', 'p.json'])

  assert calls == [['--config', 'c.yaml', '--submit'],
                   ['--schedule', '0 3 * * 1'],
                   ['--kfp-host=http://kfp'],
                   ['--output', 'p.json']]


def test_compile_does_not_send_anything(capsys):
  assert cli.main(['compile', '--submit']) == 2
  assert 'repairml submit' in capsys.readouterr().err


def test_bench_quality_without_the_benchmarks_says_so_in_one_line(
    monkeypatch, tmp_path, capsys):
  # As in the component image: cli.py is installed, the benchmarks are not.
  monkeypatch.setattr(cli, 'CHECKOUT_DIR', str(tmp_path))

  assert cli.main(['bench', 'quality']) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1, err
  assert 'benchmarks are not installed' in err
  assert 'checkout' in err


def test_bench_quality_imports_the_benchmarks_of_the_checkout(tmp_path):
  # As the console script runs: the checkout is not on sys.path, and setup.py
  # installs no benchmarks. Importing benchmarks.quality itself would take a
  # minute here (TensorFlow), so the test stops at finding it.
  checkout = str(Path(cli.__file__).resolve().parent)
  found = subprocess.run(
      [sys.executable, '-c',
       'import importlib.util, sys\n'
       f'sys.path = [p for p in sys.path if p not in ("", {checkout!r})]\n'
       'assert importlib.util.find_spec("benchmarks") is None, "installed"\n'
       'import cli\n'
       'assert cli._benchmarks_importable()\n'
       'print(importlib.util.find_spec("benchmarks.quality").origin)'],
      cwd=tmp_path, capture_output=True, text=True, check=True)

  assert found.stdout.strip() == str(Path(checkout) / 'benchmarks' /
                                     'quality.py')


def test_promote_runs_the_promotion_with_its_arguments(monkeypatch):
  from pipeline.production import promotion  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(promotion, 'main', lambda argv: calls.append(argv) or 0)

  assert cli.main(['promote', '--config', 'c.yaml', '--version', '3']) == 0

  assert calls == [['--config', 'c.yaml', '--version', '3']]


def test_model_commands_run_the_rollback_module_with_their_action(
    monkeypatch):
  from serving import rollback  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(rollback, 'main', lambda argv: calls.append(argv) or 0)

  assert cli.main(['model', 'rollback', '--to', '3']) == 0
  assert cli.main(['model', 'restore', '4', '--config', 'c.yaml']) == 0
  assert cli.main(['model', 'list', '--json']) == 0

  assert calls == [['rollback', '--to', '3'],
                   ['restore', '4', '--config', 'c.yaml'],
                   ['list', '--json']]
