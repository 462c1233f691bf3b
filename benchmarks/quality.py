"""Model-quality benchmark: the pushed model against the exact posterior and two baselines.

`repairml bench quality [--config PATH] [--rows N] [--json PATH]
[--baseline-train-rows N]` scores, on a freshly generated held-out set that no
component has seen, the macro, micro and per-label F1 of:

- `model`: the latest pushed model in `paths.serving_dir`, deciding as it is
  served: its `recommended` output when the signature has one (its own
  per-label thresholds), else `probabilities >= 0.5`;
- `model_validation_thresholds`: the same probabilities with per-label
  thresholds tuned on the validation set, which separates the quality of the
  model's scores from the quality of its decision rule;
- `oracle`: the exact posterior of the data generator (data/posterior.py), with
  per-label thresholds tuned on the validation set: the ceiling;
- `logistic_regression` and `hist_gradient_boosting`: scikit-learn models, one
  per label, trained on the pipeline's train split of the configured sessions
  (the same hash split as ExampleGen), thresholds tuned on the validation set.

F1 is counted with pipeline/multilabel_metrics.f1_family, exactly as the
Evaluator counts it. The held-out and validation sets come from
data.generator, so the benchmark is meaningful for the synthetic data only.
Exit codes: 0 done, 2 a user mistake (no configuration, no pushed model, no
training files), reported in one line on stderr.
"""

import argparse
import bisect
import dataclasses
import glob
import hashlib
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from data.generator import LABELS as GENERATOR_LABELS
from data.generator import generate_sessions, posterior
from models.thresholds import best_thresholds
from pipeline.components.example_gen import is_missing, row_to_example
from pipeline.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from pipeline.multilabel_metrics import MACRO_F1, MICRO_F1, f1_family

HELD_OUT_SEED = 1001    # the default data set is generated with seed 42
VALIDATION_SEED = 1002
DEFAULT_ROWS = 20000
SERVING_BATCH_SIZE = 1000
DEFAULT_JSON = Path(__file__).resolve().parent / 'out' / 'quality.json'
# How a model without a `recommended` output (exported before thresholds) decides.
DEFAULT_THRESHOLD = 0.5
LOGISTIC_MAX_ITER = 2000
HGB_MAX_ITER = 100
HGB_RANDOM_STATE = 0
SPLIT_NAMES = ('train', 'eval', 'test')
EXIT_USAGE = 2


class BenchmarkError(Exception):
  """A user mistake (missing model, files or configuration); the message says what to do."""


# --- F1 ---------------------------------------------------------------------------------


def f1_scores(recommended: np.ndarray, labels: np.ndarray) -> Dict[str, object]:
  """Macro F1, micro F1 and per-label F1 (NaN where undefined) of [n, L] decisions."""
  decided = np.asarray(recommended).astype(bool)
  truth = np.asarray(labels).astype(bool)
  values = f1_family((decided & truth).sum(axis=0).astype(np.float64),
                     (decided & ~truth).sum(axis=0).astype(np.float64),
                     (~decided & truth).sum(axis=0).astype(np.float64))
  return {'macro_f1': values[(MACRO_F1, None)], 'micro_f1': values[(MICRO_F1, None)],
          'per_label_f1': np.array([values[('f1', j)] for j in range(truth.shape[1])])}


# --- Sessions as model inputs ------------------------------------------------------------


def multi_hot(values: Sequence, vocabulary: Sequence[str], column: str,
              unknown: str = 'ignore') -> np.ndarray:
  """[rows, vocabulary] 0/1 matrix from a column of lists (None reads as empty).

  `unknown='ignore'` drops values outside the vocabulary (unseen DTCs at test
  time); `unknown='raise'` rejects them (an unknown label is a data error).
  """
  position = {name: j for j, name in enumerate(vocabulary)}
  matrix = np.zeros((len(values), len(vocabulary)))
  for i, items in enumerate(values):
    if items is None:
      continue
    for item in items:
      j = position.get(item)
      if j is not None:
        matrix[i, j] = 1.0
      elif unknown == 'raise':
        raise BenchmarkError(f'row {i}: {column!r} holds {item!r}, which is not in its '
                             f'vocabulary ({len(vocabulary)} names)')
  return matrix


