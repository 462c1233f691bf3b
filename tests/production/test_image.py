"""The two images of the Dockerfile, checked without a Docker engine: the
component image that Vertex AI Pipelines runs every step in, and the serving
image that the Vertex Pusher deploys to an endpoint. Their base images,
install steps, users and entry points, what the build context holds, and the
`make image` / `make push-image` / `make serving-image` /
`make push-serving-image` targets (run against a stub `docker`)."""

import ast
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from unittest import mock

import pytest
import setuptools

REPO = Path(__file__).resolve().parents[2]
TFX_V2 = 'tfx.orchestration.kubeflow.v2'


# --- Reading the Dockerfile and .dockerignore --------------------------------

def parse_dockerfile(text):
  """[(INSTRUCTION, arguments)], with line continuations joined."""
  instructions, pending = [], ''
  for line in text.splitlines():
    stripped = line.strip()
    # Docker drops comment lines, also those inside a continued instruction.
    if not stripped or stripped.startswith('#'):
      continue
    if stripped.endswith('\\'):
      pending += stripped[:-1].rstrip() + ' '
      continue
    keyword, _, arguments = (pending + stripped).partition(' ')
    instructions.append((keyword.upper(), arguments.strip()))
    pending = ''
  assert not pending, f'The Dockerfile ends inside a continued line: {pending}'
  return instructions


def dockerfile():
  return parse_dockerfile((REPO / 'Dockerfile').read_text())


def arguments_of(keyword, instructions=None):
  return [args for kw, args in instructions or dockerfile() if kw == keyword]


def stage_names(instructions=None):
  """The `FROM ... AS name` stage names, in order."""
  return [args.split()[2] for args in arguments_of('FROM', instructions)]


def stage(name, instructions=None):
  """The instructions of one build stage, after the ARGs declared before the
  first FROM (which every FROM may use)."""
  instructions = instructions or dockerfile()
  first_from = next(i for i, (kw, _) in enumerate(instructions) if kw == 'FROM')
  global_args, current, found = instructions[:first_from], None, []
  for keyword, args in instructions[first_from:]:
    if keyword == 'FROM':
      words = args.split()
      named = len(words) == 3 and words[1].upper() == 'AS'
      current = words[2] if named else None
    if current == name:
      found.append((keyword, args))
  assert found, f'The Dockerfile has no stage {name!r}.'
  return global_args + found


def component_stage():
  return stage('component')


def environment(instructions):
  """{name: value} of the ENV instructions (the `ENV a=1 b=2` form)."""
  values = {}
  for args in arguments_of('ENV', instructions):
    for pair in args.split():
      name, _, value = pair.partition('=')
      values[name] = value
  return values


def base_image(instructions):
  """The FROM image, with ${ARG}s declared before it replaced by defaults."""
  defaults = {}
  for keyword, args in instructions:
    if keyword == 'ARG' and '=' in args:
      name, _, value = args.partition('=')
      defaults[name.strip()] = value.strip().strip('"\'')
    if keyword == 'FROM':
      image = args.split()[0]
      return re.sub(r'\$\{?(\w+)\}?', lambda m: defaults[m.group(1)], image)
  raise AssertionError('The Dockerfile has no FROM instruction.')


def copy_sources(instructions):
  """The build-context paths that COPY and ADD read (not --from=stage)."""
  sources = []
  for keyword, args in instructions:
    if keyword not in ('COPY', 'ADD'):
      continue
    words = json.loads(args) if args.startswith('[') else args.split()
    if any(w.startswith('--from=') for w in words):
      continue
    paths = [w for w in words if not w.startswith('--')]
    sources.extend(p.rstrip('/') for p in paths[:-1])
  return sources


def ignore_pattern_regex(pattern):
  """Docker's .dockerignore syntax: `*` and `?` stay within one path segment,
  `**` spans segments; a leading / is the context root, as is no slash."""
  pattern = pattern.strip('/')
  regex, i = '', 0
  while i < len(pattern):
    if pattern.startswith('**/', i):
      regex, i = regex + '(.*/)?', i + 3
    elif pattern.startswith('**', i):
      regex, i = regex + '.*', i + 2
    elif pattern[i] == '*':
      regex, i = regex + '[^/]*', i + 1
    elif pattern[i] == '?':
      regex, i = regex + '[^/]', i + 1
    else:
      regex, i = regex + re.escape(pattern[i]), i + 1
  return re.compile(regex + r'\Z')


