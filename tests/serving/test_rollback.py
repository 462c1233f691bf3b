"""`repairml model rollback | restore | list`: what they move and print, their
errors, and a real model store following them."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

import cli
from models import export, retirement
from models.versions import pushed_versions, retired_versions
from serving.model_store import ModelStore, VersionNotFoundError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NOT_AT_SERVING = ('repair_labels', 'session_date', 'span')


def fake_version(folder: Path) -> Path:
  """A folder models/versions.py counts as a complete version."""
  folder.mkdir(parents=True)
  (folder / 'saved_model.pb').write_text(folder.name)
  return folder


def config_for(tmp_path: Path, serving_dir: Path, more: str = '') -> str:
  """The local configuration, serving from `serving_dir`."""
  path = tmp_path / 'config.yaml'
  path.write_text(f'base: {PROJECT_ROOT / "configs" / "local.yaml"}\n'
                  f'paths:\n  serving_dir: {serving_dir}\n{more}')
  return str(path)


@pytest.fixture
def serving_dir(tmp_path) -> Path:
  serving = tmp_path / 'serving'
  for version in (3, 7, 12):
    fake_version(serving / str(version))
  (serving / '12' / 'assets.extra').mkdir()
  (serving / '12' / 'assets.extra' / 'repairml_provenance.json').write_text(
      json.dumps({'model_uri': '/runs/pipeline/Trainer/model/9/Format-Serving',
                  'model_artifact_id': 9, 'version': 12,
                  'pushed_at': '2026-11-28T09:15:02Z'}))
  return serving


@pytest.fixture
def config(tmp_path, serving_dir) -> str:
  return config_for(tmp_path, serving_dir)


def run(capsys, *argv):
  """The exit code, stdout and stderr of `repairml model ARGV...`."""
  try:
    code = cli.main(['model', *argv])
  except SystemExit as e:   # argparse's usage errors, as the console script
    code = e.code
  out, err = capsys.readouterr()
  return code, out, err


def test_rollback_retires_the_newest_and_says_what_is_served(
    config, serving_dir, capsys):
  code, out, err = run(capsys, 'rollback', '--config', config)

  assert (code, err) == (0, '')
  assert f'retired version 12 to {serving_dir}/retired/' in out
  assert ('The newest version is now 7: a running `repairml serve` follows '
          'within its poll interval (10 s, serving.poll_seconds)') in out
  assert sorted(os.listdir(serving_dir)) == ['.push.lock', '3', '7',
                                             'retired']
  assert os.listdir(serving_dir / 'retired') == ['12']


def test_rollback_to_a_version_retires_every_newer_one(config, serving_dir,
                                                       capsys):
  code, out, _ = run(capsys, 'rollback', '--to', '3', '--config', config)

  assert code == 0
  assert 'retired versions 12, 7 to' in out
  assert 'The newest version is now 3' in out
  assert sorted(os.listdir(serving_dir / 'retired')) == ['12', '7']


def test_rollback_to_the_newest_version_changes_nothing(config, serving_dir,
                                                        capsys):
  code, out, _ = run(capsys, 'rollback', '--to', '12', '--config', config)

  assert code == 0 and 'nothing retired' in out
  assert not (serving_dir / 'retired').exists()


def test_restore_brings_a_version_back(config, serving_dir, capsys):
  run(capsys, 'rollback', '--to', '3', '--config', config)

  code, out, err = run(capsys, 'restore', '7', '--config', config)

  assert (code, err) == (0, '')
  assert f'restored version 7 to {serving_dir / "7"}' in out
  assert 'The newest version is now 7' in out
  assert os.listdir(serving_dir / 'retired') == ['12']


def test_list_shows_pushed_and_retired_versions_and_the_served_one(
    config, capsys):
  run(capsys, 'rollback', '--config', config)

  code, out, _ = run(capsys, 'list', '--config', config)

  assert code == 0
  lines = out.splitlines()
  assert lines[1].split()[:2] == ['12', 'retired']
  assert 'pushed at 2026-11-28T09:15:02Z, model artifact 9' in lines[1]
  assert lines[2].split()[:2] == ['7', 'pushed']
  assert lines[2].endswith('<- served')
  assert lines[3].split()[:2] == ['3', 'pushed']
  assert '<- served' not in lines[1] + lines[3]


def test_list_as_json(config, serving_dir, capsys):
  run(capsys, 'rollback', '--config', config)

  code, out, _ = run(capsys, 'list', '--json', '--config', config)

  assert code == 0
  listing = json.loads(out)
  assert listing['served'] == 7
  assert listing['serving_dir'] == str(serving_dir)
  assert [(v['version'], v['state']) for v in listing['versions']] == [
      (12, 'retired'), (7, 'pushed'), (3, 'pushed')]
  assert listing['versions'][0]['path'] == str(serving_dir / 'retired' / '12')
  assert listing['versions'][0]['model_artifact_id'] == 9


def test_list_of_an_empty_serving_directory_says_how_to_fill_it(tmp_path,
                                                                capsys):
  config = config_for(tmp_path, tmp_path / 'absent')

  code, out, _ = run(capsys, 'list', '--config', config)

  assert code == 0 and 'no versions in' in out and 'make run' in out


@pytest.mark.parametrize('argv, message', [
    (['rollback', '--to', '5'], 'version 5 is not pushed'),
    (['rollback', '--to', 'five'], "invalid int value: 'five'"),
    (['restore', '7'], 'version 7 is not retired'),
    (['restore'], 'the following arguments are required: VERSION'),
    (['list', '--config', 'absent.yaml'],
     'absent.yaml: no such configuration file'),
])
def test_a_user_error_is_one_line_and_exit_code_2(config, serving_dir,
                                                  capsys, argv, message):
  if '--config' not in argv:
    argv = argv + ['--config', config]

  code, out, err = run(capsys, *argv)

  assert (code, out) == (2, '')
  assert err.count('\n') == 1 and message in err, err
  assert err.startswith(f'repairml model {argv[0]}: ')
  assert pushed_versions(str(serving_dir)) == [3, 7, 12]
  assert retired_versions(str(serving_dir)) == []


def test_the_last_version_is_not_rolled_back(tmp_path, capsys):
  serving = tmp_path / 'serving'
  fake_version(serving / '5')

  code, out, err = run(capsys, 'rollback', '--config',
                       config_for(tmp_path, serving))

  assert (code, out) == (2, '')
  assert 'version 5 is the only version' in err and err.count('\n') == 1
  assert os.listdir(serving / '5') == ['saved_model.pb']


def test_a_filesystem_refusal_is_one_line_and_exit_code_1(
    config, monkeypatch, capsys):
  def refuse(*_):
    raise PermissionError(13, 'Permission denied', '/srv/serving/12')

  monkeypatch.setattr(os, 'rename', refuse)

  code, out, err = run(capsys, 'rollback', '--config', config)

  assert (code, out) == (1, '')
  assert 'Permission denied' in err and err.count('\n') == 1


def test_the_commands_do_not_import_tensorflow(config):
  listed = subprocess.run(
      [sys.executable, '-c',
       'import sys, cli\n'
       f'code = cli.main(["model", "list", "--config", {config!r}])\n'
       'heavy = [m for m in ("tensorflow", "tfx", "apache_beam", "numpy")\n'
       '         if m in sys.modules]\n'
       'assert not heavy, heavy\n'
       'sys.exit(code)'],
      cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)

  assert listed.returncode == 0, listed.stderr
  assert 'newest first' in listed.stdout


def test_it_names_the_configured_poll_interval(tmp_path, serving_dir,
                                               capsys):
  config = config_for(tmp_path, serving_dir,
                      'serving:\n  poll_seconds: 2.5\n')

  out = run(capsys, 'rollback', '--config', config)[1]

  assert 'within its poll interval (2.5 s, serving.poll_seconds)' in out


def test_a_server_that_does_not_poll_is_told_to_restart(tmp_path, serving_dir,
                                                        capsys):
  config = config_for(tmp_path, serving_dir, 'serving:\n  poll_seconds: 0\n')

  code, out, _ = run(capsys, 'rollback', '--config', config)

  assert code == 0 and 'does not look for it: restart it' in out


# --- A real model store follows -----------------------------------------------


def instances_of(rows):
  return [{k: v for k, v in row.items() if k not in NOT_AT_SERVING}
          for row in rows]


def push_with_thresholds(export_dir: str, target: Path, thresholds) -> None:
  """Copies the exported model in as a version whose decision thresholds are
  `thresholds`: in the graph, where `recommended` is computed (a constant of
  the export, models/export.py), and in assets/thresholds.txt."""
  shutil.copytree(export_dir, target)
  graph_file = target / 'saved_model.pb'
  saved_model = saved_model_pb2.SavedModel.FromString(graph_file.read_bytes())
  original = np.asarray(export.load_thresholds(export_dir), np.float32)
  replaced = 0
  for node in saved_model.meta_graphs[0].graph_def.node:
    if node.op == 'Const' and (
        node.attr['dtype'].type == tf.float32.as_datatype_enum):
      value = tf.make_ndarray(node.attr['value'].tensor)
      if value.shape == original.shape and np.allclose(value, original):
        node.attr['value'].tensor.CopyFrom(tf.make_tensor_proto(
            np.asarray(thresholds, np.float32)))
        replaced += 1
  assert replaced == 1, ('the export no longer holds its thresholds as one '
                         'constant: find another way to make versions differ')
  graph_file.write_bytes(saved_model.SerializeToString())
  (target / 'assets' / export.THRESHOLDS_ASSET).write_text(
      ''.join(f'{t!r}\n' for t in thresholds))


def test_a_model_store_follows_rollback_and_restore(exported_model, tmp_path,
                                                     capsys):
  serving = tmp_path / 'serving'
  shutil.copytree(exported_model.export_dir, serving / '1')
  labels = len(exported_model.thresholds)
  push_with_thresholds(exported_model.export_dir, serving / '2',
                       [0.0] * labels)   # version 2 recommends every label
  config = config_for(tmp_path, serving)
  store = ModelStore(str(serving))

  def served():
    model = store.reload()
    outputs = model.predict(model.serialized(instances_of(
        exported_model.held_out_rows)))
    return model.version, outputs['recommended']

  version, recommended = served()
  assert version == 2 and recommended.all()

  assert run(capsys, 'rollback', '--config', config)[0] == 0
  version, recommended = served()
  assert version == 1
  assert not recommended.all()   # the versions really differ

  assert run(capsys, 'restore', '2', '--config', config)[0] == 0
  version, recommended = served()
  assert version == 2 and recommended.all()


def test_a_retired_version_no_longer_answers_by_number(exported_model,
                                                       tmp_path):
  """Even while it is still in memory: asking for it by number is a 'not
  found', as for a version never pushed."""
  for version in (1, 2):
    shutil.copytree(exported_model.export_dir, tmp_path / str(version))
  store = ModelStore(str(tmp_path))
  store.reload()
  assert store.get(1).version == 1          # loaded, kept in memory
  retirement.retire(str(tmp_path), to_version=1)
  store.reload()
  assert store.current().version == 1
  with pytest.raises(VersionNotFoundError):
    store.get(2)