class SessionFeaturizer:
  """Turns session frames into a fixed-width float matrix for scikit-learn.

  Fitted on the training sessions: each categorical value seen in training gets
  a one-hot column, each list value seen in training (DTCs, symptoms) a
  multi-hot column, and each numeric feature two columns: its value, with
  missing readings replaced by the training mean, and a 0/1 missing indicator.
  Values first seen at test time set no column.
  """

  def __init__(self, numeric: Sequence[str], categorical: Sequence[str],
               multivalent: Sequence[str]):
    self.numeric, self.categorical, self.multivalent = (
        list(numeric), list(categorical), list(multivalent))
    self.means: Dict[str, float] = {}
    self.vocabularies: Dict[str, List] = {}

  def fit(self, frame: pd.DataFrame) -> 'SessionFeaturizer':
    self._check_columns(frame)
    for name in self.numeric:
      values = _numeric(frame, name)
      recorded = values[~np.isnan(values)]
      self.means[name] = float(recorded.mean()) if len(recorded) else 0.0
    for name in self.categorical:
      self.vocabularies[name] = sorted({v for v in frame[name] if not is_missing(v)})
    for name in self.multivalent:
      self.vocabularies[name] = sorted({v for items in frame[name] if items is not None
                                        for v in items})
    return self

  @property
  def feature_names(self) -> List[str]:
    names = []
    for name in self.numeric:
      names += [name, f'{name}_missing']
    for name in self.categorical:
      names += [f'{name}={value}' for value in self.vocabularies[name]]
    for name in self.multivalent:
      names += [f'{name}:{value}' for value in self.vocabularies[name]]
    return names

  def transform(self, frame: pd.DataFrame) -> np.ndarray:
    if not self.vocabularies and (self.categorical or self.multivalent):
      raise RuntimeError('SessionFeaturizer.transform before fit')
    self._check_columns(frame)
    blocks = []
    for name in self.numeric:
      values = _numeric(frame, name)
      missing = np.isnan(values)
      blocks.append(np.column_stack([np.where(missing, self.means[name], values),
                                     missing.astype(np.float64)]))
    for name in self.categorical:
      codes = pd.Categorical(frame[name], categories=self.vocabularies[name]).codes
      one_hot = np.zeros((len(frame), len(self.vocabularies[name])))
      seen = codes >= 0  # -1: missing, or a value not seen in training
      one_hot[np.flatnonzero(seen), codes[seen]] = 1.0
      blocks.append(one_hot)
    for name in self.multivalent:
      blocks.append(multi_hot(frame[name], self.vocabularies[name], name))
    return np.hstack(blocks) if blocks else np.zeros((len(frame), 0))

  def _check_columns(self, frame: pd.DataFrame) -> None:
    absent = [n for n in self.numeric + self.categorical + self.multivalent if n not in frame]
    if absent:
      raise BenchmarkError(f'the sessions have no column {absent[0]!r}, a configured feature')


def _numeric(frame: pd.DataFrame, name: str) -> np.ndarray:
  return pd.to_numeric(frame[name]).to_numpy(dtype=np.float64)  # None becomes NaN


# --- The pipeline's training data --------------------------------------------------------


def split_of(session_id, id_column: str, split_buckets: Sequence[int]) -> int:
  """Index of the split (0 train, 1 eval, 2 test) ExampleGen puts this session in.

  TFX 1.16 (base_example_gen_executor._PartitionFn) hashes the serialized
  partition feature with SHA-256 and maps it to hash-bucket ranges of the
  configured weights; this mirrors it so the baselines learn from the train
  split only, as the Trainer does.
  """
  feature = row_to_example({id_column: session_id}).features.feature[id_column]
  boundaries = np.cumsum(split_buckets).tolist()
  key = feature.SerializeToString(deterministic=True)
  return bisect.bisect(boundaries, int(hashlib.sha256(key).hexdigest(), 16) % boundaries[-1])


