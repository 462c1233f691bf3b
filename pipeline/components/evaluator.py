"""TFX's Evaluator, which reuses the evaluation that blessed a model when that
model is judged again against itself.

An identical rerun trains nothing: every component up to the Trainer comes
from TFX's cache, and the Trainer's model is the one the first run blessed. The
Resolver now returns that same model as the baseline, which is a new input, so
TFX's own Evaluator would evaluate the model twice, as candidate and as
baseline, only to find that it equals itself. Its verdict is known: the change
threshold against itself holds, and every other rule gave the same answer
when the model was blessed, on the same examples under the same EvalConfig.

This component is TFX's Evaluator with two additions:
- the input `baseline_blessing`, the blessing the Resolver found with the
  baseline model;
- the execution property `code_version` (pipeline/code_version.py), so a change
  to the TFMA metric module re-runs the evaluation.

Its executor runs TFX's Evaluator executor, and then records on the blessing
an `evaluation_key`: a hash of what decides the result (the examples, the
candidate model, the EvalConfig, the splits and the code version) and where
the evaluation is. When the candidate is the baseline and the baseline's
blessing has the same key, the evaluation is copied instead of recomputed
(a few files), and the new blessing, otherwise the same, names the blessing
it repeats. It stays a complete blessing of the model (`current_model_id`
included): Vertex AI's resolver takes the newest blessing with `blessed = 1`
and looks its model up by that id.
"""

import hashlib
import json
from typing import Any, Dict, List, Optional

from absl import logging
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import artifact, artifact_utils, channel, standard_artifacts
from tfx.types import standard_component_specs as specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, json_utils

BASELINE_BLESSING_KEY = 'baseline_blessing'
CODE_VERSION_KEY = 'code_version'
# Custom properties of the blessings this executor writes.
EVALUATION_KEY_PROPERTY = 'evaluation_key'
EVALUATION_URI_PROPERTY = 'evaluation_uri'
REPEATS_BLESSING_PROPERTY = 'repeats_blessing_id'


class EvaluatorSpec(specs.EvaluatorSpec):
  PARAMETERS = {**specs.EvaluatorSpec.PARAMETERS,
                CODE_VERSION_KEY: ExecutionParameter(type=str)}
  INPUTS = {**specs.EvaluatorSpec.INPUTS,
            BASELINE_BLESSING_KEY: ChannelParameter(
                type=standard_artifacts.ModelBlessing, optional=True)}


def evaluation_key(input_dict: Dict[str, List[artifact.Artifact]],
                   exec_properties: Dict[str, Any]) -> str:
  """A hash of everything that decides an evaluation except the baseline."""
  decided_by = {
      'examples': sorted(a.uri for a in input_dict[specs.EXAMPLES_KEY]),
      'model': artifact_utils.get_single_uri(input_dict[specs.MODEL_KEY]),
      'schema': [a.uri for a in input_dict.get(specs.SCHEMA_KEY) or []],
      **{key: exec_properties.get(key) for key in (
          specs.EVAL_CONFIG_KEY, specs.EXAMPLE_SPLITS_KEY, CODE_VERSION_KEY,
          specs.MODULE_FILE_KEY, specs.MODULE_PATH_KEY)},
  }
  return hashlib.sha256(json.dumps(decided_by, sort_keys=True).encode()
                        ).hexdigest()[:32]


def reusable_blessing(input_dict: Dict[str, List[artifact.Artifact]],
                      key: str) -> Optional[artifact.Artifact]:
  """The baseline's blessing, if the candidate is the baseline and that
  blessing was decided on the same inputs; else None."""
  baseline = input_dict.get(specs.BASELINE_MODEL_KEY) or []
  blessings = input_dict.get(BASELINE_BLESSING_KEY) or []
  candidate = artifact_utils.get_single_instance(input_dict[specs.MODEL_KEY])
  if len(baseline) != 1 or len(blessings) != 1 or baseline[0].id != (
      candidate.id):
    return None
  blessing = blessings[0]
  if (blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY)
      != constants.BLESSED_VALUE or
      blessing.get_string_custom_property(EVALUATION_KEY_PROPERTY) != key):
    return None
  return blessing


class Executor(evaluator_executor.Executor):
  """TFX's Evaluator executor, reusing a model's evaluation against itself."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    key = evaluation_key(input_dict, exec_properties)
    evaluation = artifact_utils.get_single_instance(
        output_dict[specs.EVALUATION_KEY])
    blessing = artifact_utils.get_single_instance(
        output_dict[specs.BLESSING_KEY])
    earlier = reusable_blessing(input_dict, key)
    if earlier is not None:
      self._repeat(earlier, evaluation, blessing)
    else:
      super().Do(
          {k: v for k, v in input_dict.items() if k != BASELINE_BLESSING_KEY},
          output_dict,
          {k: v for k, v in exec_properties.items() if k != CODE_VERSION_KEY})
    blessing.set_string_custom_property(EVALUATION_KEY_PROPERTY, key)
    blessing.set_string_custom_property(EVALUATION_URI_PROPERTY,
                                        evaluation.uri)

  def _repeat(self, earlier: artifact.Artifact,
              evaluation: artifact.Artifact,
              blessing: artifact.Artifact) -> None:
    source = earlier.get_string_custom_property(EVALUATION_URI_PROPERTY)
    logging.info('The candidate model is the baseline, blessed by %s on the '
                 'same inputs; copying its evaluation %s instead of '
                 'evaluating the model against itself.', earlier.uri, source)
    io_utils.copy_dir(source, evaluation.uri)
    io_utils.copy_dir(earlier.uri, blessing.uri)
    for name, value in earlier.mlmd_artifact.custom_properties.items():
      blessing.mlmd_artifact.custom_properties[name].CopyFrom(value)
    blessing.set_int_custom_property(REPEATS_BLESSING_PROPERTY, earlier.id)


class Evaluator(base_beam_component.BaseBeamComponent):
  """TFX's Evaluator, plus `baseline_blessing` and `code_version` (above)."""

  SPEC_CLASS = EvaluatorSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, examples, model, baseline_model, baseline_blessing,
               eval_config, example_splits: List[str], code_version: str):
    super().__init__(spec=EvaluatorSpec(
        examples=examples,
        model=model,
        baseline_model=baseline_model,
        baseline_blessing=baseline_blessing,
        eval_config=eval_config,
        example_splits=json_utils.dumps(example_splits),
        fairness_indicator_thresholds=json_utils.dumps(None),
        code_version=code_version,
        evaluation=channel.Channel(type=standard_artifacts.ModelEvaluation),
        blessing=channel.Channel(type=standard_artifacts.ModelBlessing)))
