"""create_pipeline: the one definition of repairml's TFX pipeline.

Both runners call this function; only the configuration differs. Components,
in order: ExampleGen -> StatisticsGen -> the curated schema (ImportSchemaGen),
with SchemaGen proposing updates beside it -> ExampleValidator -> the data
gate -> Transform -> Tuner -> Trainer -> Evaluator, against the latest blessed
model -> Pusher, which pushes only blessed models.

The platform (pipeline/platform.py), chosen once from the configuration,
supplies what differs between this machine and Google Cloud: the session
source, the Tuner, the Trainer, the Pusher and the Beam arguments. Everything
else, and every edge, is the same.
"""

from typing import Optional

from tfx.components import (ExampleValidator, SchemaGen, StatisticsGen,
                            Transform)
from tfx.components.schema_gen.import_schema_gen.component import (
    ImportSchemaGen)
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy)
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts
from tfx.types.channel import Channel

from pipeline import evaluation, settings
from pipeline.code_version import code_version
from pipeline.components.data_gate import DataGate
from pipeline.components.evaluator import Evaluator
from pipeline.config import Config
from pipeline.platform import platform_for

DATA_GATE_MODULE = 'pipeline.components.data_gate'
EVALUATOR_MODULES = ('pipeline.components.evaluator',
                     'pipeline.multilabel_metrics')


def create_pipeline(
    config: Config,
    metadata_connection_config=None,
    enable_cache: bool = True,
    image: Optional[str] = None,
) -> Pipeline:
  """Wires every component of a run described by `config`.

  `image` is the component image (with its tag) that runs a Vertex AI
  pipeline's Trainer and Tuner; local runs need none.
  """
  platform = platform_for(config, image)
  source = platform.session_source()
  example_gen = source.example_gen
  curated_schema = ImportSchemaGen(
      schema_file=platform.schema_file()).with_id('CuratedSchema')
  statistics_gen = StatisticsGen(
      examples=example_gen.outputs['examples'],
      schema=curated_schema.outputs['schema'])
  proposed_schema = SchemaGen(
      statistics=statistics_gen.outputs['statistics'],
      infer_feature_shape=True).with_id('ProposedSchema')
  example_validator = ExampleValidator(
      statistics=statistics_gen.outputs['statistics'],
      schema=curated_schema.outputs['schema'])
  data_gate = DataGate(anomalies=example_validator.outputs['anomalies'],
                       code_version=code_version(DATA_GATE_MODULE))

  transform = Transform(
      examples=example_gen.outputs['examples'],
      schema=curated_schema.outputs['schema'],
      preprocessing_fn=settings.PREPROCESSING_FN,
      custom_config=settings.transform_settings(config),
      disable_statistics=True)
  # Nothing is trained on data the gate stopped.
  transform.add_upstream_node(data_gate)

  training = config.training
  tuner = None
  if config.tuning.enabled:
    tuner = platform.tuner(
        tuner_fn=settings.TUNER_FN,
        examples=transform.outputs['transformed_examples'],
        transform_graph=transform.outputs['transform_graph'],
        train_args=trainer_pb2.TrainArgs(num_steps=config.tuning.steps_per_trial),
        eval_args=trainer_pb2.EvalArgs(num_steps=training.eval_steps))

  trainer = platform.trainer(
      run_fn=settings.RUN_FN,
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      hyperparameters=tuner.outputs['best_hyperparameters'] if tuner else None,
      train_args=source.train_args,
      eval_args=trainer_pb2.EvalArgs(num_steps=training.eval_steps))

  latest_blessed_model = Resolver(
      strategy_class=LatestBlessedModelStrategy,
      model=Channel(type=standard_artifacts.Model),
      model_blessing=Channel(type=standard_artifacts.ModelBlessing),
  ).with_id('LatestBlessedModel')

  evaluator = Evaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      baseline_model=latest_blessed_model.outputs['model'],
      baseline_blessing=latest_blessed_model.outputs['model_blessing'],
      eval_config=evaluation.eval_config(config),
      example_splits=['test'],
      code_version=code_version(*EVALUATOR_MODULES))

  pusher = platform.pusher(model=trainer.outputs['model'],
                           model_blessing=evaluator.outputs['blessing'])

  components = source.nodes + [
      curated_schema, statistics_gen, proposed_schema, example_validator,
      data_gate, transform] + ([tuner] if tuner else []) + [
          trainer, latest_blessed_model, evaluator, pusher]
  return Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.paths.pipeline_root,
      components=components,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=platform.beam_pipeline_args())