def read_training_sessions(config: Config) -> pd.DataFrame:
  """The train split's sessions: every configured file, sampled and split as ExampleGen does."""
  from pipeline.components.example_gen import is_sampled_in  # pylint: disable=g-import-not-at-top
  data = config.data
  pattern = os.path.join(data.root, data.pattern)
  if data.format != 'parquet':
    raise BenchmarkError(f'{config.source_path}: data.format is {data.format!r}; the quality '
                         f'benchmark reads parquet sessions only')
  paths = sorted(glob.glob(pattern))
  if not paths:
    raise BenchmarkError(f'no training files match {pattern}: run `make data` (or `make run`) '
                         f'first, or point data.root in {config.source_path} at your sessions')
  frame = pd.concat([pd.read_parquet(path) for path in paths], ignore_index=True)
  if data.id_column not in frame:
    raise BenchmarkError(f'{paths[0]}: no id column {data.id_column!r} (data.id_column)')
  ids = frame[data.id_column].tolist()
  keep = np.ones(len(frame), dtype=bool)
  if data.sample_fraction < 1.0:
    keep &= np.array([is_sampled_in(str(i).encode(), data.sample_fraction) for i in ids])
  buckets = [getattr(config.splits, name) for name in SPLIT_NAMES]
  keep &= np.array([split_of(i, data.id_column, buckets) == 0 for i in ids])
  return frame[keep].reset_index(drop=True)


# --- The systems -------------------------------------------------------------------------


@dataclasses.dataclass
class SystemResult:
  """One system's score on the held-out set."""
  name: str
  macro_f1: float
  micro_f1: float
  per_label_f1: np.ndarray
  decision: str                        # how probabilities became recommendations
  predict_seconds: float               # on the held-out set
  fit_seconds: Optional[float] = None  # training and threshold tuning, if any
  thresholds: Optional[np.ndarray] = None


def _scored(name: str, recommended: np.ndarray, truth: np.ndarray, **fields) -> SystemResult:
  scores = f1_scores(recommended, truth)
  return SystemResult(name=name, macro_f1=scores['macro_f1'], micro_f1=scores['micro_f1'],
                      per_label_f1=scores['per_label_f1'], **fields)


def label_matrix(frame: pd.DataFrame, config: Config) -> np.ndarray:
  return multi_hot(frame[config.label.column], config.label.vocabulary, config.label.column,
                   unknown='raise')


def oracle_probabilities(frame: pd.DataFrame, vocabulary: Sequence[str]) -> np.ndarray:
  """The generator's exact posterior, its columns in the configured label order."""
  unknown = [name for name in vocabulary if name not in GENERATOR_LABELS]
  if unknown:
    raise BenchmarkError(f'label {unknown[0]!r} is not a label of the data generator, so the '
                         f'oracle cannot score it; this benchmark needs the synthetic labels')
  columns = [GENERATOR_LABELS.index(name) for name in vocabulary]
  return posterior(frame)[:, columns]


def evaluate_oracle(held_out: pd.DataFrame, validation: pd.DataFrame,
                    config: Config) -> SystemResult:
  """The exact posterior with per-label thresholds tuned on the validation set."""
  started = time.monotonic()
  thresholds = best_thresholds(oracle_probabilities(validation, config.label.vocabulary),
                               label_matrix(validation, config))
  fit_seconds = time.monotonic() - started
  started = time.monotonic()
  probabilities = oracle_probabilities(held_out, config.label.vocabulary)
  predict_seconds = time.monotonic() - started
  return _scored('oracle', probabilities >= thresholds, label_matrix(held_out, config),
                 decision='validation-tuned thresholds', fit_seconds=fit_seconds,
                 predict_seconds=predict_seconds, thresholds=thresholds)


def latest_model_dir(serving_dir: str) -> str:
  """The directory of the latest pushed version in `serving_dir`."""
  from models import versions  # pylint: disable=g-import-not-at-top
  version = versions.latest_version(serving_dir)
  if version is None:
    raise BenchmarkError(f'no pushed model in {serving_dir} (paths.serving_dir): run `make run` '
                         f'first')
  return os.path.join(serving_dir, str(version))


def serialized_sessions(frame: pd.DataFrame, label_column: str) -> List[bytes]:
  """Each session as a serialized tf.Example without its labels, as a client sends it."""

  def plain(value):  # parquet lists arrive as numpy arrays
    return list(value) if isinstance(value, np.ndarray) else value

  rows = frame.drop(columns=[label_column]).to_dict('records')
  return [row_to_example({k: plain(v) for k, v in row.items()}).SerializeToString()
          for row in rows]


