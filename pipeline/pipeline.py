"""create_pipeline: the one definition of repairml's TFX pipeline.

Both runners call this function; only the configuration differs. Components,
in order: ExampleGen -> StatisticsGen -> the curated schema (ImportSchemaGen),
with SchemaGen proposing updates beside it -> ExampleValidator -> the data
gate -> Transform -> Tuner -> Trainer -> Evaluator, against the latest blessed
model -> Pusher, which pushes only blessed models.
"""

from typing import List, Optional

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from pipeline import evaluation, settings
from pipeline.components import atomic_pusher
from pipeline.components.data_gate import DataGate
from pipeline.components.example_gen import session_example_gen
from pipeline.config import Config

PREPROCESSING_FN = 'preprocessing.transform.preprocessing_fn'
RUN_FN = 'models.training.run_fn'
TUNER_FN = 'models.tuning.tuner_fn'


def create_pipeline(
    config: Config,
    metadata_connection_config=None,
    beam_pipeline_args: Optional[List[str]] = None,
    enable_cache: bool = True,
) -> tfx.dsl.Pipeline:
  """Wires every component of a run described by `config`."""
  example_gen = session_example_gen(config)
  curated_schema = tfx.components.ImportSchemaGen(
      schema_file=config.schema).with_id('CuratedSchema')
  statistics_gen = tfx.components.StatisticsGen(
      examples=example_gen.outputs['examples'],
      schema=curated_schema.outputs['schema'])
  proposed_schema = tfx.components.SchemaGen(
      statistics=statistics_gen.outputs['statistics'],
      infer_feature_shape=True).with_id('ProposedSchema')
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'],
      schema=curated_schema.outputs['schema'])
  data_gate = DataGate(anomalies=example_validator.outputs['anomalies'])

  transform = tfx.components.Transform(
      examples=example_gen.outputs['examples'],
      schema=curated_schema.outputs['schema'],
      preprocessing_fn=PREPROCESSING_FN,
      custom_config=settings.transform_settings(config),
      disable_statistics=True)
  transform.add_upstream_node(data_gate)

  model_settings = settings.model_settings(config)
  training = config.training
  components = [example_gen, curated_schema, statistics_gen, proposed_schema,
                example_validator, data_gate, transform]
  best_hyperparameters = None
  if config.tuning.enabled:
    tuner = tfx.components.Tuner(
        tuner_fn=TUNER_FN,
        examples=transform.outputs['transformed_examples'],
        transform_graph=transform.outputs['transform_graph'],
        train_args=tfx.proto.TrainArgs(num_steps=config.tuning.steps_per_trial),
        eval_args=tfx.proto.EvalArgs(num_steps=training.eval_steps),
        custom_config=model_settings)
    components.append(tuner)
    best_hyperparameters = tuner.outputs['best_hyperparameters']

  trainer = tfx.components.Trainer(
      run_fn=RUN_FN,
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      hyperparameters=best_hyperparameters,
      train_args=tfx.proto.TrainArgs(num_steps=training.train_steps),
      eval_args=tfx.proto.EvalArgs(num_steps=training.eval_steps),
      custom_config=model_settings)

  latest_blessed_model = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(
          type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id('LatestBlessedModel')

  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      baseline_model=latest_blessed_model.outputs['model'],
      eval_config=evaluation.eval_config(config),
      example_splits=['test'])

  pusher = tfx.components.Pusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=config.paths.serving_dir)),
      custom_executor_spec=executor_spec.ExecutorClassSpec(
          atomic_pusher.Executor))

  components += [trainer, latest_blessed_model, evaluator, pusher]
  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.paths.pipeline_root,
      components=components,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=(config.beam_args if beam_pipeline_args is None
                          else beam_pipeline_args))
