"""The period of a transparency report: the ``days`` × 24 hours up to the moment it is
computed, in UTC, whatever offset the moment was given in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from anwang.core.errors import ValidationFailed
from anwang.transparency.service import MAX_DAYS, report_period

SHANGHAI = timezone(timedelta(hours=8))


def test_the_period_ends_at_the_moment_in_utc() -> None:
    now = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=SHANGHAI)
    start, end = report_period(now, 30)
    assert end == datetime(2026, 3, 1, 1, 30, 15, 123456, tzinfo=UTC)
    assert end.utcoffset() == timedelta(0)
    # 30 days before 1 March 2026 (not a leap year): 30 January.
    assert start == datetime(2026, 1, 30, 1, 30, 15, 123456, tzinfo=UTC)


@pytest.mark.parametrize("days", [1, 7, 30, 365, MAX_DAYS])
def test_every_day_is_24_hours(days: int) -> None:
    # Across Europe's spring-forward night: a UTC period does not notice it.
    now = datetime(2026, 3, 30, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    start, end = report_period(now, days)
    assert end - start == timedelta(hours=24 * days)


def test_a_leap_day_is_inside_a_366_day_period() -> None:
    start, end = report_period(datetime(2029, 1, 1, tzinfo=UTC), 366)
    assert start == datetime(2028, 1, 1, tzinfo=UTC)
    assert start < datetime(2028, 2, 29, 12, tzinfo=UTC) < end


@pytest.mark.parametrize("days", [0, -1, MAX_DAYS + 1, True])
def test_days_out_of_range_are_refused(days: int) -> None:
    with pytest.raises(ValidationFailed) as err:
        report_period(datetime(2026, 1, 1, tzinfo=UTC), days)
    assert err.value.errors[0].field == "days"


def test_a_naive_moment_is_a_bug() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        report_period(datetime(2026, 1, 1), 30)  # noqa: DTZ001 - the point of the test