def read_ignore_patterns(text):
  patterns = []
  for line in text.splitlines():
    line = line.strip()
    if line and not line.startswith('#'):
      negated = line.startswith('!')
      patterns.append((negated, ignore_pattern_regex(line.lstrip('!'))))
  return patterns


def is_excluded(path, patterns):
  """Whether Docker leaves `path` out of the build context. A pattern that
  matches a directory excludes everything below it; the last match wins."""
  parts = Path(path).parts
  prefixes = ['/'.join(parts[:n]) for n in range(1, len(parts) + 1)]
  excluded = False
  for negated, regex in patterns:
    if any(regex.match(prefix) for prefix in prefixes):
      excluded = not negated
  return excluded


def dockerignore():
  return read_ignore_patterns((REPO / '.dockerignore').read_text())


def in_build_context(path, instructions, patterns):
  """Whether `path` reaches the image: under a COPY source and not ignored."""
  copied = any(path == src or path.startswith(src + '/')
               for src in copy_sources(instructions))
  return copied and not is_excluded(path, patterns)


# --- What the rest of the project says ---------------------------------------

def locked_version(package):
  match = re.search(rf'^{package}==(\S+)', (REPO / 'requirements.lock')
                    .read_text(), re.MULTILINE)
  assert match, f'requirements.lock pins no {package}.'
  return match.group(1)


def setup_py_arguments():
  """The keyword arguments setup.py passes to setuptools.setup."""
  with mock.patch.object(setuptools, 'setup') as setup:
    cwd = os.getcwd()
    os.chdir(REPO)  # find_packages looks in the working directory.
    try:
      exec(compile((REPO / 'setup.py').read_text(), 'setup.py', 'exec'), {})
    finally:
      os.chdir(cwd)
  return setup.call_args.kwargs


def module_constant(module, name):
  """A literal module-level constant, read from the source without importing
  it: importing tfx's runner modules pulls in TensorFlow (a minute here)."""
  spec = importlib.util.find_spec(module)
  assert spec is not None, f'{module} is not installed.'
  for node in ast.parse(Path(spec.origin).read_text()).body:
    if (isinstance(node, ast.Assign)
        and any(getattr(t, 'id', None) == name for t in node.targets)):
      return ast.literal_eval(node.value)
  raise AssertionError(f'{module} defines no {name}.')


# --- The Dockerfile ----------------------------------------------------------

def test_parser_joins_continued_lines_and_drops_comments():
  parsed = parse_dockerfile(textwrap.dedent("""\
      FROM base:1
      # a comment
      RUN pip install \\
          # a comment inside the continued RUN
          -r requirements.lock
      ENTRYPOINT ["python", "-m", "x"]
      """))

  assert parsed == [('FROM', 'base:1'),
                    ('RUN', 'pip install -r requirements.lock'),
                    ('ENTRYPOINT', '["python", "-m", "x"]')]


def test_base_image_is_the_tfx_image_of_the_locked_tfx_version():
  assert base_image(component_stage()) == (
      f'gcr.io/tfx-oss-public/tfx:{locked_version("tfx")}')


def test_the_component_image_is_the_last_stage_so_a_plain_build_builds_it():
  # `make image` runs `docker build .` without --target (tested below).
  assert stage_names() == ['serving-build', 'serving', 'component']


def test_the_venv_runs_the_locked_tfx_so_the_checks_below_hold_for_the_image():
  assert importlib.metadata.version('tfx') == locked_version('tfx')


def test_entrypoint_is_the_command_kubeflow_v2_compiles_into_every_step():
  compiled_command = module_constant(f'{TFX_V2}.kubeflow_v2_dag_runner',
                                     'KUBEFLOW_TFX_CMD')
  (entrypoint,) = arguments_of('ENTRYPOINT', component_stage())

  # Exec form: a shell-form entry point would run under /bin/sh -c.
  assert json.loads(entrypoint) == list(compiled_command)
  assert compiled_command[:2] == ('python', '-m')
  assert importlib.util.find_spec(compiled_command[2]) is not None


def test_the_example_gen_driver_the_compiled_spec_runs_is_in_tfx():
  driver_command = module_constant(f'{TFX_V2}.step_builder', '_DRIVER_COMMANDS')

  assert importlib.util.find_spec(driver_command[2]) is not None


