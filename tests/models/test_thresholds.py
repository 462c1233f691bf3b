"""Per-label decision thresholds: the F1-maximising cut, and scores at 0.5."""

import numpy as np
import pytest
import tensorflow as tf

from models.thresholds import (DEFAULT_THRESHOLD, best_thresholds, macro_f1,
                               recommendation_scores)


def test_best_threshold_maximises_each_labels_f1():
  probabilities = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.35, 0.2],
                            [0.4, 0.1]])
  labels = np.array([[0, 1], [0, 1], [1, 1], [1, 0], [0, 0]])
  # Label 0: recommending {0.4, 0.35, 0.3} gives F1 0.8, the best; the cut
  # lies halfway to the next score, 0.2. Label 1: {0.9, 0.8, 0.7}, F1 1.0.
  np.testing.assert_allclose(best_thresholds(probabilities, labels),
                             [0.25, 0.45])


def test_tied_scores_share_one_decision():
  probabilities = np.array([[0.6], [0.6], [0.6], [0.1]])
  labels = np.array([[1], [0], [0], [1]])
  # Cutting inside the tie is impossible: recommend all three 0.6s (F1 0.4)
  # or all four (F1 2*2/(4+2) = 0.667).
  np.testing.assert_allclose(best_thresholds(probabilities, labels), [0.05])


def test_a_label_without_positives_keeps_the_default():
  thresholds = best_thresholds(np.array([[0.9], [0.1]]), np.array([[0], [0]]))
  assert thresholds.tolist() == [DEFAULT_THRESHOLD]


def test_recommendation_scores_cross_one_half_at_the_threshold():
  probabilities = tf.constant([[0.1, 0.3, 0.31, 0.9]])
  thresholds = tf.constant([0.3, 0.3, 0.3, 0.95])
  scores = recommendation_scores(probabilities, thresholds).numpy()[0]
  assert scores[0] < 0.5
  assert scores[1] == pytest.approx(0.5)
  assert scores[2] > 0.5
  assert scores[3] < 0.5
  # The order of the probabilities is kept for a common threshold.
  assert scores[0] < scores[1] < scores[2]


def test_macro_f1_averages_over_labels_that_occur():
  # label 0: tp 3, fp 1, fn 1 -> 0.75; label 1: fn 2 -> 0; label 2: absent.
  assert macro_f1([3, 0, 0], [1, 0, 0], [1, 2, 0]) == (
      pytest.approx(0.375))
  assert np.isnan(macro_f1([0], [0], [0]))
