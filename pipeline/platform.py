"""Where a pipeline runs: the nodes and arguments that differ by platform.

create_pipeline (pipeline/pipeline.py) asks a platform for the few things that
are not the same everywhere, and builds the rest of the graph itself:
- `session_source()`: the nodes that produce the sessions, the ExampleGen
  among them, and the Trainer's TrainArgs;
- `schema_file()`: where the curated schema is as the components see it;
- `tuner(...)`, `trainer(...)`, `pusher(...)`: those three components;
- `beam_pipeline_args()`: how the Beam components run.

`LocalPlatform` runs on this machine: files, TFX's own Tuner and Trainer, the
atomic filesystem Pusher and the Beam DirectRunner. `VertexPlatform`
(pipeline/production/vertex.py) runs on Google Cloud. `platform_for` picks one
from the configuration, once.
"""

import dataclasses
import os
from typing import Any, List, Optional

from tfx.components import Pusher, Trainer, Tuner
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2, trainer_pb2

from pipeline import settings
from pipeline.code_version import code_version
from pipeline.components import atomic_pusher
from pipeline.components.example_gen import session_example_gen
from pipeline.config import Config

EXAMPLE_GEN_MODULE = 'pipeline.components.example_gen'
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The Beam arguments that tell workers where the pipeline's code comes from.
BEAM_DEPENDENCY_FLAGS = ('--setup_file', '--extra_package', '--extra_packages',
                         '--requirements_file', '--sdk_container_image',
                         '--worker_harness_container_image')
LOCAL_PUSHER_MODULE = 'pipeline.components.atomic_pusher'


@dataclasses.dataclass(frozen=True)
class SessionSource:
  """The nodes that produce the sessions, and the Trainer's TrainArgs."""
  nodes: List[Any]          # every node, the ExampleGen last
  train_args: Any           # a TrainArgs proto, or a placeholder for one

  @property
  def example_gen(self):
    return self.nodes[-1]


class LocalPlatform:
  """This machine: files, LocalDagRunner, Beam DirectRunner."""

  def __init__(self, config: Config):
    self._config = config

  def session_source(self) -> SessionSource:
    return SessionSource(
        nodes=[session_example_gen(self._config,
                                   code_version(EXAMPLE_GEN_MODULE))],
        train_args=trainer_pb2.TrainArgs(
            num_steps=self._config.training.train_steps))

  def schema_file(self) -> str:
    return self._config.schema

  def tuner(self, **inputs) -> Tuner:
    return Tuner(
        custom_config=settings.model_settings(self._config,
                                              settings.TUNER_MODULE),
        **inputs)

  def trainer(self, **inputs) -> Trainer:
    return Trainer(
        custom_config=settings.model_settings(self._config), **inputs)

  def pusher(self, **inputs) -> Pusher:
    """Pushes blessed models atomically into the local serving directory."""
    return Pusher(
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=self._config.paths.serving_dir)),
        custom_config={'code_version': code_version(LOCAL_PUSHER_MODULE)},
        custom_executor_spec=executor_spec.ExecutorClassSpec(
            atomic_pusher.Executor),
        **inputs)

  def beam_pipeline_args(self) -> List[str]:
    """The configured Beam arguments, and where workers find repairml.

    As on Dataflow, Beam workers get repairml from setup.py. Without any such
    argument, TFX builds a source package of itself before every Beam
    component runs (about 4 s each), for workers that the DirectRunner does
    not have.
    """
    args = list(self._config.beam_args)
    if not any(arg.split('=')[0] in BEAM_DEPENDENCY_FLAGS for arg in args):
      args.append(f'--setup_file={os.path.join(PROJECT_ROOT, "setup.py")}')
    return args


def platform_for(config: Config, image: Optional[str] = None):
  """The platform `config` describes: Vertex AI with a `vertex` section (which
  needs the component `image`, with its tag), else this machine."""
  if config.vertex is None:
    return LocalPlatform(config)
  # Only a Vertex AI pipeline imports the Google Cloud libraries.
  from pipeline.production import vertex  # pylint: disable=g-import-not-at-top
  return vertex.VertexPlatform(config, image)
