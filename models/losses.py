"""The training losses the configuration can choose for the multi-label model.

The model outputs `probabilities` [batch, labels] (one sigmoid per label) and is
trained on multi-hot targets of the same shape. The business metric is macro F1
over labels, so rare labels matter as much as common ones: besides plain binary
cross-entropy, the choices re-weight rare positives, focus on hard examples, or
optimise a differentiable macro F1 directly. make_loss builds one by name.

Every cross-entropy term here comes from keras.ops.binary_crossentropy. On
plain probabilities it clips them to [epsilon, 1 - epsilon], so exact 0s and 1s
stay finite. On the output of a sigmoid layer it uses the sigmoid's logits
instead, the same as keras.losses.BinaryCrossentropy. Without this, a
confidently wrong prediction (a rare positive at logit -30, say) would be
clipped, lose its gradient, and never be corrected.
"""

from typing import Sequence

import keras
import numpy as np
from keras import ops

LOSS_NAMES = ('binary_crossentropy', 'weighted_binary_crossentropy', 'focal',
              'soft_macro_f1')

# Bounds of the positive weight (1 - p) / p of a label seen in a share p of the
# training sessions; see WeightedBinaryCrossentropy.
MIN_POSITIVE_WEIGHT = 1.0
MAX_POSITIVE_WEIGHT = 100.0

_SERIALIZATION_PACKAGE = 'repairml'


def positive_weights(label_frequencies: Sequence[float]) -> np.ndarray:
  """The weight of each label's positive term: (1 - p) / p, clipped to [1, 100].

  (1 - p) / p is the ratio of negatives to positives, so a label's positives
  count as much in total as its negatives. A label that is rare in sessions
  then is not learned as "always absent", and macro F1 rewards that.
  The lower bound 1: a label in more than half the sessions would otherwise
  have its positives count less than its negatives, which costs that label's
  recall for no gain in macro F1. Common labels keep plain cross-entropy.
  The upper bound 100: below about 1% of sessions the ratio grows into the
  thousands, while the frequency behind it rests on a few examples. A single
  positive in a batch would then dominate the gradient. 100 still boosts the
  rarest labels by two orders of magnitude.
  """
  frequencies = np.asarray(label_frequencies, dtype=np.float64)
  return np.clip((1.0 - frequencies) / frequencies, MIN_POSITIVE_WEIGHT,
                 MAX_POSITIVE_WEIGHT)


def _checked_frequencies(label_frequencies, loss_name: str) -> np.ndarray:
  frequencies = np.asarray(label_frequencies, dtype=np.float64)
  if (frequencies.ndim != 1 or frequencies.size == 0 or
      not np.all(np.isfinite(frequencies)) or np.any(frequencies <= 0) or
      np.any(frequencies > 1)):
    raise ValueError(
        f"Loss '{loss_name}' needs label_frequencies as one share in (0, 1] "
        f'per label, in label-vocabulary order; got {label_frequencies!r}. '
        'Compute them from the training split with '
        'models.losses.label_frequencies_from_dataset.')
  return frequencies


def _check_label_count(y_pred, expected: int, loss_name: str) -> None:
  """Fails at trace time when the weights do not match the model's labels.

  Broadcasting would otherwise hide a mismatch with a single label.
  """
  labels = y_pred.shape[-1]
  if labels is not None and labels != expected:
    raise ValueError(
        f"Loss '{loss_name}' was built with {expected} label frequencies but "
        f'the model predicts {labels} labels. Compute the frequencies with '
        'the same label vocabulary as the model.')


@keras.saving.register_keras_serializable(package=_SERIALIZATION_PACKAGE)
class WeightedBinaryCrossentropy(keras.losses.Loss):
  """Binary cross-entropy whose positive term on label j weighs w_j.

  w_j = positive_weights(label_frequencies)[j]. The negative terms weigh 1.
  The loss of a session is the mean over its labels. The config keeps the
  frequencies rather than the weights, so a saved model records what the
  training data said and the weighting rule lives in one place.
  """

  def __init__(self, label_frequencies: Sequence[float],
               name: str = 'weighted_binary_crossentropy',
               reduction: str = 'sum_over_batch_size', dtype=None):
    super().__init__(name=name, reduction=reduction, dtype=dtype)
    self.label_frequencies = [
        float(p) for p in _checked_frequencies(label_frequencies, name)]
    self._positive_weights = positive_weights(self.label_frequencies)

  def call(self, y_true, y_pred):
    _check_label_count(y_pred, len(self.label_frequencies), self.name)
    weights = ops.convert_to_tensor(self._positive_weights, dtype=y_pred.dtype)
    # y_pred goes in unchanged, so a sigmoid output keeps its logits.
    missed_positive = ops.binary_crossentropy(ops.ones_like(y_pred), y_pred)
    false_alarm = ops.binary_crossentropy(ops.zeros_like(y_pred), y_pred)
    per_label = (weights * y_true * missed_positive +
                 (1.0 - y_true) * false_alarm)
    return ops.mean(per_label, axis=-1)

  def get_config(self):
    return {**super().get_config(),
            'label_frequencies': self.label_frequencies}


