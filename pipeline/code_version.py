"""The code version of a component: a hash of the project code it runs.

TFX caches a component's execution by its inputs and execution properties, and
it cannot see the code of repairml's own executors, user modules and TFMA
metrics: they are imported by name. A fix to the data gate or to the metric
module would then leave an old execution, and its blessing, in the cache.

So every component that runs project code gets a `code_version` property: a
hash of the module it runs (its root) and of every project module that module
imports, directly or through other project modules, package `__init__` files
included. Editing one of those files changes that component's key, and only
that component's: the components downstream re-run because their inputs are
new artifacts, and the ones upstream stay cached.

The imports are read from the source (Python's `ast`), not by importing it, so
computing a version loads no TensorFlow. An import inside a function counts
like one at the top of the module.
"""

import ast
import hashlib
import os
from typing import FrozenSet, Iterable, List

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Top-level packages and modules of the project; other imports are libraries.
PROJECT_PACKAGES = frozenset(
    name for name in os.listdir(PROJECT_ROOT)
    if os.path.isfile(os.path.join(PROJECT_ROOT, name, '__init__.py')))
PROJECT_MODULES = frozenset(
    name[:-3] for name in os.listdir(PROJECT_ROOT)
    if name.endswith('.py') and name != 'setup.py')


def module_path(module: str) -> str:
  """The source file of project module `module` (a package: its __init__)."""
  base = os.path.join(PROJECT_ROOT, *module.split('.'))
  if os.path.isdir(base):
    return os.path.join(base, '__init__.py')
  return base + '.py'


def _is_project_module(module: str) -> bool:
  return (module.split('.')[0] in PROJECT_PACKAGES | PROJECT_MODULES and
          os.path.isfile(module_path(module)))


def _with_packages(module: str) -> List[str]:
  """`a.b.c` -> [`a`, `a.b`, `a.b.c`]: importing a module runs its packages."""
  parts = module.split('.')
  return ['.'.join(parts[:i]) for i in range(1, len(parts) + 1)]


def _direct_imports(module: str) -> FrozenSet[str]:
  """The project modules that `module`'s source imports (read afresh each
  time: a version must follow the file as it is now)."""
  path = module_path(module)
  with open(path, 'rb') as f:
    tree = ast.parse(f.read(), filename=path)
  package = module if path.endswith('__init__.py') else module.rpartition(
      '.')[0]
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # from . import x, from ..y import z
        anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
        base = '.'.join(anchor + ([base] if base else []))
      # `from package import name` imports either a submodule or an attribute.
      names = [base] + [f'{base}.{alias.name}' for alias in node.names]
    else:
      continue
    for name in names:
      for candidate in _with_packages(name):
        if _is_project_module(candidate):
          found.add(candidate)
  found.discard(module)
  return frozenset(found)


def project_modules(roots: Iterable[str]) -> List[str]:
  """`roots`, their packages, and every project module they import, sorted."""
  seen, pending = set(), [p for root in roots for p in _with_packages(root)]
  while pending:
    module = pending.pop()
    if module in seen or not _is_project_module(module):
      continue
    seen.add(module)
    pending.extend(_direct_imports(module))
  return sorted(seen)


def source_files(roots: Iterable[str]) -> List[str]:
  """The files behind `project_modules(roots)`, relative to the project."""
  return [os.path.relpath(module_path(m), PROJECT_ROOT)
          for m in project_modules(roots)]


def code_version(*roots: str) -> str:
  """A short hash of the source of `roots` and all they import (see above)."""
  digest = hashlib.sha256()
  for relative in source_files(roots):
    digest.update(relative.encode() + b'\0')
    with open(os.path.join(PROJECT_ROOT, relative), 'rb') as f:
      digest.update(f.read() + b'\0')
  return digest.hexdigest()[:16]
