"""Code versions: each component's cache key follows exactly the project code
it runs, so an edit re-runs that component (and, through its new outputs,
what depends on it) and nothing upstream."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline import code_version

PROJECT_ROOT = Path(code_version.PROJECT_ROOT)


def test_a_module_includes_what_it_imports_and_their_packages():
  files = code_version.source_files(['models.training'])

  assert {'models/__init__.py', 'models/training.py', 'models/model.py',
          'models/losses.py', 'models/export.py', 'preprocessing/__init__.py',
          'preprocessing/transform.py'} <= set(files)
  assert not any(f.startswith(('pipeline/', 'serving/', 'data/'))
                 for f in files)


def test_an_import_inside_a_function_counts():
  # serving/pushed.py imports models.export only where a model is read.
  assert 'models/export.py' in code_version.source_files(['serving.pushed'])


def test_the_gate_depends_on_no_model_code():
  assert code_version.source_files(['pipeline.components.data_gate']) == [
      'pipeline/__init__.py', 'pipeline/components/__init__.py',
      'pipeline/components/data_gate.py']


def test_the_version_follows_the_file_content(tmp_path, monkeypatch):
  package = tmp_path / 'demo'
  package.mkdir()
  (package / '__init__.py').write_text('')
  (package / 'helper.py').write_text('VALUE = 1\n')
  (package / 'main.py').write_text('from demo import helper\n')
  monkeypatch.setattr(code_version, 'PROJECT_ROOT', str(tmp_path))
  monkeypatch.setattr(code_version, 'PROJECT_PACKAGES', frozenset({'demo'}))
  before = code_version.code_version('demo.main')

  (package / 'helper.py').write_text('VALUE = 2\n')

  assert code_version.code_version('demo.main') != before
  assert code_version.source_files(['demo.main']) == [
      'demo/__init__.py', 'demo/helper.py', 'demo/main.py']


# Compiles the pipeline of configs/local.yaml as the tree stands, once per
# edit, and prints each node's execution parameters: with its inputs, what
# TFX's cache key is made of.
_NODE_PARAMETERS = textwrap.dedent('''
    import hashlib, json, sys
    from tfx.dsl.compiler import compiler
    from pipeline.config import load_config
    from pipeline.pipeline import create_pipeline

    def parameters():
      ir = compiler.Compiler().compile(
          create_pipeline(load_config('configs/local.yaml')))
      return {node.pipeline_node.node_info.id: hashlib.sha256(
                  node.pipeline_node.parameters.SerializeToString(
                      deterministic=True)).hexdigest()
              for node in ir.nodes}

    result = {'': parameters()}
    for path in sys.argv[1:]:
      original = open(path).read()
      with open(path, 'a') as f:
        f.write('\\n# an edit\\n')
      result[path] = parameters()
      with open(path, 'w') as f:
        f.write(original)
    print(json.dumps(result))
''')

# The file edited -> the components whose own key must change.
EDITS = {
    'pipeline/components/example_gen.py': {'FileBasedExampleGen'},
    'pipeline/components/data_gate.py': {'DataGate'},
    'preprocessing/transform.py': {'Transform', 'Tuner', 'Trainer'},
    'models/losses.py': {'Tuner', 'Trainer'},
    'models/tuning.py': {'Tuner'},
    'models/training.py': {'Tuner', 'Trainer'},
    # The TFMA metric module, and the threshold arithmetic it shares with the
    # Trainer.
    'pipeline/multilabel_metrics.py': {'Evaluator'},
    'models/thresholds.py': {'Tuner', 'Trainer', 'Evaluator'},
    'pipeline/components/evaluator.py': {'Evaluator'},
    'pipeline/components/atomic_pusher.py': {'Pusher'},
    'models/versions.py': {'Pusher'},
    # Code that no component runs changes no key.
    'serving/server.py': set(),
}


@pytest.fixture(scope='module')
def project_copy(tmp_path_factory) -> Path:
  """The project's tracked files, copied: edits there cannot touch ours."""
  copy = tmp_path_factory.mktemp('project')
  tracked = subprocess.run(['git', 'ls-files', '--cached', '--others',
                            '--exclude-standard'], cwd=PROJECT_ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
  for relative in tracked:
    if relative.endswith(('.py', '.yaml', '.pbtxt')):
      target = copy / relative
      target.parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(PROJECT_ROOT / relative, target)
  return copy


@pytest.mark.slow  # compiles the pipeline once per edit
def test_editing_a_file_changes_the_keys_of_exactly_the_components_that_run_it(
    project_copy):
  script = project_copy / 'node_parameters.py'
  script.write_text(_NODE_PARAMETERS)
  output = subprocess.run(
      [sys.executable, str(script), *EDITS], cwd=project_copy, check=True,
      capture_output=True, text=True,
      env=dict(os.environ, PYTHONPATH=str(project_copy))).stdout
  keys = json.loads(output.strip().splitlines()[-1])
  unedited = keys.pop('')

  changed = {path: {node for node, key in after.items()
                    if key != unedited[node]}
             for path, after in keys.items()}

  assert changed == EDITS