@keras.saving.register_keras_serializable(package=_SERIALIZATION_PACKAGE)
class BinaryFocalLoss(keras.losses.Loss):
  """Binary focal loss (Lin et al., 2017): (1 - p_t)^gamma * cross-entropy.

  p_t is the probability given to the true value of each label. With gamma 0
  this is binary cross-entropy. Larger gamma down-weights labels the model
  already gets confidently right, so the gradient goes to the hard ones.
  Lin et al.'s alpha (0.25) is not used. It was tuned for object detection and
  down-weights positives, which works against rare-label recall. Class balance
  is what weighted_binary_crossentropy is for.

  Not keras.losses.BinaryFocalCrossentropy: at probabilities of exactly 0 or 1
  its focal factor has a NaN gradient for gamma < 1. Here p_t is clipped to
  [epsilon, 1 - epsilon] before the power.
  """

  def __init__(self, gamma: float = 2.0, name: str = 'focal',
               reduction: str = 'sum_over_batch_size', dtype=None):
    super().__init__(name=name, reduction=reduction, dtype=dtype)
    gamma = float(gamma)
    if not np.isfinite(gamma) or gamma < 0:
      raise ValueError(
          f"Loss '{name}' needs focal_gamma >= 0 (0 is plain binary "
          f'cross-entropy, 2 is the usual choice); got {gamma}.')
    self.gamma = gamma

  def call(self, y_true, y_pred):
    cross_entropy = ops.binary_crossentropy(y_true, y_pred)
    epsilon = keras.config.epsilon()
    probabilities = ops.clip(y_pred, epsilon, 1.0 - epsilon)
    p_true = y_true * probabilities + (1.0 - y_true) * (1.0 - probabilities)
    focal_factor = ops.power(1.0 - p_true, self.gamma)
    return ops.mean(focal_factor * cross_entropy, axis=-1)

  def get_config(self):
    return {**super().get_config(), 'gamma': self.gamma}


@keras.saving.register_keras_serializable(package=_SERIALIZATION_PACKAGE)
class SoftMacroF1Loss(keras.losses.Loss):
  """1 - the mean over labels of a soft F1 computed over the batch.

  For label j, with probabilities in place of hard predictions:
  tp = sum(y * p), fp = sum((1 - y) * p), fn = sum(y * (1 - p)) over the batch,
  and soft_f1_j = 2 tp / (2 tp + fp + fn + epsilon).

  This is a statistic of the whole batch, not a sum of per-session losses.
  Sample weights therefore only scale it, and small batches make it noisy.
  A label with no positive in the batch has tp = 0, so its soft F1 is 0
  whatever the predictions. It adds a constant 1 / labels to the loss and
  gives no gradient, so its false positives cost nothing in that batch.
  Batches should be large enough that most labels appear in them.
  """

  def __init__(self, name: str = 'soft_macro_f1',
               reduction: str = 'sum_over_batch_size', dtype=None):
    super().__init__(name=name, reduction=reduction, dtype=dtype)

  def call(self, y_true, y_pred):
    true_positives = ops.sum(y_true * y_pred, axis=0)
    false_positives = ops.sum((1.0 - y_true) * y_pred, axis=0)
    false_negatives = ops.sum(y_true * (1.0 - y_pred), axis=0)
    soft_f1 = 2.0 * true_positives / (
        2.0 * true_positives + false_positives + false_negatives +
        keras.config.epsilon())
    return 1.0 - ops.mean(soft_f1)


def make_loss(name: str, label_frequencies: Sequence[float] | None = None,
              focal_gamma: float = 2.0) -> keras.losses.Loss:
  """The training loss called `name`, one of LOSS_NAMES.

  Args:
    name: which loss.
    label_frequencies: for 'weighted_binary_crossentropy', the share of
      training sessions with each label, in label-vocabulary order (see
      label_frequencies_from_dataset). The other losses ignore it.
    focal_gamma: for 'focal', the focusing exponent; other losses ignore it.
  """
  if name == 'binary_crossentropy':
    return keras.losses.BinaryCrossentropy()
  if name == 'weighted_binary_crossentropy':
    if label_frequencies is None:
      raise ValueError(
          "Loss 'weighted_binary_crossentropy' needs label_frequencies, the "
          'share of training sessions with each label. Compute them from the '
          'training split with models.losses.label_frequencies_from_dataset.')
    return WeightedBinaryCrossentropy(label_frequencies)
  if name == 'focal':
    return BinaryFocalLoss(focal_gamma)
  if name == 'soft_macro_f1':
    return SoftMacroF1Loss()
  raise ValueError(f'Unknown loss {name!r}; choose one of {LOSS_NAMES}.')


def label_frequencies_from_dataset(dataset, steps: int) -> np.ndarray:
  """The share of rows with each label in the first `steps` batches.

  `dataset` yields (features, labels) batches with dense multi-hot labels
  [batch, labels], as the Trainer's training split does. If it ends early,
  the batches it has are used. The result is clipped to at least
  1 / (rows + 1): a label never seen in the sample is rare, not impossible,
  and its positive weight stays finite.
  """
  if steps < 1:
    raise ValueError(f'steps must be at least 1; got {steps}.')
  label_totals, rows = None, 0
  for _, labels in dataset.take(steps):
    labels = np.asarray(ops.convert_to_numpy(labels), dtype=np.float64)
    if labels.ndim != 2:
      raise ValueError(
          'label_frequencies_from_dataset expects multi-hot labels of shape '
          f'[batch, labels]; got a batch of shape {labels.shape}.')
    batch_totals = labels.sum(axis=0)
    label_totals = (batch_totals if label_totals is None
                    else label_totals + batch_totals)
    rows += labels.shape[0]
  if rows == 0:
    raise ValueError('label_frequencies_from_dataset got no rows from the '
                     'dataset; is the training split empty?')
  return np.clip(label_totals / rows, 1.0 / (rows + 1), 1.0)