class PushedModel:
  """A pushed SavedModel called through its serving signature, in batches."""

  def __init__(self, model_dir: str, config: Config):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from models import export  # pylint: disable=g-import-not-at-top
    names = export.load_label_names(model_dir)
    if names != config.label.vocabulary:
      raise BenchmarkError(
          f'{model_dir} predicts {len(names)} labels that differ from label.vocabulary in '
          f'{config.source_path} ({config.num_labels} labels) or are in another order; use '
          f'the configuration the model was trained with')
    self._tf = tf
    self._serve = tf.saved_model.load(model_dir).signatures['serving_default']

  def outputs(self, examples: List[bytes]) -> Dict[str, np.ndarray]:
    """Every output of the serving signature, e.g. 'probabilities' and 'recommended', [n, L]."""
    batches = [self._serve(examples=self._tf.constant(examples[start:start + SERVING_BATCH_SIZE]))
               for start in range(0, len(examples), SERVING_BATCH_SIZE)]
    return {key: np.concatenate([batch[key].numpy() for batch in batches]) for key in batches[0]}


def evaluate_model(model: PushedModel, held_out: pd.DataFrame, validation: pd.DataFrame,
                   config: Config) -> List[SystemResult]:
  """The pushed model as served, and with validation-tuned thresholds.

  The predict time is the serving signature's; turning sessions into
  tf.Examples is not counted.
  """
  from models.export import PROBABILITIES, RECOMMENDED  # pylint: disable=g-import-not-at-top
  truth = label_matrix(held_out, config)
  examples = serialized_sessions(held_out, config.label.column)
  started = time.monotonic()
  outputs = model.outputs(examples)
  predict_seconds = time.monotonic() - started
  if RECOMMENDED in outputs:
    served = outputs[RECOMMENDED] > 0
    decision = f'{RECOMMENDED} output (the model\'s own thresholds)'
  else:  # exported before models carried thresholds
    served = outputs[PROBABILITIES] >= DEFAULT_THRESHOLD
    decision = f'{PROBABILITIES} >= {DEFAULT_THRESHOLD} (no {RECOMMENDED} output)'
  as_served = _scored('model', served, truth, decision=decision,
                      predict_seconds=predict_seconds)

  started = time.monotonic()
  thresholds = best_thresholds(
      model.outputs(serialized_sessions(validation, config.label.column))[PROBABILITIES],
      label_matrix(validation, config))
  tuned = _scored('model_validation_thresholds', outputs[PROBABILITIES] >= thresholds, truth,
                  decision='validation-tuned thresholds', predict_seconds=predict_seconds,
                  fit_seconds=time.monotonic() - started, thresholds=thresholds)
  return [as_served, tuned]


class PerLabelClassifier:
  """One binary scikit-learn classifier per label; a label seen in one class only is constant."""

  def __init__(self, make_classifier: Callable[[], object]):
    self._make_classifier = make_classifier
    self.classifiers: List[object] = []
    self.not_converged = 0

  def fit(self, features: np.ndarray, labels: np.ndarray) -> 'PerLabelClassifier':
    self.classifiers = []
    for column in labels.T.astype(bool):
      if column.all() or not column.any():
        self.classifiers.append(float(column.all()))  # never (or always) seen: predict it
        continue
      with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='lbfgs failed to converge')
        classifier = self._make_classifier().fit(features, column)
      iterations = getattr(classifier, 'n_iter_', None)
      max_iter = getattr(classifier, 'max_iter', None)
      if iterations is not None and np.max(iterations) >= max_iter:
        self.not_converged += 1
      self.classifiers.append(classifier)
    return self

  def predict_proba(self, features: np.ndarray) -> np.ndarray:
    return np.column_stack([
        np.full(len(features), c) if isinstance(c, float) else c.predict_proba(features)[:, 1]
        for c in self.classifiers])

  @property
  def constant_labels(self) -> np.ndarray:
    return np.array([isinstance(c, float) for c in self.classifiers])


