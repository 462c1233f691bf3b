"""The repairml command: which module each command runs, with which arguments."""

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


def test_promote_runs_the_promotion_with_its_arguments(monkeypatch):
  from pipeline.production import promotion  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(promotion, 'main', lambda argv: calls.append(argv) or 0)

  assert cli.main(['promote', '--config', 'c.yaml', '--version', '3']) == 0

  assert calls == [['--config', 'c.yaml', '--version', '3']]
