"""create_pipeline: the one definition of repairml's TFX pipeline.

Both runners call this function; only the configuration differs. Components,
in order: ExampleGen -> StatisticsGen -> the curated schema (ImportSchemaGen),
with SchemaGen proposing updates beside it -> ExampleValidator -> the data
gate -> Transform -> Tuner -> Trainer -> Evaluator, against the latest blessed
model -> Pusher, which pushes only blessed models.

With a `vertex` section in the configuration, four nodes take their Google
Cloud kind (pipeline/production/vertex.py): BigQueryExampleGen, fed by the
RunParameters step, Vertex Training's Tuner and Trainer, and the Vertex AI
endpoint Pusher; the Beam components run on Dataflow. Everything else, and
every edge, is the same.
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
    image: Optional[str] = None,
) -> tfx.dsl.Pipeline:
  """Wires every component of a run described by `config`.

  `image` is the component image (with its tag) that runs a Vertex AI
  pipeline's Trainer and Tuner; local runs need none.
  """
  on_vertex = config.vertex is not None
  if on_vertex:
    if not image:
      raise ValueError('A Vertex AI pipeline needs the component image.')
    # Only a Vertex AI pipeline imports the Google Cloud libraries.
    from pipeline.production import vertex  # pylint: disable=g-import-not-at-top
  source_nodes, train_args = [], tfx.proto.TrainArgs(
      num_steps=config.training.train_steps)
  if on_vertex:
    run_parameters, example_gen, train_args = vertex.session_source(config)
    source_nodes.append(run_parameters)
  else:
    example_gen = session_example_gen(config)
  curated_schema = tfx.components.ImportSchemaGen(
      schema_file=vertex.image_path(config.schema) if on_vertex
      else config.schema).with_id('CuratedSchema')
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
  components = source_nodes + [
      example_gen, curated_schema, statistics_gen, proposed_schema,
      example_validator, data_gate, transform]
  best_hyperparameters = None
  if config.tuning.enabled:
    tuner_inputs = dict(
        tuner_fn=TUNER_FN,
        examples=transform.outputs['transformed_examples'],
        transform_graph=transform.outputs['transform_graph'],
        train_args=tfx.proto.TrainArgs(num_steps=config.tuning.steps_per_trial),
        eval_args=tfx.proto.EvalArgs(num_steps=training.eval_steps))
    tuner = (vertex.tuner(config, image, model_settings, **tuner_inputs)
             if on_vertex else tfx.components.Tuner(
                 custom_config=model_settings, **tuner_inputs))
    components.append(tuner)
    best_hyperparameters = tuner.outputs['best_hyperparameters']

  trainer_inputs = dict(
      run_fn=RUN_FN,
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      hyperparameters=best_hyperparameters,
      train_args=train_args,
      eval_args=tfx.proto.EvalArgs(num_steps=training.eval_steps))
  trainer = (vertex.trainer(config, image, model_settings, **trainer_inputs)
             if on_vertex else tfx.components.Trainer(
                 custom_config=model_settings, **trainer_inputs))

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

  pusher_inputs = dict(model=trainer.outputs['model'],
                       model_blessing=evaluator.outputs['blessing'])
  if on_vertex:
    pusher = vertex.pusher(config, model_settings['code_version'],
                           **pusher_inputs)
  else:
    pusher = tfx.components.Pusher(
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=config.paths.serving_dir)),
        custom_executor_spec=executor_spec.ExecutorClassSpec(
            atomic_pusher.Executor),
        **pusher_inputs)

  components += [trainer, latest_blessed_model, evaluator, pusher]
  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.paths.pipeline_root,
      components=components,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=(
          beam_pipeline_args if beam_pipeline_args is not None else
          vertex.beam_pipeline_args(config) if on_vertex else
          config.beam_args))
