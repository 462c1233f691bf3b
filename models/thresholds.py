"""Per-label decision thresholds: the probability at which a label is recommended.

A recommendation service is judged on the labels it returns. After training,
each label gets the threshold that maximises its F1 on the eval split; the
thresholds are exported with the model and its serving signature applies them.
"""

import numpy as np

DEFAULT_THRESHOLD = 0.5


def best_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """For each label, the threshold with the highest F1 on these examples.

  Args:
    probabilities: [n, L] predicted probabilities.
    labels: [n, L] multi-hot truth.

  Returns:
    [L] thresholds: recommending label j when p >= threshold[j] maximises its
    F1 here. The threshold sits halfway between the lowest recommended and the
    highest unrecommended probability. A label without positives keeps
    DEFAULT_THRESHOLD.
  """
  probabilities = np.asarray(probabilities, np.float64)
  labels = np.asarray(labels) > 0.5
  return np.array([
      _best_threshold(probabilities[:, j], labels[:, j])
      for j in range(probabilities.shape[1])
  ])


def _best_threshold(scores: np.ndarray, truth: np.ndarray) -> float:
  positives = truth.sum()
  if positives == 0:
    return DEFAULT_THRESHOLD
  order = np.argsort(-scores, kind='stable')
  scores, truth = scores[order], truth[order]
  # Cutting after position k recommends the k+1 highest scores; only cut
  # where the score changes, so that tied scores share one decision.
  cuts = np.flatnonzero(np.append(scores[1:] < scores[:-1], True))
  true_positives = np.cumsum(truth)[cuts]
  f1 = 2 * true_positives / (cuts + 1 + positives)
  best = int(np.argmax(f1))
  cut = cuts[best]
  lowest_recommended = scores[cut]
  highest_left_out = scores[cut + 1] if cut + 1 < len(scores) else 0.0
  return float((lowest_recommended + highest_left_out) / 2)


def macro_f1(true_positives, false_positives, false_negatives) -> float:
  """The mean F1 over labels that occur in the truth or the decisions.

  F1 is undefined for a label that does neither; NaN if no label occurs.
  """
  tp, fp, fn = (np.asarray(c, np.float64) for c in
                (true_positives, false_positives, false_negatives))
  denominator = 2 * tp + fp + fn
  occurring = denominator > 0
  if not occurring.any():
    return float('nan')
  return float(np.mean(2 * tp[occurring] / denominator[occurring]))


def recommendation_scores(probabilities, thresholds):
  """Probabilities moved so that each label's threshold lands on 0.5.

  sigmoid(logit(p) - logit(t)) is at least 0.5 exactly when p >= t, and keeps
  the order of p: a score that TFMA and clients can read at 0.5 and that
  still ranks labels like the probabilities.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  epsilon = 1e-7
  p = tf.clip_by_value(probabilities, epsilon, 1 - epsilon)
  t = tf.clip_by_value(tf.cast(thresholds, p.dtype), epsilon, 1 - epsilon)
  logit = lambda x: tf.math.log(x) - tf.math.log1p(-x)
  return tf.sigmoid(logit(p) - logit(t))
