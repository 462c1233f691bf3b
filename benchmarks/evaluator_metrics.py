"""Evaluator benchmark: repairml's multi-label metric against TFMA's built-ins.

Evaluates the latest model of a local run (`make run` first) on its test split
with TFMA, three ways, and reports seconds and macro/micro F1 of each:
- `multilabel_metric`: the EvalConfig the pipeline uses (pipeline/evaluation.py);
- `builtin_binarized`: TFMA's F1Score/Precision/Recall binarized over the label
  ids, plus macro and micro F1 through AggregationOptions, on the same slices;
- `builtin_overall_only`: the built-ins on the overall slice alone;
- `builtin_auc_overall_only`: TFMA's AUC and AUCPrecisionRecall binarized over
  the label ids and macro-averaged, on the overall slice alone, to check the
  macro AUC and PR-AUC of the multi-label metric.

    .venv/bin/python benchmarks/evaluator_metrics.py --json benchmarks/out/evaluator.json
    .venv/bin/python benchmarks/evaluator_metrics.py --variants multilabel_metric builtin_auc_overall_only
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


def builtin_auc_specs(num_labels: int):
  weights = {i: 1.0 for i in range(num_labels)}
  return [tfma.MetricsSpec(
      metrics=[tfma.MetricConfig(class_name='AUC'),
               tfma.MetricConfig(class_name='AUCPrecisionRecall')],
      aggregate=tfma.AggregationOptions(macro_average=True,
                                        class_weights=weights))]


# Overall metrics under one name, whichever metric made them.
_SAME_AS = {('f1_score', 'macro'): 'macro_f1', ('f1_score', 'micro'): 'micro_f1',
            ('auc', 'macro'): 'macro_auc',
            ('auc_precision_recall', 'macro'): 'macro_pr_auc'}


def overall_metrics(output_path: str):
  """{macro_f1, micro_f1, macro_auc, macro_pr_auc: value} of the overall slice."""
  found = {}
  for metrics_for_slice in tfma.load_metrics(output_path):
    if metrics_for_slice.slice_key.single_slice_keys:
      continue
    for entry in metrics_for_slice.metric_keys_and_values:
      key, value = entry.key, entry.value.double_value.value
      if key.sub_key.HasField('class_id'):
        continue
      aggregation = ('macro' if key.aggregation_type.macro_average else
                     'micro' if key.aggregation_type.micro_average else None)
      name = _SAME_AS.get((key.name, aggregation), key.name)
      if name in _SAME_AS.values():
        found[name] = round(value, 6)
  return found


VARIANTS = ('multilabel_metric', 'builtin_binarized', 'builtin_overall_only',
            'builtin_auc_overall_only')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default=DEFAULT_CONFIG_PATH)
  parser.add_argument('--json', help='also write the result here')
  parser.add_argument('--variants', nargs='+', default=list(VARIANTS),
                      choices=VARIANTS)
  args = parser.parse_args()
  config = load_config(args.config)
  root = config.paths.pipeline_root
  model = sorted(glob.glob(f'{root}/Trainer/model/*/Format-Serving'),
                 key=os.path.getmtime)[-1]
  examples = sorted(glob.glob(
      f'{root}/FileBasedExampleGen/examples/*/Split-test/*'),
                    key=os.path.getmtime)[-1]

  variants = {}
  for name in args.variants:
    eval_config = evaluation.eval_config(config)
    if name != 'multilabel_metric':
      del eval_config.metrics_specs[:]
      eval_config.metrics_specs.extend(
          builtin_auc_specs(config.num_labels) if 'auc' in name else
          builtin_metrics_specs(config.num_labels))
    # Metrics only: change thresholds would need a baseline model.
    for spec in eval_config.metrics_specs:
      for metric in spec.metrics:
        metric.ClearField('per_slice_thresholds')
    if name.endswith('overall_only'):
      del eval_config.slicing_specs[1:]
    output = os.path.join(os.path.dirname(__file__), 'out', 'evaluator', name)
    shared_model = tfma.default_eval_shared_model(
        eval_saved_model_path=model, eval_config=eval_config)
    started = time.monotonic()
    tfma.run_model_analysis(eval_shared_model=shared_model,
                            eval_config=eval_config, data_location=examples,
                            output_path=output, file_format='tfrecords')
    variants[name] = {'seconds': round(time.monotonic() - started, 1),
                      'slices': len(eval_config.slicing_specs),
                      **overall_metrics(output)}
    print(name, variants[name], flush=True)
  if args.json:
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(variants, f, indent=2)


if __name__ == '__main__':
  main()