# The stages that install the lock and the project: the component image, and
# the stage that builds the serving image's environment.
INSTALLING_STAGES = ['component', 'serving-build']


@pytest.mark.parametrize('name', INSTALLING_STAGES)
def test_locked_dependencies_are_installed_before_the_project_non_editable(
    name):
  instructions = stage(name)
  runs = arguments_of('RUN', instructions)
  lock_installs = [i for i, r in enumerate(runs)
                   if re.search(r'python -m pip install .*-r requirements\.lock', r)]
  project_installs = [i for i, r in enumerate(runs)
                      if re.search(r'python -m pip install .*--no-deps \.(\s|$)', r)]

  assert len(lock_installs) == 1 and len(project_installs) == 1, runs
  assert lock_installs[0] < project_installs[0]
  assert not re.search(r'(\s-e\s|--editable)', runs[project_installs[0]])
  assert 'requirements.lock' in copy_sources(instructions)
  assert 'setup.py' in copy_sources(instructions)


def test_every_copy_source_exists_and_is_in_the_build_context():
  instructions, patterns = dockerfile(), dockerignore()

  for source in copy_sources(instructions):
    assert (REPO / source).exists(), f'COPY {source}: no such path in the repo.'
    assert not is_excluded(source, patterns), (
        f'COPY {source}: .dockerignore leaves it out of the build context.')


@pytest.mark.parametrize('name', INSTALLING_STAGES)
def test_image_holds_every_package_and_module_setup_py_installs(name):
  setup = setup_py_arguments()
  instructions, patterns = stage(name), dockerignore()
  paths = ([p.replace('.', '/') + '/__init__.py' for p in setup['packages']]
           + [m + '.py' for m in setup['py_modules']])

  assert 'preprocessing' in setup['packages']  # The setup.py reading works.
  missing = [p for p in paths if not in_build_context(p, instructions, patterns)]
  assert not missing, (f'setup.py installs {missing}, but the Dockerfile does '
                       'not COPY them: add them to its COPY lines.')


def test_build_context_has_the_runtime_files_the_pipeline_reads():
  instructions, patterns = component_stage(), dockerignore()

  for path in ['schema/schema.pbtxt', 'configs/local.yaml',
               'preprocessing/transform.py', 'models/training.py',
               'models/tuning.py', 'pipeline/components/example_gen.py']:
    assert (REPO / path).exists(), path
    assert in_build_context(path, instructions, patterns), path


@pytest.mark.parametrize('path', [
    '.venv/lib/python3.10/site-packages/tfx/__init__.py',
    '.git/HEAD',
    'runs/local/metadata.sqlite',
    'data/sessions/span-0/part-0.parquet',
    'benchmarks/out/speed.json',
    'pipeline/__pycache__/config.cpython-310.pyc',
    'pipeline/components/__pycache__/example_gen.cpython-310.pyc',
    'repairml.egg-info/PKG-INFO',
    'tests/production/test_image.py',
    'runs/serving/3/saved_model.pb',
    'runs/serving/.aip-storage/1/variables/variables.index',
    'runs/logs/serving_requests.jsonl',
    'elsewhere/serving/.aip-storage/1/saved_model.pb',
    'elsewhere/serving/.staging-x1y2/model/saved_model.pb',
])
def test_build_context_leaves_out_local_state(path):
  assert is_excluded(path, dockerignore())


def test_the_benchmarks_are_neither_installed_nor_in_the_build_context():
  # Nothing in production runs them; `repairml bench quality` runs them from
  # a checkout (cli.py) and says so when they are absent, as in the image.
  setup = setup_py_arguments()
  instructions, patterns = dockerfile(), dockerignore()

  assert 'preprocessing' in setup['packages']  # The setup.py reading works.
  assert [p for p in setup['packages'] if p.split('.')[0] == 'benchmarks'] == []
  assert not any(source.split('/')[0] == 'benchmarks'
                 for source in copy_sources(instructions))
  for path in ['benchmarks/__init__.py', 'benchmarks/quality.py']:
    assert (REPO / path).exists(), path
    assert is_excluded(path, patterns), path


