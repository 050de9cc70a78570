"""Business-time arithmetic and SLA policies: pure values and functions, no I/O.

A :class:`BusinessCalendar` is a time zone, weekly working hours and holidays. Business
time is real elapsed time inside working hours, so a working day that spans a DST
change counts the hours a clock on the wall actually ran. Local times that do not exist
(the spring-forward gap) are moved to the moment the clock jumps, which keeps the
local-to-UTC mapping monotonic.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A calendar with hours is never more than a week from working time, except across
# holidays; ten years of holidays is far more than any real calendar lists.
_MAX_DAYS_SCANNED = 3700

ClockTime = Annotated[str, Field(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")]


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class Span(BaseModel):
    """One stretch of working time in a day, local wall-clock ``HH:MM``; ``end`` may be 24:00."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: ClockTime
    end: ClockTime

    @model_validator(mode="after")
    def _start_before_end(self) -> Span:
        if _minutes(self.start) >= _minutes(self.end):
            raise ValueError("a span's start must be before its end")
        return self

    @property
    def start_minute(self) -> int:
        return _minutes(self.start)

    @property
    def end_minute(self) -> int:
        return _minutes(self.end)


def _valid_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {value!r}") from error
    return value


def _loadable_zones() -> list[str]:
    zones = []
    for name in available_timezones():
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        zones.append(name)
    return sorted(zones)


TimeZoneName = Annotated[
    str,
    # The zones this machine knows, listed in the OpenAPI document: a client (or a
    # fuzzer) can tell a valid zone from the schema alone.
    Field(min_length=1, max_length=64, json_schema_extra={"enum": _loadable_zones()}),
    AfterValidator(_valid_zone),
]
"""An IANA zone name that exists here; anything else (a NUL, a path) is a 422."""

WeeklyHours = dict[Weekday, list[Span]]


def _check_weekly_hours(hours: WeeklyHours) -> WeeklyHours:
    for day, spans in hours.items():
        ordered = sorted(spans, key=lambda span: span.start_minute)
        for before, after in itertools.pairwise(ordered):
            if after.start_minute < before.end_minute:
                raise ValueError(f"working hours on {day} overlap")
        hours[day] = ordered
    return hours


# "At least one day with at least one span", in the OpenAPI document as in the model.
_SOME_WORKING_DAY: JsonDict = {
    "minProperties": 1,
    "anyOf": [
        {"required": [day], "properties": {day: {"type": "array", "minItems": 1}}}
        for day in WEEKDAYS
    ],
}
WorkingWeek = Annotated[WeeklyHours, Field(json_schema_extra=_SOME_WORKING_DAY)]
"""Weekly hours with at least one working span."""


class BusinessCalendar(BaseModel):
    """When business time runs: a time zone, weekly hours, and holidays (local dates)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_zone: TimeZoneName = "UTC"
    weekly_hours: WorkingWeek
    holidays: list[date] = Field(default_factory=list, max_length=1000)

    @field_validator("weekly_hours")
    @classmethod
    def _hours(cls, value: WeeklyHours) -> WeeklyHours:
        if not any(value.values()):
            raise ValueError("a calendar needs at least one working span")
        return _check_weekly_hours(value)

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def working_minutes_scanned_at_least(self) -> float:
        """A lower bound of the working time, in minutes, that any scan of business time
        (ten years from any start) finds: the weekly hours over the whole weeks scanned,
        less two weeks (DST days, the partial first week) and every holiday's hours."""
        weekly = {
            day: sum(span.end_minute - span.start_minute for span in spans)
            for day, spans in self.weekly_hours.items()
        }
        lost = sum(weekly.get(WEEKDAYS[day.weekday()], 0) for day in self.holiday_set)
        return sum(weekly.values()) * (_MAX_DAYS_SCANNED // 7 - 2) - lost

    @cached_property
    def holiday_set(self) -> frozenset[date]:
        return frozenset(self.holidays)


class BreachAction(BaseModel):
    """What a breach does: reassign to the next eligible rep up to N times, then escalate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reassign_up_to: int = Field(default=1, ge=0, le=20)
    then: Literal["escalate_to_manager"] = "escalate_to_manager"


class SlaPolicy(BaseModel):
    """Accept or reject within ``business_minutes`` of business time.

    Fractions of a minute are allowed (0.05 is three seconds), which demos and tests use.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    business_minutes: float = Field(gt=0, le=60 * 24 * 365)
    at_risk_percent: int = Field(default=75, ge=1, le=99)
    calendar: BusinessCalendar
    on_breach: BreachAction = Field(default_factory=BreachAction)

    @field_validator("calendar")
    @classmethod
    def _window_can_elapse(
        cls, calendar: BusinessCalendar, info: ValidationInfo
    ) -> BusinessCalendar:
        # Refused when set, not later: a policy whose window cannot elapse would fail
        # every lead routed under it (each one parked in the DLQ).
        minutes = info.data.get("business_minutes")
        available = calendar.working_minutes_scanned_at_least()
        if minutes is not None and available < minutes:
            raise PydanticCustomError(
                "window_cannot_elapse",
                "{minutes} business minutes can never elapse in this calendar: its weekly "
                "hours less its holidays leave too little working time",
                {"minutes": minutes},
            )
        return calendar

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.business_minutes)

    @property
    def at_risk_after(self) -> timedelta:
        return self.window * self.at_risk_percent / 100


