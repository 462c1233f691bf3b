"""Turns the run's Config into the plain-JSON settings each component receives.

Transform, Tuner and Trainer import their user code from the installed
repairml packages, so TFX's cache cannot see a change to that code by itself.
Every settings dict therefore carries `code_version`, a hash of the sources the
components run: changed code means changed execution properties, a cache miss
and a new lineage record.
"""

import hashlib
import os
from typing import Any, Dict

from pipeline.config import Config

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The packages whose code runs inside Transform, and inside Tuner and Trainer.
TRANSFORM_CODE = ('preprocessing',)
MODEL_CODE = ('preprocessing', 'models')


def code_version(packages=MODEL_CODE) -> str:
  """A hash of the Python sources of `packages`."""
  digest = hashlib.sha256()
  for package in packages:
    package_dir = os.path.join(PROJECT_ROOT, package)
    for folder, dirs, files in sorted(os.walk(package_dir)):
      dirs.sort()
      for name in sorted(f for f in files if f.endswith('.py')):
        path = os.path.join(folder, name)
        digest.update(os.path.relpath(path, PROJECT_ROOT).encode())
        with open(path, 'rb') as f:
          digest.update(f.read())
  return digest.hexdigest()[:16]


def transform_settings(config: Config) -> Dict[str, Any]:
  """Transform's custom_config: the features and the label vocabulary."""
  return {
      'features': config.features.model_dump(),
      'label_column': config.label.column,
      'label_vocabulary': list(config.label.vocabulary),
      'code_version': code_version(TRANSFORM_CODE),
  }


def model_settings(config: Config) -> Dict[str, Any]:
  """Tuner's and Trainer's custom_config: transform settings plus training."""
  return {
      **transform_settings(config),
      'training': config.training.model_dump(),
      'tuning': config.tuning.model_dump(),
      'code_version': code_version(MODEL_CODE),
  }