def test_build_imports_the_user_code_the_pipeline_names():
  tree = ast.parse((REPO / 'pipeline' / 'settings.py').read_text())
  named = [node.value.value for node in tree.body
           if isinstance(node, ast.Assign)
           and isinstance(node.value, ast.Constant)
           and any(getattr(t, 'id', '').endswith('_FN') for t in node.targets)]
  smoke_imports = set()
  for run in arguments_of('RUN', component_stage()):
    for match in re.finditer(r'python -c "import ([\w., ]+)"', run):
      smoke_imports.update(m.strip() for m in match.group(1).split(','))

  assert named, 'pipeline/settings.py names no *_FN user code.'
  for function_path in named:
    assert function_path.rpartition('.')[0] in smoke_imports, function_path


@pytest.mark.parametrize('patterns, path, excluded', [
    ('data/sessions', 'data/sessions/span-0/a.parquet', True),
    ('data/sessions', 'data/generator.py', False),
    ('/runs', 'runs/x', True),
    ('runs', 'pipeline/runs.py', False),
    ('**/__pycache__', '__pycache__/a.pyc', True),
    ('**/__pycache__', 'a/b/__pycache__/c.pyc', True),
    ('*.egg-info', 'x/y.egg-info/PKG-INFO', False),
    ('**/*.egg-info', 'x/y.egg-info/PKG-INFO', True),
    ('tests\n!tests/keep.py', 'tests/keep.py', False),
])
def test_ignore_matcher_follows_docker_semantics(patterns, path, excluded):
  assert is_excluded(path, read_ignore_patterns(patterns)) is excluded


# --- The serving image -------------------------------------------------------

SERVING_CONFIG = 'configs/serving.yaml'


def serving_stage():
  return stage('serving')


def serving_command():
  """ENTRYPOINT + CMD of the serving image, both in exec form."""
  instructions = serving_stage()
  (entrypoint,) = arguments_of('ENTRYPOINT', instructions)
  (command,) = arguments_of('CMD', instructions)
  return json.loads(entrypoint), json.loads(command)


def test_the_serving_stages_start_from_one_python_3_10_on_debian_12():
  # The lock is compiled for CPython 3.10, and verified on Debian 12's glibc.
  bases = {base_image(stage(name)) for name in ('serving-build', 'serving')}

  assert len(bases) == 1, bases
  (base,) = bases
  assert re.fullmatch(r'python:3\.10(\.\d+)?-slim-bookworm', base), base


def test_the_serving_image_takes_the_built_environment_not_the_compiler():
  build, serving = stage('serving-build'), serving_stage()
  (venv,) = [re.fullmatch(r'python -m venv (\S+)', run).group(1)
             for run in arguments_of('RUN', build)
             if run.startswith('python -m venv')]
  copies = [args.split() for args in arguments_of('COPY', serving)
            if args.startswith('--from=')]

  assert copies == [['--from=serving-build', venv, venv]]
  for instructions in (build, serving):
    assert environment(instructions)['PATH'].split(':')[0] == f'{venv}/bin'
  assert any('build-essential' in run for run in arguments_of('RUN', build))
  assert not any('apt-get' in run for run in arguments_of('RUN', serving))


def test_the_serving_image_runs_as_a_user_that_is_not_root():
  instructions = serving_stage()
  users = arguments_of('USER', instructions)
  keywords = [keyword for keyword, _ in instructions]

  assert users, 'The serving stage sets no USER: it would run as root.'
  uid, _, gid = users[-1].partition(':')
  # Numeric, so that Kubernetes' runAsNonRoot can check it.
  assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
  assert len(keywords) - 1 - keywords[::-1].index('USER') < keywords.index(
      'ENTRYPOINT')
  created = ' '.join(arguments_of('RUN', instructions))
  assert f'--uid {uid}' in created and f'--gid {gid}' in created


def test_the_serving_image_runs_repairml_serve_on_every_interface():
  # pylint: disable=g-import-not-at-top
  from serving import server
  entrypoint, command = serving_command()

  assert entrypoint == ['repairml', 'serve']
  assert 'repairml = cli:main' in setup_py_arguments()['entry_points'][
      'console_scripts']
  args = server.build_parser().parse_args(command)
  assert args.config == SERVING_CONFIG
  # Vertex AI sends requests to the container's address, not to loopback.
  assert args.host == '0.0.0.0'
  # No --port: the server takes AIP_HTTP_PORT, which Vertex AI sets.
  assert args.port is None
  assert args.admin is False
  assert args.version is None  # the newest version: the one it copied


