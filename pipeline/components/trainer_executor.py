"""The Trainer's executor on every replica of a training cluster.

Vertex Training runs the same executor on each replica (chief, workers,
parameter servers), each with its own TF_CONFIG. TFX's GenericExecutor fails
after run_fn unless a model was written, but only the chief exports one
(models/training.py): a worker that finished training before the chief
exported would fail the job. This executor is TFX's on the chief and
everywhere without a cluster; elsewhere it runs run_fn and expects no model.
"""

from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.components.util import udf_utils

from models import distribution


class ReplicaExecutor(trainer_executor.GenericExecutor):
  """TFX's Trainer executor, exporting on the chief only."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    task = distribution.current_task()
    if task.is_chief:
      super().Do(input_dict, output_dict, exec_properties)
      return
    self._log_startup(input_dict, output_dict, exec_properties)
    fn_args = self._GetFnArgs(input_dict, output_dict, exec_properties)
    logging.info('Running as %s of the cluster; the chief exports the model.',
                 task.name)
    udf_utils.get_fn(exec_properties, 'run_fn')(fn_args)
