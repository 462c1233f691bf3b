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

from tfx import v1 as tfx

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
) -> tfx.dsl.Pipeline:
  """Wires every component of a run described by `config`.

  `image` is the component image (with its tag) that runs a Vertex AI
  pipeline's Trainer and Tuner; local runs need none.
  """
  platform = platform_for(config, image)
  source = platform.session_source()
  example_gen = source.example_gen
  curated_schema = tfx.components.ImportSchemaGen(
      schema_file=platform.schema_file()).with_id('CuratedSchema')
  statistics_gen = tfx.components.StatisticsGen(
      examples=example_gen.outputs['examples'],
      schema=curated_schema.outputs['schema'])
  proposed_schema = tfx.components.SchemaGen(
      statistics=statistics_gen.outputs['statistics'],
      infer_feature_shape=True).with_id('ProposedSchema')
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'],
      schema=curated_schema.outputs['schema'])
  data_gate = DataGate(anomalies=example_validator.outputs['anomalies'],
                       code_version=code_version(DATA_GATE_MODULE))

  transform = tfx.components.Transform(
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
        train_args=tfx.proto.TrainArgs(num_steps=config.tuning.steps_per_trial),
        eval_args=tfx.proto.EvalArgs(num_steps=training.eval_steps))

  trainer = platform.trainer(
      run_fn=settings.RUN_FN,
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      hyperparameters=tuner.outputs['best_hyperparameters'] if tuner else None,
      train_args=source.train_args,
      eval_args=tfx.proto.EvalArgs(num_steps=training.eval_steps))

  latest_blessed_model = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(
          type=tfx.types.standard_artifacts.ModelBlessing),
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
  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.paths.pipeline_root,
      components=components,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=platform.beam_pipeline_args())