def test_the_serving_image_has_vertex_ai_defaults_for_a_local_docker_run():
  instructions = serving_stage()
  variables = environment(instructions)

  assert (variables['AIP_HTTP_PORT'], variables['AIP_HEALTH_ROUTE'],
          variables['AIP_PREDICT_ROUTE']) == ('8080', '/health', '/predict')
  assert arguments_of('EXPOSE', instructions) == [variables['AIP_HTTP_PORT']]


def test_the_serving_configuration_is_in_the_image_and_loads(monkeypatch):
  # pylint: disable=g-import-not-at-top
  from pipeline.config import load_config
  instructions, patterns = serving_stage(), dockerignore()
  monkeypatch.chdir(REPO)  # the image's WORKDIR holds configs/ and schema/

  config = load_config(SERVING_CONFIG)

  for path in (SERVING_CONFIG, 'configs/vertex.yaml', 'configs/local.yaml',
               'schema/schema.pbtxt'):
    assert in_build_context(path, instructions, patterns), path
  assert config.schema == str(REPO / 'schema' / 'schema.pbtxt')
  runs = ' '.join(arguments_of('RUN', instructions))
  serving_dir, log_dir = (config.paths.serving_dir,
                          os.path.dirname(config.paths.log_file))
  # The server's user may write both; the log file is stdout, which Vertex AI
  # sends to Cloud Logging.
  made = re.search(r'mkdir -p ([^&]+)', runs).group(1).split()
  owned = re.search(r'chown -R repairml:repairml ([^&]+)',
                    runs).group(1).split()
  for directory in (serving_dir, log_dir):
    assert directory in made, (directory, made)
    assert any(directory == path or directory.startswith(path + '/')
               for path in owned), (directory, owned)
  assert f'ln -s /dev/stdout {config.paths.log_file}' in runs


def test_the_serving_build_checks_that_the_server_imports():
  runs = arguments_of('RUN', serving_stage())

  assert any(re.search(r'python -c "import .*serving\.server', run)
             and 'serving.model_source' in run for run in runs), runs


# --- make image / make push-image --------------------------------------------

def git(repo, *args):
  return subprocess.run(
      ['git', '-c', 'user.name=test', '-c', 'user.email=test@example.com',
       '-c', 'commit.gpgsign=false', *args],
      cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def make(repo, *args):
  return subprocess.run(['make', '--no-print-directory', *args], cwd=repo,
                        capture_output=True, text=True, timeout=60)


@pytest.fixture
def clean_clone(tmp_path):
  """A one-commit git repo with the Makefile, and a stub `docker` that logs
  its arguments to docker.log (outside the repo) and succeeds."""
  repo = tmp_path / 'repo'
  repo.mkdir()
  shutil.copy(REPO / 'Makefile', repo / 'Makefile')
  git(repo, 'init', '-q')
  git(repo, 'add', 'Makefile')
  git(repo, 'commit', '-q', '-m', 'init')
  stub = tmp_path / 'docker'
  stub.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "docker.log"}\n')
  stub.chmod(0o755)
  return repo, stub, tmp_path / 'docker.log'


def test_make_n_image_prints_a_build_tagged_with_the_commit():
  commit = git(REPO, 'rev-parse', '--short=12', 'HEAD')

  result = make(REPO, '-n', 'image', 'IMAGE_URI=example.com/p/r')

  assert result.returncode == 0, result.stderr
  build = [line for line in result.stdout.splitlines()
           if line.startswith('docker build')]
  assert len(build) == 1, result.stdout
  assert f'-t example.com/p/r:{commit} ' in build[0]
  assert build[0].endswith(' .')


def test_make_image_builds_and_tags_with_the_commit(clean_clone):
  repo, stub, log = clean_clone
  commit = git(repo, 'rev-parse', '--short=12', 'HEAD')

  result = make(repo, 'image', 'IMAGE_URI=example.com/p/r', f'DOCKER={stub}')

  assert result.returncode == 0, result.stderr
  assert log.read_text().splitlines() == [
      'info', f'build --platform linux/amd64 -t example.com/p/r:{commit} .']


def test_make_push_image_pushes_the_tag_it_built(clean_clone):
  repo, stub, log = clean_clone
  commit = git(repo, 'rev-parse', '--short=12', 'HEAD')

  result = make(repo, 'push-image', 'IMAGE_URI=example.com/p/r',
                f'DOCKER={stub}')

  assert result.returncode == 0, result.stderr
  assert log.read_text().splitlines()[-2:] == [
      f'build --platform linux/amd64 -t example.com/p/r:{commit} .',
      f'push example.com/p/r:{commit}']


