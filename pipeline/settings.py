"""Turns the run's Config into the plain-JSON settings each component receives.

Transform, Tuner and Trainer import their user code from the installed
repairml packages, so TFX's cache cannot see a change to that code by itself.
Every settings dict therefore carries `code_version`, a hash of the project
code the component runs (pipeline/code_version.py): changed code means changed
execution properties, a cache miss and a new lineage record.
"""

from typing import Any, Dict

from pipeline.code_version import code_version
from pipeline.config import Config

# The user code Transform, Tuner and Trainer run, and its modules, whose
# imports code_version follows.
PREPROCESSING_FN = 'preprocessing.transform.preprocessing_fn'
TUNER_FN = 'models.tuning.tuner_fn'
RUN_FN = 'models.training.run_fn'
TRANSFORM_MODULE = PREPROCESSING_FN.rpartition('.')[0]
TUNER_MODULE = TUNER_FN.rpartition('.')[0]
TRAINER_MODULE = RUN_FN.rpartition('.')[0]


def transform_settings(config: Config) -> Dict[str, Any]:
  """Transform's custom_config: the features and the label vocabulary."""
  return {
      'features': config.features.model_dump(),
      'label_column': config.label.column,
      'label_vocabulary': list(config.label.vocabulary),
      'code_version': code_version(TRANSFORM_MODULE),
  }


def model_settings(config: Config, module: str = TRAINER_MODULE,
                   executor_module: str = '') -> Dict[str, Any]:
  """The Tuner's or the Trainer's custom_config (`module` is the one it
  runs): the transform settings plus training and tuning.

  `executor_module` is the project's own executor the component runs, if it
  has one (on Vertex AI the Trainer's, pipeline/production/
  distributed_trainer.py): its code is imported by name too, so it counts in
  code_version.
  """
  roots = (module, executor_module) if executor_module else (module,)
  return {
      **transform_settings(config),
      'training': config.training.model_dump(),
      'tuning': config.tuning.model_dump(),
      'code_version': code_version(*roots),
  }
