"""The views of one run: its log's last error lines, its component graph,
and the key paths a diff compares; and the commands' malformed options."""

import json

import pytest

import cli

from lineage import diff, ui, why
from lineage.history import Run, Step


def _step(node, inputs=(), outputs=(), state='complete'):
  return Step(node_id=node, execution_id=hash(node) % 1000, state=state,
              started_ms=0, finished_ms=1500, inputs={'in': list(inputs)},
              outputs={'out': list(outputs)}, properties={})


def _run(steps, recorded=None):
  return Run(run_id='r', context_id=1, started_ms=0, finished_ms=1500,
             steps={s.node_id: s for s in steps}, recorded=recorded or {})


def test_the_log_excerpt_is_the_runs_own_last_traceback(tmp_path):
  log = tmp_path / 'repairml.log'
  earlier = 'Traceback (most recent call last):\n  x\nValueError: an older run\n'
  own = ('INFO:absl:Running Trainer\n'
         'Traceback (most recent call last):\n'
         '  File "models/training.py", line 3, in run_fn\n'
         'RuntimeError: the Trainer ran out of memory\n'
         'INFO:absl:Cleaning up\n')
  later = 'Traceback (most recent call last):\nKeyError: a later run\n'
  log.write_text(earlier + own + later)
  start = len(earlier.encode())
  run = _run([], {'repairml_log': json.dumps(
      {'path': str(log), 'start': start, 'end': start + len(own.encode())})})

  assert why.log_excerpt(run) == [
      'Traceback (most recent call last):',
      '  File "models/training.py", line 3, in run_fn',
      'RuntimeError: the Trainer ran out of memory']


def test_a_run_without_a_recorded_log_has_no_excerpt():
  assert why.log_excerpt(_run([])) == []


def test_the_graph_puts_each_step_right_of_what_it_read():
  run = _run([_step('ExampleGen', outputs=[1]),
              _step('StatisticsGen', inputs=[1], outputs=[2]),
              _step('Transform', inputs=[1], outputs=[3], state='cached'),
              _step('Trainer', inputs=[2, 3], outputs=[4])])

  drawn = ui.graph(run)

  x = {node['id']: node['x'] for node in drawn['nodes']}
  assert x['ExampleGen'] < x['StatisticsGen'] == x['Transform'] < x['Trainer']
  assert len(drawn['edges']) == 4
  states = {node['id']: node['state'] for node in drawn['nodes']}
  assert states['Transform'] == 'cached'


def test_a_configuration_diff_names_key_paths():
  before = diff.flatten({'training': {'learning_rate': 0.003, 'seed': 1},
                         'slices': [['country']]})
  after = diff.flatten({'training': {'learning_rate': 0.01, 'seed': 1},
                        'slices': [['country'], ['dtcs']]})

  assert diff.changed(before, after) == [
      {'key': 'slices', 'a': [['country']], 'b': [['country'], ['dtcs']]},
      {'key': 'training.learning_rate', 'a': 0.003, 'b': 0.01}]


@pytest.mark.parametrize('args, expected', [
    (['runs', '--limit', '-1'], 'a whole number of runs'),
    (['runs', '--limit', 'all'], 'a whole number of runs'),
    (['ui', '--port', '99999'], 'a port number from 1 to 65535'),
    (['ui', '--port', '0'], 'a port number from 1 to 65535'),
])
def test_malformed_options_are_one_line_errors(args, expected, capfd):
  with pytest.raises(SystemExit) as exit_code:
    cli.main(args)
  err = capfd.readouterr().err
  assert exit_code.value.code == 2
  assert expected in err and 'Traceback' not in err
  assert len(err.strip().splitlines()) == 1
