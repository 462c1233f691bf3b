"""collection/quality.py on small hand-made columns: missing values, Tukey's fences, bins,
coverage, claim delays and label frequencies."""

import numpy as np
import pandas as pd
import pytest

from collection import quality


def test_null_nan_and_nat_are_missing_but_an_empty_list_is_a_value():
  frame = pd.DataFrame({'x': [1.0, np.nan, None], 'l': [[], None, ['a']],
                        't': pd.to_datetime(['2026-01-01', None, '2026-01-02'])})

  missing = {m.column: (m.missing, m.share) for m in quality.missing_values(frame, ['x', 'l', 't'])}

  assert missing == {'x': (2, pytest.approx(2 / 3)), 'l': (1, pytest.approx(1 / 3)),
                     't': (1, pytest.approx(1 / 3))}


def test_tukey_fences_count_values_outside_on_each_side():
  values = pd.Series([1, 2, 3, 4, 5, 6, 7, 8, -50, 100, None], dtype='Int64')
  # Non-missing sorted: -50, 1, 2, 3, 4, 5, 6, 7, 8, 100 (n = 10): Q1 at rank 2.25 = 2.25,
  # Q3 at rank 6.75 = 6.75; IQR 4.5; fences -4.5 and 13.5.
  outliers = quality.tukey_outliers(values, 'x')

  assert (outliers.values, outliers.q1, outliers.q3) == (10, 2.25, 6.75)
  assert (outliers.lower_fence, outliers.upper_fence) == (-4.5, 13.5)
  assert (outliers.below, outliers.above, outliers.count) == (1, 1, 2)
  assert outliers.share == pytest.approx(0.2)


def test_a_column_without_values_has_no_outliers():
  outliers = quality.tukey_outliers(pd.Series([None, np.nan], dtype=float), 'x')

  assert outliers.values == 0 and outliers.count == 0 and np.isnan(outliers.lower_fence)


def test_integer_histograms_have_whole_number_bins_that_cover_the_maximum():
  histogram = quality.value_histogram(pd.Series([1, 1, 2, 5]), bins=20, integer=True)

  assert histogram.edges == (1, 2, 3, 4, 5, 6)
  assert histogram.counts == (2, 1, 0, 0, 1)


def test_float_histograms_have_equal_bins_from_minimum_to_maximum():
  histogram = quality.value_histogram(pd.Series([0.0, 0.5, 1.0, np.nan]), bins=2)

  assert histogram.edges == (0.0, 0.5, 1.0)
  assert histogram.counts == (1, 2)
  assert sum(histogram.counts) == 3


def test_join_coverage_counts_sessions_with_claim_ids_per_date():
  frame = pd.DataFrame({'session_date': ['2026-01-02', '2026-01-01', '2026-01-01', '2026-01-01'],
                        'claim_ids': [['C1', 'C2'], [], None, ['C3']]})

  coverage = quality.join_coverage(frame)

  assert [(d.date, d.sessions, d.with_claim) for d in coverage.days] == [
      ('2026-01-01', 3, 1), ('2026-01-02', 1, 1)]
  assert coverage.share == 0.5


def test_claim_delays_leave_sessions_without_a_claim_out():
  delays = quality.claim_delays(pd.Series([None, 1, 3, None, 5, 7], dtype='Int64'))

  assert delays.count == 4
  assert delays.median == 4.0  # between 3 and 5
  assert delays.p95 == pytest.approx(5 + 0.85 * 2)  # rank 0.95 * 3 = 2.85
  assert (delays.minimum, delays.maximum) == (1.0, 7.0)


def test_claim_delays_of_no_claims():
  delays = quality.claim_delays(pd.Series([None, None], dtype='Int64'))

  assert delays.count == 0 and delays.median is None and delays.histogram.counts == ()


def test_label_frequencies_count_a_session_once_per_label_in_vocabulary_order():
  labels = pd.Series([['b', 'a', 'a'], ['b'], [], None, ['z'], ['y', 'z']])

  rows = quality.label_frequencies(labels, ['a', 'b', 'c'])

  assert [(r.label, r.sessions, r.in_vocabulary, r.never_occurs) for r in rows] == [
      ('a', 1, True, False), ('b', 2, True, False), ('c', 0, True, True),
      ('z', 2, False, False), ('y', 1, False, False)]
  assert rows[1].share == pytest.approx(2 / 6)
