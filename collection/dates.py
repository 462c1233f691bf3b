"""Which session dates a collection run collects, and which span each date is.

One definition for `repairml collect` and the production pipeline's first step:
  - explicit dates (--date-from / --date-to, or the pipeline's runtime
    parameters) win; one of them alone leaves the other at the source's edge;
  - without them and with collection.window_days N > 0 (production, scheduled
    daily): the N days up to yesterday (UTC), so that the claims that arrived
    since the last run reach the spans of the sessions they belong to;
  - without them and with window_days 0 (the local default): every day the
    source holds.
Span K holds the sessions of the day span_epoch + K.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["DateRange", "DateError", "parse_date", "resolve_range", "check_range", "span_of", "date_of_span"]


class DateError(ValueError):
    """A date the user gave that cannot be used; the message names it and what to do."""


@dataclass(frozen=True)
class DateRange:
    """Session dates first..last, both inclusive."""

    first: datetime.date
    last: datetime.date

    def days(self) -> list[datetime.date]:
        return [self.first + datetime.timedelta(days=k) for k in range((self.last - self.first).days + 1)]

    def __str__(self) -> str:
        return f"{self.first.isoformat()}..{self.last.isoformat()}"


def parse_date(name: str, text: str) -> datetime.date:
    """A YYYY-MM-DD date, or a DateError that names the option."""
    try:
        return datetime.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise DateError(f"{name} must be a date as YYYY-MM-DD, got {text!r}") from None


def resolve_range(date_from: str, date_to: str, window_days: int, today: datetime.date,
                  source_range: Optional[Callable[[], Optional[DateRange]]] = None,
                  span_epoch: str = "2026-01-01") -> Optional[DateRange]:
    """The dates to collect; None when the source has no sessions at all.

    source_range is called only when a bound is left open and window_days is 0;
    it returns the first and last session dates of the source (or None).
    """
    epoch = parse_date("collection.span_epoch", span_epoch)
    first = parse_date("--date-from", date_from) if date_from else None
    last = parse_date("--date-to", date_to) if date_to else None
    if window_days < 0:
        raise DateError(f"collection.window_days must be 0 (every day of the source) or more, got {window_days}")
    if first is None and last is None and window_days > 0:
        last = today - datetime.timedelta(days=1)
        first = today - datetime.timedelta(days=window_days)
    if first is None or last is None:
        available = source_range() if source_range is not None else None
        if available is None:
            return None
        first = first or max(available.first, epoch)
        last = last or available.last
    check_range(first, last, epoch)
    return DateRange(first, last)


def check_range(first: datetime.date, last: datetime.date, epoch: datetime.date,
                epoch_name: str = "collection.span_epoch") -> None:
    """A DateError unless first..last is a range that starts on or after span 0's day."""
    if first > last:
        raise DateError(f"--date-from {first.isoformat()} is after --date-to {last.isoformat()}; "
                        f"give a range whose first day comes first")
    if first < epoch:
        raise DateError(f"--date-from {first.isoformat()} is before {epoch_name} {epoch.isoformat()}, "
                        f"the day of span 0; collect from {epoch.isoformat()} on, or move the span epoch")


def span_of(day: datetime.date, span_epoch: str) -> int:
    """The span number of a session date."""
    return (day - parse_date("collection.span_epoch", span_epoch)).days


def date_of_span(span: int, span_epoch: str) -> datetime.date:
    return parse_date("collection.span_epoch", span_epoch) + datetime.timedelta(days=span)