def evaluate_baseline(name: str, make_classifier: Callable[[], object],
                      train: Dict[str, np.ndarray], validation: Dict[str, np.ndarray],
                      held_out: Dict[str, np.ndarray]) -> SystemResult:
  """Fits per-label classifiers, tunes their thresholds on validation, scores held-out.

  Each of train, validation and held_out is {'features': [n, d], 'labels': [n, L]}.
  """
  started = time.monotonic()
  classifier = PerLabelClassifier(make_classifier).fit(train['features'], train['labels'])
  thresholds = best_thresholds(classifier.predict_proba(validation['features']),
                               validation['labels'])
  # A constant label stays constant: tuning would turn a never-seen label on for everyone.
  constant = classifier.constant_labels
  thresholds[constant] = np.where(train['labels'][:, constant].any(axis=0), -np.inf, np.inf)
  fit_seconds = time.monotonic() - started
  started = time.monotonic()
  probabilities = classifier.predict_proba(held_out['features'])
  predict_seconds = time.monotonic() - started
  decision = 'validation-tuned thresholds'
  if classifier.not_converged:
    decision += f'; {classifier.not_converged} label(s) did not converge'
  return _scored(name, probabilities >= thresholds, held_out['labels'], decision=decision,
                 fit_seconds=fit_seconds, predict_seconds=predict_seconds,
                 thresholds=thresholds)


def logistic_regression():
  return LogisticRegression(C=1.0, class_weight=None, max_iter=LOGISTIC_MAX_ITER)


def hist_gradient_boosting():
  return HistGradientBoostingClassifier(max_iter=HGB_MAX_ITER, early_stopping=False,
                                        random_state=HGB_RANDOM_STATE)


def evaluate_baselines(train: pd.DataFrame, validation: pd.DataFrame, held_out: pd.DataFrame,
                       config: Config) -> List[SystemResult]:
  """Logistic regression (on standardised features) and gradient boosting, per label."""
  features = config.features
  featurizer = SessionFeaturizer(features.numeric, features.categorical,
                                 features.multivalent).fit(train)
  sets = {name: {'features': featurizer.transform(frame), 'labels': label_matrix(frame, config)}
          for name, frame in (('train', train), ('validation', validation),
                              ('held_out', held_out))}
  scaler = StandardScaler().fit(sets['train']['features'])
  scaled = {name: dict(data, features=scaler.transform(data['features']))
            for name, data in sets.items()}
  results = []
  # One thread: with two OpenMP threads on a shared, busy 2-core machine,
  # gradient boosting ran 2 to 6 times slower than with one (threads spin at
  # every barrier while another process holds the other core).
  with threadpool_limits(limits=1):
    for name, make_classifier, data in (
        ('logistic_regression', logistic_regression, scaled),
        ('hist_gradient_boosting', hist_gradient_boosting, sets)):
      results.append(evaluate_baseline(name, make_classifier, data['train'],
                                       data['validation'], data['held_out']))
      _progress(f'{name}: fitted in {results[-1].fit_seconds:.1f} s')
  return results


# --- Report ------------------------------------------------------------------------------


def _finite_or_none(value) -> Optional[float]:
  value = float(value)
  return value if math.isfinite(value) else None


def report(results: List[SystemResult], rows: int, label_names: Sequence[str],
           run: Dict[str, object]) -> Dict[str, object]:
  """The JSON record: the run's settings and, per system, its scores."""
  oracle = next(r for r in results if r.name == 'oracle')
  systems = {}
  for r in results:
    systems[r.name] = {
        'macro_f1': _finite_or_none(r.macro_f1),
        'micro_f1': _finite_or_none(r.micro_f1),
        'ratio_to_oracle': _finite_or_none(r.macro_f1 / oracle.macro_f1),
        'per_label_f1': {n: _finite_or_none(f) for n, f in zip(label_names, r.per_label_f1)},
        'decision': r.decision,
        'fit_seconds': None if r.fit_seconds is None else round(r.fit_seconds, 3),
        'predict_seconds_per_row': r.predict_seconds / rows,
        # None: the label is never recommended (+inf) or always (-inf).
        'thresholds': None if r.thresholds is None else {
            n: _finite_or_none(t) for n, t in zip(label_names, r.thresholds)},
    }
  return dict(run, systems=systems)


def table(results: List[SystemResult], rows: int) -> str:
  oracle = next(r for r in results if r.name == 'oracle')
  lines = [f'{"system":<28} {"macro F1":>8} {"micro F1":>8} {"macro/oracle":>12} '
           f'{"fit s":>7} {"predict s/row":>13}']
  for r in results:
    fit = '-' if r.fit_seconds is None else f'{r.fit_seconds:.1f}'
    lines.append(f'{r.name:<28} {r.macro_f1:>8.4f} {r.micro_f1:>8.4f} '
                 f'{r.macro_f1 / oracle.macro_f1:>12.3f} {fit:>7} '
                 f'{r.predict_seconds / rows:>13.2e}')
  return '\n'.join(lines)


