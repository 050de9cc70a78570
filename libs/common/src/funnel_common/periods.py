"""Calendar quarters ``YYYY-Qn`` and ISO weeks ``YYYY-Www`` in the reporting time zone
(pure, no I/O). Shared by metrics (figures per quarter, the weekly review pack) and
handoff (the feedback list's period filter), so a quarter is the same everywhere."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# ASCII digits and nothing after: "\d" takes any script's digits, and "$" a final newline.
_PERIOD = re.compile(r"([0-9]{4})-Q([1-4])")
FIRST_YEAR, LAST_YEAR = 1970, 9998
"""The supported quarters. Within them every bound is a real instant in every time
zone (the end of 9998-Q4 is 9999-01-01 local time, and 1970-Q1 starts in 1969 UTC
east of Greenwich), so no period overflows a date or a timestamp."""


class BadPeriod(ValueError):
    """The text is not a calendar quarter ``YYYY-Qn``."""


@dataclass(frozen=True, order=True)
class Period:
    year: int
    quarter: int

    def __str__(self) -> str:
        return f"{self.year:04d}-Q{self.quarter}"

    def first_day(self) -> date:
        return date(self.year, 3 * (self.quarter - 1) + 1, 1)

    def shifted(self, quarters: int) -> Period:
        index = self.year * 4 + (self.quarter - 1) + quarters
        return Period(index // 4, index % 4 + 1)

    def bounds(self, timezone: str) -> tuple[datetime, datetime]:
        """[start, end) as UTC instants: midnight of the first days in the reporting zone."""
        zone = ZoneInfo(timezone)
        start, end = self.first_day(), self.shifted(1).first_day()
        return (
            datetime(start.year, start.month, start.day, tzinfo=zone).astimezone(UTC),
            datetime(end.year, end.month, end.day, tzinfo=zone).astimezone(UTC),
        )

    def contains(self, day: date) -> bool:
        return period_of_date(day) == self


def parse_period(text: str) -> Period:
    """A quarter ``YYYY-Qn`` of the years FIRST_YEAR to LAST_YEAR, or BadPeriod."""
    match = _PERIOD.fullmatch(text)
    if match is None:
        raise BadPeriod(f"{text!r} is not a calendar quarter like 2026-Q3")
    year = int(match.group(1))
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise BadPeriod(
            f"{text!r} is outside the supported quarters, {FIRST_YEAR}-Q1 to {LAST_YEAR}-Q4"
        )
    return Period(year, int(match.group(2)))


PATTERN = r"^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-Q[1-4]$"
"""The supported quarters as a regular expression, for the OpenAPI schema."""


def period_of_date(day: date) -> Period:
    """The quarter of a calendar date (deal dates are dates, already in business terms)."""
    return Period(day.year, (day.month - 1) // 3 + 1)


def period_of_instant(instant: datetime, timezone: str) -> Period:
    return period_of_date(instant.astimezone(ZoneInfo(timezone)).date())


def exported_periods(now: datetime, timezone: str, *, before: int, after: int) -> list[Period]:
    """The bounded window of quarters Prometheus gets a ``period`` label for."""
    current = period_of_instant(now, timezone)
    return [current.shifted(offset) for offset in range(-before, after + 1)]


# --- ISO weeks -------------------------------------------------------------------------

_WEEK = re.compile(r"([0-9]{4})-W([0-9]{2})")
WEEK_PATTERN = r"^[0-9]{4}-W[0-9]{2}$"
"""An ISO week as a regular expression, for the OpenAPI schema (the year's range and
whether the year has a week 53 are checked by :func:`parse_week`)."""


class BadWeek(ValueError):
    """The text is not an ISO week ``YYYY-Www``."""


@dataclass(frozen=True, order=True)
class Week:
    """An ISO 8601 week: Monday to Sunday, numbered within its ISO year."""

    year: int
    week: int

    def __str__(self) -> str:
        return f"{self.year:04d}-W{self.week:02d}"

    def monday(self) -> date:
        return date.fromisocalendar(self.year, self.week, 1)

    def shifted(self, weeks: int) -> Week:
        return week_of_date(self.monday() + timedelta(weeks=weeks))

    def bounds(self, timezone: str) -> tuple[datetime, datetime]:
        """[start, end) as UTC instants: Monday midnight to the next, in the reporting zone."""
        return (
            local_instant(self.monday(), time(0, 0), timezone),
            local_instant(self.monday() + timedelta(weeks=1), time(0, 0), timezone),
        )

    def at(self, weekday: int, clock: time, timezone: str) -> datetime:
        """The instant of ``weekday`` (1 = Monday) at ``clock`` in this week, as UTC."""
        return local_instant(self.monday() + timedelta(days=weekday - 1), clock, timezone)


def local_instant(day: date, clock: time, timezone: str) -> datetime:
    """``day`` at ``clock`` on the wall clock of ``timezone``, as a UTC instant."""
    return datetime.combine(day, clock, tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def week_of_date(day: date) -> Week:
    year, week, _ = day.isocalendar()
    return Week(year, week)


def week_of_instant(instant: datetime, timezone: str) -> Week:
    return week_of_date(instant.astimezone(ZoneInfo(timezone)).date())


def parse_week(text: str) -> Week:
    """An ISO week ``YYYY-Www`` that exists (W53 only in years that have one), of the
    years FIRST_YEAR to LAST_YEAR, or BadWeek."""
    match = _WEEK.fullmatch(text)
    if match is None:
        raise BadWeek(f"{text!r} is not an ISO week like 2026-W48")
    year, week = int(match.group(1)), int(match.group(2))
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise BadWeek(f"{text!r} is outside the supported years, {FIRST_YEAR} to {LAST_YEAR}")
    try:
        date.fromisocalendar(year, week, 1)
    except ValueError as error:
        raise BadWeek(f"{text!r} is not a week of {year}") from error
    return Week(year, week)