ALWAYS = BusinessCalendar(
    weekly_hours={day: [Span(start="00:00", end="24:00")] for day in WEEKDAYS}
)
"""A calendar where business time is wall time."""

DEFAULT_POLICY_NAME = "default"
DEFAULT_POLICY = SlaPolicy(
    business_minutes=240,
    calendar=BusinessCalendar(
        weekly_hours={day: [Span(start="09:00", end="17:00")] for day in WEEKDAYS[:5]}
    ),
)
"""Used when a team names no policy or its policy was never defined."""


# --- arithmetic ------------------------------------------------------------------------


def local_to_utc(day: date, minute: int, zone: ZoneInfo) -> datetime:
    """The instant of local ``day`` + ``minute``; gap times move to the jump's moment."""
    naive = datetime.combine(day, time()) + timedelta(minutes=minute)
    local = naive.replace(tzinfo=zone)
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == naive:
        return instant
    # A nonexistent wall time: the first existing minute after it is the jump itself.
    probe = naive
    for _ in range(24 * 60):
        probe += timedelta(minutes=1)
        candidate = probe.replace(tzinfo=zone).astimezone(UTC)
        if candidate.astimezone(zone).replace(tzinfo=None) == probe:
            return candidate
    raise ValueError("time zone gap longer than a day")  # pragma: no cover


def working_intervals(
    calendar: BusinessCalendar, since: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """Working intervals ``[start, end)`` in UTC, in order, that end after ``since``."""
    zone = calendar.zone
    first_day = since.astimezone(zone).date() - timedelta(days=1)
    for offset in range(_MAX_DAYS_SCANNED):
        day = first_day + timedelta(days=offset)
        if day in calendar.holiday_set:
            continue
        for span in calendar.weekly_hours.get(WEEKDAYS[day.weekday()], []):
            start = local_to_utc(day, span.start_minute, zone)
            end = local_to_utc(day, span.end_minute, zone)
            if end > start and end > since:
                yield start, end
    raise ValueError("no working time within ten years")


def add_business_time(calendar: BusinessCalendar, start: datetime, amount: timedelta) -> datetime:
    """The instant ``amount`` of business time after ``start``."""
    if amount < timedelta(0):
        raise ValueError("amount must not be negative")
    remaining = amount
    for interval_start, interval_end in working_intervals(calendar, start):
        begin = max(interval_start, start)
        if begin + remaining <= interval_end:
            return begin + remaining
        remaining -= interval_end - begin
    raise AssertionError("unreachable: working_intervals raises first")  # pragma: no cover


def business_time_between(calendar: BusinessCalendar, start: datetime, end: datetime) -> timedelta:
    """Business time elapsed from ``start`` to ``end`` (zero when ``end`` is not later)."""
    total = timedelta(0)
    if end <= start:
        return total
    for interval_start, interval_end in working_intervals(calendar, start):
        if interval_start >= end:
            break
        total += min(interval_end, end) - max(interval_start, start)
    return total


def business_seconds_between(calendar: BusinessCalendar, start: datetime, end: datetime) -> int:
    """Whole business seconds from ``start`` to ``end``, for events."""
    return math.floor(business_time_between(calendar, start, end).total_seconds())


def is_working(calendar: BusinessCalendar, at: datetime) -> bool:
    """True when ``at`` falls inside working time."""
    for interval_start, _ in working_intervals(calendar, at):
        return interval_start <= at
    return False  # pragma: no cover


class Deadlines(BaseModel):
    """When an assignment turns at risk and when it breaches."""

    model_config = ConfigDict(frozen=True)

    at_risk_at: datetime
    due_at: datetime


def deadlines(policy: SlaPolicy, assigned_at: datetime) -> Deadlines:
    """The at-risk moment and the due date of an assignment made at ``assigned_at``."""
    return Deadlines(
        at_risk_at=add_business_time(policy.calendar, assigned_at, policy.at_risk_after),
        due_at=add_business_time(policy.calendar, assigned_at, policy.window),
    )
