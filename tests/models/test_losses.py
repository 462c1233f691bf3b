"""The training losses: their values, gradients, use in model.fit, and errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import losses

FREQUENCIES = [0.5, 0.2, 0.01]  # a common, an uncommon and a rare label


def _loss(name, **kwargs):
  if name == 'weighted_binary_crossentropy':
    kwargs.setdefault('label_frequencies', FREQUENCIES)
  return losses.make_loss(name, **kwargs)


def _value(loss, y_true, y_pred):
  return float(loss(tf.constant(y_true, tf.float32),
                    tf.constant(y_pred, tf.float32)))


def _gradient(loss, y_true, probabilities):
  """d loss / d probabilities, with the probabilities as plain inputs."""
  probabilities = tf.Variable(probabilities, dtype=tf.float32)
  with tf.GradientTape() as tape:
    value = loss(tf.constant(y_true, tf.float32), probabilities)
  return value, tape.gradient(value, probabilities)


_LABELS = [[1, 0, 1], [0, 1, 0]]
EDGE_CASES = {
    'exactly right': (_LABELS, _LABELS),
    'exactly wrong': (_LABELS, [[0, 1, 0], [1, 0, 1]]),
    'all-zero labels': ([[0, 0, 0], [0, 0, 0]], [[0, 1, 0.5], [1, 0, 0.5]]),
    'all-zero labels, all-zero probabilities': ([[0, 0, 0], [0, 0, 0]],
                                                [[0, 0, 0], [0, 0, 0]]),
    'all-one labels': ([[1, 1, 1], [1, 1, 1]], [[0, 1, 0.5], [1, 0, 0.5]]),
}


# Focal with gamma < 1 too: its factor's power has an infinite slope at 0.
LOSS_VARIANTS = [(name, {}) for name in losses.LOSS_NAMES] + [
    ('focal', {'focal_gamma': 0.0})]


@pytest.mark.parametrize('case', EDGE_CASES)
@pytest.mark.parametrize('name,options', LOSS_VARIANTS)
def test_every_loss_and_its_gradient_are_finite_on_edge_inputs(
    name, options, case):
  y_true, probabilities = EDGE_CASES[case]

  value, gradient = _gradient(_loss(name, **options), y_true, probabilities)

  assert np.isfinite(float(value))
  assert np.all(np.isfinite(gradient.numpy()))


def test_focal_with_gamma_0_equals_binary_crossentropy():
  rng = np.random.default_rng(0)
  y_true = (rng.random((6, 3)) < 0.4).astype('float32')
  probabilities = rng.random((6, 3)).astype('float32')
  probabilities[0] = [0.0, 1.0, 0.5]
  logits = tf.constant(rng.normal(scale=20.0, size=(6, 3)), tf.float32)
  focal = _loss('focal', focal_gamma=0.0)
  bce = keras.losses.BinaryCrossentropy()

  np.testing.assert_allclose(_value(focal, y_true, probabilities),
                             _value(bce, y_true, probabilities), rtol=1e-6)
  # The output of a sigmoid layer, where both use the logits.
  sigmoid_output = keras.activations.sigmoid(logits)
  np.testing.assert_allclose(float(focal(y_true, sigmoid_output)),
                             float(bce(y_true, sigmoid_output)), rtol=1e-6)


def test_focal_with_gamma_2_down_weights_confident_correct_predictions():
  focal, bce = _loss('focal', focal_gamma=2.0), _loss('binary_crossentropy')
  confident_right, confident_wrong = [[0.95]], [[0.05]]

  right_ratio = (_value(focal, [[1.0]], confident_right) /
                 _value(bce, [[1.0]], confident_right))
  wrong_ratio = (_value(focal, [[1.0]], confident_wrong) /
                 _value(bce, [[1.0]], confident_wrong))

  assert right_ratio == pytest.approx(0.05**2, rel=1e-3)
  assert wrong_ratio == pytest.approx(0.95**2, rel=1e-3)


def test_weighted_bce_with_even_frequencies_equals_binary_crossentropy():
  rng = np.random.default_rng(1)
  y_true = (rng.random((6, 3)) < 0.4).astype('float32')
  probabilities = rng.random((6, 3)).astype('float32')
  probabilities[0] = [0.0, 1.0, 0.5]
  weighted = _loss('weighted_binary_crossentropy',
                   label_frequencies=[0.5, 0.5, 0.5])

  np.testing.assert_allclose(
      _value(weighted, y_true, probabilities),
      _value(keras.losses.BinaryCrossentropy(), y_true, probabilities),
      rtol=1e-6)


def test_weighted_bce_charges_a_missed_rare_positive_more_than_a_common_one():
  weighted = _loss('weighted_binary_crossentropy',
                   label_frequencies=[0.5, 0.01])

  missed_common = _value(weighted, [[1, 0]], [[0.1, 0.0]])
  missed_rare = _value(weighted, [[0, 1]], [[0.0, 0.1]])

  assert missed_rare == pytest.approx(99 * missed_common, rel=1e-3)


def test_positive_weights_are_the_negative_to_positive_ratio_within_1_to_100():
  np.testing.assert_allclose(
      losses.positive_weights([0.9, 0.5, 0.2, 0.001]), [1.0, 1.0, 4.0, 100.0])


def test_weighted_bce_rejects_predictions_for_another_number_of_labels():
  weighted = _loss('weighted_binary_crossentropy')  # 3 frequencies

  with pytest.raises(ValueError, match='3 label frequencies.*predicts 2'):
    weighted(tf.zeros((2, 2)), tf.fill((2, 2), 0.5))


@pytest.mark.parametrize('name', ['weighted_binary_crossentropy', 'focal'])
def test_a_confidently_wrong_sigmoid_output_keeps_its_gradient(name):
  logits = tf.Variable([[-30.0, -30.0]])
  with tf.GradientTape() as tape:
    probabilities = keras.activations.sigmoid(logits)
    value = _loss(name, label_frequencies=[0.5, 0.5])(
        tf.constant([[1.0, 0.0]]), probabilities)

  # Clipped probabilities would give 0 here; the logits give -1 / labels.
  assert tape.gradient(value, logits).numpy()[0, 0] < -0.4


def test_soft_f1_is_0_for_perfect_predictions_and_1_for_all_wrong_ones():
  soft_f1 = _loss('soft_macro_f1')

  assert _value(soft_f1, _LABELS, _LABELS) == pytest.approx(0.0, abs=1e-6)
  assert _value(soft_f1, _LABELS, [[0, 1, 0], [1, 0, 1]]) == pytest.approx(
      1.0, abs=1e-6)


def test_soft_f1_follows_its_formula():
  # tp = 0.8, fp = 0.4, fn = 0.2: soft F1 = 1.6 / 2.2.
  assert _value(_loss('soft_macro_f1'), [[1], [0]],
                [[0.8], [0.4]]) == pytest.approx(1 - 1.6 / 2.2, rel=1e-5)


def test_soft_f1_gradient_raises_positive_and_lowers_negative_probabilities():
  y_true = [[1, 0], [0, 1], [1, 1]]

  _, gradient = _gradient(_loss('soft_macro_f1'), y_true,
                          np.full((3, 2), 0.5))

  positives = np.asarray(y_true, bool)
  assert np.all(gradient.numpy()[positives] < 0)
  assert np.all(gradient.numpy()[~positives] > 0)


@pytest.mark.parametrize('name', losses.LOSS_NAMES)
def test_a_sigmoid_model_fits_with_every_loss(name):
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input(shape=(4,)),
                            keras.layers.Dense(3, activation='sigmoid')])
  model.compile(optimizer=keras.optimizers.SGD(0.1), loss=_loss(name))
  features = np.random.default_rng(0).normal(size=(16, 4)).astype('float32')
  labels = (features[:, :3] > 0).astype('float32')
  kernel_before = model.layers[0].kernel.numpy().copy()

  history = model.fit(features, labels, batch_size=8, epochs=1, verbose=0)

  assert int(model.optimizer.iterations.numpy()) == 2
  assert np.all(np.isfinite(history.history['loss']))
  assert not np.allclose(model.layers[0].kernel.numpy(), kernel_before)


@pytest.mark.parametrize('name', losses.LOSS_NAMES)
def test_every_loss_survives_serialization(name):
  loss = _loss(name, focal_gamma=1.5)
  y_true, probabilities = _LABELS, [[0.9, 0.3, 0.6], [0.2, 0.7, 0.1]]

  restored = keras.saving.deserialize_keras_object(
      keras.saving.serialize_keras_object(loss))

  assert type(restored) is type(loss)
  assert _value(restored, y_true, probabilities) == pytest.approx(
      _value(loss, y_true, probabilities), rel=1e-6)


def test_make_loss_rejects_an_unknown_name_listing_the_choices():
  with pytest.raises(ValueError, match="'hinge'.*soft_macro_f1"):
    losses.make_loss('hinge')


def test_make_loss_rejects_weighted_bce_without_frequencies():
  with pytest.raises(ValueError, match='weighted_binary_crossentropy.*'
                     'label_frequencies'):
    losses.make_loss('weighted_binary_crossentropy')


@pytest.mark.parametrize('frequencies', [[0.5, 0.0], [0.5, 1.5], []])
def test_make_loss_rejects_frequencies_outside_0_to_1(frequencies):
  with pytest.raises(ValueError, match='weighted_binary_crossentropy'):
    losses.make_loss('weighted_binary_crossentropy',
                     label_frequencies=frequencies)


def test_make_loss_rejects_a_negative_focal_gamma():
  with pytest.raises(ValueError, match='focal_gamma'):
    losses.make_loss('focal', focal_gamma=-1.0)


def test_label_frequencies_are_the_label_means_over_the_requested_batches():
  labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0],
                     [0, 0, 1], [0, 0, 1]], dtype='float32')  # 3 batches of 2
  dataset = tf.data.Dataset.from_tensor_slices(
      (np.zeros((6, 1), 'float32'), labels)).batch(2).repeat()

  frequencies = losses.label_frequencies_from_dataset(dataset, steps=2)

  # Label 2 appears only in the third batch, so it is clipped to 1 / (4 + 1).
  np.testing.assert_allclose(frequencies, [0.75, 0.5, 0.2])


def test_the_configuration_accepts_exactly_the_losses_that_exist():
  from pipeline import config  # pylint: disable=g-import-not-at-top
  assert config.LOSS_NAMES == losses.LOSS_NAMES
