"""The Vertex AI Trainer whose every replica runs repairml's executor.

TFX's Vertex Training Trainer starts one CustomJob, and every pool of it
(chief, workers, parameter servers) runs the same command, `python -m
tfx.scripts.run_executor --executor_class_path=...`, with the class its
launcher's _GetExecutorClass names. TFX's names the Trainer's GenericExecutor,
which fails on a replica that wrote no model; here it names
pipeline/components/trainer_executor.py's ReplicaExecutor, with which only
the chief must export.
"""

from tfx.dsl.components.base import executor_spec
from tfx.extensions.google_cloud_ai_platform.trainer import component
from tfx.extensions.google_cloud_ai_platform.trainer import executor

from pipeline.components import trainer_executor


class Executor(executor.GenericExecutor):
  """Starts the Vertex Training job; each of its replicas runs
  ReplicaExecutor."""

  def _GetExecutorClass(self):
    return trainer_executor.ReplicaExecutor


class Trainer(component.Trainer):
  """TFX's Vertex Training Trainer with the launcher above. (The extension's
  component takes no custom_executor_spec, and TFX's Trainer deprecates it:
  a component class says which executor it runs.)"""

  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