def test_make_serving_image_builds_the_serving_stage_beside_the_component_image(
    clean_clone):
  repo, stub, log = clean_clone
  commit = git(repo, 'rev-parse', '--short=12', 'HEAD')

  result = make(repo, 'push-serving-image', 'IMAGE_URI=example.com/p/r',
                f'DOCKER={stub}')

  assert result.returncode == 0, result.stderr
  assert log.read_text().splitlines() == [
      'info',
      'build --platform linux/amd64 --target serving '
      f'-t example.com/p/r-serving:{commit} .',
      f'push example.com/p/r-serving:{commit}']


def test_make_serving_image_takes_a_serving_image_uri_of_its_own(clean_clone):
  repo, stub, log = clean_clone
  commit = git(repo, 'rev-parse', '--short=12', 'HEAD')

  result = make(repo, 'serving-image', 'SERVING_IMAGE_URI=example.com/p/server',
                f'DOCKER={stub}')

  assert result.returncode == 0, result.stderr
  assert log.read_text().splitlines()[-1] == (
      'build --platform linux/amd64 --target serving '
      f'-t example.com/p/server:{commit} .')


def test_make_n_serving_image_names_the_stage_and_the_commit():
  commit = git(REPO, 'rev-parse', '--short=12', 'HEAD')

  result = make(REPO, '-n', 'serving-image', 'IMAGE_URI=example.com/p/r')

  assert result.returncode == 0, result.stderr
  builds = [line for line in result.stdout.splitlines()
            if line.startswith('docker build')]
  assert builds == ['docker build --platform linux/amd64 --target serving '
                    f'-t example.com/p/r-serving:{commit} .']
  assert 'serving' in stage_names()


@pytest.mark.parametrize('target', ['image', 'serving-image'])
def test_make_image_refuses_a_dirty_tree(clean_clone, target):
  repo, stub, log = clean_clone
  (repo / 'uncommitted.py').write_text('x = 1\n')

  result = make(repo, target, 'IMAGE_URI=example.com/p/r', f'DOCKER={stub}')

  assert result.returncode != 0
  assert f'make {target}: the working tree has uncommitted changes' in (
      result.stderr)
  assert 'uncommitted.py' in result.stderr
  assert 'build' not in (log.read_text() if log.exists() else '')


@pytest.mark.parametrize('target, variable', [
    ('image', 'IMAGE_URI'), ('push-image', 'IMAGE_URI'),
    ('serving-image', 'SERVING_IMAGE_URI'),
    ('push-serving-image', 'SERVING_IMAGE_URI')])
def test_make_refuses_the_placeholder_image_uri(clean_clone, target, variable):
  repo, stub, log = clean_clone

  result = make(repo, target, f'DOCKER={stub}')

  assert result.returncode != 0
  assert f'{variable} is still the placeholder' in result.stderr
  # The way out: name the repository.
  assert 'IMAGE_URI=europe-west4-docker.pkg.dev/my-project/' in result.stderr
  assert not log.exists()


@pytest.mark.parametrize('target', ['image', 'serving-image'])
def test_make_image_refuses_without_docker(clean_clone, tmp_path, target):
  repo, _, _ = clean_clone

  result = make(repo, target, 'IMAGE_URI=example.com/p/r',
                f'DOCKER={tmp_path / "no-such-docker"}')

  assert result.returncode != 0
  assert 'is not installed' in result.stderr
  assert 'Install Docker' in result.stderr


@pytest.mark.parametrize('target', ['image', 'serving-image'])
def test_make_image_refuses_when_docker_cannot_reach_an_engine(
    clean_clone, tmp_path, target):
  repo, _, _ = clean_clone
  no_engine = tmp_path / 'docker-without-engine'
  no_engine.write_text('#!/bin/sh\n[ "$1" = info ] && exit 1\n'
                       f'echo "$@" >> {tmp_path / "no-engine.log"}\n')
  no_engine.chmod(0o755)

  result = make(repo, target, 'IMAGE_URI=example.com/p/r',
                f'DOCKER={no_engine}')

  assert result.returncode != 0
  assert 'cannot reach a Docker engine' in result.stderr
  assert not (tmp_path / 'no-engine.log').exists()