def _write_json(record: Dict[str, object], path: Path) -> None:
  """Written to a temporary name and renamed, so a reader never sees half a file."""
  path.parent.mkdir(parents=True, exist_ok=True)
  temporary = path.with_name(f'.{path.name}.tmp')
  temporary.write_text(json.dumps(record, indent=2, allow_nan=False) + '\n')
  os.replace(temporary, path)


# The terminal, when the libraries' output goes to a log file (see cli.py):
# the benchmark's lines and errors go there instead of stdout and stderr.
_TERMINAL = None


def _out():
  return _TERMINAL or sys.stdout


def _progress(message: str) -> None:
  print(message, file=_out(), flush=True)


# --- Command line ------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
  """Writes help and usage errors where the benchmark's lines go."""

  def _print_message(self, message, file=None):
    if message:
      (_TERMINAL or file or sys.stderr).write(message)


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(
      prog='repairml bench quality',
      description='Macro and micro F1 of the latest pushed model, the exact posterior and '
                  'scikit-learn baselines on freshly generated held-out sessions.')
  parser.add_argument('--config', default=DEFAULT_CONFIG_PATH,
                      help=f'run configuration (default {DEFAULT_CONFIG_PATH})')
  parser.add_argument('--rows', type=int, default=DEFAULT_ROWS,
                      help=f'sessions in the held-out set and in the validation set '
                           f'(default {DEFAULT_ROWS})')
  parser.add_argument('--json', type=Path, default=DEFAULT_JSON,
                      help=f'write the scores here (default {DEFAULT_JSON})')
  parser.add_argument('--baseline-train-rows', type=int, default=None,
                      help='train the baselines on the first N sessions of the train split '
                           '(default all)')
  return parser


def main(argv: Optional[List[str]] = None, terminal=None) -> int:
  """`repairml bench quality`: prints the table, writes the JSON; returns the exit code.

  `terminal`: where to print, when stdout and stderr go to a log file.
  """
  global _TERMINAL
  _TERMINAL = terminal
  try:
    args = _parser().parse_args(argv)
  except SystemExit as exit_request:  # argparse has printed the usage error or the help
    return int(exit_request.code or 0)
  try:
    return _run(args)
  except (BenchmarkError, ConfigError) as error:
    print(f'repairml bench quality: error: {error}',
          file=_TERMINAL or sys.stderr)
    return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
  if args.rows <= 0:
    raise BenchmarkError(f'--rows must be positive, got {args.rows}')
  if args.baseline_train_rows is not None and args.baseline_train_rows <= 0:
    raise BenchmarkError(f'--baseline-train-rows must be positive, got {args.baseline_train_rows}')
  config = load_config(args.config)
  # Every user mistake is found before the slow work starts.
  model_dir = latest_model_dir(config.paths.serving_dir)
  train = read_training_sessions(config)
  if args.baseline_train_rows is not None:
    train = train.iloc[:args.baseline_train_rows].reset_index(drop=True)
  model = PushedModel(model_dir, config)

  held_out = generate_sessions(args.rows, seed=HELD_OUT_SEED)
  validation = generate_sessions(args.rows, seed=VALIDATION_SEED)
  _progress(f'held-out {args.rows} sessions (seed {HELD_OUT_SEED}), validation {args.rows} '
            f'(seed {VALIDATION_SEED}); baselines train on {len(train)} train-split sessions')

  results = evaluate_model(model, held_out, validation, config)
  _progress(f'model: {model_dir}, {results[0].decision}')
  results.append(evaluate_oracle(held_out, validation, config))
  results += evaluate_baselines(train, validation, held_out, config)

  record = report(results, args.rows, config.label.vocabulary, {
      'model_dir': model_dir, 'decision_source': results[0].decision,
      'held_out_seed': HELD_OUT_SEED, 'validation_seed': VALIDATION_SEED, 'rows': args.rows,
      'baseline_train_rows': len(train), 'config': config.source_path,
  })
  _write_json(record, args.json)
  print(file=_out())
  print(table(results, args.rows), file=_out())
  print(f'\nwrote {args.json}', file=_out())
  return 0


if __name__ == '__main__':
  sys.exit(main())
