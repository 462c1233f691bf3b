"""The date range a collection run collects, and the span of a day."""
import datetime

import pytest

from collection.dates import DateError, DateRange, resolve_range, span_of, date_of_span

TODAY = datetime.date(2026, 3, 10)
SOURCE = DateRange(datetime.date(2026, 1, 1), datetime.date(2026, 1, 4))


def _resolve(date_from="", date_to="", window_days=0, source=SOURCE):
    return resolve_range(date_from, date_to, window_days, TODAY, lambda: source)


def test_explicit_dates_win_and_are_inclusive():
    assert _resolve("2026-01-02", "2026-01-03", window_days=45).days() == [
        datetime.date(2026, 1, 2), datetime.date(2026, 1, 3)]


def test_without_dates_a_window_is_the_days_up_to_yesterday():
    assert str(_resolve(window_days=3)) == "2026-03-07..2026-03-09"


def test_without_dates_and_window_every_day_of_the_source():
    assert _resolve() == SOURCE
    assert str(_resolve(date_from="2026-01-03")) == "2026-01-03..2026-01-04"
    assert _resolve(source=None) is None


@pytest.mark.parametrize("date_from, date_to, message", [
    ("2026-1-2", "", "--date-from must be a date as YYYY-MM-DD, got '2026-1-2'"),
    ("2026-01-05", "2026-01-04", "--date-from 2026-01-05 is after --date-to 2026-01-04"),
    ("2025-12-31", "2026-01-04", "before collection.span_epoch 2026-01-01"),
])
def test_unusable_dates_say_which_and_why(date_from, date_to, message):
    with pytest.raises(DateError, match=message.replace(".", r"\.").replace("(", r"\(")):
        _resolve(date_from, date_to)


def test_span_k_is_the_day_span_epoch_plus_k():
    assert span_of(datetime.date(2026, 1, 4), "2026-01-01") == 3
    assert date_of_span(3, "2026-01-01") == datetime.date(2026, 1, 4)
