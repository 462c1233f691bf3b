"""Evaluator benchmark: repairml's multi-label metric against TFMA's built-ins.

Evaluates the latest model of a local run (`make run` first) on its test split
with TFMA, three ways, and reports seconds and macro/micro F1 of each:
- `multilabel_metric`: the EvalConfig the pipeline uses (pipeline/evaluation.py);
- `builtin_binarized`: TFMA's F1Score/Precision/Recall binarized over the label
  ids, plus macro and micro F1 through AggregationOptions, on the same slices;
- `builtin_overall_only`: the built-ins on the overall slice alone.

    .venv/bin/python benchmarks/evaluator_metrics.py --json benchmarks/out/evaluator.json
"""

import argparse
import glob
import json
import os
import time

import tensorflow_model_analysis as tfma

from pipeline import evaluation
from pipeline.config import DEFAULT_CONFIG_PATH, load_config


def builtin_metrics_specs(num_labels: int):
  label_ids = tfma.BinarizationOptions(class_ids={'values': list(range(
      num_labels))})
  weights = {i: 1.0 for i in range(num_labels)}
  return [
      tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name='ExampleCount')]),
      tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name=name) for name in
                                ('Precision', 'Recall', 'F1Score')],
                       binarize=label_ids),
      tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name='F1Score')],
                       aggregate=tfma.AggregationOptions(
                           macro_average=True, class_weights=weights)),
      tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name='F1Score')],
                       binarize=label_ids,
                       aggregate=tfma.AggregationOptions(micro_average=True)),
  ]


def overall_f1(output_path: str):
  """(macro F1, micro F1) of the overall slice, whichever metric made them."""
  for metrics_for_slice in tfma.load_metrics(output_path):
    if metrics_for_slice.slice_key.single_slice_keys:
      continue
    found = {}
    for entry in metrics_for_slice.metric_keys_and_values:
      key, value = entry.key, entry.value.double_value.value
      if key.sub_key.HasField('class_id'):
        continue
      if key.name == 'macro_f1' or (key.name == 'f1_score' and
                                    key.aggregation_type.macro_average):
        found['macro'] = value
      if key.name == 'micro_f1' or (key.name == 'f1_score' and
                                    key.aggregation_type.micro_average):
        found['micro'] = value
    return found.get('macro'), found.get('micro')
  return None, None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default=DEFAULT_CONFIG_PATH)
  parser.add_argument('--json', help='also write the result here')
  args = parser.parse_args()
  config = load_config(args.config)
  root = config.paths.pipeline_root
  model = sorted(glob.glob(f'{root}/Trainer/model/*/Format-Serving'),
                 key=os.path.getmtime)[-1]
  examples = sorted(glob.glob(
      f'{root}/FileBasedExampleGen/examples/*/Split-test/*'),
                    key=os.path.getmtime)[-1]

  variants = {}
  for name in ('multilabel_metric', 'builtin_binarized',
               'builtin_overall_only'):
    eval_config = evaluation.eval_config(config)
    if name != 'multilabel_metric':
      del eval_config.metrics_specs[:]
      eval_config.metrics_specs.extend(builtin_metrics_specs(config.num_labels))
    if name == 'builtin_overall_only':
      del eval_config.slicing_specs[1:]
    output = os.path.join(os.path.dirname(__file__), 'out', 'evaluator', name)
    shared_model = tfma.default_eval_shared_model(
        eval_saved_model_path=model, eval_config=eval_config)
    started = time.monotonic()
    tfma.run_model_analysis(eval_shared_model=shared_model,
                            eval_config=eval_config, data_location=examples,
                            output_path=output, file_format='tfrecords')
    macro, micro = overall_f1(output)
    variants[name] = {'seconds': round(time.monotonic() - started, 1),
                      'macro_f1': macro, 'micro_f1': micro,
                      'slices': len(eval_config.slicing_specs)}
    print(name, variants[name], flush=True)
  if args.json:
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(variants, f, indent=2)


if __name__ == '__main__':
  main()
